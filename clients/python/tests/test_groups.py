"""Groups: the directory, membership, posting, history and the group feed, on both APIs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import switchboard
from switchboard import GroupEvent, Message

from conftest import Server


async def test_directory_and_membership(server: Server) -> None:
    async with await switchboard.connect(server.address, name="ann") as ann:
        await ann.create_group("g.directory", "the directory test")
        await ann.create_group("g.bare")
        groups = {group.name: group for group in await ann.list_groups()}
        assert groups["g.directory"].description == "the directory test"
        assert groups["g.bare"].description == ""
        assert groups["g.directory"].member_count == 0

        await ann.join_group("g.directory")
        async with await switchboard.connect(server.address, name="bob") as bob:
            await bob.join_group("g.directory")
            members = await ann.group_members("g.directory")
            assert [(m.name, m.online) for m in members] == [("ann", True), ("bob", True)]
            await bob.leave_group("g.directory")
        assert [m.name for m in await ann.group_members("g.directory")] == ["ann"]
        groups = {group.name: group for group in await ann.list_groups()}
        assert groups["g.directory"].member_count == 1

        await ann.delete_group("g.bare")
        assert "g.bare" not in [group.name for group in await ann.list_groups()]


async def test_post_history_and_feed(server: Server) -> None:
    async with (
        await switchboard.connect(server.address, name="poster") as poster,
        await switchboard.connect(server.address, name="reader") as reader,
    ):
        await poster.create_group("g.feed")
        await poster.join_group("g.feed")
        feed = reader.group_feed()
        await reader.join_group("g.feed")

        first = await poster.post("g.feed", "hello group", headers=[("k", "v")])
        second = await poster.post("g.feed", b"\x00\x01")
        third = await poster.post("g.feed", "{}", content_type="application/json")
        assert (second.seq, third.seq) == (first.seq + 1, first.seq + 2)

        # The reader's own join comes first on its feed, then the three posts.
        items = [await asyncio.wait_for(feed.next(), 10) for _ in range(4)]
        event = items[0]
        assert isinstance(event, GroupEvent)
        assert (event.kind, event.group, event.subject) == ("member_joined", "g.feed", "reader")
        posts = items[1:]
        assert all(isinstance(post, Message) for post in posts)
        assert [p.body for p in posts if isinstance(p, Message)] == [
            b"hello group",
            b"\x00\x01",
            b"{}",
        ]
        post = posts[0]
        assert isinstance(post, Message)
        assert (post.channel, post.scope, post.sender_name) == ("g.feed", "group", "poster")
        assert post.content_type.startswith("text/plain") and post.header("k") == "v"
        last = posts[2]
        assert isinstance(last, Message) and last.content_type == "application/json"

        history = await reader.group_history("g.feed")
        assert [m.seq for m in history] == [first.seq, second.seq, third.seq]
        assert all(m.is_replay for m in history)
        since = await reader.group_history("g.feed", since_seq=second.seq)
        assert [m.seq for m in since] == [second.seq, third.seq]
        newest = await reader.group_history("g.feed", limit=2)
        assert [m.seq for m in newest] == [second.seq, third.seq]
        from_first = await reader.group_history("g.feed", since_seq=first.seq, limit=2)
        assert [m.seq for m in from_first] == [first.seq, second.seq]
        later = await reader.group_history("g.feed", since_time=time.time() + 3600)
        assert later == []
        with pytest.raises(ValueError):
            await reader.group_history("g.feed", since_seq=1, since_time=1.0)

        # Every member's feed sees joins and leaves, its own included.
        await reader.leave_group("g.feed")
        await reader.join_group("g.feed")
        async with await switchboard.connect(server.address, name="third") as third_client:
            await third_client.join_group("g.feed")
            await third_client.leave_group("g.feed")
        kinds = [await asyncio.wait_for(feed.next(), 10) for _ in range(4)]
        assert [(e.kind, e.subject) for e in kinds if isinstance(e, GroupEvent)] == [
            ("member_left", "reader"),
            ("member_joined", "reader"),
            ("member_joined", "third"),
            ("member_left", "third"),
        ]
        await feed.close()


async def test_feed_is_taken_once_and_given_back(server: Server) -> None:
    async with await switchboard.connect(server.address, name="taker") as client:
        feed = client.group_feed()
        with pytest.raises(switchboard.SwitchboardError):
            client.group_feed()
        await feed.close()
        assert await feed.next() is None
        again = client.group_feed()
        await again.close()


async def test_close_ends_a_waiting_feed(server: Server) -> None:
    async with await switchboard.connect(server.address, name="closing") as client:
        feed = client.group_feed()
        waiting = asyncio.ensure_future(feed.next())
        await asyncio.sleep(0.1)
        await asyncio.wait_for(feed.close(), 10)
        assert await asyncio.wait_for(waiting, 10) is None
        # The feed was given back.
        await client.group_feed().close()


async def test_feed_ends_when_the_client_closes(server: Server) -> None:
    client = await switchboard.connect(server.address, name="ending")
    feed = client.group_feed()
    waiting = asyncio.ensure_future(feed.next())
    await asyncio.sleep(0.1)
    await client.close()
    assert await asyncio.wait_for(waiting, 10) is None
    assert [item async for item in feed] == []


async def test_group_errors(server: Server) -> None:
    async with await switchboard.connect(server.address, name="outsider") as client:
        await client.create_group("g.closed")
        with pytest.raises(switchboard.Forbidden):
            await client.post("g.closed", "not a member")
        with pytest.raises(switchboard.NotFound):
            await client.join_group("g.no-such-group")
        with pytest.raises(switchboard.NotFound):
            await client.post("g.no-such-group", "x")
        with pytest.raises(switchboard.NotFound):
            await client.group_members("g.no-such-group")
        with pytest.raises(switchboard.NotFound):
            await client.delete_group("g.no-such-group")
        with pytest.raises(switchboard.NotFound):
            await client.group_history("g.no-such-group")
        with pytest.raises(TypeError):
            await client.post("g.closed", 42)  # type: ignore[arg-type]


def test_blocking_groups_and_feed(server: Server) -> None:
    with (
        switchboard.Client(server.address, name="bpost") as poster,
        switchboard.Client(server.address, name="bread") as reader,
    ):
        poster.create_group("g.blocking", "blocking")
        assert "g.blocking" in [group.name for group in poster.list_groups()]
        poster.join_group("g.blocking")
        reader.join_group("g.blocking")
        assert [m.name for m in reader.group_members("g.blocking")] == ["bpost", "bread"]
        feed = reader.group_feed()

        received: list[switchboard.GroupItem] = []

        def read_feed() -> None:
            for item in feed:
                received.append(item)
                if isinstance(item, Message) and item.text() == "last":
                    break

        reading = threading.Thread(target=read_feed)
        reading.start()
        acks = [poster.post("g.blocking", text) for text in ("first", "second", "last")]
        reading.join(timeout=10)
        assert not reading.is_alive()
        texts = [item.text() for item in received if isinstance(item, Message)]
        assert texts == ["first", "second", "last"]

        history = reader.group_history("g.blocking", since_seq=acks[1].seq)
        assert [m.text() for m in history] == ["second", "last"]
        assert [m.text() for m in reader.group_history("g.blocking", limit=1)] == ["last"]
        feed.close()
        assert feed.next() is None
        reader.leave_group("g.blocking")
        with pytest.raises(switchboard.Forbidden):
            reader.post("g.blocking", "no longer a member")
        poster.delete_group("g.blocking")
        with pytest.raises(switchboard.NotFound):
            poster.group_members("g.blocking")


def test_blocking_feed_ends_when_the_client_closes(server: Server) -> None:
    client = switchboard.Client(server.address, name="bending")
    feed = client.group_feed()
    threading.Timer(0.2, client.close).start()
    assert list(feed) == []


def test_blocking_close_ends_a_waiting_feed(server: Server) -> None:
    with switchboard.Client(server.address, name="bclosing") as client:
        feed = client.group_feed()
        items: list[switchboard.GroupItem] = []
        reading = threading.Thread(target=lambda: items.extend(feed))
        reading.start()
        time.sleep(0.1)
        # Closed from a thread of its own, so that a close that waits on the reader
        # fails the test instead of hanging it.
        closing = threading.Thread(target=feed.close, daemon=True)
        closing.start()
        closing.join(timeout=10)
        reading.join(timeout=10)
        assert not closing.is_alive() and not reading.is_alive() and items == []
