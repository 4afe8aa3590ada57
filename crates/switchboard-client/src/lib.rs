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

mod client;
mod config;
mod connection;
mod dispatch;
mod error;
mod feeds;
mod payload;
mod requests;
mod shared;
mod subscription;
mod writer;

pub use client::{Client, PendingAck, ServerLimits};
pub use config::{ClientConfig, DEFAULT_SERVER};
pub use error::{ClientError, CloseReason, PayloadError, Result};
pub use feeds::{DirectFeed, GroupFeed, GroupItem};
pub use payload::{
    JSON, MSGPACK, OCTET_STREAM, Payload, ReceivedDirect, ReceivedMessage, TEXT_PLAIN,
};
pub use subscription::Subscription;

/// The wire protocol crate, for the types the API shares with it.
pub use switchboard_proto as proto;
pub use switchboard_proto::ErrorCode;
pub use switchboard_proto::Text;
pub use switchboard_proto::packet::{
    ChannelInfo, ChannelOptions, ClientInfo, Event, EventKind, GroupInfo, Identity, MemberInfo,
    PublishAck, RelayOutcome, RelayStatus, Replay, Scope, Since, SlowConsumerPolicy, Stat,
    StatsReply,
};
