"""The Python client against nats-py, in one run: publish and subscribe rates.

Starts ``switchboard serve --memory`` and ``nats-server`` itself, then measures for both,
alternating brokers, ``--runs`` times:

* publish, fire and forget (16 B and 1 KiB bodies): ``publish_no_reply`` then one
  ``flush`` (nats-py: ``publish`` then ``flush``), counted until the server has them all;
  also the blocking ``Client`` of Switchboard, for the record (nats-py has no blocking
  API, so its ratio is taken against nats-py's asyncio figure);
* subscribe: a publisher in a second process (this script with ``--role publish``, the
  fastest Python publisher each side has) floods the subject while one asyncio
  subscriber counts the messages with ``async for``; the rate is messages received over
  the time from the first to the last.

It prints the medians and the ratio Switchboard / nats-py per workload as a Markdown
table, with the command line that produced it. ``--quick`` is a smoke test (small
counts, one run). nats-py is a benchmark tool here, never a dependency of the package::

    pip install ./clients/python nats-py
    python clients/python/bench/compare_nats.py --switchboard target/release/switchboard
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Optional

import nats
from nats.aio.msg import Msg

import switchboard

SWITCHBOARD = "switchboard"
NATS = "nats-py"
LISTENING = re.compile(r"switchboard listening on (\S+)")
# Nothing received for this long ends a subscribe measure (messages were lost).
IDLE_TIMEOUT = 10.0


@dataclass
class Settings:
    """What one run measures, from the command line."""

    switchboard_bin: str
    nats_bin: str
    runs: int
    publish_count: dict[int, int]
    subscribe_count: dict[int, int]
    sizes: list[int]
    blocking: bool


@dataclass
class Row:
    """A line of the table: a Switchboard measure set against a nats-py one."""

    label: str
    count: int
    switchboard: str
    nats: str


@dataclass
class Results:
    """Rates (messages per second) per measure and broker, one per run."""

    rates: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def add(self, measure: str, broker: str, rate: float) -> None:
        self.rates.setdefault((measure, broker), []).append(rate)


# ----- the brokers -----


@contextmanager
def switchboard_server(binary: str) -> Iterator[str]:
    """A ``switchboard serve --memory`` on a free port; yields its address."""
    process = subprocess.Popen(
        [binary, "serve", "--memory", "--no-unix", "--no-http", "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        address = None
        for line in process.stderr:
            found = LISTENING.search(line)
            if found and not found.group(1).startswith(("http://", "tls://")):
                address = found.group(1)
                break
        if address is None:
            raise RuntimeError("switchboard exited before listening")
        stderr = process.stderr
        # Keep draining stderr so that the server never blocks on a full pipe.
        threading.Thread(target=lambda: stderr.read(), daemon=True).start()
        yield address
    finally:
        stop(process)


@contextmanager
def nats_server(binary: str) -> Iterator[str]:
    """A ``nats-server`` on a free port of the loopback; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(process)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ----- publish, fire and forget -----


async def publish_switchboard(address: str, subject: str, body: bytes, count: int) -> float:
    async with await switchboard.connect(address, name="bench-publisher") as client:
        started = time.perf_counter()
        for _ in range(count):
            await client.publish_no_reply(subject, body)
        await client.flush()
        return count / (time.perf_counter() - started)


def publish_switchboard_blocking(address: str, subject: str, body: bytes, count: int) -> float:
    with switchboard.Client(address, name="bench-publisher") as client:
        started = time.perf_counter()
        for _ in range(count):
            client.publish_no_reply(subject, body)
        client.flush()
        return count / (time.perf_counter() - started)


async def publish_nats(url: str, subject: str, body: bytes, count: int) -> float:
    client = await nats.connect(url, name="bench-publisher")
    try:
        started = time.perf_counter()
        for _ in range(count):
            await client.publish(subject, body)
        await client.flush()
        return count / (time.perf_counter() - started)
    finally:
        await client.close()


# ----- subscribe -----


async def subscribe_switchboard(address: str, subject: str, size: int, count: int) -> float:
    async with await switchboard.connect(address, name="bench-subscriber") as client:
        subscription = await client.subscribe(subject)
        publisher = await start_publisher(SWITCHBOARD, address, subject, size, count)

        async def receive() -> tuple[int, float, float]:
            received = 0
            first = last = 0.0
            async for _message in subscription:
                last = time.perf_counter()
                if received == 0:
                    first = last
                received += 1
                if received == count:
                    break
            return received, first, last

        return await finish_subscribe(receive, publisher, count)


async def subscribe_nats(url: str, subject: str, size: int, count: int) -> float:
    client = await nats.connect(url, name="bench-subscriber")
    try:
        subscription = await client.subscribe(subject, pending_msgs_limit=2 * count)
        await client.flush()
        publisher = await start_publisher(NATS, url, subject, size, count)

        async def receive() -> tuple[int, float, float]:
            received = 0
            first = last = 0.0
            async for _message in subscription.messages:
                last = time.perf_counter()
                if received == 0:
                    first = last
                received += 1
                if received == count:
                    break
            return received, first, last

        return await finish_subscribe(receive, publisher, count)
    finally:
        await client.close()


async def subscribe_nats_callback(url: str, subject: str, size: int, count: int) -> float:
    """nats-py's fastest way to receive: a callback (its ``async for`` makes a task and
    an ``asyncio.wait`` per message)."""
    client = await nats.connect(url, name="bench-subscriber")
    try:
        times: list[float] = []
        finished = asyncio.Event()

        async def counted(_message: Msg) -> None:
            times.append(time.perf_counter())
            if len(times) == count:
                finished.set()

        await client.subscribe(subject, cb=counted, pending_msgs_limit=2 * count)
        await client.flush()
        publisher = await start_publisher(NATS, url, subject, size, count)

        async def receive() -> tuple[int, float, float]:
            await finished.wait()
            return len(times), times[0], times[-1]

        return await finish_subscribe(receive, publisher, count)
    finally:
        await client.close()


async def start_publisher(
    broker: str, address: str, subject: str, size: int, count: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--role",
        "publish",
        "--broker",
        broker,
        "--address",
        address,
        "--subject",
        subject,
        "--size",
        str(size),
        "--count",
        str(count),
    )


async def finish_subscribe(
    receive: Callable[[], Awaitable[tuple[int, float, float]]],
    publisher: asyncio.subprocess.Process,
    count: int,
) -> float:
    task = asyncio.ensure_future(receive())
    # The whole flood must arrive; a long silence means messages were lost.
    limit = IDLE_TIMEOUT + count / 1000
    done, _ = await asyncio.wait({task}, timeout=limit)
    await publisher.wait()
    if not done:
        task.cancel()
        raise RuntimeError(f"only part of {count} messages arrived within {limit:.0f} s")
    received, first, last = task.result()
    if received < count or last <= first:
        raise RuntimeError(f"received {received} of {count} messages")
    # The first message starts the clock, so the rate is over count - 1 intervals.
    return (received - 1) / (last - first)


# ----- the publisher process of the subscribe measure -----


async def flood(broker: str, address: str, subject: str, size: int, count: int) -> None:
    body = bytes(size)
    if broker == SWITCHBOARD:
        await publish_switchboard(address, subject, body, count)
    else:
        await publish_nats(address, subject, body, count)


# ----- one run -----


def label_size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


async def measure(settings: Settings, switchboard_address: str, nats_url: str) -> Results:
    results = Results()
    for size in settings.sizes:
        publish = f"publish {label_size(size)}"
        results.rows.append(Row(publish, settings.publish_count[size], publish, publish))
        if settings.blocking:
            results.rows.append(
                Row(
                    f"{publish}, blocking Client (nats-py: asyncio)",
                    settings.publish_count[size],
                    f"{publish}, blocking",
                    publish,
                )
            )
    for size in settings.sizes:
        subscribe, count = f"subscribe {label_size(size)}", settings.subscribe_count[size]
        results.rows.append(Row(f"{subscribe}, async for", count, subscribe, subscribe))
        results.rows.append(
            Row(f"{subscribe} (nats-py: callback)", count, subscribe, f"{subscribe}, callback")
        )
    for run in range(settings.runs):
        # Alternate which broker goes first, so that neither always meets a warmer cache.
        brokers = [SWITCHBOARD, NATS] if run % 2 == 0 else [NATS, SWITCHBOARD]
        for size in settings.sizes:
            body = bytes(size)
            count = settings.publish_count[size]
            publish = f"publish {label_size(size)}"
            for broker in brokers:
                subject = f"bench.publish.{size}.{run}"
                if broker == SWITCHBOARD:
                    rate = await publish_switchboard(switchboard_address, subject, body, count)
                else:
                    rate = await publish_nats(nats_url, subject, body, count)
                record(results, run, publish, broker, rate)
            if settings.blocking:
                subject = f"bench.blocking.{size}.{run}"
                rate = await asyncio.to_thread(
                    publish_switchboard_blocking, switchboard_address, subject, body, count
                )
                record(results, run, f"{publish}, blocking", SWITCHBOARD, rate)
        for size in settings.sizes:
            count = settings.subscribe_count[size]
            subscribe = f"subscribe {label_size(size)}"
            for broker in brokers:
                subject = f"bench.subscribe.{size}.{run}"
                if broker == SWITCHBOARD:
                    rate = await subscribe_switchboard(switchboard_address, subject, size, count)
                    record(results, run, subscribe, broker, rate)
                else:
                    rate = await subscribe_nats(nats_url, subject, size, count)
                    record(results, run, subscribe, broker, rate)
                    subject = f"bench.subscribe.callback.{size}.{run}"
                    rate = await subscribe_nats_callback(nats_url, subject, size, count)
                    record(results, run, f"{subscribe}, callback", broker, rate)
    return results


def record(results: Results, run: int, measure: str, broker: str, rate: float) -> None:
    results.add(measure, broker, rate)
    print(f"run {run + 1}: {measure:<28} {broker:<12} {rate:>12,.0f} msg/s", file=sys.stderr)


# ----- the table -----


def thousands(rate: float) -> str:
    return f"{rate / 1000:,.0f} k"


def spread(rates: list[float]) -> str:
    return f"{min(rates) / 1000:,.0f}-{max(rates) / 1000:,.0f} k"


def table(results: Results) -> str:
    lines = [
        "| workload | messages | nats-py msg/s | Switchboard msg/s | Switchboard / nats-py "
        "| range nats-py | range Switchboard |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results.rows:
        ours = results.rates[(row.switchboard, SWITCHBOARD)]
        theirs = results.rates[(row.nats, NATS)]
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        lines.append(
            f"| {row.label} | {row.count:,} | {thousands(theirs_median)} "
            f"| {thousands(ours_median)} | {ours_median / theirs_median:.2f}x "
            f"| {spread(theirs)} | {spread(ours)} |"
        )
    return "\n".join(lines)


def describe(settings: Settings) -> str:
    nats_version = subprocess.run(
        [settings.nats_bin, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    switchboard_version = subprocess.run(
        [settings.switchboard_bin, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{switchboard_version}; {nats_version}; nats-py {metadata.version('nats-py')}; "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs; load average {load}"
    )


# ----- command line -----


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--switchboard",
        default=os.environ.get("SWITCHBOARD_BIN") or shutil.which("switchboard"),
        help="the switchboard binary (default $SWITCHBOARD_BIN, else from PATH)",
    )
    parser.add_argument(
        "--nats-server",
        default=os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server"),
        help="the nats-server binary (default $NATS_SERVER_BIN, else from PATH)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (default 3)")
    parser.add_argument(
        "--publish-count", type=int, default=200_000, help="messages per publish measure"
    )
    parser.add_argument(
        "--subscribe-count",
        type=int,
        default=100_000,
        help="messages per subscribe measure (1 KiB bodies: a quarter, within the "
        "brokers' per-connection queues)",
    )
    parser.add_argument("--no-blocking", action="store_true", help="skip the blocking Client")
    parser.add_argument("--quick", action="store_true", help="a smoke test: few messages, 1 run")
    # The publisher process of the subscribe measure.
    parser.add_argument("--role", choices=["compare", "publish"], default="compare")
    parser.add_argument("--broker", choices=[SWITCHBOARD, NATS], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--subject", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def settings_from(arguments: argparse.Namespace) -> Settings:
    if not arguments.switchboard:
        sys.exit("no switchboard binary: give --switchboard or set SWITCHBOARD_BIN")
    if not arguments.nats_server:
        sys.exit("no nats-server binary: give --nats-server or set NATS_SERVER_BIN")
    if arguments.runs < 1:
        sys.exit("--runs must be at least 1")
    publish_count: int = arguments.publish_count
    subscribe_count: int = arguments.subscribe_count
    runs: int = arguments.runs
    if arguments.quick:
        publish_count, subscribe_count, runs = 2_000, 2_000, 1
    sizes = [16, 1024]
    return Settings(
        switchboard_bin=arguments.switchboard,
        nats_bin=arguments.nats_server,
        runs=runs,
        publish_count={16: publish_count, 1024: publish_count // 2},
        subscribe_count={16: subscribe_count, 1024: max(subscribe_count // 4, 2)},
        sizes=sizes,
        blocking=not arguments.no_blocking,
    )


async def compare(settings: Settings, command: str) -> None:
    with (
        switchboard_server(settings.switchboard_bin) as address,
        nats_server(settings.nats_bin) as url,
    ):
        results = await measure(settings, address, url)
    print(f"```sh\n{command}\n```\n")
    print(describe(settings) + "\n")
    print(f"Medians of {settings.runs} runs (msg/s); the ranges are min-max over the runs.\n")
    print(table(results))


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    arguments = parse_arguments(argv)
    if arguments.role == "publish":
        asyncio.run(
            flood(
                arguments.broker,
                arguments.address,
                arguments.subject,
                arguments.size,
                arguments.count,
            )
        )
        return
    settings = settings_from(arguments)
    command = shlex.join(["python", "clients/python/bench/compare_nats.py", *argv])
    asyncio.run(compare(settings, command))


if __name__ == "__main__":
    main()
