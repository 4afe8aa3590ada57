"""Exception classes, one per kind of failure a caller may want to handle apart.

Every exception raised by a call to the hub is a :class:`SwitchboardError`; when the
server refused the call, ``code`` and ``number`` are its error code (``"NOT_FOUND"``,
101) and ``message`` says what went wrong.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "AuthFailed",
    "BodyError",
    "ConnectionClosed",
    "ConnectionFailed",
    "DecodeError",
    "Forbidden",
    "InvalidArgument",
    "NotFound",
    "RateLimited",
    "SwitchboardError",
    "Timeout",
    "TooLarge",
]


class SwitchboardError(Exception):
    """A call to the hub failed."""

    def __init__(
        self, message: str, code: Optional[str] = None, number: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.number = number

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class NotFound(SwitchboardError):
    """No such channel, group, message or client."""


class Forbidden(SwitchboardError):
    """The session's user may not do this."""


class TooLarge(SwitchboardError):
    """A body, a frame or a text is over the server's limit."""


class RateLimited(SwitchboardError):
    """The server's rate limit refused the call; try again later."""


class AuthFailed(SwitchboardError):
    """The server refused the credentials."""


class ConnectionClosed(SwitchboardError, ConnectionError):
    """The connection is closed (by the client, the server or the network)."""


class ConnectionFailed(SwitchboardError, ConnectionError):
    """The hub could not be reached (refused, unreachable, a failed TLS handshake), or
    reading from or writing to it failed."""


class Timeout(SwitchboardError, TimeoutError):
    """The server did not answer in time."""


class InvalidArgument(SwitchboardError, ValueError):
    """An argument was refused, by the client or by the server."""


# -- payloads ------------------------------------------------------------------------------


class DecodeError(SwitchboardError, ValueError):
    """A body could not be read as the type asked for: not MessagePack or JSON, or data
    that does not fit. ``path`` names the field (``"location.floor"``, ``"tags[2]"``)."""

    def __init__(
        self,
        message: str,
        code: Optional[str] = None,
        number: Optional[int] = None,
        *,
        path: str = "",
    ) -> None:
        super().__init__(f"{path}: {message}" if path else message, code, number)
        self.path = path


class BodyError(SwitchboardError):
    """A streamed body could not be received whole: it broke off, was longer or shorter
    than announced, did not match its SHA-256 digest, or was already read."""
