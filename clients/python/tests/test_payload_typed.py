"""Typed payloads: dicts, lists, dataclasses and pydantic-style models as MessagePack or
JSON, decoded back into the type asked for, through a real server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any, Optional

import pytest

import switchboard
from switchboard import DecodeError
from switchboard._payload import decode, encode_value, from_plain

from conftest import Server


class Placement(enum.Enum):
    INDOOR = "Indoor"
    OUTDOOR = "Outdoor"


@dataclasses.dataclass
class Location:
    room: str
    floor: int


@dataclasses.dataclass
class Reading:
    sensor: str
    celsius: float
    count: int
    tags: list[str]
    location: Optional[Location]
    previous: Optional[float]
    placement: Placement
    limits: dict[str, int]


def reading() -> Reading:
    return Reading(
        sensor="hall",
        celsius=21.5,
        count=300,
        tags=["indoor", "ground"],
        location=Location(room="hall", floor=-1),
        previous=None,
        placement=Placement.INDOOR,
        limits={"high": 40, "low": -20},
    )


class Model:
    """Stands in for a pydantic model: the client knows one by ``model_dump`` and
    ``model_validate``, without importing pydantic."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size

    def model_dump(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size}

    @classmethod
    def model_validate(cls, data: object) -> Model:
        if not isinstance(data, dict) or not isinstance(data.get("size"), int):
            raise ValueError("size: field required, an int")
        return cls(str(data["name"]), data["size"])


@pytest.mark.parametrize("format", ["msgpack", "json"])
async def test_dataclass_round_trip(server: Server, format: str) -> None:
    async with await switchboard.connect(server.address, name="typed") as client:
        await client.publish(f"typed.{format}", reading(), format=format)
        message = await client.latest(f"typed.{format}")
    assert message is not None
    assert message.content_type == f"application/{format}"
    assert message.decode(Reading) == reading()
    assert message.value()["location"] == {"room": "hall", "floor": -1}


def test_plain_values_blocking(server: Server) -> None:
    with switchboard.Client(server.address, name="typed-blocking") as client:
        client.publish("typed.dict", {"a": [1, 2.5, None, True], "b": b"\x00\xff"})
        client.publish("typed.list", [1, "two", {"three": 3}], format="json")
        client.publish("typed.tuple", (1, 2))
        as_dict = client.latest("typed.dict")
        as_list = client.latest("typed.list")
        as_tuple = client.latest("typed.tuple")
    assert as_dict is not None and as_list is not None and as_tuple is not None
    assert as_dict.decode(dict) == {"a": [1, 2.5, None, True], "b": b"\x00\xff"}
    assert as_list.json() == [1, "two", {"three": 3}]
    assert as_list.decode(list) == [1, "two", {"three": 3}]
    assert as_tuple.decode(tuple[int, int]) == (1, 2)


async def test_model_round_trip_and_refusal(server: Server) -> None:
    async with await switchboard.connect(server.address, name="models") as client:
        await client.publish("typed.model", Model("disk", 3))
        await client.publish("typed.not-model", {"name": "disk"})
        good = await client.latest("typed.model")
        bad = await client.latest("typed.not-model")
    assert good is not None and bad is not None
    model = good.decode(Model)
    assert (model.name, model.size) == ("disk", 3)
    with pytest.raises(DecodeError, match="not a valid Model"):
        bad.decode(Model)


async def test_content_type_decides_and_text_is_not_typed(server: Server) -> None:
    async with await switchboard.connect(server.address, name="ctype") as client:
        await client.publish("typed.vendor", b'{"a": 1}', content_type="application/vnd.x+json")
        await client.publish("typed.text", "plain words")
        vendor = await client.latest("typed.vendor")
        text = await client.latest("typed.text")
    assert vendor is not None and text is not None
    assert vendor.decode(dict[str, int]) == {"a": 1}
    with pytest.raises(DecodeError, match="cannot decode a body of type 'text/plain"):
        text.decode(dict)


def test_decode_into_the_wrong_type_names_the_field() -> None:
    body, content_type = encode_value(reading(), "msgpack")
    broken = dataclasses.replace(reading(), location={"room": "hall", "floor": "minus one"})  # type: ignore[arg-type]
    broken_body, _ = encode_value(broken, "msgpack")
    with pytest.raises(DecodeError) as refused:
        decode(content_type, broken_body, Reading)
    assert refused.value.path == "location.floor"
    assert "expected int, got str 'minus one'" in str(refused.value)
    bad_tags = {**dataclasses.asdict(reading()), "placement": "Indoor", "tags": ["a", 2]}
    with pytest.raises(DecodeError, match=r"^tags\[1\]: expected str, got int"):
        decode("application/json", encode_value(bad_tags, "json")[0], Reading)
    with pytest.raises(DecodeError, match=r"^sensor: missing field of Reading"):
        decode(content_type, encode_value({"celsius": 1.0}, "msgpack")[0], Reading)
    with pytest.raises(DecodeError, match=r"'Sideways' is not a Placement"):
        from_plain("Sideways", Placement)
    with pytest.raises(DecodeError, match="not MessagePack"):
        decode(content_type, body + b"\xc1", Reading)
    with pytest.raises(DecodeError, match="not JSON"):
        decode("application/json", b"{", dict)


def test_missing_optional_fields_are_none_and_unknown_fields_ignored() -> None:
    data = {"room": "attic", "floor": 3, "colour": "blue"}
    assert from_plain(data, Location) == Location("attic", 3)
    plain = dataclasses.asdict(reading())
    plain["placement"] = "Indoor"
    del plain["previous"], plain["location"]
    decoded = from_plain(plain, Reading)
    assert decoded.previous is None and decoded.location is None


def test_dates_enums_and_uuids_as_rust_writes_them() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    # chrono writes RFC 3339 with nanoseconds; SystemTime a pair of numbers.
    assert from_plain("2026-01-02T03:04:05.678901234Z", dt.datetime) == when
    system_time = {"secs_since_epoch": int(when.timestamp()), "nanos_since_epoch": 678901000}
    assert from_plain(system_time, dt.datetime) == when
    assert encode_value({"at": when}, "json")[0] == b'{"at":"2026-01-02T03:04:05.678901Z"}'
    assert from_plain(ident.bytes, uuid.UUID) == ident == from_plain(str(ident), uuid.UUID)
    assert encode_value([Placement.OUTDOOR], "json")[0] == b'["Outdoor"]'
    assert (
        encode_value({"id": ident}, "json")[0] == b'{"id":"12345678-1234-5678-1234-567812345678"}'
    )


def test_values_without_a_form_are_refused() -> None:
    with pytest.raises(TypeError, match="a object is not a body"):
        encode_value(object(), "msgpack")
    with pytest.raises(TypeError, match="a int is not a body"):
        encode_value(42, "msgpack")
    with pytest.raises(TypeError, match="a object has no MessagePack or JSON form"):
        encode_value([object()], "msgpack")
    with pytest.raises(TypeError, match="does not fit in 64 bits"):
        encode_value([2**64], "msgpack")
    with pytest.raises(ValueError, match="no JSON form"):
        encode_value([float("nan")], "json")
    with pytest.raises(ValueError, match='format must be "msgpack" or "json"'):
        encode_value({}, "yaml")


def test_msgpack_extension_types_are_refused() -> None:
    # fixext 1, type 5: rmp-serde has no plain value for it, nor does this client.
    with pytest.raises(DecodeError, match="extension types are not supported"):
        decode("application/msgpack", b"\xd4\x05\x01", dict)
