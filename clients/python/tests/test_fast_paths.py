"""The paths that take no future per message: publishing without reply while the send
queue has room, and subscriptions read in batches of what is already queued."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import switchboard

from conftest import Server, start_server, stop_server

PATIENCE = 10.0


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A server of this test alone, which the test may pause or stop."""
    running = start_server()
    yield running
    stop_server(running)


async def test_publish_no_reply_with_room_does_not_suspend(server: Server) -> None:
    async with await switchboard.connect(server.address, name="eager") as client:
        publishing = client.publish_no_reply("fast.now", b"at once")
        # A coroutine that never waits finishes on its first step.
        with pytest.raises(StopIteration):
            publishing.send(None)
        await client.flush()
        latest = await client.latest("fast.now")
        assert latest is not None and latest.body == b"at once"


async def test_no_reply_publishes_arrive_in_order(server: Server) -> None:
    count = 5000
    async with await switchboard.connect(server.address, name="orderly") as client:
        subscription = await client.subscribe("fast.order")
        # A client of its own: the subscription holds fewer than `count` messages, and a
        # full one holds back its connection's answers until it is read.
        async with await switchboard.connect(server.address, name="publisher") as publisher:
            for n in range(count):
                await publisher.publish_no_reply("fast.order", str(n), headers=[("n", str(n))])
            await publisher.flush()
        received = []
        async for message in subscription:
            received.append(message)
            if len(received) == count:
                break
    assert [message.text() for message in received] == [str(n) for n in range(count)]
    assert [message.header("n") for message in received] == [str(n) for n in range(count)]
    assert [message.seq for message in received] == list(range(1, count + 1))


def test_blocking_no_reply_publishes_arrive_in_order(server: Server) -> None:
    count = 3000
    with switchboard.Client(server.address, name="orderly-blocking") as client:
        subscription = client.subscribe("fast.blocking")
        with switchboard.Client(server.address, name="publisher") as publisher:
            for n in range(count):
                publisher.publish_no_reply("fast.blocking", str(n))
            publisher.flush()
        received = [message.text() for _, message in zip(range(count), subscription)]
    assert received == [str(n) for n in range(count)]


async def test_no_reply_failures_surface_at_flush(server: Server) -> None:
    async with await switchboard.connect(server.address, name="failing") as client:
        await client.publish_no_reply("fast.fine", "kept")
        # The server refuses a channel name with a space; nothing is known at once.
        await client.publish_no_reply("not a channel", "refused")
        with pytest.raises(switchboard.SwitchboardError) as failure:
            await client.flush()
        assert "1 publish" in str(failure.value)
        # Reported once: the next flush is clean.
        await client.flush()
        latest = await client.latest("fast.fine")
        assert latest is not None and latest.text() == "kept"


async def test_no_reply_on_a_closed_client_fails_at_once(server: Server) -> None:
    client = await switchboard.connect(server.address, name="closed")
    await client.close()
    with pytest.raises(switchboard.ConnectionClosed):
        await client.publish_no_reply("fast.closed", "late")


@pytest.mark.skipif(sys.platform == "win32", reason="pauses the server with SIGSTOP")
async def test_no_reply_waits_for_room_while_the_server_is_paused(own_server: Server) -> None:
    body = bytes(1024)
    async with await switchboard.connect(own_server.address, name="pressed") as client:
        os.kill(own_server.process.pid, signal.SIGSTOP)
        try:
            published = 0
            stuck = None
            # The socket's buffers and then the client's send queue fill up; from then
            # on a publish waits, and keeps waiting while the server reads nothing.
            while stuck is None:
                assert published < 200_000, "the send queue never filled up"
                publishing = asyncio.ensure_future(client.publish_no_reply("fast.paused", body))
                await asyncio.sleep(0)
                if publishing.done():
                    publishing.result()
                    published += 1
                    continue
                done, _ = await asyncio.wait({publishing}, timeout=0.5)
                if done:
                    publishing.result()
                    published += 1
                else:
                    stuck = publishing
        finally:
            os.kill(own_server.process.pid, signal.SIGCONT)
        await asyncio.wait_for(stuck, PATIENCE)
        await client.flush()
        channels = {channel.name: channel for channel in await client.list_channels()}
        assert channels["fast.paused"].last_seq == published + 1


@pytest.mark.skipif(sys.platform == "win32", reason="pauses the server with SIGSTOP")
def test_blocking_no_reply_waits_for_room_while_the_server_is_paused(
    own_server: Server,
) -> None:
    body = bytes(1024)
    published = [0]
    stop = threading.Event()
    with switchboard.Client(own_server.address, name="pressed-blocking") as client:

        def publish() -> None:
            while not stop.is_set():
                client.publish_no_reply("fast.paused", body)
                published[0] += 1

        os.kill(own_server.process.pid, signal.SIGSTOP)
        publisher = threading.Thread(target=publish)
        try:
            publisher.start()
            # Stalled: no publish returns for a while, the thread waits for room.
            deadline = time.monotonic() + 60
            before = -1
            while before != published[0]:
                assert time.monotonic() < deadline, "the publisher never stalled"
                before = published[0]
                time.sleep(0.5)
            assert publisher.is_alive()
        finally:
            stop.set()
            os.kill(own_server.process.pid, signal.SIGCONT)
        publisher.join(PATIENCE)
        assert not publisher.is_alive()
        client.flush()
        channels = {channel.name: channel for channel in client.list_channels()}
        assert channels["fast.paused"].last_seq == published[0]


async def test_a_batch_takes_what_is_queued_at_once(server: Server) -> None:
    async with await switchboard.connect(server.address, name="batcher") as client:
        subscription = await client.subscribe("fast.batch")
        for n in range(20):
            await client.publish("fast.batch", str(n))
        # The acks came after the deliveries on the same connection: all 20 are queued.
        batch = subscription._native.next_batch(8)
        assert isinstance(batch, list)
        assert [message.text() for message in batch] == [str(n) for n in range(8)]
        rest = []
        async for message in subscription:
            rest.append(message.text())
            if len(rest) == 12:
                break
        assert rest == [str(n) for n in range(8, 20)]


async def test_a_batch_ending_with_the_subscription(own_server: Server) -> None:
    client = await switchboard.connect(own_server.address, name="to-the-end")
    subscription = await client.subscribe("fast.end")
    for n in range(10):
        await client.publish("fast.end", str(n))
    stop_server(own_server)
    deadline = time.monotonic() + PATIENCE
    while not client.is_closed:
        assert time.monotonic() < deadline, "the client never saw the server go"
        await asyncio.sleep(0.05)
    received = []
    with pytest.raises(switchboard.SwitchboardError):
        async for message in subscription:
            received.append(message.text())
    # Every message queued before the end, then the end's error, then nothing more.
    assert received == [str(n) for n in range(10)]
    assert await subscription.next() is None
    await client.close()


async def test_messages_buffered_before_unsubscribe_are_dropped(server: Server) -> None:
    async with await switchboard.connect(server.address, name="leaver") as client:
        subscription = await client.subscribe("fast.leave")
        for n in range(5):
            await client.publish("fast.leave", str(n))
        first = await subscription.next()
        assert first is not None and first.text() == "0"
        await subscription.unsubscribe()
        assert await subscription.next() is None
