"""The two APIs over one native client: :class:`AsyncClient` (asyncio, from
:func:`connect`) and the blocking :class:`Client`, with the same methods."""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar, Union

from . import _native
from ._native import (
    Ack,
    Channel,
    ClientInfo,
    DirectMessage,
    Group,
    GroupEvent,
    Identity,
    Member,
    Message,
    RelayOutcome,
)
from ._types import Body, Replay, TlsConfig, encode_body, to_micros

__all__ = [
    "AsyncClient",
    "AsyncDirectFeed",
    "AsyncGroupFeed",
    "AsyncPendingAck",
    "AsyncSubscription",
    "Client",
    "DirectFeed",
    "GroupFeed",
    "GroupItem",
    "PendingAck",
    "Subscription",
    "connect",
]

DEFAULT_SERVER = "127.0.0.1:7420"
# The most messages a subscription takes from the native side in one call: what is
# already queued is taken at once, so a fast stream costs one call per batch.
BATCH_SIZE = 256
Headers = Optional[Sequence[tuple[str, str]]]
GroupItem = Union[Message, GroupEvent]
"""An item of the group feed: a post to a joined group, or a member event."""


class Readable(Protocol):
    """A binary file object, as far as publishing from it goes."""

    def read(self, size: int = ..., /) -> bytes: ...


Source = Union[str, "os.PathLike[str]", Readable]
"""Where a large body comes from: a path, or a binary file object (its ``read``)."""
Progress = Optional[Callable[[int], object]]
"""Called with the bytes moved so far (about 10 times a second, and at the end)."""


def _connect_options(
    user: Optional[str],
    password: Optional[str],
    token: Optional[str],
    tls: Union[bool, TlsConfig],
    request_timeout: Optional[float],
    jwt: Optional[str] = None,
    hmac_key: Optional[bytes] = None,
) -> dict[str, Any]:
    # A session logs in one way at most; the server would refuse a mix.
    logins = [user is not None or password is not None, token is not None, jwt is not None]
    if sum(logins) > 1:
        raise ValueError("log in with one of user and password, token or jwt")
    if hmac_key is not None and not isinstance(hmac_key, bytes):
        raise TypeError(f"hmac_key is bytes, not {type(hmac_key).__name__}")
    options: dict[str, Any] = {
        "user": user,
        "password": password,
        "token": token,
        "request_timeout": request_timeout,
        "jwt": jwt,
        "hmac_key": hmac_key,
    }
    if isinstance(tls, TlsConfig):
        options.update(
            tls=True,
            ca_file=tls.ca_file,
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            server_name=tls.server_name,
        )
    else:
        options["tls"] = bool(tls)
    return options


def _file_source(source: Source, length: Optional[int]) -> tuple[Any, Optional[int]]:
    """What the native call takes for ``source``, and the length to send: a file
    object's is what remains from its position to its end, unless given."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), length
    if not callable(getattr(source, "read", None)):
        raise TypeError(f"a body source is a path or a binary file object, not {source!r}")
    if length is not None:
        return source, length
    file: Any = source  # a file object may also tell, seek and have a descriptor
    try:
        return source, os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        start = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(start)
    except (AttributeError, OSError, io.UnsupportedOperation):
        raise TypeError("give length= for a file object that cannot seek") from None
    return source, end - start


def _since(since_seq: Optional[int], since_time: Union[datetime, float, None]) -> tuple[str, int]:
    if since_seq is not None and since_time is not None:
        raise ValueError("give since_seq or since_time, not both")
    if since_seq is not None:
        return "seq", since_seq
    if since_time is not None:
        return "time", to_micros(since_time)
    return "all", 0


async def connect(
    server: str = DEFAULT_SERVER,
    *,
    name: str = "python",
    user: Optional[str] = None,
    password: Optional[str] = None,
    token: Optional[str] = None,
    tls: Union[bool, TlsConfig] = False,
    request_timeout: Optional[float] = None,
    jwt: Optional[str] = None,
    hmac_key: Optional[bytes] = None,
) -> AsyncClient:
    """Connects to the hub at ``server`` (``HOST:PORT``, ``tls://HOST:PORT`` or
    ``unix:/path``) and opens a session as ``name``, logging in with ``user`` and
    ``password``, with ``token`` or with a ``jwt`` when given. ``hmac_key`` is the
    pre-shared key of a server started with ``--hmac-key-file``."""
    options = _connect_options(user, password, token, tls, request_timeout, jwt, hmac_key)
    native = await _native.connect(server, name, blocking=False, **options)
    return AsyncClient(native)


class AsyncPendingAck:
    """The ack of a pipelined publish: await it (once) for the :class:`Ack`."""

    def __init__(self, native: _native.NativePendingAck) -> None:
        self._native = native

    def __await__(self) -> Generator[Any, None, Ack]:
        ack: Ack = yield from self._native.wait().__await__()
        return ack


class AsyncSubscription:
    """A subscription's messages, replay first: ``async for message in subscription``."""

    def __init__(self, native: _native.NativeSubscription) -> None:
        self._native = native
        self._buffered: deque[Message] = deque()

    @property
    def patterns(self) -> list[str]:
        return self._native.patterns

    @property
    def replay_count(self) -> int:
        """How many replayed messages come before the live ones."""
        return self._native.replay_count

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        buffered = self._buffered
        if buffered or await self._refill():
            return buffered.popleft()
        raise StopAsyncIteration

    async def next(self) -> Optional[Message]:
        """The next message, or None once the subscription has ended."""
        if self._buffered or await self._refill():
            return self._buffered.popleft()
        return None

    async def unsubscribe(self) -> None:
        self._buffered.clear()
        await self._native.unsubscribe()

    async def _refill(self) -> bool:
        """Takes the next batch; False once the subscription has ended."""
        batch = self._native.next_batch(BATCH_SIZE)
        if not isinstance(batch, list):
            batch = await batch
        self._buffered.extend(batch)
        return bool(batch)


class AsyncClient:
    """A session with the hub, for asyncio. Use it as ``async with await connect(...)``."""

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.close()

    @property
    def client_id(self) -> int:
        return self._native.client_id

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def is_closed(self) -> bool:
        return self._native.is_closed

    async def publish(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> Ack:
        """Publishes and waits for the server's ack."""
        data, kind = encode_body(body, content_type, format)
        return await self._native.publish(channel, data, kind, list(headers or ()))

    async def publish_pipelined(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> AsyncPendingAck:
        """Queues the message and returns at once with its ack to await later."""
        data, kind = encode_body(body, content_type, format)
        native = await self._native.publish_pipelined(channel, data, kind, list(headers or ()))
        return AsyncPendingAck(native)

    async def publish_no_reply(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> None:
        """Publishes without an ack; failures are reported by :meth:`flush`."""
        data, kind = encode_body(body, content_type, format)
        # Queued at once unless the send queue is full; then this waits for room.
        waiting = self._native.try_publish_no_reply(channel, data, kind, list(headers or ()))
        if waiting is not None:
            await waiting

    async def flush(self) -> None:
        """Waits until every message sent so far is handled by the server."""
        await self._native.flush()

    async def subscribe(self, *patterns: str, replay: Optional[Replay] = None) -> AsyncSubscription:
        """Subscribes to channels, wildcard patterns (``chat.*``) or hashtags (``#rust``)."""
        replay = replay or Replay.none()
        native = await self._native.subscribe(list(patterns), replay.kind, replay.value)
        return AsyncSubscription(native)

    async def get_message(self, channel: str, id: Optional[str] = None) -> Optional[Message]:
        """The message with this id on ``channel`` (the latest without one), or None."""
        return await self._native.get_message(channel, id)

    async def latest(self, channel: str) -> Optional[Message]:
        """The latest message on ``channel``, or None when it holds none."""
        return await self._native.get_message(channel, None)

    async def history(
        self,
        channel: str,
        *,
        since_seq: Optional[int] = None,
        since_time: Union[datetime, float, None] = None,
        limit: Optional[int] = None,
    ) -> list[Message]:
        """The messages ``channel`` holds, oldest first, from a seq or a time on."""
        kind, value = _since(since_seq, since_time)
        return await self._native.get_messages(channel, kind, value, limit)

    async def list_channels(self) -> list[Channel]:
        return await self._native.list_channels()

    async def create_channel(
        self,
        name: str,
        *,
        history: Optional[int] = None,
        max_bytes: Optional[int] = None,
        max_chars: Optional[int] = None,
        max_age_ms: Optional[int] = None,
        max_total_bytes: Optional[int] = None,
        slow_consumer: Optional[str] = None,
        durability: Optional[str] = None,
    ) -> Channel:
        """Creates a channel with these options (the server's defaults for the rest)."""
        return await self._native.create_channel(
            name,
            history=history,
            max_bytes=max_bytes,
            max_chars=max_chars,
            max_age_ms=max_age_ms,
            max_total_bytes=max_total_bytes,
            slow_consumer=slow_consumer,
            durability=durability,
        )

    async def delete_channel(self, name: str) -> None:
        await self._native.delete_channel(name)

    async def identity(self) -> Identity:
        return await self._native.identity()

    async def list_clients(self) -> list[ClientInfo]:
        return await self._native.list_clients()

    async def stats(self) -> dict[str, int]:
        return await self._native.stats()

    async def close(self) -> None:
        """Closes the session; calls in flight fail with ConnectionClosed."""
        await self._native.close()

    # -- payloads: large bodies --

    async def publish_file(
        self,
        channel: str,
        source: Source,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        progress: Progress = None,
        length: Optional[int] = None,
    ) -> Ack:
        """Publishes the contents of a file (a path or a binary file object, read from
        its position) as a streamed body, in bounded memory, and waits for the ack.
        ``progress`` is called with the bytes sent so far."""
        native_source, size = _file_source(source, length)
        return await self._native.publish_file(
            channel,
            native_source,
            size,
            content_type or "application/octet-stream",
            list(headers or ()),
            progress,
        )

    # Groups, relay and direct messages, hashtag history, the admin calls.

    async def list_groups(self) -> list[Group]:
        """The group directory, in name order."""
        return await self._native.list_groups()

    async def create_group(self, name: str, description: str = "") -> None:
        """Creates a group in the directory (joining it is a separate call)."""
        await self._native.create_group(name, description)

    async def join_group(self, name: str) -> None:
        """Joins a group: its posts and member events then arrive on the group feed."""
        await self._native.join_group(name)

    async def leave_group(self, name: str) -> None:
        """Leaves a group (always allowed); its posts stop arriving on the group feed."""
        await self._native.leave_group(name)

    async def delete_group(self, name: str) -> None:
        """Deletes a group, its history and its members."""
        await self._native.delete_group(name)

    async def group_members(self, name: str) -> list[Member]:
        """The members of a group, in name order, and whether each is online."""
        return await self._native.group_members(name)

    async def post(
        self,
        group: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> Ack:
        """Posts to a group this session is a member of and waits for the server's ack.
        The body is taken as :meth:`publish` takes it, typed values included."""
        data, kind = encode_body(body, content_type, format)
        return await self._native.post(group, data, kind, list(headers or ()))

    async def group_history(
        self,
        group: str,
        *,
        since_seq: Optional[int] = None,
        since_time: Union[datetime, float, None] = None,
        limit: Optional[int] = None,
    ) -> list[Message]:
        """The posts a group holds, oldest first, from a seq or a time on (members only).
        With ``limit`` and no starting point, the newest ``limit`` posts."""
        kind, value = _since(since_seq, since_time)
        return await self._native.group_messages(group, kind, value, limit)

    def group_feed(self) -> AsyncGroupFeed:
        """The feed of posts to the groups this session joined, and of their member
        events: ``async for item in client.group_feed()``. One feed at a time."""
        return AsyncGroupFeed(self._native.group_feed())

    async def relay(
        self,
        ids: Sequence[int],
        body: Body,
        *,
        content_type: Optional[str] = None,
        format: str = "msgpack",
    ) -> list[RelayOutcome]:
        """Relays a body to 1 to 255 connected clients by id; one outcome per id, in
        order (``delivered``, ``unknown`` when no such client is connected, ``dropped``).
        The body is taken as :meth:`publish` takes it, typed values included."""
        data, kind = encode_body(body, content_type, format)
        return await self._native.relay(list(ids), data, kind)

    def direct_feed(self) -> AsyncDirectFeed:
        """The feed of bodies other clients relayed to this one:
        ``async for direct in client.direct_feed()``. One feed at a time."""
        return AsyncDirectFeed(self._native.direct_feed())

    async def tag_history(
        self,
        tag: str,
        *,
        since_seq: Optional[int] = None,
        since_time: Union[datetime, float, None] = None,
        limit: Optional[int] = None,
    ) -> list[Message]:
        """The recent messages carrying a hashtag (with or without ``#``), oldest first.
        With ``limit`` and no starting point, the newest ``limit`` of them."""
        kind, value = _since(since_seq, since_time)
        return await self._native.tag_messages(tag, kind, value, limit)

    async def stop_server(self) -> None:
        """Asks the server to shut down (admin sessions only)."""
        await self._native.stop_server()

    async def reload_server(self) -> None:
        """Asks the server to re-read its configuration (admin sessions only); a refused
        configuration is an error, and the server keeps the one it had."""
        await self._native.reload_server()


class PendingAck:
    """The ack of a pipelined publish: :meth:`wait` (once) for the :class:`Ack`."""

    def __init__(self, native: _native.NativePendingAck) -> None:
        self._native = native

    def wait(self) -> Ack:
        return self._native.wait()


class Subscription:
    """A subscription's messages, replay first: ``for message in subscription``."""

    def __init__(self, native: _native.NativeSubscription) -> None:
        self._native = native
        self._buffered: deque[Message] = deque()

    @property
    def patterns(self) -> list[str]:
        return self._native.patterns

    @property
    def replay_count(self) -> int:
        """How many replayed messages come before the live ones."""
        return self._native.replay_count

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        message = self.next()
        if message is None:
            raise StopIteration
        return message

    def next(self) -> Optional[Message]:
        """The next message, or None once the subscription has ended."""
        while True:
            # Another thread may take the last buffered message between a check and a
            # pop, so the pop is the check.
            try:
                return self._buffered.popleft()
            except IndexError:
                pass
            batch: list[Message] = self._native.next_batch(BATCH_SIZE)
            if not batch:
                return None
            self._buffered.extend(batch)

    def unsubscribe(self) -> None:
        self._buffered.clear()
        self._native.unsubscribe()


class Client:
    """A session with the hub for scripts: every call blocks until it is done (other
    Python threads run meanwhile). The methods are those of :class:`AsyncClient`."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        name: str = "python",
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        tls: Union[bool, TlsConfig] = False,
        request_timeout: Optional[float] = None,
        jwt: Optional[str] = None,
        hmac_key: Optional[bytes] = None,
    ) -> None:
        options = _connect_options(user, password, token, tls, request_timeout, jwt, hmac_key)
        self._native: _native.NativeClient = _native.connect(server, name, blocking=True, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    @property
    def client_id(self) -> int:
        return self._native.client_id

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def is_closed(self) -> bool:
        return self._native.is_closed

    def publish(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> Ack:
        """Publishes and waits for the server's ack."""
        data, kind = encode_body(body, content_type, format)
        return self._native.publish(channel, data, kind, list(headers or ()))

    def publish_pipelined(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> PendingAck:
        """Queues the message and returns at once with its ack to wait for later."""
        data, kind = encode_body(body, content_type, format)
        return PendingAck(self._native.publish_pipelined(channel, data, kind, list(headers or ())))

    def publish_no_reply(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> None:
        """Publishes without an ack; failures are reported by :meth:`flush`."""
        data, kind = encode_body(body, content_type, format)
        # Queued at once unless the send queue is full; then this waits for room.
        self._native.try_publish_no_reply(channel, data, kind, list(headers or ()))

    def flush(self) -> None:
        """Waits until every message sent so far is handled by the server."""
        self._native.flush()

    def subscribe(self, *patterns: str, replay: Optional[Replay] = None) -> Subscription:
        """Subscribes to channels, wildcard patterns (``chat.*``) or hashtags (``#rust``)."""
        replay = replay or Replay.none()
        return Subscription(self._native.subscribe(list(patterns), replay.kind, replay.value))

    def get_message(self, channel: str, id: Optional[str] = None) -> Optional[Message]:
        """The message with this id on ``channel`` (the latest without one), or None."""
        return self._native.get_message(channel, id)

    def latest(self, channel: str) -> Optional[Message]:
        """The latest message on ``channel``, or None when it holds none."""
        return self._native.get_message(channel, None)

    def history(
        self,
        channel: str,
        *,
        since_seq: Optional[int] = None,
        since_time: Union[datetime, float, None] = None,
        limit: Optional[int] = None,
    ) -> list[Message]:
        """The messages ``channel`` holds, oldest first, from a seq or a time on."""
        kind, value = _since(since_seq, since_time)
        return self._native.get_messages(channel, kind, value, limit)

    def list_channels(self) -> list[Channel]:
        return self._native.list_channels()

    def create_channel(
        self,
        name: str,
        *,
        history: Optional[int] = None,
        max_bytes: Optional[int] = None,
        max_chars: Optional[int] = None,
        max_age_ms: Optional[int] = None,
        max_total_bytes: Optional[int] = None,
        slow_consumer: Optional[str] = None,
        durability: Optional[str] = None,
    ) -> Channel:
        """Creates a channel with these options (the server's defaults for the rest)."""
        return self._native.create_channel(
            name,
            history=history,
            max_bytes=max_bytes,
            max_chars=max_chars,
            max_age_ms=max_age_ms,
            max_total_bytes=max_total_bytes,
            slow_consumer=slow_consumer,
            durability=durability,
        )

    def delete_channel(self, name: str) -> None:
        self._native.delete_channel(name)

    def identity(self) -> Identity:
        return self._native.identity()

    def list_clients(self) -> list[ClientInfo]:
        return self._native.list_clients()

    def stats(self) -> dict[str, int]:
        return self._native.stats()

    def close(self) -> None:
        """Closes the session; calls in flight fail with ConnectionClosed."""
        self._native.close()

    # -- payloads: large bodies --

    def publish_file(
        self,
        channel: str,
        source: Source,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        progress: Progress = None,
        length: Optional[int] = None,
    ) -> Ack:
        """Publishes the contents of a file (a path or a binary file object, read from
        its position) as a streamed body, in bounded memory, and waits for the ack.
        ``progress`` is called with the bytes sent so far."""
        native_source, size = _file_source(source, length)
        return self._native.publish_file(
            channel,
            native_source,
            size,
            content_type or "application/octet-stream",
            list(headers or ()),
            progress,
        )

    # Groups, relay and direct messages, hashtag history, the admin calls.

    def list_groups(self) -> list[Group]:
        """The group directory, in name order."""
        return self._native.list_groups()

    def create_group(self, name: str, description: str = "") -> None:
        """Creates a group in the directory (joining it is a separate call)."""
        self._native.create_group(name, description)

    def join_group(self, name: str) -> None:
        """Joins a group: its posts and member events then arrive on the group feed."""
        self._native.join_group(name)

    def leave_group(self, name: str) -> None:
        """Leaves a group (always allowed); its posts stop arriving on the group feed."""
        self._native.leave_group(name)

    def delete_group(self, name: str) -> None:
        """Deletes a group, its history and its members."""
        self._native.delete_group(name)

    def group_members(self, name: str) -> list[Member]:
        """The members of a group, in name order, and whether each is online."""
        return self._native.group_members(name)

    def post(
        self,
        group: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
        format: str = "msgpack",
    ) -> Ack:
        """Posts to a group this session is a member of and waits for the server's ack.
        The body is taken as :meth:`publish` takes it, typed values included."""
        data, kind = encode_body(body, content_type, format)
        return self._native.post(group, data, kind, list(headers or ()))

    def group_history(
        self,
        group: str,
        *,
        since_seq: Optional[int] = None,
        since_time: Union[datetime, float, None] = None,
        limit: Optional[int] = None,
    ) -> list[Message]:
        """The posts a group holds, oldest first, from a seq or a time on (members only).
        With ``limit`` and no starting point, the newest ``limit`` posts."""
        kind, value = _since(since_seq, since_time)
        return self._native.group_messages(group, kind, value, limit)

    def group_feed(self) -> GroupFeed:
        """The feed of posts to the groups this session joined, and of their member
        events: ``for item in client.group_feed()``. One feed at a time."""
        return GroupFeed(self._native.group_feed())

    def relay(
        self,
        ids: Sequence[int],
        body: Body,
        *,
        content_type: Optional[str] = None,
        format: str = "msgpack",
    ) -> list[RelayOutcome]:
        """Relays a body to 1 to 255 connected clients by id; one outcome per id, in
        order (``delivered``, ``unknown`` when no such client is connected, ``dropped``).
        The body is taken as :meth:`publish` takes it, typed values included."""
        data, kind = encode_body(body, content_type, format)
        return self._native.relay(list(ids), data, kind)

    def direct_feed(self) -> DirectFeed:
        """The feed of bodies other clients relayed to this one:
        ``for direct in client.direct_feed()``. One feed at a time."""
        return DirectFeed(self._native.direct_feed())

    def tag_history(
        self,
        tag: str,
        *,
        since_seq: Optional[int] = None,
        since_time: Union[datetime, float, None] = None,
        limit: Optional[int] = None,
    ) -> list[Message]:
        """The recent messages carrying a hashtag (with or without ``#``), oldest first.
        With ``limit`` and no starting point, the newest ``limit`` of them."""
        kind, value = _since(since_seq, since_time)
        return self._native.tag_messages(tag, kind, value, limit)

    def stop_server(self) -> None:
        """Asks the server to shut down (admin sessions only)."""
        self._native.stop_server()

    def reload_server(self) -> None:
        """Asks the server to re-read its configuration (admin sessions only); a refused
        configuration is an error, and the server keeps the one it had."""
        self._native.reload_server()


# The feeds of groups and direct messages: the same iteration over either native feed.

Item = TypeVar("Item")


class _NativeFeed(Protocol):
    # An awaitable or the value itself, as the native module's stub says.
    def next(self) -> Any: ...  # noqa: ANN401
    def close(self) -> Any: ...  # noqa: ANN401


class _AsyncFeed(Generic[Item]):
    def __init__(self, native: _NativeFeed) -> None:
        self._native = native

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        item: Optional[Item] = await self._native.next()
        if item is None:
            raise StopAsyncIteration
        return item

    async def next(self) -> Optional[Item]:
        """The next item, or None once the feed has ended."""
        item: Optional[Item] = await self._native.next()
        return item

    async def close(self) -> None:
        """Ends this feed; the client's feed of this kind can then be taken again."""
        await self._native.close()


class _Feed(Generic[Item]):
    def __init__(self, native: _NativeFeed) -> None:
        self._native = native

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        item: Optional[Item] = self._native.next()
        if item is None:
            raise StopIteration
        return item

    def next(self) -> Optional[Item]:
        """The next item, or None once the feed has ended."""
        item: Optional[Item] = self._native.next()
        return item

    def close(self) -> None:
        """Ends this feed; the client's feed of this kind can then be taken again."""
        self._native.close()


class AsyncGroupFeed(_AsyncFeed[GroupItem]):
    """Posts to the groups this session joined and their member events, as
    :class:`Message` and :class:`GroupEvent`: ``async for item in feed``. Iteration ends
    when the client is closed or :meth:`close` gives the feed back."""


class AsyncDirectFeed(_AsyncFeed[DirectMessage]):
    """Bodies other clients relayed to this one: ``async for direct in feed``. Iteration
    ends when the client is closed or :meth:`close` gives the feed back."""


class GroupFeed(_Feed[GroupItem]):
    """The blocking :class:`AsyncGroupFeed`: ``for item in feed``."""


class DirectFeed(_Feed[DirectMessage]):
    """The blocking :class:`AsyncDirectFeed`: ``for direct in feed``."""
