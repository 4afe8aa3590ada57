//! Messages as JSON. A body that is UTF-8 text is given as text (`"encoding": "text"`),
//! any other as base64 (`"encoding": "base64"`), whatever its content type, so a client
//! never has to guess. A streamed body (larger than one frame) is not inlined: `body`
//! is null and `streamed` true; `GET .../messages/{id}?raw` returns it.

use base64::Engine;
use serde::Serialize;
use switchboard_client::{PublishAck, ReceivedMessage, Scope};

use super::params::rfc3339;

/// One message as the API returns it.
#[derive(Debug, Serialize)]
pub(crate) struct MessageView {
    pub(crate) channel: String,
    /// "channel" or "group".
    pub(crate) scope: &'static str,
    pub(crate) seq: u64,
    pub(crate) id: String,
    pub(crate) time_us: u64,
    /// The same time as RFC 3339.
    pub(crate) timestamp: String,
    pub(crate) sender_id: u64,
    pub(crate) sender: String,
    pub(crate) content_type: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body_len: u64,
    pub(crate) streamed: bool,
    /// "text" or "base64"; null with the body when it is streamed.
    pub(crate) encoding: Option<&'static str>,
    pub(crate) body: Option<String>,
}

impl MessageView {
    pub(crate) fn of(message: &ReceivedMessage) -> MessageView {
        let (encoding, body) = if message.is_streamed() {
            (None, None)
        } else {
            let (encoding, body) = encode_body(message.body());
            (Some(encoding), Some(body))
        };
        MessageView {
            channel: message.channel().to_owned(),
            scope: scope_name(message.scope()),
            seq: message.seq(),
            id: message.id().to_string(),
            time_us: message.time_us(),
            timestamp: rfc3339(message.time_us()),
            sender_id: message.sender_id(),
            sender: message.sender_name().to_owned(),
            content_type: message.content_type().to_owned(),
            headers: message
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body_len: message.body_len(),
            streamed: message.is_streamed(),
            encoding,
            body,
        }
    }
}

/// A body as JSON text: itself if UTF-8, else base64.
pub(crate) fn encode_body(body: &[u8]) -> (&'static str, String) {
    match std::str::from_utf8(body) {
        Ok(text) => ("text", text.to_owned()),
        Err(_) => (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(body),
        ),
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Group => "group",
        Scope::Tag => "tag",
        _ => "channel",
    }
}

/// The answer to a publish or a post.
#[derive(Debug, Serialize)]
pub(crate) struct AckView {
    pub(crate) channel: String,
    pub(crate) seq: u64,
    pub(crate) id: String,
    /// When the hub took the message, from its id (a UUID v7: millisecond precision).
    pub(crate) time_ms: u64,
    pub(crate) timestamp: String,
}

impl AckView {
    pub(crate) fn of(channel: &str, ack: &PublishAck) -> AckView {
        let time_ms = ack
            .id
            .get_timestamp()
            .map(|stamp| {
                let (seconds, nanos) = stamp.to_unix();
                seconds * 1000 + u64::from(nanos) / 1_000_000
            })
            .unwrap_or(0);
        AckView {
            channel: channel.to_owned(),
            seq: ack.seq,
            id: ack.id.to_string(),
            time_ms,
            timestamp: rfc3339(time_ms * 1000),
        }
    }
}
