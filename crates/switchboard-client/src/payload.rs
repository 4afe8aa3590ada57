//! Typed payloads. The server never looks inside a body; the content type says how to
//! read it. [`Payload`] is what a client sends, [`ReceivedMessage`] and [`ReceivedDirect`]
//! wrap what it receives, with helpers to read the body as text, JSON or MessagePack.
//!
//! A message whose body the server streams ([`ReceivedMessage::is_streamed`]) arrives
//! before its body: the body follows through a bounded channel and is read with
//! [`ReceivedMessage::body_reader`] or saved with [`ReceivedMessage::save_body_to`]
//! (see [`crate::BodyReader`] for the memory bound and the backpressure it applies).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_proto::Text;
use switchboard_proto::packet::{Direct, Message, Scope};
use uuid::Uuid;

use crate::body::{BodyReader, BodyReceiver};
use crate::error::{PayloadError, Result};
use crate::shared::lock;

/// Content type of [`Payload::text`].
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of [`Payload::bytes`].
pub const OCTET_STREAM: &str = "application/octet-stream";
/// Content type of [`Payload::json`].
pub const JSON: &str = "application/json";
/// Content type of [`Payload::msgpack`] and [`Payload::typed`].
pub const MSGPACK: &str = "application/msgpack";

/// A body to publish, with its content type and user headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    /// MIME type of the body.
    pub content_type: Text,
    /// The body, sent as is.
    pub body: Bytes,
    /// User headers, delivered with the message in order.
    pub headers: Vec<(Text, Text)>,
}

impl Payload {
    /// UTF-8 text (`text/plain; charset=utf-8`). Hashtags in it are indexed by the server.
    pub fn text(text: &str) -> Payload {
        Payload::with_content_type(TEXT_PLAIN, Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Opaque bytes (`application/octet-stream`).
    pub fn bytes(body: impl Into<Bytes>) -> Payload {
        Payload::with_content_type(OCTET_STREAM, body)
    }

    /// `value` as JSON (`application/json`).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        let body = serde_json::to_vec(value).map_err(PayloadError::from)?;
        Ok(Payload::with_content_type(JSON, body))
    }

    /// `value` as MessagePack with named fields (`application/msgpack`), so that readers
    /// in other languages see a map rather than a bare array.
    pub fn msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        let body = rmp_serde::to_vec_named(value).map_err(PayloadError::from)?;
        Ok(Payload::with_content_type(MSGPACK, body))
    }

    /// The default encoding for serde types: MessagePack (compact, and
    /// [`ReceivedMessage::decode`] reads it back).
    pub fn typed<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        Payload::msgpack(value)
    }

    /// A body with an explicit content type.
    pub fn with_content_type(content_type: impl Into<Text>, body: impl Into<Bytes>) -> Payload {
        Payload {
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a user header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<Text>, value: impl Into<Text>) -> Payload {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Reads `body` as `T`, choosing the format by `content_type`.
fn decode_body<T: DeserializeOwned>(content_type: &str, body: &[u8]) -> Result<T> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let decoded = match media_type.as_str() {
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            rmp_serde::from_slice(body).map_err(PayloadError::from)
        }
        json if json == JSON || json.ends_with("+json") => {
            serde_json::from_slice(body).map_err(PayloadError::from)
        }
        _ => Err(PayloadError::UnsupportedContentType(
            content_type.to_owned(),
        )),
    };
    Ok(decoded?)
}

/// Microseconds since the Unix epoch as a point in time.
fn system_time(time_us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(time_us)
}

/// The value of the first user header called `name`.
fn find_header<'a>(headers: &'a [(Text, Text)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.as_str() == name)
        .map(|(_, value)| value.as_str())
}

/// A message received from a channel, group or hashtag: live, replayed or fetched.
///
/// # Streamed bodies
///
/// A body larger than the server sends in one frame is streamed: the message arrives
/// first ([`ReceivedMessage::is_streamed`], [`ReceivedMessage::body_len`]) and its body
/// follows, to be read once with [`ReceivedMessage::body_reader`] (or
/// [`ReceivedMessage::take_body_reader`], [`ReceivedMessage::save_body_to`]). Until it is
/// read, at most [`crate::BODY_BUFFER_BYTES`] of it is buffered and then the connection
/// waits; dropping the message discards the body. For such a message,
/// [`ReceivedMessage::body`], [`ReceivedMessage::text`] and [`ReceivedMessage::decode`]
/// see only the part carried by the MESSAGE frame itself (usually nothing).
///
/// Clones share a streamed body: only one of them can read it.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    message: Message,
    replay: bool,
    /// The channel a streamed body arrives through, until a reader takes it.
    stream: Option<Arc<Mutex<Option<BodyReceiver>>>>,
}

impl PartialEq for ReceivedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.replay == other.replay
    }
}

impl Eq for ReceivedMessage {}

impl ReceivedMessage {
    /// Wraps a decoded MESSAGE that carries its whole body; `replay` is its REPLAY flag.
    pub(crate) fn new(message: Message, replay: bool) -> Self {
        ReceivedMessage {
            message,
            replay,
            stream: None,
        }
    }

    /// A streamed MESSAGE whose body arrives through `receiver`.
    pub(crate) fn streamed(message: Message, replay: bool, receiver: BodyReceiver) -> Self {
        ReceivedMessage {
            message,
            replay,
            stream: Some(Arc::new(Mutex::new(Some(receiver)))),
        }
    }

    /// Whether the body is streamed after the message (see the type's documentation).
    pub fn is_streamed(&self) -> bool {
        self.message.stream.is_some()
    }

    /// Length of the whole body: the announced length of a streamed body, else the
    /// length of [`ReceivedMessage::body`].
    pub fn body_len(&self) -> u64 {
        match self.message.stream {
            Some(stream) => stream.total_len,
            None => self.message.body.len() as u64,
        }
    }

    /// A reader over the whole body: the streamed body as it arrives (checked against
    /// its length and SHA-256 digest at the end), or the body in memory.
    ///
    /// `None` if a streamed body was already taken (by this message or a clone).
    pub fn take_body_reader(&mut self) -> Option<BodyReader> {
        let Some(start) = self.message.stream else {
            return Some(BodyReader::memory(self.message.body.clone()));
        };
        let receiver = lock(self.stream.as_ref()?).take()?;
        Some(BodyReader::streamed(
            self.message.body.clone(),
            receiver,
            start.total_len,
        ))
    }

    /// The body as an [`tokio::io::AsyncRead`]; see [`ReceivedMessage::take_body_reader`].
    /// If the body was already taken, every read fails.
    pub fn body_reader(mut self) -> BodyReader {
        let total_len = self.body_len();
        self.take_body_reader().unwrap_or_else(|| {
            BodyReader::unavailable("the streamed body was already taken", total_len)
        })
    }

    /// Writes the whole body to the file at `path` as it arrives, calling `progress`
    /// with the bytes written so far; returns the body's length. On any failure
    /// (including a length or digest mismatch) the file is removed.
    pub async fn save_body_to(
        &mut self,
        path: impl AsRef<Path>,
        progress: impl FnMut(u64),
    ) -> std::io::Result<u64> {
        let reader = self
            .take_body_reader()
            .ok_or_else(|| std::io::Error::other("the streamed body was already taken"))?;
        reader.save_to(path, progress).await
    }

    /// The server-assigned id (a time-ordered UUID).
    pub fn id(&self) -> Uuid {
        self.message.id
    }

    /// Sequence number in its channel or group, from 1.
    pub fn seq(&self) -> u64 {
        self.message.seq
    }

    /// The channel or group it was published to.
    pub fn channel(&self) -> &str {
        &self.message.channel
    }

    /// Whether it lives in a channel or a group.
    pub fn scope(&self) -> Scope {
        self.message.scope
    }

    /// Server time of the publish.
    pub fn time(&self) -> SystemTime {
        system_time(self.message.time_us)
    }

    /// Server time of the publish, in microseconds since the Unix epoch.
    pub fn time_us(&self) -> u64 {
        self.message.time_us
    }

    /// Client id of the publisher.
    pub fn sender_id(&self) -> u64 {
        self.message.sender_id
    }

    /// Session name of the publisher.
    pub fn sender_name(&self) -> &str {
        &self.message.sender_name
    }

    /// MIME type of the body (empty if the publisher gave none).
    pub fn content_type(&self) -> &str {
        &self.message.content_type
    }

    /// User headers, in the order they were published.
    pub fn headers(&self) -> &[(Text, Text)] {
        &self.message.user_headers
    }

    /// The first user header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.message.user_headers, name)
    }

    /// The raw body (of a streamed body, only the part in the MESSAGE frame).
    pub fn body(&self) -> &Bytes {
        &self.message.body
    }

    /// The body as text, if it is valid UTF-8 (whatever the content type says). Of a
    /// streamed body, only the part in the MESSAGE frame.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.message.body).ok()
    }

    /// The body as `T`: MessagePack or JSON according to the content type; any other
    /// content type is an error. Of a streamed body, only the part in the MESSAGE frame
    /// is seen: read those with [`ReceivedMessage::body_reader`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        decode_body(&self.message.content_type, &self.message.body)
    }

    /// Whether it came from history (replay or fetch) rather than live delivery.
    pub fn is_replay(&self) -> bool {
        self.replay
    }
}

/// A body relayed to this client by another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDirect {
    direct: Direct,
}

impl ReceivedDirect {
    /// Wraps a decoded DIRECT.
    pub(crate) fn new(direct: Direct) -> Self {
        ReceivedDirect { direct }
    }

    /// Client id of the sender.
    pub fn sender_id(&self) -> u64 {
        self.direct.sender_id
    }

    /// Session name of the sender.
    pub fn sender_name(&self) -> &str {
        &self.direct.sender_name
    }

    /// Server time of the relay.
    pub fn time(&self) -> SystemTime {
        system_time(self.direct.time_us)
    }

    /// Server time of the relay, in microseconds since the Unix epoch.
    pub fn time_us(&self) -> u64 {
        self.direct.time_us
    }

    /// MIME type of the body (empty if the sender gave none).
    pub fn content_type(&self) -> &str {
        &self.direct.content_type
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.direct.body
    }

    /// The body as text, if it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.direct.body).ok()
    }

    /// The body as `T`: MessagePack or JSON according to the content type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        decode_body(&self.direct.content_type, &self.direct.body)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::ClientError;
    use crate::error::ErrorDetail;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Reading {
        sensor: String,
        celsius: f64,
    }

    fn reading() -> Reading {
        Reading {
            sensor: "hall".into(),
            celsius: 21.5,
        }
    }

    fn received(payload: &Payload) -> ReceivedMessage {
        ReceivedMessage::new(
            Message {
                channel: "sensors".into(),
                content_type: payload.content_type.clone(),
                user_headers: payload.headers.clone(),
                body: payload.body.clone(),
                time_us: 1_500_000,
                ..Message::default()
            },
            false,
        )
    }

    #[test]
    fn text_and_bytes_have_their_content_types() {
        let text = Payload::text("hi #rust").with_header("lang", "en");
        assert_eq!(text.content_type, TEXT_PLAIN);
        assert_eq!(&text.body[..], b"hi #rust");
        let message = received(&text);
        assert_eq!(message.text(), Some("hi #rust"));
        assert_eq!(message.header("lang"), Some("en"));
        assert_eq!(message.header("missing"), None);
        assert_eq!(message.time(), UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(Payload::bytes(vec![0xff]).content_type, OCTET_STREAM);
        assert_eq!(received(&Payload::bytes(vec![0xff])).text(), None);
    }

    #[test]
    fn json_round_trips() {
        let payload = Payload::json(&reading()).unwrap();
        assert_eq!(payload.content_type, JSON);
        assert_eq!(received(&payload).decode::<Reading>().unwrap(), reading());
    }

    #[test]
    fn msgpack_uses_named_fields_and_round_trips() {
        let payload = Payload::typed(&reading()).unwrap();
        assert_eq!(payload.content_type, MSGPACK);
        // A map keyed by field names, not a positional array.
        let generic: serde_json::Value = rmp_serde::from_slice(&payload.body).unwrap();
        assert_eq!(generic["sensor"], "hall");
        assert_eq!(received(&payload).decode::<Reading>().unwrap(), reading());
    }

    #[test]
    fn decode_follows_content_type_parameters_and_suffixes() {
        let body = serde_json::to_vec(&reading()).unwrap();
        for content_type in ["application/json; charset=utf-8", "application/vnd.x+json"] {
            let payload = Payload::with_content_type(content_type, body.clone());
            assert_eq!(received(&payload).decode::<Reading>().unwrap(), reading());
        }
    }

    #[test]
    fn decode_refuses_other_content_types_and_bad_bodies() {
        let error = received(&Payload::text("{}"))
            .decode::<Reading>()
            .unwrap_err();
        assert!(matches!(
            error.detail(),
            ErrorDetail::Payload(PayloadError::UnsupportedContentType(_))
        ));
        let garbage = Payload::with_content_type(JSON, &b"{not json"[..]);
        assert!(matches!(
            received(&garbage)
                .decode::<Reading>()
                .as_ref()
                .map_err(ClientError::detail),
            Err(ErrorDetail::Payload(PayloadError::Json(_)))
        ));
        let garbage = Payload::with_content_type(MSGPACK, &b"\xc1"[..]);
        assert!(matches!(
            received(&garbage)
                .decode::<Reading>()
                .as_ref()
                .map_err(ClientError::detail),
            Err(ErrorDetail::Payload(PayloadError::MsgpackDecode(_)))
        ));
    }

    #[test]
    fn directs_decode_too() {
        let payload = Payload::json(&reading()).unwrap();
        let direct = ReceivedDirect::new(Direct {
            sender_id: 7,
            content_type: payload.content_type.clone(),
            body: payload.body.clone(),
            ..Direct::default()
        });
        assert_eq!(direct.sender_id(), 7);
        assert_eq!(direct.decode::<Reading>().unwrap(), reading());
    }
}
