#!/usr/bin/env bash
# Measures cluster mode against a single server in one run, on this machine: one-way
# latency (p50/p99 at a paced rate) and 1 KiB throughput, from a publisher on node A to a
# subscriber on node B (a message's way through Redis), from A to A (the publishing
# node delivers from the feed too), and on a single server without --cluster; and the
# Redis commands each published message costs.
#
# Usage: scripts/bench-cluster.sh [DURATION]   (default 5s per measurement)
# Needs redis-server and a release build (cargo build --release -p switchboard);
# SWITCHBOARD_BIN names another binary (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${SWITCHBOARD_BIN:-target/release/switchboard}
D=${1:-5s}
[ -x "$B" ] || { echo "build first: cargo build --release -p switchboard" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

redis_port=$(free_port)
redis-server --port "$redis_port" --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"

single=$(free_port); a=$(free_port); b=$(free_port)
$B serve --memory --no-http --no-unix --listen "127.0.0.1:$single" 2>"$work/single.log" &
pids+=($!)
for port in "$a" "$b"; do
    $B serve --cluster "redis://127.0.0.1:$redis_port" --sync never --no-http --no-unix \
        --listen "127.0.0.1:$port" --data-dir "$work/node-$port" 2>"$work/node-$port.log" &
    pids+=($!)
done
for port in "$single" "$a" "$b"; do wait_port "$port"; done

run() { # NAME ARGS...
    local name=$1; shift
    printf '%-28s ' "$name"
    $B --json bench "$@" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    rate, loss, disorder = r.get("receive_msgs_per_s"), r.get("loss"), r.get("out_of_order")
    parts = [f"received {rate:.0f} msg/s", f"loss {loss}", f"out of order {disorder}"]
    lat = r.get("latency_us")
    if lat:
        p50, p99, p999 = lat.get("p50"), lat.get("p99"), lat.get("p99_9")
        parts.append(f"p50 {p50} us  p99 {p99} us  p99.9 {p999} us")
    print("  ".join(parts))
'
}

echo "== one-way latency, 64 B at 2000 msg/s for $D"
run "single server" latency --server "127.0.0.1:$single" --rate 2000 --duration "$D"
run "cluster A -> A" latency --server "127.0.0.1:$a" --rate 2000 --duration "$D"
run "cluster A -> B" latency --server "127.0.0.1:$a" --subscriber-server "127.0.0.1:$b" --rate 2000 --duration "$D"
echo "== throughput, 1 KiB, one publisher and one subscriber, for $D"
run "single server" pubsub --server "127.0.0.1:$single" --size 1k --duration "$D"
run "cluster A -> A" pubsub --server "127.0.0.1:$a" --size 1k --duration "$D"
run "cluster A -> B" pubsub --server "127.0.0.1:$a" --subscriber-server "127.0.0.1:$b" --size 1k --duration "$D"

echo "== throughput, 1 KiB, four channels each with a publisher and a subscriber, for $D"
run "single server" channels --server "127.0.0.1:$single" --size 1k --duration "$D"
run "cluster A -> B" channels --server "127.0.0.1:$a" --subscriber-server "127.0.0.1:$b" --size 1k --duration "$D"

echo "== Redis commands per published message (1000 publishes, one subscribing node)"
redis-cli -p "$redis_port" CONFIG RESETSTAT >/dev/null
$B --json bench pubsub --server "127.0.0.1:$a" --subscriber-server "127.0.0.1:$b" --size 16 --count 1000 >/dev/null
redis-cli -p "$redis_port" INFO commandstats | python3 -c '
import sys
calls, usec = {}, {}
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        calls[name] = int(rest.split("calls=")[1].split(",")[0])
        usec[name] = float(rest.split("usec_per_call=")[1].split(",")[0])
for name, n in sorted(calls.items(), key=lambda kv: -kv[1]):
    if n >= 100:
        print(f"  {name:24} {n:6}  ({n / 1000:.2f} per message, {usec[name]:.1f} us each in Redis)")
'
