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
use switchboard_proto::fields::Field;
use switchboard_proto::fields::same_bytes;
#[cfg(test)]
use switchboard_proto::packet::Message;
use switchboard_proto::packet::{Direct, MessageFields, MessageLayout, Scope, StreamStart};
use switchboard_proto::{Flags, Frame, ProtoError, Text};
use uuid::Uuid;

use crate::body::{BodyReader, BodyReceiver};
use crate::error::{PayloadError, Result};
use crate::shared::lock;

/// Content type of [`Payload::text`].
///
/// ```
/// use switchboard_client::{Payload, TEXT_PLAIN};
///
/// assert_eq!(Payload::text("hello").content_type, TEXT_PLAIN);
/// ```
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Content type of [`Payload::bytes`].
///
/// ```
/// use switchboard_client::{OCTET_STREAM, Payload};
///
/// assert_eq!(Payload::bytes(vec![0xde, 0xad]).content_type, OCTET_STREAM);
/// ```
pub const OCTET_STREAM: &str = "application/octet-stream";
/// Content type of [`Payload::json`].
///
/// ```
/// use switchboard_client::{JSON, Payload};
///
/// // Content types are plain strings: a JSON body made elsewhere.
/// let payload = Payload::with_content_type(JSON, r#"{"celsius":21.5}"#);
/// assert_eq!(payload, Payload::json(&serde_json::json!({ "celsius": 21.5 }))?);
/// # Ok::<(), switchboard_client::ClientError>(())
/// ```
pub const JSON: &str = "application/json";
/// Content type of [`Payload::msgpack`] and [`Payload::typed`].
///
/// ```
/// use switchboard_client::{MSGPACK, Payload};
///
/// assert_eq!(Payload::typed(&(1, "two"))?.content_type, MSGPACK);
/// # Ok::<(), switchboard_client::ClientError>(())
/// ```
pub const MSGPACK: &str = "application/msgpack";

/// A body to publish, with its content type and user headers.
///
/// ```
/// use switchboard_client::Payload;
///
/// let payload = Payload::text("deploy finished #ops").with_header("host", "web-1");
/// assert_eq!(&payload.body[..], b"deploy finished #ops");
/// assert_eq!(payload.headers[0].0, "host");
/// ```
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
    ///
    /// ```
    /// use switchboard_client::Payload;
    ///
    /// let payload = Payload::text("release 1.2 is out #rust #release");
    /// assert_eq!(payload.content_type, "text/plain; charset=utf-8");
    /// ```
    pub fn text(text: &str) -> Payload {
        Payload::with_content_type(TEXT_PLAIN, Bytes::copy_from_slice(text.as_bytes()))
    }

    /// Opaque bytes (`application/octet-stream`).
    ///
    /// ```
    /// use switchboard_client::Payload;
    ///
    /// let frame: Vec<u8> = vec![0x01, 0x02, 0xff];
    /// let payload = Payload::bytes(frame);
    /// assert_eq!(payload.body.len(), 3);
    /// ```
    pub fn bytes(body: impl Into<Bytes>) -> Payload {
        Payload::with_content_type(OCTET_STREAM, body)
    }

    /// `value` as JSON (`application/json`).
    ///
    /// ```
    /// use serde::Serialize;
    /// use switchboard_client::Payload;
    ///
    /// #[derive(Serialize)]
    /// struct Reading {
    ///     sensor: &'static str,
    ///     celsius: f64,
    /// }
    ///
    /// let payload = Payload::json(&Reading { sensor: "hall", celsius: 21.5 })?;
    /// assert_eq!(&payload.body[..], br#"{"sensor":"hall","celsius":21.5}"#);
    /// # Ok::<(), switchboard_client::ClientError>(())
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        let body = serde_json::to_vec(value).map_err(PayloadError::from)?;
        Ok(Payload::with_content_type(JSON, body))
    }

    /// `value` as MessagePack with named fields (`application/msgpack`), so that readers
    /// in other languages see a map rather than a bare array.
    ///
    /// ```
    /// use serde::Serialize;
    /// use switchboard_client::{MSGPACK, Payload};
    ///
    /// #[derive(Serialize)]
    /// struct Reading {
    ///     sensor: &'static str,
    ///     celsius: f64,
    /// }
    ///
    /// let payload = Payload::msgpack(&Reading { sensor: "hall", celsius: 21.5 })?;
    /// assert_eq!(payload.content_type, MSGPACK);
    /// # Ok::<(), switchboard_client::ClientError>(())
    /// ```
    pub fn msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        let body = rmp_serde::to_vec_named(value).map_err(PayloadError::from)?;
        Ok(Payload::with_content_type(MSGPACK, body))
    }

    /// The default encoding for serde types: MessagePack (compact, and
    /// [`ReceivedMessage::decode`] reads it back).
    ///
    /// ```
    /// use serde::Serialize;
    /// use switchboard_client::Payload;
    ///
    /// #[derive(Serialize)]
    /// enum Command {
    ///     Restart { service: String },
    /// }
    ///
    /// let payload = Payload::typed(&Command::Restart { service: "web".into() })?;
    /// assert_eq!(payload, Payload::msgpack(&Command::Restart { service: "web".into() })?);
    /// # Ok::<(), switchboard_client::ClientError>(())
    /// ```
    pub fn typed<T: Serialize + ?Sized>(value: &T) -> Result<Payload> {
        Payload::msgpack(value)
    }

    /// A body with an explicit content type.
    ///
    /// ```
    /// use switchboard_client::Payload;
    ///
    /// let csv = "sensor,celsius\nhall,21.5\n";
    /// let payload = Payload::with_content_type("text/csv", csv);
    /// assert_eq!(payload.content_type, "text/csv");
    /// ```
    pub fn with_content_type(content_type: impl Into<Text>, body: impl Into<Bytes>) -> Payload {
        Payload {
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a user header.
    ///
    /// ```
    /// use switchboard_client::Payload;
    ///
    /// let payload = Payload::text("backup done")
    ///     .with_header("host", "db-2")
    ///     .with_header("trace-id", "4bf92f35");
    /// assert_eq!(payload.headers.len(), 2);
    /// ```
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
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use switchboard_client::Replay;
/// use futures::StreamExt;
///
/// let mut chat = client.subscribe("chat.>", Replay::None).await?;
/// while let Some(message) = chat.next().await {
///     let message = message?;
///     println!(
///         "[{}] {} #{}: {}",
///         message.channel(),
///         message.sender_name(),
///         message.seq(),
///         message.text().unwrap_or("<binary>"),
///     );
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// Shared with the messages before it that had the same three names (see
    /// [`NamesCache`]): one count to raise instead of three texts to clone.
    names: Arc<MessageNames>,
    body: Bytes,
    id: Uuid,
    seq: u64,
    time_us: u64,
    sender_id: u64,
    /// What few messages carry. Kept out of line so that a message stays small: every
    /// message is moved several times on its way from the socket to its consumer.
    extras: Option<Arc<Extras>>,
    scope: Scope,
    replay: bool,
}

/// The texts of a message that the messages of a subscription usually share.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MessageNames {
    channel: Text,
    sender_name: Text,
    content_type: Text,
}

/// The parts of a message that most messages lack.
#[derive(Debug, Default)]
struct Extras {
    user_headers: Vec<(Text, Text)>,
    stream: Option<StreamStart>,
    /// The channel a streamed body arrives through, until a reader takes it.
    receiver: Option<Mutex<Option<BodyReceiver>>>,
}

impl ReceivedMessage {
    fn user_headers(&self) -> &[(Text, Text)] {
        self.extras
            .as_ref()
            .map_or(&[], |extras| &extras.user_headers)
    }

    /// The start of a streamed body, if the body is streamed.
    pub(crate) fn stream_start(&self) -> Option<StreamStart> {
        self.extras.as_ref().and_then(|extras| extras.stream)
    }
}

impl Extras {
    /// The extras of a message with these parts; none for the usual message.
    fn of(user_headers: Vec<(Text, Text)>, stream: Option<StreamStart>) -> Option<Arc<Extras>> {
        (!user_headers.is_empty() || stream.is_some()).then(|| {
            Arc::new(Extras {
                user_headers,
                stream,
                receiver: None,
            })
        })
    }
}

impl PartialEq for ReceivedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
            && self.body == other.body
            && self.id == other.id
            && self.seq == other.seq
            && self.time_us == other.time_us
            && self.sender_id == other.sender_id
            && self.scope == other.scope
            && self.replay == other.replay
            && self.user_headers() == other.user_headers()
            && self.stream_start() == other.stream_start()
    }
}

impl Eq for ReceivedMessage {}

/// The last names a connection's reader decoded, shared with the next message whose
/// names are the same bytes: a subscription's messages mostly come from one channel,
/// sender and content type, and comparing the bytes costs less than slicing and
/// checking them again. The cache holds copies of its own, so that it keeps no read
/// buffer alive.
///
/// It also keeps the CHANNEL field and the tail of the last message when its header
/// block is in the hub's usual layout ([`MessageLayout`]): a next message whose block
/// has the same bytes there is read by position, its names taken from here unread.
#[derive(Debug, Default)]
pub(crate) struct NamesCache {
    last: Arc<MessageNames>,
    /// The CHANNEL field and tail of the block `last` came from, if it was in the
    /// usual layout.
    layout: KeptLayout,
}

/// The parts of the last header block that messages alike share (buffers kept from one
/// message to the next, not made again).
#[derive(Debug, Default)]
struct KeptLayout {
    usual: bool,
    channel_field: Vec<u8>,
    tail: Vec<u8>,
}

impl NamesCache {
    /// The names of a block in the usual layout whose CHANNEL field and tail are those
    /// of the last message decoded.
    #[inline]
    fn alike(&self, layout: &MessageLayout<'_>) -> Option<Arc<MessageNames>> {
        let kept = &self.layout;
        (kept.usual
            && same_bytes(&kept.channel_field, layout.channel_field)
            && same_bytes(&kept.tail, layout.tail))
        .then(|| self.last.clone())
    }

    /// Keeps the layout of the block just decoded in full, whose names are now `last`;
    /// `None` (not the usual layout) forgets the one kept.
    fn keep_layout(&mut self, layout: Option<&MessageLayout<'_>>) {
        let kept = &mut self.layout;
        let Some(layout) = layout else {
            kept.usual = false;
            return;
        };
        kept.usual = true;
        kept.channel_field.clear();
        kept.channel_field.extend_from_slice(layout.channel_field);
        kept.tail.clear();
        kept.tail.extend_from_slice(layout.tail);
    }

    fn names(
        &mut self,
        fields: &MessageFields<'_>,
    ) -> std::result::Result<Arc<MessageNames>, ProtoError> {
        let sender_name = fields
            .sender_name
            .as_ref()
            .map_or(&b""[..], |field| field.value);
        let content_type = fields
            .content_type
            .as_ref()
            .map_or(&b""[..], |field| field.value);
        let last = &self.last;
        let same_channel = last.channel.as_bytes().as_ref() == fields.channel.value;
        let same_sender = last.sender_name.as_bytes().as_ref() == sender_name;
        let same_content_type = last.content_type.as_bytes().as_ref() == content_type;
        if same_channel && same_sender && same_content_type {
            return Ok(last.clone());
        }
        let copy = |kept: &Text, same: bool, field: Option<&Field<'_>>| match field {
            _ if same => Ok(kept.clone()),
            Some(field) => field.text().map(|text| Text::from(text.as_str())),
            None => Ok(Text::default()),
        };
        let names = MessageNames {
            channel: copy(&last.channel, same_channel, Some(&fields.channel))?,
            sender_name: copy(&last.sender_name, same_sender, fields.sender_name.as_ref())?,
            content_type: copy(
                &last.content_type,
                same_content_type,
                fields.content_type.as_ref(),
            )?,
        };
        self.last = Arc::new(names);
        Ok(self.last.clone())
    }
}

impl ReceivedMessage {
    /// Decodes a MESSAGE frame, whose content becomes the body; a streamed body is not
    /// attached yet (see [`ReceivedMessage::with_body_receiver`]).
    pub(crate) fn from_frame(
        frame: Frame,
        names: &mut NamesCache,
    ) -> std::result::Result<Self, ProtoError> {
        let replay = frame.flags.contains(Flags::REPLAY);
        // A streamed body's fields are not in the usual layout.
        let layout = if frame.flags.contains(Flags::STREAM) {
            None
        } else {
            MessageLayout::read(&frame.headers)
        };
        if let Some(layout) = &layout
            && let Some(alike) = names.alike(layout)
        {
            return Ok(ReceivedMessage {
                names: alike,
                id: layout.id,
                seq: layout.seq,
                time_us: layout.time_us,
                sender_id: layout.sender_id,
                extras: None,
                scope: Scope::Channel,
                replay,
                body: frame.content,
            });
        }
        let fields = MessageFields::read(&frame)?;
        let cache = names;
        let names = cache.names(&fields)?;
        // Kept only when reading the block by position gives exactly what reading it in
        // full gave: then a block alike but for the middle fields reads the same way.
        let usual = layout.filter(|layout| {
            fields.scope == Scope::Channel
                && fields.user_headers.is_empty()
                && fields.stream.is_none()
                && (layout.id, layout.seq, layout.time_us, layout.sender_id)
                    == (fields.id, fields.seq, fields.time_us, fields.sender_id)
                && layout.tail_is_names()
        });
        cache.keep_layout(usual.as_ref());
        let MessageFields {
            scope,
            id,
            seq,
            time_us,
            sender_id,
            user_headers,
            stream,
            ..
        } = fields;
        Ok(ReceivedMessage {
            names,
            id,
            seq,
            time_us,
            sender_id,
            extras: Extras::of(user_headers, stream),
            scope,
            replay,
            // Moved, not shared: one reference count less to raise and drop.
            body: frame.content,
        })
    }

    /// Wraps a decoded MESSAGE; `replay` is its REPLAY flag.
    #[cfg(test)]
    pub(crate) fn new(message: Message, replay: bool) -> Self {
        let extras = Extras::of(message.user_headers, message.stream);
        ReceivedMessage {
            names: Arc::new(MessageNames {
                channel: message.channel,
                sender_name: message.sender_name,
                content_type: message.content_type,
            }),
            body: message.body,
            id: message.id,
            seq: message.seq,
            time_us: message.time_us,
            sender_id: message.sender_id,
            extras,
            scope: message.scope,
            replay,
        }
    }

    /// This streamed message with its body arriving through `receiver`, for one
    /// recipient of its own.
    pub(crate) fn with_body_receiver(&self, receiver: BodyReceiver) -> Self {
        let extras = Extras {
            user_headers: self.user_headers().to_vec(),
            stream: self.stream_start(),
            receiver: Some(Mutex::new(Some(receiver))),
        };
        ReceivedMessage {
            extras: Some(Arc::new(extras)),
            ..self.clone()
        }
    }

    /// Whether the body is streamed after the message (see the type's documentation).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(mut message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// if message.is_streamed() {
    ///     message.save_body_to("upload.bin", |_| {}).await?;
    /// } else {
    ///     println!("{}", message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_streamed(&self) -> bool {
        self.stream_start().is_some()
    }

    /// Length of the whole body: the announced length of a streamed body, else the
    /// length of [`ReceivedMessage::body`].
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// println!("{} bytes of {}", message.body_len(), message.content_type());
    /// # Ok(()) }
    /// ```
    pub fn body_len(&self) -> u64 {
        match self.stream_start() {
            Some(stream) => stream.total_len,
            None => self.body.len() as u64,
        }
    }

    /// A reader over the whole body: the streamed body as it arrives (checked against
    /// its length and SHA-256 digest at the end), or the body in memory.
    ///
    /// `None` if a streamed body was already taken (by this message or a clone).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(mut message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use tokio::io::AsyncReadExt;
    ///
    /// if let Some(mut body) = message.take_body_reader() {
    ///     let mut contents = Vec::new();
    ///     body.read_to_end(&mut contents).await?;
    ///     println!("{} bytes, length and digest checked", contents.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_body_reader(&mut self) -> Option<BodyReader> {
        let Some(start) = self.stream_start() else {
            return Some(BodyReader::memory(self.body.clone()));
        };
        let receiver = lock(self.extras.as_ref()?.receiver.as_ref()?).take()?;
        Some(BodyReader::streamed(
            self.body.clone(),
            receiver,
            start.total_len,
        ))
    }

    /// The body as an [`tokio::io::AsyncRead`]; see [`ReceivedMessage::take_body_reader`].
    /// If the body was already taken, every read fails.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let mut body = message.body_reader();
    /// tokio::io::copy(&mut body, &mut tokio::io::stdout()).await?;
    /// # Ok(()) }
    /// ```
    pub fn body_reader(mut self) -> BodyReader {
        let total_len = self.body_len();
        self.take_body_reader().unwrap_or_else(|| {
            BodyReader::unavailable("the streamed body was already taken", total_len)
        })
    }

    /// Writes the whole body to the file at `path` as it arrives, calling `progress`
    /// with the bytes written so far; returns the body's length. On any failure
    /// (including a length or digest mismatch) the file is removed.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(mut message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let len = message.save_body_to("report.pdf", |done| eprint!("\r{done} bytes")).await?;
    /// println!("saved {len} bytes");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// // Fetch the same message again later, by its id.
    /// let again = client.get_message(message.channel(), Some(message.id())).await?;
    /// assert_eq!(again.map(|found| found.id()), Some(message.id()));
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Sequence number in its channel or group, from 1.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use switchboard_client::Since;
    ///
    /// // What came after it.
    /// let newer = client.get_messages("chat.rust", Since::Seq(message.seq() + 1), None).await?;
    /// println!("{} newer messages", newer.len());
    /// # Ok(()) }
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The texts this message shares with the others the reader decoded while they
    /// repeated: equal pointers mean equal names.
    pub(crate) fn shared_names(&self) -> &Arc<MessageNames> {
        &self.names
    }

    /// The channel or group it was published to.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// if message.channel().starts_with("alerts.") {
    ///     eprintln!("ALERT: {}", message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn channel(&self) -> &str {
        &self.names.channel
    }

    /// Whether it lives in a channel or a group.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use switchboard_client::Scope;
    ///
    /// let place = match message.scope() {
    ///     Scope::Group => "group",
    ///     _ => "channel",
    /// };
    /// println!("in {place} {}", message.channel());
    /// # Ok(()) }
    /// ```
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Server time of the publish.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let age = message.time().elapsed().unwrap_or_default();
    /// println!("published {}s ago", age.as_secs());
    /// # Ok(()) }
    /// ```
    pub fn time(&self) -> SystemTime {
        system_time(self.time_us)
    }

    /// Server time of the publish, in microseconds since the Unix epoch.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use switchboard_client::Since;
    ///
    /// // Everything published since this message, by time.
    /// let since = client.get_messages("chat.rust", Since::Time(message.time_us()), None).await?;
    /// println!("{} messages since", since.len());
    /// # Ok(()) }
    /// ```
    pub fn time_us(&self) -> u64 {
        self.time_us
    }

    /// Client id of the publisher.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// // Answer the publisher privately.
    /// client.relay(&[message.sender_id()], "got it", "text/plain").await?;
    /// # Ok(()) }
    /// ```
    pub fn sender_id(&self) -> u64 {
        self.sender_id
    }

    /// Session name of the publisher.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// if message.sender_name() != client.session().name {
    ///     println!("{} says {:?}", message.sender_name(), message.text());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sender_name(&self) -> &str {
        &self.names.sender_name
    }

    /// MIME type of the body (empty if the publisher gave none).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use switchboard_client::JSON;
    ///
    /// if message.content_type() == JSON {
    ///     let value: serde_json::Value = message.decode()?;
    ///     println!("{value:#}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn content_type(&self) -> &str {
        &self.names.content_type
    }

    /// User headers, in the order they were published.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// for (name, value) in message.headers() {
    ///     println!("{name}: {value}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn headers(&self) -> &[(Text, Text)] {
        self.user_headers()
    }

    /// The first user header called `name`.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let trace = message.header("trace-id").unwrap_or("-");
    /// println!("trace {trace}");
    /// # Ok(()) }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(self.user_headers(), name)
    }

    /// The raw body (of a streamed body, only the part in the MESSAGE frame).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// let body: &[u8] = message.body();
    /// std::fs::write("last-message.bin", body)?;
    /// # Ok(()) }
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text, if it is valid UTF-8 (whatever the content type says). Of a
    /// streamed body, only the part in the MESSAGE frame.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// match message.text() {
    ///     Some(text) => println!("{text}"),
    ///     None => println!("<{} bytes of binary>", message.body_len()),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body as `T`: MessagePack or JSON according to the content type; any other
    /// content type is an error. Of a streamed body, only the part in the MESSAGE frame
    /// is seen: read those with [`ReceivedMessage::body_reader`].
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # let Some(message) = client.get_message("chat.rust", None).await? else { return Ok(()) };
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Reading {
    ///     sensor: String,
    ///     celsius: f64,
    /// }
    ///
    /// let reading: Reading = message.decode()?;
    /// println!("{}: {} °C", reading.sensor, reading.celsius);
    /// # Ok(()) }
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        decode_body(&self.names.content_type, &self.body)
    }

    /// Whether it came from history (replay or fetch) rather than live delivery.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    /// use switchboard_client::Replay;
    ///
    /// let mut chat = client.subscribe("chat.rust", Replay::Last(20)).await?;
    /// while let Some(message) = chat.next().await {
    ///     let message = message?;
    ///     let marker = if message.is_replay() { "(history)" } else { "" };
    ///     println!("{marker} {}", message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_replay(&self) -> bool {
        self.replay
    }
}

/// A body relayed to this client by another one.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use futures::StreamExt;
///
/// let mut directs = client.direct_feed()?;
/// while let Some(direct) = directs.next().await {
///     println!("{} (client {}): {:?}", direct.sender_name(), direct.sender_id(), direct.text());
/// }
/// # Ok(()) }
/// ```
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
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// // Answer the sender.
    /// client.relay(&[direct.sender_id()], "pong", "text/plain").await?;
    /// # Ok(()) }
    /// ```
    pub fn sender_id(&self) -> u64 {
        self.direct.sender_id
    }

    /// Session name of the sender.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// println!("private message from {}", direct.sender_name());
    /// # Ok(()) }
    /// ```
    pub fn sender_name(&self) -> &str {
        &self.direct.sender_name
    }

    /// Server time of the relay.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// let delay = direct.time().elapsed().unwrap_or_default();
    /// println!("relayed {} ms ago", delay.as_millis());
    /// # Ok(()) }
    /// ```
    pub fn time(&self) -> SystemTime {
        system_time(self.direct.time_us)
    }

    /// Server time of the relay, in microseconds since the Unix epoch.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// let mut inbox = vec![direct];
    /// inbox.sort_by_key(|direct| direct.time_us());
    /// # Ok(()) }
    /// ```
    pub fn time_us(&self) -> u64 {
        self.direct.time_us
    }

    /// MIME type of the body (empty if the sender gave none).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// if direct.content_type().starts_with("text/") {
    ///     println!("{}", direct.text().unwrap_or("<not UTF-8>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn content_type(&self) -> &str {
        &self.direct.content_type
    }

    /// The raw body.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// println!("{} bytes: {:02x?}", direct.body().len(), &direct.body()[..]);
    /// # Ok(()) }
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.direct.body
    }

    /// The body as text, if it is valid UTF-8.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// if let Some(text) = direct.text() {
    ///     println!("{}: {text}", direct.sender_name());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.direct.body).ok()
    }

    /// The body as `T`: MessagePack or JSON according to the content type.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// # use futures::StreamExt;
    /// # let mut directs = client.direct_feed()?;
    /// # let Some(direct) = directs.next().await else { return Ok(()) };
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Invite {
    ///     group: String,
    /// }
    ///
    /// let invite: Invite = direct.decode()?;
    /// client.join_group(&invite.group).await?;
    /// # Ok(()) }
    /// ```
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

    /// `message` as the server sends it: encoded and decoded back into a frame.
    fn frame_of(message: &Message, flags: Flags) -> Frame {
        use bytes::BytesMut;
        use switchboard_proto::{FrameCodec, Limits};
        use tokio_util::codec::Decoder;

        let mut codec = FrameCodec::new(Limits::default());
        let mut buffer = BytesMut::new();
        codec.encode_packet(0, flags, message, &mut buffer).unwrap();
        codec.decode(&mut buffer).unwrap().unwrap()
    }

    #[test]
    fn messages_alike_share_their_names_and_decode_as_the_packet_does() {
        let mut cache = NamesCache::default();
        let mut previous: Option<ReceivedMessage> = None;
        for (seq, (channel, sender, content_type, shared)) in [
            ("chat.rust", "ada", "text/plain", false),
            ("chat.rust", "ada", "text/plain", true),
            ("chat.rust", "", "text/plain", false),
            ("chat.zig", "bob", "", false),
            ("chat.zig", "bob", "", true),
            ("chat.rust", "ada", "text/plain", false),
        ]
        .into_iter()
        .enumerate()
        {
            let message = Message {
                channel: channel.into(),
                id: Uuid::now_v7(),
                seq: seq as u64 + 1,
                time_us: 1_700_000_000_000_000 + seq as u64,
                sender_id: 7,
                sender_name: sender.into(),
                content_type: content_type.into(),
                user_headers: if seq == 3 {
                    vec![("lang".into(), "en".into())]
                } else {
                    Vec::new()
                },
                body: Bytes::from_static(b"hello"),
                ..Message::default()
            };
            let flags = if seq % 2 == 0 {
                Flags::REPLAY
            } else {
                Flags::empty()
            };
            let received =
                ReceivedMessage::from_frame(frame_of(&message, flags), &mut cache).unwrap();
            assert_eq!(received, ReceivedMessage::new(message, seq % 2 == 0));
            assert_eq!(received.sender_name(), sender);
            assert_eq!(received.header("lang"), (seq == 3).then_some("en"));
            if let Some(previous) = &previous {
                assert_eq!(
                    Arc::ptr_eq(&previous.names, &received.names),
                    shared,
                    "message {seq}"
                );
            }
            previous = Some(received);
        }
    }

    #[test]
    fn names_that_are_not_utf8_are_refused_even_after_good_ones() {
        let good = Message {
            channel: "ok".into(),
            id: Uuid::now_v7(),
            seq: 1,
            ..Message::default()
        };
        let mut cache = NamesCache::default();
        assert!(ReceivedMessage::from_frame(frame_of(&good, Flags::empty()), &mut cache).is_ok());
        let mut frame = frame_of(&good, Flags::empty());
        // The channel's value, in the header block, replaced by bytes that are not UTF-8.
        let mut headers = frame.headers.to_vec();
        let at = headers.windows(2).position(|pair| pair == b"ok").unwrap();
        headers[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
        frame.headers = Bytes::from(headers);
        assert!(ReceivedMessage::from_frame(frame, &mut cache).is_err());
    }

    #[test]
    fn a_block_alike_but_for_its_middle_is_read_by_position_as_in_full() {
        let message = |seq: u64| Message {
            channel: "chat.rust".into(),
            id: Uuid::now_v7(),
            seq,
            time_us: 1_700_000_000_000_000 + seq,
            sender_id: 7 + seq,
            sender_name: "ada".into(),
            content_type: "text/plain".into(),
            body: Bytes::from_static(b"hello"),
            ..Message::default()
        };
        let mut cache = NamesCache::default();
        for seq in 1..=3 {
            let sent = message(seq);
            let received =
                ReceivedMessage::from_frame(frame_of(&sent, Flags::empty()), &mut cache).unwrap();
            assert_eq!(received, ReceivedMessage::new(sent, false));
        }
        assert!(cache.layout.usual);

        // A second SEQ field after the names, the same as the first in the first
        // message: a full read takes the last one. A block like that is never kept as
        // a layout, so the next one, alike but for its first SEQ, is read in full too.
        let mut cache = NamesCache::default();
        for seq in [10, 11] {
            let mut frame = frame_of(&message(seq), Flags::empty());
            let mut headers = frame.headers.to_vec();
            headers.extend_from_slice(&[switchboard_proto::fields::key::SEQ, 1, 10]);
            frame.headers = Bytes::from(headers);
            let received = ReceivedMessage::from_frame(frame, &mut cache).unwrap();
            assert_eq!(received.seq(), 10, "message {seq}");
            assert!(!cache.layout.usual);
        }
    }

    #[test]
    fn a_message_stays_small_enough_to_move_without_a_call() {
        // Moves of up to 128 bytes are compiled inline; a message is moved several
        // times between the socket and its consumer.
        assert!(std::mem::size_of::<ReceivedMessage>() <= 128);
    }

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
