"""Hashtags: subscribing to ``#tag`` across channels, and a hashtag's history."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import switchboard
from switchboard import Replay

from conftest import Server


async def test_subscribe_to_a_hashtag(server: Server) -> None:
    async with await switchboard.connect(server.address, name="tagger") as client:
        subscription = await client.subscribe("#pyfirst")
        await client.publish("tags.a", "one #PyFirst")
        await client.publish("tags.b", "untagged")
        await client.publish("tags.c", "two #pyfirst and #other")
        got = [await asyncio.wait_for(subscription.next(), 10) for _ in range(2)]
        assert [(m.channel, m.text()) for m in got if m is not None] == [
            ("tags.a", "one #PyFirst"),
            ("tags.c", "two #pyfirst and #other"),
        ]
        assert all(m is not None and not m.is_replay for m in got)
        await subscription.unsubscribe()


async def test_tag_history(server: Server) -> None:
    async with await switchboard.connect(server.address, name="historian") as client:
        before = time.time()
        acks = [await client.publish(f"tagged.{n}", f"note {n} #pyhistory") for n in range(1, 6)]
        await client.publish("tagged.other", "no tag here")

        every = await client.tag_history("#pyhistory")
        assert [m.text() for m in every] == [f"note {n} #pyhistory" for n in range(1, 6)]
        assert {m.scope for m in every} == {"channel"}
        assert [m.text() for m in await client.tag_history("pyhistory")] == [
            m.text() for m in every
        ]
        newest = await client.tag_history("#PyHistory", limit=2)
        assert [m.text() for m in newest] == ["note 4 #pyhistory", "note 5 #pyhistory"]

        # Each message is the first of its channel, so seqs do not order a hashtag: a
        # time does.
        assert {ack.seq for ack in acks} == {acks[0].seq}
        middle = every[2].time_us / 1_000_000
        since = await client.tag_history("#pyhistory", since_time=middle)
        assert [m.text() for m in since] == [f"note {n} #pyhistory" for n in (3, 4, 5)]
        first_two = await client.tag_history("#pyhistory", since_time=before, limit=2)
        assert [m.text() for m in first_two] == ["note 1 #pyhistory", "note 2 #pyhistory"]
        assert await client.tag_history("#pyhistory", since_seq=acks[0].seq + 1) == []
        assert await client.tag_history("#nothingtaggedso") == []
        with pytest.raises(switchboard.InvalidArgument):
            await client.tag_history("#")


def test_blocking_hashtags(server: Server) -> None:
    with switchboard.Client(server.address, name="btagger") as client:
        client.publish("btags.replayed", "old #pyblocking")
        subscription = client.subscribe("#pyblocking", replay=Replay.all())
        received: list[str] = []

        def read() -> None:
            for message in subscription:
                received.append(message.text() or "")
                if len(received) == 2:
                    break

        reading = threading.Thread(target=read)
        reading.start()
        client.publish("btags.live", "new #pyblocking")
        reading.join(timeout=10)
        assert received == ["old #pyblocking", "new #pyblocking"]
        history = client.tag_history("#pyblocking", limit=1)
        assert [m.text() for m in history] == ["new #pyblocking"]
        assert len(client.tag_history("#pyblocking", since_seq=1)) == 2
