"""One kind of call, N times, for instruction counts under callgrind.

Connects to a running server, subscribes, makes the call ``N`` times and closes; the
difference between two values of ``N`` is the calls' own cost::

    valgrind --tool=callgrind python clients/python/bench/calls.py ADDRESS ack 2100

Modes: ``ack`` (``await client.publish``), ``receive`` (``await subscription.next()``
waiting for a ``publish_no_reply``: one awaitable per message), ``blocking`` (the
blocking ``client.publish``).
"""

from __future__ import annotations

import asyncio
import sys

import switchboard


async def run_async(address: str, mode: str, count: int) -> None:
    client = await switchboard.connect(address, name="bench-calls")
    subscription = await client.subscribe("bench.calls.receive")
    for _ in range(count):
        if mode == "ack":
            await client.publish("bench.calls.ack", "x" * 16)
        else:
            waiting = asyncio.ensure_future(subscription.next())
            await asyncio.sleep(0)
            await client.publish_no_reply("bench.calls.receive", "y")
            await waiting
    await client.close()


def run_blocking(address: str, count: int) -> None:
    with switchboard.Client(address, name="bench-calls") as client:
        for _ in range(count):
            client.publish("bench.calls.ack", "x" * 16)


def main() -> None:
    address, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "blocking":
        run_blocking(address, count)
    elif mode in ("ack", "receive"):
        asyncio.run(run_async(address, mode, count))
    else:
        sys.exit(f"unknown mode {mode!r}: ack, receive or blocking")


if __name__ == "__main__":
    main()
