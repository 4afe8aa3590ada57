"""A subscription with replay joins a channel while others publish to it: the replay and
the live messages after it hold every seq exactly once, in order."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import switchboard
from switchboard import Message, Replay

from conftest import Server

# Enough messages that the subscription's replay and the live stream overlap with
# publishing in flight, whatever the machine's speed.
PUBLISHED_BEFORE = 300
PUBLISHED_AFTER = 300
PUBLISHERS = 2
HISTORY = 100_000


def check_gapless(messages: list[Message], first: int, last: int) -> None:
    """Every seq from ``first`` to ``last`` once, in order; replayed ones first."""
    seqs = [message.seq for message in messages]
    duplicates = sorted(seq for seq, count in Counter(seqs).items() if count > 1)
    missing = sorted(set(range(first, last + 1)) - set(seqs))
    assert not duplicates, f"seqs delivered twice: {duplicates[:20]}"
    assert not missing, f"seqs never delivered: {missing[:20]}"
    assert seqs == list(range(first, last + 1)), "seqs out of order"
    flags = [message.is_replay for message in messages]
    replayed = flags.count(True)
    assert flags == [True] * replayed + [False] * (len(flags) - replayed)
    assert 0 < replayed < len(flags), "the subscription must join while publishing goes on"


async def read_until(subscription: switchboard.AsyncSubscription, last: int) -> list[Message]:
    received: list[Message] = []
    while not received or received[-1].seq < last:
        message = await asyncio.wait_for(subscription.next(), 30)
        assert message is not None, "the subscription ended early"
        received.append(message)
    return received


async def replay_while_publishing(server: Server, channel: str, replay_from: int) -> None:
    async with await switchboard.connect(server.address, name="subscriber") as subscriber:
        await subscriber.create_channel(channel, history=HISTORY)
        published = 0
        enough_before = asyncio.Event()
        stop = asyncio.Event()

        async def publish(publisher: switchboard.AsyncClient) -> int:
            nonlocal published
            last = 0
            while not stop.is_set():
                last = (await publisher.publish(channel, f"n{published}")).seq
                published += 1
                if published >= PUBLISHED_BEFORE:
                    enough_before.set()
            return last

        publishers = [
            await switchboard.connect(server.address, name=f"publisher{n}")
            for n in range(PUBLISHERS)
        ]
        tasks = [asyncio.ensure_future(publish(publisher)) for publisher in publishers]
        await asyncio.wait_for(enough_before.wait(), 30)
        replay = Replay.all() if replay_from == 1 else Replay.since_seq(replay_from)
        subscription = await subscriber.subscribe(channel, replay=replay)
        joined_at = published
        while published < joined_at + PUBLISHED_AFTER:
            await asyncio.sleep(0.01)
        stop.set()
        last = max(await asyncio.gather(*tasks))
        for publisher in publishers:
            await publisher.close()

        check_gapless(await read_until(subscription, last), replay_from, last)


async def test_replay_all_then_live(server: Server) -> None:
    await replay_while_publishing(server, "gapless.all", 1)


async def test_replay_since_seq_then_live(server: Server) -> None:
    await replay_while_publishing(server, "gapless.since", 100)


def test_blocking_replay_then_live(server: Server) -> None:
    channel = "gapless.blocking"
    with switchboard.Client(server.address, name="bsubscriber") as subscriber:
        subscriber.create_channel(channel, history=HISTORY)
        stop = threading.Event()
        enough_before = threading.Event()
        counts = [0] * PUBLISHERS
        lasts = [0] * PUBLISHERS

        def publish(index: int) -> None:
            with switchboard.Client(server.address, name=f"bpublisher{index}") as publisher:
                while not stop.is_set():
                    lasts[index] = publisher.publish(channel, "x").seq
                    counts[index] += 1
                    if sum(counts) >= PUBLISHED_BEFORE:
                        enough_before.set()

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(PUBLISHERS)]
        for thread in threads:
            thread.start()
        try:
            assert enough_before.wait(30)
            subscription = subscriber.subscribe(channel, replay=Replay.all())
            joined_at = sum(counts)
            while sum(counts) < joined_at + PUBLISHED_AFTER:
                threading.Event().wait(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        last = max(lasts)
        # Closing the client ends the iteration: a seq that never comes fails the test
        # instead of hanging it.
        watchdog = threading.Timer(30, subscriber.close)
        watchdog.start()
        received: list[Message] = []
        for message in subscription:
            received.append(message)
            if message.seq >= last:
                break
        watchdog.cancel()
        check_gapless(received, 1, last)
