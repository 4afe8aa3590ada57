//! Async client for the Switchboard message hub.
//!
//! ```no_run
//! use futures::StreamExt;
//! use switchboard_client::{Client, ClientConfig, Payload, Replay};
//!
//! # async fn demo() -> switchboard_client::Result<()> {
//! let client = Client::connect(ClientConfig::new("127.0.0.1:7420", "alice")).await?;
//! let mut chat = client.subscribe("chat.*", Replay::Last(10)).await?;
//! let ack = client.publish("chat.rust", Payload::text("hello #rust")).await?;
//! println!("published as seq {}", ack.seq);
//! while let Some(message) = chat.next().await {
//!     let message = message?;
//!     println!("{}: {}", message.channel(), message.text().unwrap_or("<binary>"));
//! }
//! client.close().await
//! # }
//! ```
//!
//! # The API in short
//!
//! A few verbs on [`Client`], options by builder:
//!
//! * [`Client::publish`] (to a channel) and [`Client::post`] (to a group) return one
//!   builder, [`PublishBuilder`]: awaiting it waits for the server's ack;
//!   [`PublishBuilder::pipelined`] returns once the frame is queued, with a
//!   [`PendingAck`] to await later; [`PublishBuilder::no_reply`] asks for no ack at all
//!   (failures come back from [`Client::flush`]), and [`PublishBuilder::try_no_reply`]
//!   does the same without suspending when the send queue has room. Content type, headers and a body read
//!   from an [`AsyncRead`](tokio::io::AsyncRead) (with a progress callback) are options
//!   of the same builder.
//! * [`Client::subscribe`] returns a [`SubscribeBuilder`]: more patterns, a replay, then
//!   `.await` for the [`Subscription`] stream.
//! * History ([`Client::get_message`], [`Client::get_messages`],
//!   [`Client::tag_messages`], [`Client::group_messages`]), groups, relays and the
//!   administration requests are one method each, grouped by area.
//!
//! Messages come as [`ReceivedMessage`] and [`ReceivedDirect`], the client's own types;
//! the wire protocol crate stays an implementation detail, apart from the plain data
//! types re-exported here (options, replies, [`ErrorCode`]).
//!
//! # Errors
//!
//! Every call fails with one type, [`ClientError`], which is opaque: ask it
//! [`ClientError::kind`], [`ClientError::is_closed`], [`ClientError::is_timeout`] or
//! [`ClientError::code`] (the server's wire code). One type rather than an error per
//! operation because what callers decide on is the same everywhere (retry, reconnect,
//! report, or branch on the server's code) and most calls can fail in most of the same
//! ways (the connection, a timeout, the server's refusal); keeping the details private
//! lets them grow without breaking callers, and the message says everything there is to
//! say.
//!
//! # Subscriptions are consumers
//!
//! As in NATS, separate subscriptions are separate consumers: a message matching two of
//! them arrives on both. One subscription may have several patterns
//! ([`SubscribeBuilder::pattern`]); it is still one consumer, which receives each message
//! once, in the order the server sent it, however many of its patterns match, and also
//! when the replays of two patterns hold the same message.
//!
//! # How it is built
//!
//! * the `connection` module opens the transport and the session;
//! * a writer task (module `writer`) owns the write half and coalesces queued frames
//!   into few large writes;
//! * a dispatch task (module `dispatch`) owns the read half and routes each frame to
//!   the request, subscription or feed waiting for it (streamed bodies on their way in:
//!   module `inbound`);
//! * [`Client`] is a cheap handle onto both; its methods are grouped by area, one
//!   `impl Client` per file, all making their requests through one helper.
//!
//! Every queue is bounded. Subscriptions apply backpressure (a full subscription makes
//! the dispatch task wait, see [`Subscription`]); the group and direct feeds drop their
//! oldest items instead (see [`GroupFeed`]). The tasks stop when the client is closed or
//! its last handle is dropped.
//!
//! # Messages of any size
//!
//! Bodies larger than the server's `max_frame` (up to its `max_body`, see
//! [`SessionInfo::limits`]) are streamed in chunks with a SHA-256 of the whole body:
//!
//! * sending: [`PublishBuilder::stream_from`] reads the body from any
//!   [`tokio::io::AsyncRead`]; a large [`Payload`] is streamed by itself;
//! * receiving: a streamed message ([`ReceivedMessage::is_streamed`]) arrives before its
//!   body, which is read with [`ReceivedMessage::body_reader`] (checked against its
//!   length and digest at the end) or saved with [`ReceivedMessage::save_body_to`].
//!
//! Memory per transfer stays bounded whatever the size: an upload keeps at most
//! [`CHUNK_SIZE`] × 8 in the send queue, a download at most [`BODY_BUFFER_BYTES`] not
//! yet read, after which the connection waits for the reader (see [`BodyReader`]).

#![warn(missing_docs)]

mod body;
mod client;
mod config;
mod connection;
mod direct;
mod dispatch;
mod error;
mod feeds;
mod inbound;
mod listing;
mod message_queue;
mod payload;
mod requests;
mod send_queue;
mod shared;
mod subscription;
mod tls;
mod upload;
mod websocket;
mod writer;

pub use body::{BODY_BUFFER_BYTES, BodyReader};
pub use client::{
    Client, PendingAck, PublishBuilder, ServerLimits, SessionInfo, TryNoReply, WaitForRoom,
};
pub use config::{ClientConfig, DEFAULT_SERVER};
pub use error::{ClientError, CloseReason, ErrorKind, PayloadError, Result};
pub use feeds::{DirectFeed, GroupFeed, GroupItem};
pub use listing::ListPage;
pub use payload::{
    JSON, MSGPACK, OCTET_STREAM, Payload, ReceivedDirect, ReceivedMessage, TEXT_PLAIN,
};
pub use shared::{EpochChange, MAX_EPOCH_CHANGES};
pub use subscription::{SubscribeBuilder, Subscription};
pub use tls::TlsOptions;
pub use upload::CHUNK_SIZE;

// The plain data types of the protocol that the API takes and returns.
pub use switchboard_proto::ErrorCode;
pub use switchboard_proto::Text;
pub use switchboard_proto::packet::{
    ChannelInfo, ChannelOptions, ClientInfo, Durability, Event, EventKind, GroupInfo, Identity,
    MemberInfo, PublishAck, RelayOutcome, RelayStatus, Replay, Scope, Since, SlowConsumerPolicy,
    Stat, StatsReply,
};
