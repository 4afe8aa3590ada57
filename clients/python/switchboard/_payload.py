"""Typed payloads: Python values to MessagePack or JSON bodies and back, with the
conventions of the Rust client's serde encoding, so that a struct published from Rust
decodes into the matching dataclass and the other way round.

Encoding turns a value into plain data first (dataclasses and pydantic models become
maps of their fields, enums their value, datetimes RFC 3339 text as chrono writes them),
then writes MessagePack with rmp-serde (in the native module) or JSON with :mod:`json`.
Decoding reads plain data by the body's content type, then builds the type asked for,
naming the field that does not fit in a :class:`~switchboard.errors.DecodeError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from . import _native
from .errors import DecodeError

__all__ = ["JSON", "MSGPACK", "decode", "encode_value", "from_plain", "parse", "to_plain"]

JSON = "application/json"
MSGPACK = "application/msgpack"
FORMATS = {"msgpack": MSGPACK, "json": JSON}
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")

T = TypeVar("T")


def media_type(content_type: str) -> str:
    """The content type without parameters, lower case (as the Rust client compares)."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    media = media_type(content_type)
    return media == JSON or media.endswith("+json")


def is_msgpack(content_type: str) -> bool:
    return media_type(content_type) in MSGPACK_TYPES


# -- encoding ------------------------------------------------------------------------------


def encode_value(value: object, format: str) -> tuple[bytes, str]:
    """``value`` as a body in ``format`` ("msgpack" or "json") and its content type."""
    content_type = FORMATS.get(format)
    if content_type is None:
        raise ValueError(f'format must be "msgpack" or "json", not {format!r}')
    if not is_typed_value(value):
        raise TypeError(
            f"a {type(value).__name__} is not a body: give bytes, str, a dict, a list, "
            "a tuple, a dataclass or a pydantic model"
        )
    msgpack = content_type == MSGPACK
    plain = to_plain(value, msgpack=msgpack)
    if msgpack:
        return _native.msgpack_encode(plain), content_type
    try:
        text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"no JSON form: {error}") from None
    return text.encode("utf-8"), content_type


def is_typed_value(value: object) -> bool:
    """Whether ``value`` is one of the typed bodies: a mapping, list, tuple, dataclass
    instance or pydantic model (known by ``model_dump``, without importing pydantic)."""
    if isinstance(value, (Mapping, list, tuple)):
        return True
    if isinstance(value, type):
        return False
    return dataclasses.is_dataclass(value) or callable(getattr(value, "model_dump", None))


def to_plain(value: object, *, msgpack: bool = True) -> Any:
    """``value`` as plain data (None, bool, int, float, str, bytes, lists, dicts), the
    way serde's derive writes the matching Rust type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # serde writes a Vec<u8> as a sequence of numbers in JSON.
        return bytes(value) if msgpack else list(bytes(value))
    if isinstance(value, enum.Enum):
        return to_plain(value.value, msgpack=msgpack)
    if isinstance(value, dt.datetime):
        return _rfc3339(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        # The uuid crate writes 16 bytes to a binary format, text to JSON.
        return value.bytes if msgpack else str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_plain(getattr(value, field.name), msgpack=msgpack)
            for field in dataclasses.fields(value)
        }
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return to_plain(model_dump(), msgpack=msgpack)
    if isinstance(value, Mapping):
        return {
            to_plain(key, msgpack=msgpack): to_plain(item, msgpack=msgpack)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(item, msgpack=msgpack) for item in value]
    raise TypeError(f"a {type(value).__name__} has no MessagePack or JSON form")


def _rfc3339(value: dt.datetime) -> str:
    """RFC 3339 as chrono writes a ``DateTime<Utc>`` (``Z``) or a naive date-time."""
    text = value.isoformat()
    offset = value.utcoffset()
    if offset is not None and not offset:
        text = text[: -len("+00:00")] + "Z"
    return text


# -- decoding ------------------------------------------------------------------------------


def parse(content_type: str, body: bytes) -> Any:
    """The plain data of a MessagePack or JSON ``body``, chosen by ``content_type`` as
    the Rust client's ``decode`` chooses; DecodeError for any other content type."""
    if is_msgpack(content_type):
        try:
            return _native.msgpack_decode(body)
        except ValueError as error:
            raise DecodeError(f"not MessagePack: {error}") from None
    if is_json(content_type):
        return parse_json(body)
    raise DecodeError(
        f"cannot decode a body of type {content_type!r}: "
        "typed values are application/msgpack or application/json"
    )


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise DecodeError(f"not JSON: {error}") from None


def decode(content_type: str, body: bytes, target: type[T]) -> T:
    """The body as ``target``, read by its content type."""
    decoded: T = from_plain(parse(content_type, body), target)
    return decoded


def from_plain(data: Any, target: Any, path: str = "") -> Any:
    """``data`` (plain) as ``target``: a dataclass, a pydantic model, an enum,
    ``list[...]``, ``dict[...]``, ``Optional[...]``, a datetime or a plain type."""
    if target is Any or target is object:
        return data
    origin = typing.get_origin(target)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        return _union(data, typing.get_args(target), path)
    if origin is typing.Literal:
        if data in typing.get_args(target):
            return data
        raise _mismatch(path, f"one of {typing.get_args(target)!r}", data)
    if origin is not None:
        return _generic(data, origin, typing.get_args(target), path)
    if target is type(None):
        if data is None:
            return None
        raise _mismatch(path, "None", data)
    if isinstance(target, type):
        return _concrete(data, target, path)
    raise DecodeError(f"cannot decode into {target!r}", path=path)


def _union(data: Any, options: tuple[Any, ...], path: str) -> Any:
    if data is None and type(None) in options:
        return None
    failures = []
    for option in options:
        if option is type(None):
            continue
        try:
            return from_plain(data, option, path)
        except DecodeError as error:
            failures.append(error)
    if len(failures) == 1:
        raise failures[0]
    names = " or ".join(_name(option) for option in options)
    raise _mismatch(path, names, data)


def _generic(data: Any, origin: Any, args: tuple[Any, ...], path: str) -> Any:
    if origin in (list, set, frozenset, tuple) or _is_abc(origin, "Sequence", "Set"):
        if not isinstance(data, list):
            raise _mismatch(path, _name(origin), data)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise DecodeError(f"expected {len(args)} items, got {len(data)}", path=path)
            return tuple(
                from_plain(item, arg, f"{path}[{index}]")
                for index, (item, arg) in enumerate(zip(data, args))
            )
        item_type = args[0] if args else Any
        items = [from_plain(item, item_type, f"{path}[{index}]") for index, item in enumerate(data)]
        if origin in (set, frozenset, tuple):
            return origin(items)
        return items
    if origin is dict or _is_abc(origin, "Mapping"):
        if not isinstance(data, dict):
            raise _mismatch(path, "a map", data)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        return {
            from_plain(key, key_type, f"{path}[{key!r}]"): from_plain(
                item, value_type, f"{path}[{key!r}]"
            )
            for key, item in data.items()
        }
    return from_plain(data, origin, path)


def _is_abc(origin: Any, *names: str) -> bool:
    import collections.abc

    return any(origin is getattr(collections.abc, name) for name in names)


def _concrete(data: Any, target: type, path: str) -> Any:
    if dataclasses.is_dataclass(target):
        return _dataclass(data, target, path)
    model_validate = getattr(target, "model_validate", None)
    if callable(model_validate):
        try:
            return model_validate(data)
        except Exception as error:  # pydantic's ValidationError, without importing it
            raise DecodeError(f"not a valid {target.__name__}: {error}", path=path) from None
    if issubclass(target, enum.Enum):
        return _enum(data, target, path)
    if target is bool:
        if isinstance(data, bool):
            return data
        raise _mismatch(path, "bool", data)
    if target is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise _mismatch(path, "int", data)
    if target is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise _mismatch(path, "float", data)
    if target is str:
        if isinstance(data, str):
            return data
        raise _mismatch(path, "str", data)
    if target in (bytes, bytearray):
        if isinstance(data, bytes):
            return target(data)
        if isinstance(data, list) and all(isinstance(b, int) and 0 <= b < 256 for b in data):
            return target(data)
        raise _mismatch(path, "bytes", data)
    if target is dt.datetime:
        return _datetime(data, path)
    if target is dt.date:
        if isinstance(data, str):
            try:
                return dt.date.fromisoformat(data)
            except ValueError:
                pass
        raise _mismatch(path, "a date (YYYY-MM-DD)", data)
    if target is uuid.UUID:
        try:
            if isinstance(data, bytes):
                return uuid.UUID(bytes=data)
            if isinstance(data, str):
                return uuid.UUID(data)
        except ValueError:
            pass
        raise _mismatch(path, "a UUID", data)
    if target is dict:
        return _generic(data, dict, (), path)
    if target in (list, tuple, set, frozenset):
        return _generic(data, target, (), path)
    if isinstance(data, target):
        return data
    raise _mismatch(path, _name(target), data)


def _dataclass(data: Any, target: type, path: str) -> Any:
    if not isinstance(data, dict):
        raise _mismatch(path, f"a map for {target.__name__}", data)
    try:
        hints = typing.get_type_hints(target)
    except Exception as error:
        raise DecodeError(f"cannot read the fields of {target.__name__}: {error}") from None
    values: dict[str, Any] = {}
    for field in dataclasses.fields(target):
        if not field.init:
            continue
        where = f"{path}.{field.name}" if path else field.name
        field_type = hints.get(field.name, Any)
        if field.name in data:
            values[field.name] = from_plain(data[field.name], field_type, where)
        elif (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        ):
            continue
        elif _accepts_none(field_type):
            # serde reads a missing Option field as None.
            values[field.name] = None
        else:
            raise DecodeError(f"missing field of {target.__name__}", path=where)
    return target(**values)


def _accepts_none(field_type: Any) -> bool:
    return field_type is Any or type(None) in typing.get_args(field_type)


def _enum(data: Any, target: type[enum.Enum], path: str) -> enum.Enum:
    try:
        return target(data)
    except ValueError:
        pass
    # serde writes a unit variant as its name.
    if isinstance(data, str) and data in target.__members__:
        return target.__members__[data]
    choices = ", ".join(repr(member.value) for member in target)
    raise DecodeError(f"{data!r} is not a {target.__name__} (one of {choices})", path=path)


def _datetime(data: Any, path: str) -> dt.datetime:
    if isinstance(data, str):
        text = data[:-1] + "+00:00" if data.endswith(("Z", "z")) else data
        try:
            return dt.datetime.fromisoformat(_trim_fraction(text))
        except ValueError:
            pass
    # std::time::SystemTime as serde writes it.
    if isinstance(data, dict) and set(data) == {"secs_since_epoch", "nanos_since_epoch"}:
        seconds, nanos = data["secs_since_epoch"], data["nanos_since_epoch"]
        if isinstance(seconds, int) and isinstance(nanos, int):
            epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
            return epoch + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
    raise _mismatch(path, "an RFC 3339 date-time", data)


def _trim_fraction(text: str) -> str:
    """Keeps at most 6 digits of a fraction of a second: chrono writes nanoseconds,
    Python's datetime holds microseconds."""
    dot = text.find(".", 19)
    if dot < 0:
        return text
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[dot + 1 : end][:6].ljust(6, "0")
    return text[: dot + 1] + digits + text[end:]


def _name(target: Any) -> str:
    if target is type(None):
        return "None"
    return getattr(target, "__name__", None) or repr(target)


def _mismatch(path: str, expected: str, data: Any) -> DecodeError:
    shown = repr(data)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return DecodeError(f"expected {expected}, got {type(data).__name__} {shown}", path=path)
