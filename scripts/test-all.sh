#!/usr/bin/env bash
# Runs every test suite of the project, which `cargo test` drives:
#   * the Rust workspace: unit and integration tests over real sockets and processes;
#   * the console in headless Chromium (crates/switchboard/tests/browser.rs), through
#     Debian's chromium and chromedriver;
#   * /metrics checked by promtool (Debian package prometheus);
#   * the JavaScript client's suite under Node's test runner against the built server
#     (clients/js/test, started by crates/switchboard/tests/js_client.rs);
#   * then the Python client (clients/python): built by pip into a virtualenv under
#     target/python-venv and tested with pytest against the server binary that
#     `cargo test` built (the Rust interop example beside it), then checked by mypy
#     --strict and ruff.
# The tools are checked first, so that a missing one is named at once rather than by a
# failing test minutes later. .ci/run installs them when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in chromium chromedriver promtool node redis-server; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3 with venv")
if ((${#missing[@]})); then
    echo "missing: ${missing[*]}" >&2
    echo "install them with: apt-get install chromium chromium-driver prometheus python3-venv redis-server redis-sentinel (and Node 20 or later)" >&2
    exit 1
fi

cargo test --workspace --locked

# The Python client: pip builds the binding (a release build by maturin, warm after the
# first run in clients/python/target) and installs it with the test tools (trustme makes
# the TLS tests' certificates).
venv=target/python-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ./clients/python \
    "pytest>=8,<10" "pytest-asyncio>=1,<2" "trustme>=1,<2" "mypy>=2,<3" "ruff>=0.17,<0.18"
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" "$venv/bin/pytest" -q clients/python/tests
# The package promises type hints that hold (mypy --strict) and lint-clean code.
(cd clients/python && "../../$venv/bin/mypy" switchboard tests bench \
    && "../../$venv/bin/ruff" check . && "../../$venv/bin/ruff" format --check .)
