"""Stopping and reloading the server: admin sessions only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import switchboard

from conftest import Server, start_server, stop_server

ADMIN_TOKEN = "admin-token-for-the-python-tests"


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[Server]:
    """A server of its own (a test may stop it) with an admin token and a config file."""
    (tmp_path / "admin.token").write_text(ADMIN_TOKEN + "\n")
    (tmp_path / "switchboard.toml").write_text("[limits]\n")
    running = start_server(
        "--config",
        str(tmp_path / "switchboard.toml"),
        "--admin-token-file",
        str(tmp_path / "admin.token"),
    )
    yield running
    stop_server(running)


async def test_stop_server(admin_server: Server) -> None:
    async with await switchboard.connect(admin_server.address, name="user") as user:
        with pytest.raises(switchboard.Forbidden):
            await user.stop_server()
        async with await switchboard.connect(admin_server.address, token=ADMIN_TOKEN) as admin:
            await admin.stop_server()
    assert admin_server.process.wait(timeout=10) == 0


def test_blocking_stop_server(admin_server: Server) -> None:
    with switchboard.Client(admin_server.address, name="user") as user:
        with pytest.raises(switchboard.Forbidden):
            user.stop_server()
    with switchboard.Client(admin_server.address, token=ADMIN_TOKEN) as admin:
        admin.stop_server()
    assert admin_server.process.wait(timeout=10) == 0


async def test_reload_server(admin_server: Server, tmp_path: Path) -> None:
    async with await switchboard.connect(admin_server.address, token=ADMIN_TOKEN) as admin:
        await admin.reload_server()
        (tmp_path / "switchboard.toml").write_text("[limits]\nno_such_setting = 1\n")
        with pytest.raises(switchboard.SwitchboardError) as caught:
            await admin.reload_server()
        assert "no_such_setting" in caught.value.message
        # The server keeps the configuration it had, and serves on.
        assert (await admin.publish("after.reload", "still here")).seq == 1
    with switchboard.Client(admin_server.address, name="user") as user:
        with pytest.raises(switchboard.Forbidden):
            user.reload_server()
    with switchboard.Client(admin_server.address, token=ADMIN_TOKEN) as admin_client:
        (tmp_path / "switchboard.toml").write_text("[limits]\n")
        admin_client.reload_server()
