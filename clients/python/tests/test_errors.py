"""Failures arrive as exception classes per kind, with the server's code and message."""

from __future__ import annotations

import socket

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


def _closed_port() -> str:
    """A loopback address where nothing listens: a port the kernel gave out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


async def test_an_unreachable_hub_is_a_connection_error_naming_the_address() -> None:
    address = _closed_port()
    with pytest.raises(switchboard.ConnectionFailed) as caught:
        await switchboard.connect(address, name="nobody")
    assert isinstance(caught.value, ConnectionError)
    assert f"could not connect to {address}" in caught.value.message
    with pytest.raises(ConnectionError, match=address):
        switchboard.Client(address, name="nobody")


def test_kinds_are_also_python_builtin_exceptions() -> None:
    assert issubclass(switchboard.ConnectionClosed, ConnectionError)
    assert issubclass(switchboard.Timeout, TimeoutError)
    assert issubclass(switchboard.InvalidArgument, ValueError)
