"""The blocking API: the same calls as the asyncio one, for scripts and threads."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import switchboard
from switchboard import Replay

from conftest import Server


def test_blocking_round_trip(server: Server) -> None:
    with switchboard.Client(server.address, name="script") as client:
        assert client.name == "script"
        ack = client.publish("blocking.x", "one")
        pending = client.publish_pipelined("blocking.x", "two")
        client.publish_no_reply("blocking.x", b"three")
        client.flush()
        assert pending.wait().seq == ack.seq + 1
        subscription = client.subscribe("blocking.x", replay=Replay.all())
        got = [next(subscription) for _ in range(3)]
        assert [m.body for m in got] == [b"one", b"two", b"three"]
        latest = client.latest("blocking.x")
        assert latest is not None and latest.body == b"three"
        assert [m.seq for m in client.history("blocking.x", since_seq=2)] == [2, 3]
        assert client.get_message("blocking.x", ack.id) is not None
        assert client.identity().name == "script"
        assert client.create_channel("blocking.opts", history=3).history == 3
        assert "blocking.opts" in [c.name for c in client.list_channels()]
        with switchboard.Client(server.address, name="other") as other:
            assert other.client_id in [c.client_id for c in client.list_clients()]
        assert client.stats()


def test_blocking_iterator_while_another_thread_publishes(server: Server) -> None:
    with switchboard.Client(server.address, name="iterating") as reader:
        subscription = reader.subscribe("threads.x")

        def publish() -> None:
            with switchboard.Client(server.address, name="threaded") as writer:
                for n in range(3):
                    writer.publish("threads.x", f"t{n}")

        # The reader waits with the interpreter released, so the writer thread runs.
        writer = threading.Thread(target=publish)
        writer.start()
        texts = []
        for message in subscription:
            texts.append(message.text())
            if len(texts) == 3:
                break
        writer.join(timeout=10)
        assert texts == ["t0", "t1", "t2"]
        subscription.unsubscribe()
        assert subscription.next() is None


SCRIPT = """
import sys
import switchboard

with switchboard.Client(sys.argv[1], name="interrupted") as client:
    subscription = client.subscribe("quiet.x")
    try:
        print("waiting", flush=True)
        for message in subscription:
            pass
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is a Unix signal")
def test_ctrl_c_interrupts_a_blocking_wait(server: Server, tmp_path: Path) -> None:
    # Run away from the source tree, whose switchboard/ has no built module in it.
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, server.address],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal leaves it: a suite started in the background by a
        # non-interactive shell inherits it ignored, and Python then never turns it into
        # KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert script.stdout is not None
        assert script.stdout.readline() == "waiting\n"
        script.send_signal(signal.SIGINT)
        out, err = script.communicate(timeout=10)
    finally:
        script.kill()
    assert "interrupted" in out, err
    assert script.returncode == 0, err
