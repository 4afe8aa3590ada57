"""Failures arrive as exception classes per kind, with the server's code and message."""

from __future__ import annotations

import pytest

import switchboard
from switchboard import errors

from conftest import Server


async def test_not_found(server: Server) -> None:
    async with await switchboard.connect(server.address, name="seeker") as client:
        with pytest.raises(switchboard.NotFound) as caught:
            await client.delete_channel("no.such.channel")
    assert caught.value.code == "NOT_FOUND" and caught.value.number == 101
    assert "no.such.channel" in caught.value.message


async def test_too_large(server: Server) -> None:
    async with await switchboard.connect(server.address, name="big") as client:
        await client.create_channel("small.x", max_bytes=8)
        with pytest.raises(switchboard.TooLarge) as caught:
            await client.publish("small.x", b"x" * 100)
    assert caught.value.code == "TOO_LARGE" and caught.value.number == 103


async def test_connection_closed(server: Server) -> None:
    client = await switchboard.connect(server.address, name="closer")
    await client.close()
    assert client.is_closed
    with pytest.raises(switchboard.ConnectionClosed):
        await client.publish("closed.x", "late")


def test_blocking_errors_are_the_same_classes(server: Server) -> None:
    with switchboard.Client(server.address, name="blocking-seeker") as client:
        with pytest.raises(switchboard.NotFound):
            client.delete_channel("no.such.channel")


def test_unreachable_server() -> None:
    with pytest.raises(switchboard.SwitchboardError):
        switchboard.Client("127.0.0.1:1", name="nobody")


def test_every_class_is_a_switchboard_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), switchboard.SwitchboardError)
    assert issubclass(switchboard.InvalidArgument, ValueError)


async def test_invalid_arguments_are_refused_before_sending(server: Server) -> None:
    async with await switchboard.connect(server.address, name="careless") as client:
        with pytest.raises(ValueError):
            await client.create_channel("bad.x", durability="sometimes")
        with pytest.raises(TypeError):
            await client.publish("bad.x", 42)  # type: ignore[arg-type]
