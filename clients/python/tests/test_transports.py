"""The other doors into the hub: the Unix socket and WebSocket (`ws://.../ws`), with the
same calls as TCP, and a message crossing from one transport to another."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import switchboard
from switchboard import Replay

from conftest import launch


@dataclass
class Doors:
    """One server's three addresses."""

    process: subprocess.Popen[str]
    tcp: str
    unix: str
    websocket: str


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    socket = tmp_path_factory.mktemp("unix") / "switchboard.sock"
    args = ["--memory", "--listen", "127.0.0.1:0", "--unix", str(socket), "--http", "127.0.0.1:0"]
    process, addresses, _log = launch(args, lambda addresses: len(addresses) == 3)
    found: dict[str, str] = {}
    for address in addresses:
        if address.startswith("unix:"):
            found["unix"] = address
        elif address.startswith("http://"):
            found["websocket"] = "ws://" + address.removeprefix("http://") + "/ws"
        else:
            found["tcp"] = address
    yield Doors(process, found["tcp"], found["unix"], found["websocket"])
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")
async def test_async_client_over_the_unix_socket(doors: Doors) -> None:
    async with await switchboard.connect(doors.unix, name="local") as client:
        assert client.client_id > 0
        ack = await client.publish("doors.unix", "over the socket")
        message = await client.get_message("doors.unix", ack.id)
        assert message is not None and message.text() == "over the socket"
        assert (await client.identity()).name == "local"


async def test_async_client_over_websocket(doors: Doors) -> None:
    async with await switchboard.connect(doors.websocket, name="browserless") as client:
        subscription = await client.subscribe("doors.ws", replay=Replay.none())
        await client.publish("doors.ws", b"\x00binary\xff")
        message = await subscription.next()
        assert message is not None and message.body == b"\x00binary\xff"
        assert message.sender_name == "browserless"


def test_blocking_clients_meet_across_transports(doors: Doors) -> None:
    """A message published over WebSocket reaches a subscriber on the Unix socket (or
    TCP where there is none), and the answer goes back the other way."""
    listener_address = doors.tcp if sys.platform == "win32" else doors.unix
    listener = switchboard.Client(listener_address, name="listener")
    speaker = switchboard.Client(doors.websocket, name="speaker")
    try:
        heard = listener.subscribe("doors.cross")
        answers = speaker.subscribe("doors.answer")
        speaker.publish("doors.cross", "hello from ws")
        message = heard.next()
        assert message is not None and message.text() == "hello from ws"
        assert message.sender_id == speaker.client_id
        listener.publish("doors.answer", "hello from the socket")
        answer = answers.next()
        assert answer is not None and answer.text() == "hello from the socket"
        assert answer.sender_id == listener.client_id
    finally:
        speaker.close()
        listener.close()


def test_a_large_body_over_websocket(doors: Doors, tmp_path: Path) -> None:
    """A streamed body (several frames) crosses WebSocket with its digest checked."""
    source = tmp_path / "source.bin"
    body = bytes(range(256)) * (12 * 1024)  # 3 MiB: more than one frame
    source.write_bytes(body)
    with switchboard.Client(doors.websocket, name="uploader") as client:
        ack = client.publish_file("doors.big", source)
        message = client.get_message("doors.big", ack.id)
        assert message is not None and message.is_streamed
        target = tmp_path / "target.bin"
        assert message.save_to(target) == len(body)
        assert target.read_bytes() == body
