"""Fixtures: a real `switchboard serve` per test module, on a free port, in memory."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
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


def is_plain(address: str) -> bool:
    """Whether a listening address is the plain protocol's (TCP or Unix socket)."""
    return not address.startswith(("http://", "tls://"))


def launch(
    args: list[str], ready: Callable[[list[str]], bool]
) -> tuple[subprocess.Popen[str], list[str], list[str]]:
    """Starts `switchboard serve ARGS` and waits until the listening addresses it printed
    are `ready`; returns the process, those addresses in the order printed, and its log
    (kept filling from stderr, so that the server never blocks on a full pipe)."""
    process = subprocess.Popen(
        [binary(), "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    log: list[str] = []
    addresses: list[str] = []
    for line in process.stderr:
        log.append(line)
        found = LISTENING.search(line)
        if found:
            addresses.append(found.group(1))
            if ready(addresses):
                break
    else:
        process.wait(timeout=10)
        raise RuntimeError("the server exited before listening:\n" + "".join(log))
    threading.Thread(target=lambda: log.extend(process.stderr or ()), daemon=True).start()
    return process, addresses, log


def start_server(*extra: str) -> Server:
    process, addresses, log = launch(
        ["--memory", "--no-unix", "--no-http", "--listen", "127.0.0.1:0", *extra],
        lambda addresses: any(is_plain(address) for address in addresses),
    )
    return Server(process, next(filter(is_plain, addresses)), log)


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
