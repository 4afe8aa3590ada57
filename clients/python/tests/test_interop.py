"""The Python client and the Rust CLI speak to each other through the hub."""

from __future__ import annotations

import subprocess

import switchboard
from switchboard import Replay

from conftest import Server, binary


def test_cli_publish_received_in_python(server: Server) -> None:
    with switchboard.Client(server.address, name="py-reader") as client:
        subscription = client.subscribe("interop.from-cli")
        server.cli("pub", "interop.from-cli", "hello from rust")
        message = next(subscription)
    assert message.text() == "hello from rust"
    assert message.content_type.startswith("text/plain")


def test_python_publish_received_by_cli(server: Server) -> None:
    # With a replay of the last message, the CLI gets it whether its subscription is in
    # place before the publish or after.
    reader = subprocess.Popen(
        [
            *(binary(), "sub", "interop.from-python", "--last", "1", "--count", "1"),
            *("--server", server.address),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with switchboard.Client(server.address, name="py-writer") as client:
            client.publish("interop.from-python", "hello from python")
        out, err = reader.communicate(timeout=20)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert "hello from python" in out


def test_cli_history_reads_python_messages(server: Server) -> None:
    with switchboard.Client(server.address, name="py-history") as client:
        client.publish("interop.history", "kept")
        assert client.subscribe("interop.history", replay=Replay.last(1)).replay_count == 1
    assert "kept" in server.cli("get", "interop.history")
