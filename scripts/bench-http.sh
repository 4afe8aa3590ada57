#!/usr/bin/env bash
# Measures the HTTP API of a `switchboard serve` started here (in memory, on free ports):
#
#  1. publishing over HTTP with wrk: keep-alive connections POSTing one body each
#     (a Lua script), so it measures the request path, not connection set-up;
#  2. the same publishes over TCP for reference: `switchboard bench request` with as
#     many connections, each waiting for its ack before the next, as wrk's do;
#  3. the delivery rate of a Server-Sent Events stream (`curl -N`) while wrk publishes
#     to the channel it subscribes to: events received per second, and how many of the
#     published messages it received.
#
# Needs wrk and curl (Debian: apt-get install wrk curl). Settings, by environment:
#   PROFILE=release|debug  which build to measure (default release; built if missing)
#   DURATION=10            seconds of each wrk run
#   CONNECTIONS=32         wrk's open connections; THREADS=2 its threads
#   BODY_BYTES=100         size of each published body
#   BIN=path               a switchboard binary to use instead of building one
#
# Prints one summary line per measure at the end, for BENCHMARKS.md.
set -euo pipefail

PROFILE=${PROFILE:-release}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
BODY_BYTES=${BODY_BYTES:-100}

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench-http: $tool is not installed" >&2; exit 1; }
done

if [[ -z ${BIN:-} ]]; then
    if [[ $PROFILE == release ]]; then
        cargo build --quiet --release -p switchboard --manifest-path "$root/Cargo.toml"
    else
        cargo build --quiet -p switchboard --manifest-path "$root/Cargo.toml"
    fi
    BIN="$root/target/$PROFILE/switchboard"
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$BIN" serve --memory --listen 127.0.0.1:0 --http 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
http=
for _ in $(seq 100); do
    http=$(cat "$work/serve.out" "$work/serve.err" | sed -n 's|^switchboard listening on http://||p' | head -n1)
    [[ -n $http ]] && break
    sleep 0.1
done
[[ -n $http ]] || { echo "bench-http: the server did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }
tcp=$(cat "$work/serve.out" "$work/serve.err" | sed -n 's|^switchboard listening on \([0-9.]*:[0-9]*\)$|\1|p' | head -n1)
base="http://$http"
echo "server: $BIN ($PROFILE) on $base"

cat >"$work/publish.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.body = string.rep("x", $BODY_BYTES)
LUA

counter() {
    curl -s "$base/api/v1/stats" | tr ',{}' '\n\n\n' | sed -n "s/^\"$1\":\([0-9]*\)$/\1/p"
}

# 1. Publishing.
echo
echo "== publish: POST /api/v1/channels/bench.http/messages, $BODY_BYTES B bodies, $CONNECTIONS connections, ${DURATION}s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/publish.lua" \
    "$base/api/v1/channels/bench.http/messages" | tee "$work/wrk-publish.txt"
publish_rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk-publish.txt")
publish_p99=$(awk '$1 == "99%" {print $2}' "$work/wrk-publish.txt")

# 2. The same publishes over TCP.
echo
echo "== publish over TCP: switchboard bench request, $CONNECTIONS connections, 1 in flight each"
"$BIN" bench request --server "$tcp" --publishers "$CONNECTIONS" --size "$BODY_BYTES" \
    --duration "${DURATION}s" --channel bench.tcp | tee "$work/tcp-publish.txt"
tcp_rps=$(awk '$1 == "acked" {gsub(",", "", $3); print $3}' "$work/tcp-publish.txt")
ratio=$(awk -v h="$publish_rps" -v t="$tcp_rps" 'BEGIN { if (t > 0) printf "%.2f", h / t; else print "n/a" }')

# 3. Delivery to an event stream while publishing.
echo
echo "== SSE: one curl -N subscriber on bench.sse while wrk publishes to it for ${DURATION}s"
curl -s -N --max-time $((DURATION + 3)) "$base/api/v1/events?pattern=bench.sse" >"$work/events.txt" || true &
curl_pid=$!
sleep 1
before=$(counter messages_published || echo 0)
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/publish.lua" \
    "$base/api/v1/channels/bench.sse/messages" >"$work/wrk-sse.txt"
after=$(counter messages_published || echo 0)
wait "$curl_pid" || true
published=$((after - before))
received=$(grep -c '^event: message' "$work/events.txt" || true)
sse_rate=$(awk -v n="$received" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
echo "published $published, the stream received $received (${sse_rate}/s)"
if grep -q '^event: error' "$work/events.txt"; then
    echo "the stream ended with: $(grep -A1 '^event: error' "$work/events.txt" | tail -n1)"
fi

echo
echo "summary ($PROFILE, $BODY_BYTES B, $CONNECTIONS connections):"
echo "  HTTP publish: ${publish_rps} requests/s, p99 ${publish_p99}"
echo "  TCP publish:  ${tcp_rps} acked/s (HTTP / TCP: ${ratio})"
echo "  SSE delivery: ${sse_rate} events/s, ${received} of ${published} published"
