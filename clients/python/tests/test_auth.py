"""Logging in with a password from a `[[users]]` entry; what the roles refuse."""

from __future__ import annotations

import pytest

import switchboard

from conftest import Server


async def test_login_with_password(secured_server: Server) -> None:
    async with await switchboard.connect(
        secured_server.address, name="ignored", user="alice", password="wonderland"
    ) as client:
        identity = await client.identity()
        assert identity.name == "alice"
        await client.publish("chat.python", "allowed")
        with pytest.raises(switchboard.Forbidden) as caught:
            await client.publish("secret.python", "refused")
    assert caught.value.code == "FORBIDDEN" and caught.value.number == 106


async def test_wrong_password(secured_server: Server) -> None:
    with pytest.raises(switchboard.AuthFailed) as caught:
        await switchboard.connect(secured_server.address, name="x", user="alice", password="wrong")
    assert caught.value.code == "AUTH_FAILED"


def test_blocking_login(secured_server: Server) -> None:
    with switchboard.Client(secured_server.address, user="alice", password="wonderland") as client:
        assert client.identity().name == "alice"


def test_user_without_password_is_refused() -> None:
    with pytest.raises(ValueError):
        switchboard.Client("127.0.0.1:1", user="alice")
