"""The asyncio API against a real server."""

from __future__ import annotations

import asyncio
import time

import pytest

import switchboard
from switchboard import Replay

from conftest import Server


async def test_publish_and_subscribe_live(server: Server) -> None:
    async with await switchboard.connect(server.address, name="reader") as reader:
        subscription = await reader.subscribe("live.*")
        async with await switchboard.connect(server.address, name="writer") as writer:
            ack = await writer.publish("live.a", "hello")
            assert ack.seq == 1
            await writer.publish("live.b", b"\x00\x01", headers=[("trace", "42")])
        first = await asyncio.wait_for(subscription.__anext__(), 10)
        second = await asyncio.wait_for(subscription.__anext__(), 10)
    assert (first.channel, first.text(), first.content_type) == (
        "live.a",
        "hello",
        "text/plain; charset=utf-8",
    )
    assert first.sender_name == "writer" and not first.is_replay
    assert first.id == ack.id
    assert (second.body, second.content_type) == (b"\x00\x01", "application/octet-stream")
    assert second.header("trace") == "42"


async def test_async_for_ends_when_the_client_closes(server: Server) -> None:
    client = await switchboard.connect(server.address, name="ender")
    await client.publish("ending.x", "one")
    subscription = await client.subscribe("ending.x", replay=Replay.all())

    async def collect() -> list[str]:
        texts = []
        async for message in subscription:
            texts.append(message.text() or "")
            if len(texts) == 1:
                await client.close()
        return texts

    assert await asyncio.wait_for(collect(), 10) == ["one"]


@pytest.mark.parametrize(
    ("replay", "expected"),
    [
        (Replay.last(2), ["m3", "m4"]),
        (Replay.since_seq(3), ["m3", "m4"]),
        (Replay.all(), ["m1", "m2", "m3", "m4"]),
    ],
)
async def test_subscribe_with_replay(server: Server, replay: Replay, expected: list[str]) -> None:
    channel = f"replay.{replay.kind}"
    async with await switchboard.connect(server.address, name="replayer") as client:
        for number in range(1, 5):
            await client.publish(channel, f"m{number}")
        subscription = await client.subscribe(channel, replay=replay)
        assert subscription.replay_count == len(expected)
        got = [await asyncio.wait_for(subscription.__anext__(), 10) for _ in expected]
        assert [message.text() for message in got] == expected
        assert all(message.is_replay for message in got)
        await client.publish(channel, "live")
        live = await asyncio.wait_for(subscription.__anext__(), 10)
        assert (live.text(), live.is_replay) == ("live", False)


async def test_replay_none_and_since_time(server: Server) -> None:
    async with await switchboard.connect(server.address, name="timer") as client:
        await client.publish("timed.x", "old")
        await asyncio.sleep(0.05)
        cut = time.time()
        await asyncio.sleep(0.05)
        await client.publish("timed.x", "new")
        since = await client.subscribe("timed.x", replay=Replay.since_time(cut))
        assert (await asyncio.wait_for(since.__anext__(), 10)).text() == "new"
        live_only = await client.subscribe("timed.x", replay=Replay.none())
        assert live_only.replay_count == 0
        await client.publish("timed.x", "after")
        assert (await asyncio.wait_for(live_only.__anext__(), 10)).text() == "after"
        await live_only.unsubscribe()
        assert await live_only.next() is None


async def test_pipelined_and_no_reply(server: Server) -> None:
    async with await switchboard.connect(server.address, name="piper") as client:
        pending = [await client.publish_pipelined("pipe.x", f"p{n}") for n in range(50)]
        acks = [await ack for ack in pending]
        assert [ack.seq for ack in acks] == list(range(1, 51))
        for n in range(50):
            await client.publish_no_reply("pipe.x", f"q{n}")
        await client.flush()
        history = await client.history("pipe.x")
        assert len(history) == 100
        assert history[-1].text() == "q49"


async def test_get_latest_and_history(server: Server) -> None:
    async with await switchboard.connect(server.address, name="historian") as client:
        assert await client.latest("hist.x") is None
        acks = [await client.publish("hist.x", f"h{n}") for n in range(5)]
        latest = await client.latest("hist.x")
        assert latest is not None and latest.text() == "h4"
        by_id = await client.get_message("hist.x", acks[1].id)
        assert by_id is not None and by_id.seq == acks[1].seq
        since = await client.history("hist.x", since_seq=acks[3].seq)
        assert [m.text() for m in since] == ["h3", "h4"]
        limited = await client.history("hist.x", limit=2)
        assert [m.text() for m in limited] == ["h3", "h4"]
        by_time = await client.history("hist.x", since_time=latest.time)
        assert [m.text() for m in by_time] == ["h4"]
        with pytest.raises(ValueError):
            await client.history("hist.x", since_seq=1, since_time=1.0)


async def test_channels_identity_clients_stats(server: Server) -> None:
    async with await switchboard.connect(server.address, name="admin-ish") as client:
        created = await client.create_channel(
            "opts.x", history=7, max_bytes=1024, slow_consumer="drop_oldest"
        )
        assert (created.name, created.history, created.max_bytes) == ("opts.x", 7, 1024)
        assert created.slow_consumer == "drop_oldest"
        names = [channel.name for channel in await client.list_channels()]
        assert "opts.x" in names
        identity = await client.identity()
        assert identity.name == "admin-ish" and identity.client_id == client.client_id
        async with await switchboard.connect(server.address, name="other") as other:
            clients = await client.list_clients()
            # The list holds the other clients, not the one asking.
            assert other.client_id in [entry.client_id for entry in clients]
            assert client.client_id not in [entry.client_id for entry in clients]
        stats = await client.stats()
        assert (
            isinstance(stats, dict)
            and stats
            and all(isinstance(value, int) for value in stats.values())
        )
        await client.delete_channel("opts.x")
        assert "opts.x" not in [channel.name for channel in await client.list_channels()]
