"""Relaying bodies to client ids, and the direct feed that receives them, on both APIs."""

from __future__ import annotations

import asyncio
import threading

import pytest

import switchboard

from conftest import Server

NO_SUCH_CLIENT = 2**40


async def test_relay_and_direct_feed(server: Server) -> None:
    async with (
        await switchboard.connect(server.address, name="sender") as sender,
        await switchboard.connect(server.address, name="receiver") as receiver,
    ):
        directs = receiver.direct_feed()
        outcomes = await sender.relay([receiver.client_id, NO_SUCH_CLIENT], "psst")
        assert [(o.client_id, o.status, o.delivered) for o in outcomes] == [
            (receiver.client_id, "delivered", True),
            (NO_SUCH_CLIENT, "unknown", False),
        ]
        await sender.relay([receiver.client_id], b"\xff\x00")
        await sender.relay([receiver.client_id], '{"a": 1}', content_type="application/json")

        got = [await asyncio.wait_for(directs.next(), 10) for _ in range(3)]
        first, second, third = got
        assert first is not None and second is not None and third is not None
        assert (first.sender_id, first.sender_name) == (sender.client_id, "sender")
        assert first.text() == "psst" and first.content_type.startswith("text/plain")
        assert second.body == b"\xff\x00" and second.text() is None
        assert second.content_type == "application/octet-stream"
        assert third.content_type == "application/json"
        assert first.time > 0 and first.time_us >= 1_000_000

        # A body relayed before the feed is taken is kept for it.
        await directs.close()
        await sender.relay([receiver.client_id], "queued")
        again = receiver.direct_feed()
        queued = await asyncio.wait_for(again.next(), 10)
        assert queued is not None and queued.text() == "queued"
        await again.close()


async def test_relay_limits(server: Server) -> None:
    async with await switchboard.connect(server.address, name="limits") as client:
        with pytest.raises(switchboard.InvalidArgument) as caught:
            await client.relay(list(range(1, 257)), "too many")
        assert "256" in caught.value.message
        assert isinstance(caught.value, ValueError)
        with pytest.raises(switchboard.InvalidArgument):
            await client.relay([], "nobody")
        outcomes = await client.relay(list(range(NO_SUCH_CLIENT, NO_SUCH_CLIENT + 255)), "x")
        assert len(outcomes) == 255 and {o.status for o in outcomes} == {"unknown"}
        feed = client.direct_feed()
        with pytest.raises(switchboard.SwitchboardError):
            client.direct_feed()
        await feed.close()


async def test_direct_feed_ends_when_the_client_closes(server: Server) -> None:
    client = await switchboard.connect(server.address, name="dending")
    directs = client.direct_feed()
    waiting = asyncio.ensure_future(directs.next())
    await asyncio.sleep(0.1)
    await client.close()
    assert await asyncio.wait_for(waiting, 10) is None


async def test_close_ends_a_waiting_direct_feed(server: Server) -> None:
    async with await switchboard.connect(server.address, name="dclosing") as client:
        directs = client.direct_feed()
        waiting = asyncio.ensure_future(directs.next())
        await asyncio.sleep(0.1)
        await asyncio.wait_for(directs.close(), 10)
        assert await asyncio.wait_for(waiting, 10) is None


def test_blocking_relay_and_direct_feed(server: Server) -> None:
    with (
        switchboard.Client(server.address, name="bsender") as sender,
        switchboard.Client(server.address, name="breceiver") as receiver,
    ):
        directs = receiver.direct_feed()
        received: list[str] = []

        def read_directs() -> None:
            for direct in directs:
                received.append(direct.text() or "")
                if direct.text() == "last":
                    break

        reading = threading.Thread(target=read_directs)
        reading.start()
        for text in ("one", "two", "last"):
            (outcome,) = sender.relay([receiver.client_id], text)
            assert outcome.status == "delivered"
        reading.join(timeout=10)
        assert not reading.is_alive()
        assert received == ["one", "two", "last"]
        with pytest.raises(switchboard.InvalidArgument):
            sender.relay(range(1, 300), "too many")
        directs.close()
        assert directs.next() is None
