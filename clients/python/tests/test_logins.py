"""Logging in with a JWT, a named token or the pre-shared HMAC key; what roles refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import switchboard

from conftest import Server, start_server, stop_server

JWT_SECRET = b"a shared secret of the python tests, over 32 bytes long"
READER_TOKEN = "token-of-the-python-reader"
HMAC_KEY = b"pre-shared key of the python tests"


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any], secret: bytes = JWT_SECRET) -> str:
    """An HS256 JWT (RFC 7519) of ``claims``, signed with ``secret``."""
    header = _base64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _base64url(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_base64url(signature)}"


@pytest.fixture(scope="module")
def identity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JWTs signed with JWT_SECRET, and READER_TOKEN for rita, who may use news.> only."""
    directory = tmp_path_factory.mktemp("identities")
    (directory / "jwt.secret").write_bytes(JWT_SECRET)
    digest = hashlib.sha256(READER_TOKEN.encode()).hexdigest()
    (directory / "switchboard.toml").write_text(
        '[auth]\nfailure_delay = "1ms"\nmax_failures = 1000\n\n'
        '[jwt]\nalgorithm = "HS256"\nsecret_file = "jwt.secret"\n\n'
        f'[[tokens]]\nname = "reader"\nuser = "rita"\nsha256 = "{digest}"\n'
        'roles = ["reader"]\n\n'
        "[roles.reader]\n"
        'publish = { allow = ["news.>"] }\n'
        'create_channel = { allow = ["news.>"] }\n\n'
        "[roles.writer]\n"
        'publish = { allow = [">"] }\n'
        'create_channel = { allow = [">"] }\n'
    )
    running = start_server("--config", str(directory / "switchboard.toml"))
    yield running
    stop_server(running)


def claims(subject: str, lifetime: float, roles: list[str]) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": subject, "iat": now, "exp": int(now + lifetime), "roles": roles}


async def test_jwt_login(identity_server: Server) -> None:
    token = make_jwt(claims("jay", 600, ["writer"]))
    async with await switchboard.connect(identity_server.address, jwt=token) as client:
        assert client.name == "jay"
        assert (await client.identity()).name == "jay"
        assert (await client.publish("anything.goes", "signed")).seq == 1


def test_blocking_jwt_login(identity_server: Server) -> None:
    token = make_jwt(claims("jules", 600, ["reader"]))
    with switchboard.Client(identity_server.address, jwt=token) as client:
        assert client.identity().name == "jules"
        client.publish("news.jwt", "allowed")
        with pytest.raises(switchboard.Forbidden):
            client.publish("secret.jwt", "refused")


async def test_expired_or_forged_jwt_is_refused(identity_server: Server) -> None:
    expired = make_jwt(claims("late", -3600, ["writer"]))
    with pytest.raises(switchboard.AuthFailed) as caught:
        await switchboard.connect(identity_server.address, jwt=expired)
    assert caught.value.code == "AUTH_FAILED"
    forged = make_jwt(claims("forger", 600, ["writer"]), secret=b"x" * 40)
    with pytest.raises(switchboard.AuthFailed):
        await switchboard.connect(identity_server.address, jwt=forged)
    with pytest.raises(switchboard.AuthFailed):
        switchboard.Client(identity_server.address, jwt="not a jwt")


async def test_token_login_and_a_role_that_forbids(identity_server: Server) -> None:
    async with await switchboard.connect(identity_server.address, token=READER_TOKEN) as client:
        assert (await client.identity()).name == "rita"
        await client.publish("news.today", "allowed")
        with pytest.raises(switchboard.Forbidden) as caught:
            await client.publish("gossip.today", "refused")
    assert caught.value.code == "FORBIDDEN" and caught.value.number == 106
    assert "gossip.today" in caught.value.message
    with pytest.raises(switchboard.AuthFailed):
        await switchboard.connect(identity_server.address, token="a token nobody issued")


@pytest.fixture(scope="module")
def hmac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    key_file = tmp_path_factory.mktemp("hmac") / "hmac.key"
    key_file.write_bytes(HMAC_KEY)
    running = start_server("--hmac-key-file", str(key_file))
    yield running
    stop_server(running)


async def test_hmac_keyed_session(hmac_server: Server) -> None:
    async with await switchboard.connect(hmac_server.address, hmac_key=HMAC_KEY) as client:
        ack = await client.publish("keyed.x", "tagged frames")
        latest = await client.latest("keyed.x")
        assert latest is not None and latest.id == ack.id
    with switchboard.Client(hmac_server.address, hmac_key=HMAC_KEY) as blocking:
        assert blocking.history("keyed.x")[0].text() == "tagged frames"


@pytest.mark.parametrize("key", [b"the wrong key", None])
async def test_wrong_or_missing_hmac_key(hmac_server: Server, key: Optional[bytes]) -> None:
    with pytest.raises(switchboard.SwitchboardError) as caught:
        await switchboard.connect(hmac_server.address, hmac_key=key, request_timeout=5)
    # Each side checks the other's tags: the refusal names the HMAC, not a timeout.
    assert not isinstance(caught.value, switchboard.Timeout)
    assert "HMAC" in caught.value.message


def test_one_login_at_a_time() -> None:
    with pytest.raises(ValueError):
        switchboard.Client("127.0.0.1:1", token="t", jwt="j")
    with pytest.raises(ValueError):
        switchboard.Client("127.0.0.1:1", user="u", password="p", jwt="j")
    with pytest.raises(TypeError):
        switchboard.Client("127.0.0.1:1", hmac_key="a str")  # type: ignore[arg-type]
