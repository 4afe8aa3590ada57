#!/usr/bin/env bash
# Runs every test suite of the project, which `cargo test` drives:
#   * the Rust workspace: unit and integration tests over real sockets and processes;
#   * the console in headless Chromium (crates/switchboard/tests/browser.rs), through
#     Debian's chromium and chromedriver;
#   * /metrics checked by promtool (Debian package prometheus);
#   * the JavaScript client's suite under Node's test runner against the built server
#     (clients/js/test, started by crates/switchboard/tests/js_client.rs).
# The tools are checked first, so that a missing one is named at once rather than by a
# failing test minutes later. .ci/run installs them when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in chromium chromedriver promtool node; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "missing: ${missing[*]}" >&2
    echo "install them with: apt-get install chromium chromium-driver prometheus (and Node 20 or later)" >&2
    exit 1
fi

cargo test --workspace --locked
