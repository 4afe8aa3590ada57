//! Async client for the Switchboard message hub.
//!
//! ```no_run
//! use futures::StreamExt;
//! use switchboard_client::{Client, ClientConfig, Payload, Replay};
//!
//! # async fn demo() -> switchboard_client::Result<()> {
//! let client = Client::connect(ClientConfig::new("127.0.0.1:7420", "alice")).await?;
//! let mut chat = client.subscribe("chat.*").replay(Replay::Last(10)).await?;
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
//!   the request, subscription or feed waiting for it;
//! * [`Client`] is a cheap handle onto both.
//!
//! Every queue is bounded. Subscriptions apply backpressure (a full subscription makes
//! the dispatch task wait, see [`Subscription`]); the group and direct feeds drop their
//! oldest items instead (see [`GroupFeed`]). The tasks stop when the client is closed or
//! its last handle is dropped.
//!
//! # Messages of any size
//!
//! Bodies larger than the server's `max_frame` (up to its `max_body`, see
//! [`Client::server_limits`]) are streamed in chunks with a SHA-256 of the whole body:
//!
//! * sending: [`Client::publish_stream`] reads the body from any
//!   [`tokio::io::AsyncRead`]; [`Client::publish`] streams a large [`Payload`] by itself;
//! * receiving: a streamed message ([`ReceivedMessage::is_streamed`]) arrives before its
//!   body, which is read with [`ReceivedMessage::body_reader`] (checked against its
//!   length and digest at the end) or saved with [`ReceivedMessage::save_body_to`].
//!
//! Memory per transfer stays bounded whatever the size: an upload keeps at most
//! [`CHUNK_SIZE`] × 8 in the send queue, a download at most [`BODY_BUFFER_BYTES`] not
//! yet read, after which the connection waits for the reader (see [`BodyReader`]).

mod body;
mod client;
mod config;
mod connection;
mod dispatch;
mod error;
mod feeds;
mod inbound;
mod payload;
mod requests;
mod shared;
mod subscription;
mod upload;
mod writer;

pub use body::{BODY_BUFFER_BYTES, BodyReader};
pub use client::{Client, PendingAck, ServerLimits};
pub use config::{ClientConfig, DEFAULT_SERVER};
pub use error::{ClientError, CloseReason, PayloadError, Result};
pub use feeds::{DirectFeed, GroupFeed, GroupItem};
pub use payload::{
    JSON, MSGPACK, OCTET_STREAM, Payload, ReceivedDirect, ReceivedMessage, TEXT_PLAIN,
};
pub use subscription::{SubscribeBuilder, Subscription};
pub use upload::CHUNK_SIZE;

/// The wire protocol crate, for the types the API shares with it.
pub use switchboard_proto as proto;
pub use switchboard_proto::ErrorCode;
pub use switchboard_proto::Text;
pub use switchboard_proto::packet::{
    ChannelInfo, ChannelOptions, ClientInfo, Event, EventKind, GroupInfo, Identity, MemberInfo,
    PublishAck, RelayOutcome, RelayStatus, Replay, Scope, Since, SlowConsumerPolicy, Stat,
    StatsReply,
};
