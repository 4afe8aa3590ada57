"""Progress of a large transfer, reported on the event loop: the native side counts the
bytes, :func:`watch` hands the count to the caller's callback while the transfer runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Callable, Protocol

__all__ = ["INTERVAL", "watch"]

INTERVAL = 0.1
"""Seconds between two calls of a progress callback."""


class Counter(Protocol):
    @property
    def value(self) -> int: ...


async def watch(
    transfer: Awaitable[Any], counter: Counter, progress: Callable[[int], object]
) -> Any:
    """Awaits ``transfer``, calling ``progress`` with the bytes moved so far when they
    changed, every :data:`INTERVAL` and once at the end. A callback that raises cancels
    the transfer and its exception is raised here."""
    task = asyncio.ensure_future(transfer)
    reported = -1

    def report() -> None:
        nonlocal reported
        value = counter.value
        if value != reported:
            reported = value
            progress(value)

    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=INTERVAL)
            if done:
                result = task.result()
                report()
                return result
            report()
    finally:
        if not task.done():
            task.cancel()
