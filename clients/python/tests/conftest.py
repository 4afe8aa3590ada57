"""Fixtures: a real `switchboard serve` per test module, on a free port, in memory."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"switchboard listening on (\S+)")


def binary() -> str:
    """The server binary: $SWITCHBOARD_BIN, else the workspace's debug build."""
    path = os.environ.get("SWITCHBOARD_BIN", str(REPO / "target" / "debug" / "switchboard"))
    if not Path(path).is_file():
        pytest.exit(f"no switchboard binary at {path}: build it or set SWITCHBOARD_BIN")
    return path


@dataclass
class Server:
    """A running `switchboard serve`: its address and what it wrote to stderr."""

    process: subprocess.Popen[str]
    address: str
    log: list[str] = field(default_factory=list)

    def cli(self, *args: str, stdin: Optional[str] = None) -> str:
        """Runs the CLI against this server and returns its stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        done = subprocess.run(
            [binary(), *args, "--server", self.address],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def start_server(*extra: str) -> Server:
    process = subprocess.Popen(
        [
            binary(),
            "serve",
            "--memory",
            "--no-unix",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    log: list[str] = []
    for line in process.stderr:
        log.append(line)
        found = LISTENING.search(line)
        if found and not found.group(1).startswith(("http://", "tls://")):
            server = Server(process, found.group(1), log)
            break
    else:
        process.wait(timeout=10)
        raise RuntimeError("the server exited before listening:\n" + "".join(log))
    # Keep draining stderr so that the server never blocks on a full pipe.
    threading.Thread(target=lambda: log.extend(process.stderr or ()), daemon=True).start()
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = start_server()
    yield running
    stop_server(running)


def hash_password(password: str) -> str:
    """A PHC hash of `password` from `switchboard passwd`, fed through a pipe."""
    done = subprocess.run(
        [binary(), "passwd"], input=password + "\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the user alice (password "wonderland"), who may use chat.> only."""
    config = tmp_path_factory.mktemp("secured") / "switchboard.toml"
    config.write_text(
        '[auth]\nfailure_delay = "1ms"\n\n'
        f'[[users]]\nname = "alice"\npassword = "{hash_password("wonderland")}"\n'
        'roles = ["chatter"]\n\n'
        "[roles.chatter]\n"
        'publish = { allow = ["chat.>"] }\n'
        'subscribe = { allow = ["chat.>"] }\n'
        'history = { allow = ["chat.>"] }\n'
        'create_channel = { allow = ["chat.>"] }\n'
    )
    running = start_server("--config", str(config))
    yield running
    stop_server(running)
