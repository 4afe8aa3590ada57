"""Payloads between Python and Rust, both ways: text, bytes, a serde struct as
MessagePack and as JSON, and a 100 MiB streamed body. The Rust side is the workspace's
example `crates/switchboard-client/examples/interop.rs`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_payload_large import MIB, sha256_of, write_file
from test_payload_typed import Reading, reading

import switchboard

from conftest import Server

TEXT = "héllo from the other side #interop"
BYTES = bytes(range(256))


def interop_binary() -> str:
    """$SWITCHBOARD_INTEROP_BIN, else `examples/interop` next to $SWITCHBOARD_BIN (the
    workspace's target directory builds both)."""
    path = os.environ.get("SWITCHBOARD_INTEROP_BIN")
    if path is None:
        server = os.environ.get("SWITCHBOARD_BIN")
        if server is None:
            pytest.fail("set SWITCHBOARD_BIN or SWITCHBOARD_INTEROP_BIN")
        path = str(Path(server).parent / "examples" / "interop")
    if not Path(path).is_file():
        pytest.fail(
            f"no interop example at {path}: cargo build -p switchboard-client --example interop"
        )
    return path


def interop(*args: str) -> str:
    done = subprocess.run(
        [interop_binary(), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("format", ["msgpack", "json"])
def test_python_writes_the_bytes_rust_writes(format: str) -> None:
    content_type, body = interop("dump", format).split()
    assert switchboard._payload.encode_value(reading(), format) == (
        bytes.fromhex(body),
        content_type,
    )


def test_rust_to_python(server: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    expected = write_file(big, 100 * MIB)
    assert interop("send", server.address, "rs2py", str(big)).strip() == "sent"
    with switchboard.Client(server.address, name="py-interop") as client:
        text = client.latest("rs2py.text")
        raw = client.latest("rs2py.bytes")
        packed = client.latest("rs2py.msgpack")
        json = client.latest("rs2py.json")
        large = client.latest("rs2py.big")
        assert text is not None and raw is not None and packed is not None
        assert json is not None and large is not None
        assert (text.text(), text.content_type) == (TEXT, "text/plain; charset=utf-8")
        assert (raw.body, raw.content_type) == (BYTES, "application/octet-stream")
        assert packed.content_type == "application/msgpack"
        assert packed.decode(Reading) == reading()
        assert json.content_type == "application/json"
        assert json.decode(Reading) == reading()
        assert large.is_streamed and large.body_len == 100 * MIB
        assert large.save_to(tmp_path / "received.bin") == 100 * MIB
    assert sha256_of(tmp_path / "received.bin") == expected


async def test_python_to_rust(server: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    expected = write_file(big, 100 * MIB)
    async with await switchboard.connect(server.address, name="py-interop") as client:
        await client.publish("py2rs.text", TEXT)
        await client.publish("py2rs.bytes", BYTES)
        await client.publish("py2rs.msgpack", reading())
        await client.publish("py2rs.json", reading(), format="json")
        with big.open("rb") as file:
            await client.publish_file("py2rs.big", file)
    out = interop("check", server.address, "py2rs", expected)
    assert out.splitlines() == [
        "text ok (text/plain; charset=utf-8)",
        "bytes ok (application/octet-stream)",
        "msgpack ok (application/msgpack)",
        "json ok (application/json)",
        f"big ok ({100 * MIB} bytes)",
    ]
