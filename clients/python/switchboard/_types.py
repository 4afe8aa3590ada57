"""Values given to calls: payloads, replay choices and TLS options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Optional, Protocol, Union

from ._payload import encode_value

__all__ = ["Body", "Replay", "TlsConfig"]


class DataclassInstance(Protocol):
    """An instance of a dataclass."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


class PydanticModel(Protocol):
    """A pydantic model (or anything with its ``model_dump``)."""

    def model_dump(self) -> dict[str, Any]: ...


Body = Union[
    bytes,
    bytearray,
    memoryview,
    str,
    Mapping[Any, Any],
    list[Any],
    tuple[Any, ...],
    DataclassInstance,
    PydanticModel,
]
"""A message body: bytes as they are (``application/octet-stream``), text (UTF-8,
``text/plain``), or a typed value (a dict, list, tuple, dataclass or pydantic model)
written as MessagePack or JSON (see ``switchboard._payload``)."""

OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain; charset=utf-8"


def encode_body(
    body: Body, content_type: Optional[str], format: str = "msgpack"
) -> tuple[bytes, str]:
    """The bytes of ``body`` and its content type (``content_type`` when given). A typed
    value is written in ``format``: "msgpack" (the default, as the Rust client's
    ``Payload::typed``) or "json"."""
    if isinstance(body, str):
        return body.encode("utf-8"), content_type or TEXT_PLAIN
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), content_type or OCTET_STREAM
    data, kind = encode_value(body, format)
    return data, content_type or kind


def to_micros(time: Union[datetime, float]) -> int:
    """Microseconds since the Unix epoch; a naive datetime is taken as local time."""
    seconds = time.timestamp() if isinstance(time, datetime) else float(time)
    if seconds < 0:
        raise ValueError("a time before 1970 is not a message time")
    return round(seconds * 1_000_000)


@dataclass(frozen=True)
class Replay:
    """Which history a subscription delivers before live messages."""

    kind: str = "none"
    value: int = 0

    @classmethod
    def none(cls) -> Replay:
        """Live messages only."""
        return cls("none")

    @classmethod
    def last(cls, count: int) -> Replay:
        """The last ``count`` messages of each matching channel."""
        if count < 0:
            raise ValueError("count must not be negative")
        return cls("last", count)

    @classmethod
    def since_seq(cls, seq: int) -> Replay:
        """Messages with a sequence number at or above ``seq``."""
        if seq < 0:
            raise ValueError("seq must not be negative")
        return cls("since_seq", seq)

    @classmethod
    def since_time(cls, time: Union[datetime, float]) -> Replay:
        """Messages published at or after ``time`` (a datetime or Unix seconds)."""
        return cls("since_time", to_micros(time))

    @classmethod
    def all(cls) -> Replay:
        """Every message the server holds."""
        return cls("all")


@dataclass(frozen=True)
class TlsConfig:
    """TLS options: a CA file trusted instead of the system's roots, a client
    certificate and key (PEM), the name expected in the server's certificate."""

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_name: Optional[str] = None
