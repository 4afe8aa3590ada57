//! A channel's data in Redis: its metadata, its history stream, the index of all
//! channels, and the hashtag streams its messages feed.
//!
//! Every call is one command or one script, so each is atomic on the Redis side: an
//! append assigns seq, time and epoch, trims, publishes live and indexes tags together;
//! a read sees epoch, bounds and entries of one moment. Payloads are opaque encoded
//! frames, stored and returned as given. The calls only talk to Redis: bounding their
//! time and reconnecting are the caller's.

use std::sync::LazyLock;

use bytes::Bytes;
use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};

use crate::{BackplaneError, Keys};

static CREATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/channel_create.lua")));
static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/channel_delete.lua")));
static APPEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/channel_append.lua")));
static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/channel_read.lua")));
static TRIM_AGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/channel_trim_age.lua")));
static TAG_READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/tag_read.lua")));

/// The most entries one read asks for: counts pass through Lua numbers, which print
/// exactly only up to 14 digits, and no page is anywhere near this.
const MAX_COUNT: u64 = u32::MAX as u64;

/// The largest stream length Redis takes for MAXLEN (a signed 64-bit count); any
/// larger limit means the same: none in practice.
const MAX_LENGTH: u64 = i64::MAX as u64;

/// What is stored about a channel besides its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMeta {
    /// The options it was created with, as given to [`create`] or [`Append`].
    pub options: Bytes,
    /// The incarnation id: new at every creation, so that a deleted and re-created
    /// channel is told from the old one.
    pub cid: u64,
    /// The epoch its seqs belong to.
    pub epoch: u64,
    /// The seq of its newest message, 0 before the first.
    pub top_seq: u64,
}

/// Creates the channel `name` with `options` unless it exists. Returns what is stored
/// and whether it was created now; an existing channel is returned unchanged (the
/// generation rule is left to the next [`append`] or [`read`], which report the epoch
/// it gives).
pub async fn create(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    options: &[u8],
    new_epoch: u64,
    generation: u64,
) -> Result<(ChannelMeta, bool), BackplaneError> {
    let reply: Value = CREATE
        .key(keys.channel_meta(name))
        .key(keys.channel_stream(name))
        .key(keys.channels())
        .arg(options)
        .arg(new_cid())
        .arg(new_epoch)
        .arg(generation)
        .arg(name)
        .invoke_async(conn)
        .await?;
    let [created, options, cid, epoch, top_seq] = fields(reply, "channel create")?;
    let meta = ChannelMeta {
        options: bytes(options, "channel options")?,
        cid: number(&cid, "channel cid")?,
        epoch: number(&epoch, "channel epoch")?,
        top_seq: number(&top_seq, "channel top seq")?,
    };
    Ok((meta, flag(&created, "channel created")?))
}

/// What is stored about the channel `name`, or `None` if there is no such channel. The
/// epoch is as stored: an older generation's is replaced by the next [`append`] or
/// [`read`].
pub async fn meta(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
) -> Result<Option<ChannelMeta>, BackplaneError> {
    let reply: Value = redis::cmd("HMGET")
        .arg(keys.channel_meta(name))
        .arg("o")
        .arg("cid")
        .arg("e")
        .arg("s")
        .query_async(conn)
        .await?;
    let [options, cid, epoch, top_seq] = fields(reply, "channel meta")?;
    if cid == Value::Nil {
        return Ok(None);
    }
    Ok(Some(ChannelMeta {
        options: bytes(options, "channel options")?,
        cid: number(&cid, "channel cid")?,
        epoch: number(&epoch, "channel epoch")?,
        top_seq: number(&top_seq, "channel top seq")?,
    }))
}

/// Deletes the channel `name`: its metadata, history and index entry, and publishes
/// its tombstone after its last message. Returns the deleted incarnation's cid, or
/// `None` if there was no such channel.
pub async fn delete(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
) -> Result<Option<u64>, BackplaneError> {
    let reply: Value = DELETE
        .key(keys.channel_meta(name))
        .key(keys.channel_stream(name))
        .key(keys.channels())
        .arg(name)
        .arg(keys.channel_topic(name))
        .invoke_async(conn)
        .await?;
    match reply {
        Value::Nil => Ok(None),
        cid => Ok(Some(number(&cid, "deleted channel cid")?)),
    }
}

/// Up to `limit` channel names in name (byte) order, after `after` if given.
pub async fn list(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, BackplaneError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let start = match after {
        Some(after) => format!("({after}"),
        None => "-".to_owned(),
    };
    let names: Value = redis::cmd("ZRANGEBYLEX")
        .arg(keys.channels())
        .arg(start)
        .arg("+")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(conn)
        .await?;
    array(names, "channel list")?
        .into_iter()
        .map(|name| string(name, "channel name"))
        .collect()
}

/// One message to append, with the channel's rules that apply to it.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub name: &'a str,
    /// The incarnation the node knows; 0 creates the channel with `default_options`
    /// when it is missing (an implicit create).
    pub cid: u64,
    pub default_options: &'a [u8],
    /// The backplane generation the node's connection belongs to.
    pub generation: u64,
    /// The epoch the channel gets if it is created or its generation is older.
    pub new_epoch: u64,
    pub now_us: u64,
    /// How many messages the stream keeps; 0 for no limit.
    pub max_len: u64,
    /// How many body bytes the stream keeps (the newest message always stays); 0 for
    /// no limit.
    pub max_bytes: u64,
    pub id: [u8; 16],
    /// The encoded frame, stored and published as given.
    pub payload: &'a [u8],
    /// The body's length, which the byte budget counts.
    pub body_len: u64,
    /// Each tag's stream gets the message, and each tag's topic its live payload (once
    /// per distinct tag).
    pub tags: &'a [String],
    /// How many entries a tag stream keeps; 0 for no limit.
    pub tag_max_len: u64,
}

/// What the append script assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub epoch: u64,
    pub time_us: u64,
    /// The channel's incarnation (new if `created`).
    pub cid: u64,
    /// The channel was missing and this append created it (with a fresh epoch).
    pub created: bool,
    /// The channel's stored generation was older than the node's: it got a new epoch
    /// and its seqs go on.
    pub new_epoch: bool,
}

/// Why a message was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The channel is gone, or is another incarnation than the one the node named.
    #[error("the channel was deleted")]
    Deleted,
    /// The channel was written under a newer backplane generation than the node's: the
    /// node must handshake again before appending.
    #[error("the backplane generation moved on to {stored}")]
    StaleGeneration { stored: u64 },
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

impl From<redis::RedisError> for AppendError {
    fn from(error: redis::RedisError) -> Self {
        AppendError::Backplane(error.into())
    }
}

/// Appends one message to a channel, publishes it live on the channel topic and on
/// each tag's topic, and adds it to each tag's stream.
pub async fn append(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    message: &Append<'_>,
) -> Result<Appended, AppendError> {
    let command = append_command(keys, message);
    let reply = match command.query_async::<Value>(conn).await {
        Err(error) if is_noscript(&error) => {
            APPEND.load_async(conn).await?;
            command.query_async(conn).await?
        }
        other => other?,
    };
    appended(reply)
}

/// Appends messages in one pipeline (one write, one round trip): Redis runs them in
/// this order, each atomically, and each has its own outcome, in the same order.
///
/// Where the script was missing from Redis' cache (Redis restarted, or its scripts were
/// flushed), the appends it refused are sent again once the script is loaded, but only
/// when every append after the first refused one was refused too: sending a refused
/// append again after a later one was stored would change their order, so in that
/// (racy, rare) case the refused ones fail instead.
pub async fn append_many(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    messages: &[Append<'_>],
) -> Result<Vec<Result<Appended, AppendError>>, BackplaneError> {
    let commands: Vec<redis::Cmd> = messages
        .iter()
        .map(|message| append_command(keys, message))
        .collect();
    let mut outcomes = run_pipeline(conn, &commands).await?;
    let first_refused = outcomes
        .iter()
        .position(|outcome| matches!(outcome, Err(error) if is_noscript(error)));
    if let Some(first) = first_refused {
        let all_after_refused = outcomes[first..]
            .iter()
            .all(|outcome| matches!(outcome, Err(error) if is_noscript(error)));
        if all_after_refused {
            APPEND.load_async(conn).await?;
            let again = run_pipeline(conn, &commands[first..]).await?;
            outcomes.truncate(first);
            outcomes.extend(again);
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(reply) => appended(reply),
            Err(error) if is_noscript(&error) => {
                Err(AppendError::Backplane(BackplaneError::Unavailable(
                    "the append script was missing from Redis while other appends went on; retry"
                        .to_owned(),
                )))
            }
            Err(error) => Err(error.into()),
        })
        .collect())
}

async fn run_pipeline(
    conn: &mut MultiplexedConnection,
    commands: &[redis::Cmd],
) -> Result<Vec<redis::RedisResult<Value>>, BackplaneError> {
    let mut pipeline = redis::pipe();
    pipeline.ignore_errors();
    for command in commands {
        pipeline.add_command(command.clone());
    }
    let outcomes: Vec<redis::RedisResult<Value>> = pipeline.query_async(conn).await?;
    if outcomes.len() != commands.len() {
        return Err(BackplaneError::Reply(format!(
            "{} replies to a pipeline of {} appends",
            outcomes.len(),
            commands.len()
        )));
    }
    Ok(outcomes)
}

fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// The EVALSHA of the append script for `message`.
fn append_command(keys: &Keys, message: &Append<'_>) -> redis::Cmd {
    let name = message.name;
    // A tag named twice would index the message twice.
    let mut tags: Vec<&str> = message.tags.iter().map(String::as_str).collect();
    tags.sort_unstable();
    tags.dedup();
    let mut command = redis::cmd("EVALSHA");
    command
        .arg(APPEND.get_hash())
        .arg(3 + tags.len())
        .arg(keys.channel_meta(name))
        .arg(keys.channel_stream(name))
        .arg(keys.channels());
    for tag in &tags {
        command.arg(keys.tag_stream(tag));
    }
    command
        .arg(message.cid)
        .arg(message.default_options)
        .arg(message.generation)
        .arg(message.new_epoch)
        .arg(message.now_us)
        .arg(message.max_len.min(MAX_LENGTH))
        .arg(message.max_bytes)
        .arg(&message.id[..])
        .arg(message.payload)
        .arg(message.body_len)
        .arg(keys.channel_topic(name))
        .arg(new_cid())
        .arg(name)
        .arg(message.tag_max_len.min(MAX_LENGTH));
    for tag in &tags {
        command.arg(keys.tag_topic(tag));
    }
    command
}

/// What the append script answered.
fn appended(reply: Value) -> Result<Appended, AppendError> {
    let mut reply = array(reply, "append")?.into_iter();
    let status = reply.next().unwrap_or(Value::Nil);
    match text(&status) {
        Some(b"OK") => {}
        Some(b"DELETED") => return Err(AppendError::Deleted),
        Some(b"STALE_GEN") => {
            let stored = number(&reply.next().unwrap_or(Value::Nil), "stored generation")?;
            return Err(AppendError::StaleGeneration { stored });
        }
        _ => return Err(unexpected("append status", &status).into()),
    }
    let [seq, epoch, time, cid, created, new_epoch] =
        fields(Value::Array(reply.collect()), "append")?;
    Ok(Appended {
        seq: number(&seq, "appended seq")?,
        epoch: number(&epoch, "appended epoch")?,
        time_us: number(&time, "appended time")?,
        cid: number(&cid, "appended cid")?,
        created: flag(&created, "appended created")?,
        new_epoch: flag(&new_epoch, "appended new epoch")?,
    })
}

/// Where a read starts, or what it looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// From this seq on, oldest first.
    SinceSeq(u64),
    /// From the first message at or after this time (µs) on, oldest first.
    SinceTime(u64),
    /// The newest this many, oldest first.
    Last(u64),
    /// The newest one.
    Latest,
    /// The message with this id.
    ById([u8; 16]),
}

impl Query {
    /// The script's mode and argument.
    fn mode(&self) -> (&'static str, Vec<u8>) {
        match *self {
            Query::SinceSeq(seq) => ("seq", seq.to_string().into_bytes()),
            Query::SinceTime(time) => ("time", time.to_string().into_bytes()),
            Query::Last(count) => ("last", count.min(MAX_COUNT).to_string().into_bytes()),
            Query::Latest => ("latest", Vec::new()),
            Query::ById(id) => ("id", id.to_vec()),
        }
    }
}

/// One message of a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time_us: u64,
    pub id: [u8; 16],
    pub payload: Bytes,
}

/// A channel's history read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub epoch: u64,
    /// The oldest seq retained, 0 when none is.
    pub first_seq: u64,
    /// The newest seq ever assigned, 0 before the first message.
    pub top_seq: u64,
    /// What the query found, oldest first, at most `limit`.
    pub entries: Vec<Entry>,
}

/// Reads the channel `name`'s history: at most `limit` entries (0 reads only the
/// epoch and bounds). A channel written under an older `generation` gets `new_epoch`
/// first, as an append would give it. `None` if there is no such channel.
pub async fn read(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    query: Query,
    limit: u64,
    generation: u64,
    new_epoch: u64,
) -> Result<Option<Page>, BackplaneError> {
    let (mode, argument) = query.mode();
    let reply: Value = READ
        .key(keys.channel_meta(name))
        .key(keys.channel_stream(name))
        .arg(generation)
        .arg(new_epoch)
        .arg(mode)
        .arg(argument)
        .arg(limit.min(MAX_COUNT))
        .invoke_async(conn)
        .await?;
    if reply == Value::Nil {
        return Ok(None);
    }
    let [epoch, first_seq, top_seq, entries] = fields(reply, "channel read")?;
    let entries = array(entries, "channel read entries")?
        .into_iter()
        .map(entry)
        .collect::<Result<_, _>>()?;
    Ok(Some(Page {
        epoch: number(&epoch, "read epoch")?,
        first_seq: number(&first_seq, "read first seq")?,
        top_seq: number(&top_seq, "read top seq")?,
        entries,
    }))
}

/// Removes the channel's messages older than `max_age_us` at `now_us`, oldest first;
/// returns how many. A `max_age_us` of 0 means no age limit (nothing is removed).
pub async fn trim_age(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    max_age_us: u64,
    now_us: u64,
) -> Result<u64, BackplaneError> {
    if max_age_us == 0 {
        return Ok(0);
    }
    let cutoff = now_us.saturating_sub(max_age_us);
    let removed: Value = TRIM_AGE
        .key(keys.channel_meta(name))
        .key(keys.channel_stream(name))
        .arg(cutoff)
        .invoke_async(conn)
        .await?;
    number(&removed, "trimmed count")
}

/// One message in a tag's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    /// The channel it was published to.
    pub channel: String,
    pub seq: u64,
    pub epoch: u64,
    pub time_us: u64,
    pub id: [u8; 16],
    pub payload: Bytes,
}

/// Reads up to `limit` recent messages carrying `tag`, oldest first. A tag mixes
/// channels, so `SinceSeq` and `SinceTime` keep the entries at or past the point in
/// stream order rather than seeking to it; `ById` finds one message.
pub async fn tag_read(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    tag: &str,
    query: Query,
    limit: u64,
) -> Result<Vec<TagEntry>, BackplaneError> {
    let (mode, argument) = query.mode();
    let reply: Value = TAG_READ
        .key(keys.tag_stream(tag))
        .arg(mode)
        .arg(argument)
        .arg(limit.min(MAX_COUNT))
        .invoke_async(conn)
        .await?;
    array(reply, "tag read")?
        .into_iter()
        .map(tag_entry)
        .collect()
}

/// A random incarnation id in [1, 2^52), so that Lua can hold it as a number exactly
/// even though the scripts only ever treat it as a string.
fn new_cid() -> u64 {
    rand::rng().random_range(1..1 << 52)
}

/// A channel stream entry: `["<seq>-0", [field, value, ...]]`.
fn entry(value: Value) -> Result<Entry, BackplaneError> {
    let (stream_id, fields) = stream_entry(value)?;
    let seq = stream_id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| BackplaneError::Reply(format!("stream entry id {stream_id:?}")))?;
    let (mut time_us, mut id, mut payload) = (None, None, None);
    for (name, value) in fields {
        match name.as_slice() {
            b"t" => time_us = Some(number(&value, "entry time")?),
            b"i" => id = Some(message_id(&value)?),
            b"f" => payload = Some(bytes(value, "entry payload")?),
            _ => {}
        }
    }
    match (time_us, id, payload) {
        (Some(time_us), Some(id), Some(payload)) => Ok(Entry {
            seq,
            time_us,
            id,
            payload,
        }),
        _ => Err(BackplaneError::Reply(format!(
            "stream entry {stream_id} lacks a field"
        ))),
    }
}

/// A tag stream entry: `[auto id, [c, channel, q, seq, e, epoch, t, time, i, id, f,
/// payload]]`.
fn tag_entry(value: Value) -> Result<TagEntry, BackplaneError> {
    let (stream_id, fields) = stream_entry(value)?;
    let (mut channel, mut seq, mut epoch, mut time_us, mut id, mut payload) =
        (None, None, None, None, None, None);
    for (name, value) in fields {
        match name.as_slice() {
            b"c" => channel = Some(string(value, "tag entry channel")?),
            b"q" => seq = Some(number(&value, "tag entry seq")?),
            b"e" => epoch = Some(number(&value, "tag entry epoch")?),
            b"t" => time_us = Some(number(&value, "tag entry time")?),
            b"i" => id = Some(message_id(&value)?),
            b"f" => payload = Some(bytes(value, "tag entry payload")?),
            _ => {}
        }
    }
    match (channel, seq, epoch, time_us, id, payload) {
        (Some(channel), Some(seq), Some(epoch), Some(time_us), Some(id), Some(payload)) => {
            Ok(TagEntry {
                channel,
                seq,
                epoch,
                time_us,
                id,
                payload,
            })
        }
        _ => Err(BackplaneError::Reply(format!(
            "tag stream entry {stream_id} lacks a field"
        ))),
    }
}

/// A stream entry's field names with their values, in stored order.
type StreamFields = Vec<(Vec<u8>, Value)>;

/// A stream entry's id and its fields.
fn stream_entry(value: Value) -> Result<(String, StreamFields), BackplaneError> {
    let [stream_id, fields] = self::fields(value, "stream entry")?;
    let stream_id = string(stream_id, "stream entry id")?;
    let mut pairs = Vec::new();
    let mut flat = array(fields, "stream entry fields")?.into_iter();
    while let Some(name) = flat.next() {
        let Some(value) = flat.next() else {
            return Err(BackplaneError::Reply(format!(
                "stream entry {stream_id} has an odd field list"
            )));
        };
        pairs.push((bytes(name, "stream field name")?.to_vec(), value));
    }
    Ok((stream_id, pairs))
}

fn message_id(value: &Value) -> Result<[u8; 16], BackplaneError> {
    text(value)
        .and_then(|id| <[u8; 16]>::try_from(id).ok())
        .ok_or_else(|| unexpected("message id", value))
}

/// An array reply of exactly `N` elements.
fn fields<const N: usize>(value: Value, what: &str) -> Result<[Value; N], BackplaneError> {
    let items = array(value, what)?;
    let count = items.len();
    <[Value; N]>::try_from(items).map_err(|_| {
        BackplaneError::Reply(format!("{what}: {count} elements where {N} were expected"))
    })
}

fn array(value: Value, what: &str) -> Result<Vec<Value>, BackplaneError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unexpected(what, &other)),
    }
}

/// The bytes of a string reply.
fn text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn bytes(value: Value, what: &str) -> Result<Bytes, BackplaneError> {
    match value {
        Value::BulkString(bytes) => Ok(Bytes::from(bytes)),
        Value::SimpleString(text) => Ok(Bytes::from(text)),
        other => Err(unexpected(what, &other)),
    }
}

fn string(value: Value, what: &str) -> Result<String, BackplaneError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|_| BackplaneError::Reply(format!("{what}: not UTF-8"))),
        Value::SimpleString(text) => Ok(text),
        other => Err(unexpected(what, &other)),
    }
}

/// A non-negative integer, as an integer reply or as decimal text (Lua keeps epochs
/// and cids as strings).
fn number(value: &Value, what: &str) -> Result<u64, BackplaneError> {
    let parsed = match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        other => text(other)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .filter(|digits| !digits.starts_with('+'))
            .and_then(|digits| digits.parse().ok()),
    };
    parsed.ok_or_else(|| unexpected(what, value))
}

fn flag(value: &Value, what: &str) -> Result<bool, BackplaneError> {
    match value {
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        other => Err(unexpected(what, other)),
    }
}

fn unexpected(what: &str, value: &Value) -> BackplaneError {
    let mut shown = format!("{value:?}");
    if shown.len() > 120 {
        let mut end = 120;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    BackplaneError::Reply(format!("{what}: unexpected reply {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_as_integers_or_decimal_text() {
        assert_eq!(number(&Value::Int(5), "n").ok(), Some(5));
        assert_eq!(
            number(&Value::BulkString(b"4503599627370495".to_vec()), "n").ok(),
            Some((1 << 52) - 1)
        );
        for bad in [
            Value::Int(-1),
            Value::Nil,
            Value::BulkString(b"+5".to_vec()),
            Value::BulkString(b"1e5".to_vec()),
            Value::BulkString(Vec::new()),
        ] {
            assert!(
                matches!(number(&bad, "n"), Err(BackplaneError::Reply(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_malformed_entry_is_a_reply_error() {
        let id = Value::BulkString(b"3-0".to_vec());
        let bad = [
            Value::Nil,
            Value::Array(vec![id.clone()]),
            Value::Array(vec![
                id.clone(),
                Value::Array(vec![Value::BulkString(b"t".to_vec())]),
            ]),
            Value::Array(vec![id.clone(), Value::Array(Vec::new())]),
            Value::Array(vec![
                Value::BulkString(b"x".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"t".to_vec()),
                    Value::Int(1),
                    Value::BulkString(b"i".to_vec()),
                    Value::BulkString(vec![0; 16]),
                    Value::BulkString(b"f".to_vec()),
                    Value::BulkString(Vec::new()),
                ]),
            ]),
            Value::Array(vec![
                id,
                Value::Array(vec![
                    Value::BulkString(b"t".to_vec()),
                    Value::Int(1),
                    Value::BulkString(b"i".to_vec()),
                    Value::BulkString(vec![0; 15]),
                    Value::BulkString(b"f".to_vec()),
                    Value::BulkString(Vec::new()),
                ]),
            ]),
        ];
        for value in bad {
            assert!(
                matches!(entry(value.clone()), Err(BackplaneError::Reply(_))),
                "{value:?}"
            );
        }
    }
}
