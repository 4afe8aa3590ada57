"""Python client for the Switchboard message hub, a binding of its Rust client.

Two APIs with the same methods::

    async with await switchboard.connect("127.0.0.1:7420", name="alice") as client:
        ack = await client.publish("chat.python", "hello")

    with switchboard.Client("127.0.0.1:7420", name="alice") as client:
        ack = client.publish("chat.python", "hello")
"""

from ._client import (
    AsyncClient,
    AsyncDirectFeed,
    AsyncGroupFeed,
    AsyncPendingAck,
    AsyncSubscription,
    Client,
    DirectFeed,
    GroupFeed,
    GroupItem,
    PendingAck,
    Subscription,
    connect,
)
from ._native import (
    Ack,
    BodyStream,
    Channel,
    ClientInfo,
    DirectMessage,
    Group,
    GroupEvent,
    Identity,
    Member,
    Message,
    RelayOutcome,
)
from ._types import Body, Replay, TlsConfig
from .errors import (
    AuthFailed,
    BodyError,
    ConnectionClosed,
    ConnectionFailed,
    DecodeError,
    Forbidden,
    InvalidArgument,
    NotFound,
    RateLimited,
    SwitchboardError,
    Timeout,
    TooLarge,
)

__all__ = [
    "Ack",
    "AsyncClient",
    "AsyncDirectFeed",
    "AsyncGroupFeed",
    "AsyncPendingAck",
    "AsyncSubscription",
    "AuthFailed",
    "Body",
    "BodyError",
    "BodyStream",
    "Channel",
    "Client",
    "ClientInfo",
    "ConnectionClosed",
    "ConnectionFailed",
    "DecodeError",
    "DirectFeed",
    "DirectMessage",
    "Forbidden",
    "Group",
    "GroupEvent",
    "GroupFeed",
    "GroupItem",
    "Identity",
    "InvalidArgument",
    "Member",
    "Message",
    "NotFound",
    "PendingAck",
    "RateLimited",
    "RelayOutcome",
    "Replay",
    "Subscription",
    "SwitchboardError",
    "Timeout",
    "TlsConfig",
    "TooLarge",
    "connect",
]
