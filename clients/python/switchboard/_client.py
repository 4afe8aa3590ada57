"""The two APIs over one native client: :class:`AsyncClient` (asyncio, from
:func:`connect`) and the blocking :class:`Client`, with the same methods."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Optional, Union

from . import _native
from ._native import Ack, Channel, ClientInfo, Identity, Message
from ._types import Body, Replay, TlsConfig, encode_body, to_micros

__all__ = [
    "AsyncClient",
    "AsyncPendingAck",
    "AsyncSubscription",
    "Client",
    "PendingAck",
    "Subscription",
    "connect",
]

DEFAULT_SERVER = "127.0.0.1:7420"
# The most messages a subscription takes from the native side in one call: what is
# already queued is taken at once, so a fast stream costs one call per batch.
BATCH_SIZE = 256
Headers = Optional[Sequence[tuple[str, str]]]


def _connect_options(
    user: Optional[str],
    password: Optional[str],
    token: Optional[str],
    tls: Union[bool, TlsConfig],
    request_timeout: Optional[float],
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "user": user,
        "password": password,
        "token": token,
        "request_timeout": request_timeout,
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
) -> AsyncClient:
    """Connects to the hub at ``server`` (``HOST:PORT``, ``tls://HOST:PORT`` or
    ``unix:/path``) and opens a session as ``name``, logging in with ``user`` and
    ``password`` or with ``token`` when given."""
    options = _connect_options(user, password, token, tls, request_timeout)
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
    ) -> Ack:
        """Publishes and waits for the server's ack."""
        data, kind = encode_body(body, content_type)
        return await self._native.publish(channel, data, kind, list(headers or ()))

    async def publish_pipelined(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
    ) -> AsyncPendingAck:
        """Queues the message and returns at once with its ack to await later."""
        data, kind = encode_body(body, content_type)
        native = await self._native.publish_pipelined(channel, data, kind, list(headers or ()))
        return AsyncPendingAck(native)

    async def publish_no_reply(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
    ) -> None:
        """Publishes without an ack; failures are reported by :meth:`flush`."""
        data, kind = encode_body(body, content_type)
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
    ) -> None:
        options = _connect_options(user, password, token, tls, request_timeout)
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
    ) -> Ack:
        """Publishes and waits for the server's ack."""
        data, kind = encode_body(body, content_type)
        return self._native.publish(channel, data, kind, list(headers or ()))

    def publish_pipelined(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
    ) -> PendingAck:
        """Queues the message and returns at once with its ack to wait for later."""
        data, kind = encode_body(body, content_type)
        return PendingAck(self._native.publish_pipelined(channel, data, kind, list(headers or ())))

    def publish_no_reply(
        self,
        channel: str,
        body: Body,
        *,
        content_type: Optional[str] = None,
        headers: Headers = None,
    ) -> None:
        """Publishes without an ack; failures are reported by :meth:`flush`."""
        data, kind = encode_body(body, content_type)
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
