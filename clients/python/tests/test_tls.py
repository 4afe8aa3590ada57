"""TLS: a server certificate checked against a CA file, and logging in with a client
certificate. The certificates are made for the test run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import switchboard
from switchboard import TlsConfig

from conftest import LISTENING, Server, start_server, stop_server


@dataclass
class TlsServer:
    server: Server
    address: str
    ca: trustme.CA
    ca_file: str


def tls_address(server: Server) -> str:
    """The server's `tls://` address, from its log."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(server.log):
            found = LISTENING.search(line)
            if found and found.group(1).startswith("tls://"):
                return found.group(1)
        time.sleep(0.05)
    raise RuntimeError("the server did not report its TLS address:\n" + "".join(server.log))


def start_tls_server(directory: Path, *extra: str) -> TlsServer:
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost", "127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    for pem in certificate.cert_chain_pems[1:]:
        pem.write_to_path(str(directory / "server.pem"), append=True)
    certificate.private_key_pem.write_to_path(str(directory / "server.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = start_server(
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        str(directory / "server.pem"),
        "--tls-key",
        str(directory / "server.key"),
        *extra,
    )
    return TlsServer(server, tls_address(server), ca, str(directory / "ca.pem"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    running = start_tls_server(tmp_path_factory.mktemp("tls"))
    yield running
    stop_server(running.server)


async def test_tls_with_a_ca_file(tls_server: TlsServer) -> None:
    tls = TlsConfig(ca_file=tls_server.ca_file)
    async with await switchboard.connect(tls_server.address, name="secure", tls=tls) as client:
        ack = await client.publish("tls.x", "encrypted")
        assert ack.seq == 1
    # A plain address with TLS options, and the name the certificate is checked against.
    plain = tls_server.address.removeprefix("tls://")
    named = TlsConfig(ca_file=tls_server.ca_file, server_name="localhost")
    with switchboard.Client(plain, name="blocking", tls=named) as blocking:
        assert blocking.history("tls.x")[0].text() == "encrypted"


async def test_tls_with_the_wrong_ca(tls_server: TlsServer, tmp_path: Path) -> None:
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    with pytest.raises(switchboard.SwitchboardError) as caught:
        await switchboard.connect(
            tls_server.address, tls=TlsConfig(ca_file=str(tmp_path / "other-ca.pem"))
        )
    assert "certificate" in caught.value.message.lower()
    assert not isinstance(caught.value, switchboard.Timeout)
    # A CA file that is not there is an error before anything is sent.
    with pytest.raises(switchboard.SwitchboardError) as missing:
        switchboard.Client(tls_server.address, tls=TlsConfig(ca_file=str(tmp_path / "none")))
    assert "none" in missing.value.message


@pytest.fixture(scope="module")
def mutual_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """TLS that requires a client certificate from the same CA; the user carol."""
    directory = tmp_path_factory.mktemp("mtls")
    (directory / "switchboard.toml").write_text('[[users]]\nname = "carol"\n')
    # The client CA is the one that signed the server's certificate: start_tls_server
    # writes it to ca.pem before it starts the server.
    running = start_tls_server(
        directory,
        "--config",
        str(directory / "switchboard.toml"),
        "--tls-client-ca",
        str(directory / "ca.pem"),
    )
    yield running
    stop_server(running.server)


def client_certificate(tls_server: TlsServer, directory: Path, name: str) -> TlsConfig:
    issued = tls_server.ca.issue_cert(f"{name}.example", common_name=name)
    issued.cert_chain_pems[0].write_to_path(str(directory / f"{name}.pem"))
    issued.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    return TlsConfig(
        ca_file=tls_server.ca_file,
        cert_file=str(directory / f"{name}.pem"),
        key_file=str(directory / f"{name}.key"),
    )


async def test_client_certificate_login(mutual_tls_server: TlsServer, tmp_path: Path) -> None:
    carol = client_certificate(mutual_tls_server, tmp_path, "carol")
    async with await switchboard.connect(
        mutual_tls_server.address, name="ignored", tls=carol
    ) as client:
        assert client.name == "carol"
        assert (await client.identity()).name == "carol"
    with switchboard.Client(mutual_tls_server.address, tls=carol) as blocking:
        assert blocking.identity().name == "carol"


async def test_client_certificate_refused(mutual_tls_server: TlsServer, tmp_path: Path) -> None:
    # Without a certificate, the handshake is refused.
    with pytest.raises(switchboard.SwitchboardError) as caught:
        await switchboard.connect(
            mutual_tls_server.address, tls=TlsConfig(ca_file=mutual_tls_server.ca_file)
        )
    assert "certificate" in caught.value.message.lower()
    # A certificate from a CA the server does not trust is refused too.
    stranger_ca = trustme.CA()
    issued = stranger_ca.issue_cert("carol.example", common_name="carol")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))
    stranger = TlsConfig(
        ca_file=mutual_tls_server.ca_file,
        cert_file=str(tmp_path / "stranger.pem"),
        key_file=str(tmp_path / "stranger.key"),
    )
    with pytest.raises(switchboard.SwitchboardError):
        await switchboard.connect(mutual_tls_server.address, tls=stranger)
    # A certificate of the right CA for a name that is not a user is an unknown login.
    dave = client_certificate(mutual_tls_server, tmp_path, "dave")
    with pytest.raises(switchboard.AuthFailed):
        await switchboard.connect(mutual_tls_server.address, tls=dave)
