//! Groups in Redis: the directory, members (with each user's reverse index), posts and
//! their live traffic, giving a cluster the behaviour one server has on its own.
//!
//! A group's keys (see [`Keys`]): the meta hash (`d` description, `o` creator, `cid`
//! incarnation id, `e` epoch, `g` generation, `s` top seq, `t` last time), the posts
//! stream (entry ids `<seq>-0`, fields `f` payload, `t` time, `i` message id, `n` payload
//! length), the members (a sorted set with every score 0, so that members page in name
//! order), each user's set of groups, and the index of every group's name.
//!
//! Joins, leaves, posts and the deletion are scripts that also publish on the group's
//! topic, so every node sees them in one order; the payloads are read with [`decode`].
//! Seq, time and epoch come from Redis, by the rules channels follow.
//!
//! Join, leave and delete update a user's set of groups in the same script as the
//! group's members, which standalone Redis and Sentinel allow; on Redis Cluster that set
//! is in another slot, so these scripts would need splitting there.

use std::sync::LazyLock;

use bytes::Bytes;
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::error::BackplaneError;
use crate::keys::Keys;

static CREATE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/group_create.lua")));
static DELETE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/group_delete.lua")));
static JOIN: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/group_join.lua")));
static LEAVE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/group_leave.lua")));
static POST: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/group_post.lua")));
static READ: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/group_read.lua")));

/// How many times a delete reads the members again when they changed under it.
const DELETE_ATTEMPTS: usize = 16;

/// Incarnation ids are below 2^52, like epochs, so that every client can hold them as a
/// plain number.
const CID_LIMIT: u64 = 1 << 52;

/// What Redis holds about a group, besides its members and posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    pub description: String,
    /// The user that created the group (empty when the session had no name).
    pub creator: String,
    /// Random at every creation: a post naming an older incarnation is refused.
    pub cid: u64,
    pub epoch: u64,
    /// The seq of the newest post (0 before the first).
    pub top_seq: u64,
    pub member_count: u64,
}

/// One page of the group directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPage {
    /// Groups in name order.
    pub groups: Vec<(String, GroupMeta)>,
    /// Where the next page starts (pass it as `after`), when more groups may follow.
    pub next: Option<String>,
}

/// The result of [`join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    AlreadyMember,
    NoSuchGroup,
}

/// The result of [`leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    Left,
    NotMember,
    NoSuchGroup,
}

/// A post to append.
#[derive(Debug, Clone, Copy)]
pub struct GroupPost<'a> {
    pub name: &'a str,
    /// The group incarnation the node knows; 0 accepts whichever exists.
    pub cid: u64,
    /// Only a member may post.
    pub sender_user: &'a str,
    /// The node's backplane generation.
    pub generation: u64,
    /// The epoch the group takes if `generation` is newer than the group's.
    pub new_epoch: u64,
    pub now_us: u64,
    /// How many posts the group keeps (0: no limit); exact, not approximate.
    pub max_len: u64,
    pub id: [u8; 16],
    /// The encoded message, opaque here.
    pub payload: &'a [u8],
}

/// Where Redis put a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub epoch: u64,
    pub time_us: u64,
    /// This post began a new epoch (the generation was newer than the group's).
    pub new_epoch: bool,
}

/// Why a post was not appended.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("only members may post to this group")]
    NotMember,
    /// The group is gone, or is another incarnation than the one the node knows.
    #[error("the group was deleted")]
    Deleted,
    /// The group has seen a newer generation than the node's: the node must handshake
    /// again before it posts.
    #[error("the node's backplane generation is older than the group's ({stored})")]
    StaleGeneration { stored: u64 },
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

// A group's posts are read with the same queries into the same shapes as a channel's
// messages.
pub use crate::channels::{Entry, Page, Query};

/// What a node receives on a group's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLive {
    Post {
        seq: u64,
        epoch: u64,
        time_us: u64,
        /// A slice of the received message, not a copy.
        payload: Bytes,
    },
    Joined(String),
    Left(String),
    Deleted {
        cid: u64,
    },
}

/// Reads a payload received on a group's topic.
pub fn decode(message: &Bytes) -> Result<GroupLive, BackplaneError> {
    let bad = || BackplaneError::Reply(format!("group message not understood: {message:?}"));
    let (tag, rest) = match message.as_ref() {
        [tag @ (b'J' | b'L' | b'D'), b':', rest @ ..] => (*tag, rest),
        _ => {
            let mut fields = message.splitn(4, |&byte| byte == b':');
            let mut number = || fields.next().and_then(parse_u64).ok_or_else(bad);
            let (seq, epoch, time_us) = (number()?, number()?, number()?);
            let Some(payload) = fields.next() else {
                return Err(bad());
            };
            let payload = message.slice_ref(payload);
            return Ok(GroupLive::Post {
                seq,
                epoch,
                time_us,
                payload,
            });
        }
    };
    match tag {
        b'D' => parse_u64(rest)
            .map(|cid| GroupLive::Deleted { cid })
            .ok_or_else(bad),
        _ => {
            let user = std::str::from_utf8(rest).map_err(|_| bad())?.to_owned();
            Ok(if tag == b'J' {
                GroupLive::Joined(user)
            } else {
                GroupLive::Left(user)
            })
        }
    }
}

/// The payload Redis publishes for a post, for tests and tools (the scripts build it).
pub fn encode_post(seq: u64, epoch: u64, time_us: u64, payload: &[u8]) -> Bytes {
    let mut message = format!("{seq}:{epoch}:{time_us}:").into_bytes();
    message.extend_from_slice(payload);
    message.into()
}

/// Creates a group unless one of that name exists; returns the group (the existing one,
/// unchanged, if it was not created) and whether it was created now.
pub async fn create(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    description: &str,
    creator: &str,
    new_epoch: u64,
    generation: u64,
) -> Result<(GroupMeta, bool), BackplaneError> {
    let cid = rand::random_range(1..CID_LIMIT);
    let reply: Value = CREATE
        .key(keys.group_meta(name))
        .key(keys.group_members(name))
        .key(keys.groups())
        .arg(name)
        .arg(description)
        .arg(creator)
        .arg(cid)
        .arg(new_epoch)
        .arg(generation)
        .invoke_async(conn)
        .await?;
    let reply = array(reply, "group create")?;
    let [
        created,
        description,
        creator,
        cid,
        epoch,
        top_seq,
        member_count,
    ] = fixed(reply, "group create")?;
    let meta = GroupMeta {
        description: text(description)?,
        creator: text(creator)?,
        cid: number(&cid)?,
        epoch: number(&epoch)?,
        top_seq: number(&top_seq)?,
        member_count: number(&member_count)?,
    };
    Ok((meta, number(&created)? == 1))
}

/// The group, if it exists.
pub async fn meta(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
) -> Result<Option<GroupMeta>, BackplaneError> {
    let mut metas = metas(conn, keys, &[name.to_owned()]).await?;
    Ok(metas.pop().flatten())
}

/// Each group's meta, in the order of `names`; `None` for a group that does not exist.
async fn metas(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    names: &[String],
) -> Result<Vec<Option<GroupMeta>>, BackplaneError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for name in names {
        pipe.cmd("HMGET")
            .arg(keys.group_meta(name))
            .arg(&["d", "o", "cid", "e", "s"])
            .cmd("ZCARD")
            .arg(keys.group_members(name));
    }
    let replies: Vec<Value> = pipe.query_async(conn).await?;
    if replies.len() != names.len() * 2 {
        return Err(BackplaneError::Reply(format!(
            "group metas: {} replies for {} groups",
            replies.len(),
            names.len()
        )));
    }
    let mut metas = Vec::with_capacity(names.len());
    let mut replies = replies.into_iter();
    while let (Some(fields), Some(member_count)) = (replies.next(), replies.next()) {
        let [description, creator, cid, epoch, top_seq] = fixed(array(fields, "HMGET")?, "HMGET")?;
        if cid == Value::Nil {
            metas.push(None);
            continue;
        }
        metas.push(Some(GroupMeta {
            description: text(description)?,
            creator: text(creator)?,
            cid: number(&cid)?,
            epoch: number(&epoch)?,
            top_seq: number(&top_seq)?,
            member_count: number(&member_count)?,
        }));
    }
    Ok(metas)
}

/// Deletes a group with its posts and members (and their reverse-index entries), and
/// publishes `D:<cid>` on its topic after every earlier post and member event. Returns
/// the deleted incarnation, `None` if there was no such group.
pub async fn delete(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
) -> Result<Option<u64>, BackplaneError> {
    for _ in 0..DELETE_ATTEMPTS {
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.group_members(name))
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        let mut invocation = DELETE.prepare_invoke();
        invocation
            .key(keys.group_meta(name))
            .key(keys.group_stream(name))
            .key(keys.group_members(name))
            .key(keys.groups())
            .arg(name)
            .arg(keys.group_topic(name));
        for member in &members {
            invocation.key(keys.user_groups(member)).arg(member);
        }
        let reply = array(invocation.invoke_async(conn).await?, "group delete")?;
        let mut reply = reply.into_iter();
        match reply.next().as_ref().map(number).transpose()? {
            Some(0) => return Ok(None),
            Some(1) => {
                let cid = reply.next().ok_or_else(|| short("group delete"))?;
                return Ok(Some(number(&cid)?));
            }
            Some(2) => continue,
            other => {
                return Err(BackplaneError::Reply(format!(
                    "group delete answered {other:?}"
                )));
            }
        }
    }
    Err(BackplaneError::Reply(format!(
        "the members of group {name} kept changing during {DELETE_ATTEMPTS} attempts to delete it"
    )))
}

/// A page of the group directory in name order, after the group named `after`.
pub async fn list(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    after: Option<&str>,
    limit: usize,
) -> Result<GroupPage, BackplaneError> {
    let names = range_by_name(conn, &keys.groups(), after, limit).await?;
    let next = if names.len() >= limit {
        names.last().cloned()
    } else {
        None
    };
    let metas = metas(conn, keys, &names).await?;
    // A group deleted between the two reads is left out.
    let groups = names
        .into_iter()
        .zip(metas)
        .filter_map(|(name, meta)| Some((name, meta?)))
        .collect();
    Ok(GroupPage { groups, next })
}

/// Names of a sorted set whose scores are all 0, in byte order, after `after`.
async fn range_by_name(
    conn: &mut MultiplexedConnection,
    key: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, BackplaneError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let min = match after {
        Some(after) => format!("({after}"),
        None => "-".to_owned(),
    };
    Ok(redis::cmd("ZRANGEBYLEX")
        .arg(key)
        .arg(min)
        .arg("+")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(conn)
        .await?)
}

/// Adds `user` to the group's members and publishes `J:<user>` on its topic (and the
/// join on the control topic), atomically.
pub async fn join(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    user: &str,
) -> Result<JoinOutcome, BackplaneError> {
    match membership(conn, keys, &JOIN, name, user).await? {
        0 => Ok(JoinOutcome::NoSuchGroup),
        1 => Ok(JoinOutcome::AlreadyMember),
        _ => Ok(JoinOutcome::Joined),
    }
}

/// Removes `user` from the group's members and publishes `L:<user>` on its topic,
/// atomically.
pub async fn leave(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    user: &str,
) -> Result<LeaveOutcome, BackplaneError> {
    match membership(conn, keys, &LEAVE, name, user).await? {
        0 => Ok(LeaveOutcome::NoSuchGroup),
        1 => Ok(LeaveOutcome::NotMember),
        _ => Ok(LeaveOutcome::Left),
    }
}

async fn membership(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    script: &redis::Script,
    name: &str,
    user: &str,
) -> Result<u64, BackplaneError> {
    let reply: Value = script
        .key(keys.group_meta(name))
        .key(keys.group_members(name))
        .key(keys.user_groups(user))
        .arg(name)
        .arg(user)
        .arg(keys.group_topic(name))
        .arg(keys.control_topic())
        .invoke_async(conn)
        .await?;
    match number(&reply)? {
        outcome @ 0..=2 => Ok(outcome),
        other => Err(BackplaneError::Reply(format!(
            "group membership answered {other}"
        ))),
    }
}

/// A page of the group's members in name order, after the member named `after`;
/// `None` if there is no such group.
pub async fn members(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Option<Vec<String>>, BackplaneError> {
    let min = match after {
        Some(after) => format!("({after}"),
        None => "-".to_owned(),
    };
    // One transaction, so that a group deleted meanwhile is not mistaken for an empty one.
    let (exists, members): (bool, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("EXISTS")
        .arg(keys.group_meta(name))
        .cmd("ZRANGEBYLEX")
        .arg(keys.group_members(name))
        .arg(min)
        .arg("+")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(conn)
        .await?;
    Ok(exists.then_some(members))
}

/// Whether `user` is a member of the group (false if there is no such group).
pub async fn is_member(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    user: &str,
) -> Result<bool, BackplaneError> {
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(keys.group_members(name))
        .arg(user)
        .query_async(conn)
        .await?;
    Ok(score.is_some())
}

/// The groups `user` is a member of, in name order.
pub async fn groups_of(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    user: &str,
) -> Result<Vec<String>, BackplaneError> {
    let mut groups: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.user_groups(user))
        .query_async(conn)
        .await?;
    groups.sort_unstable();
    Ok(groups)
}

/// Appends a member's post and publishes it on the group's topic; the membership check
/// and the append are one script, so no post of a user follows that user's leave.
pub async fn post(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    post: &GroupPost<'_>,
) -> Result<Appended, PostError> {
    let reply: Value = POST
        .key(keys.group_meta(post.name))
        .key(keys.group_stream(post.name))
        .key(keys.group_members(post.name))
        .arg(post.cid)
        .arg(post.sender_user)
        .arg(post.generation)
        .arg(post.new_epoch)
        .arg(post.now_us)
        .arg(post.max_len)
        .arg(&post.id[..])
        .arg(post.payload)
        .arg(keys.group_topic(post.name))
        .invoke_async(conn)
        .await
        .map_err(BackplaneError::from)?;
    let mut reply = array(reply, "group post")?.into_iter();
    let status = reply.next().ok_or_else(|| short("group post"))?;
    match bytes_of(&status)? {
        b"OK" => {
            let [seq, epoch, time_us, new_epoch] = fixed(reply.collect(), "group post")?;
            Ok(Appended {
                seq: number(&seq)?,
                epoch: number(&epoch)?,
                time_us: number(&time_us)?,
                new_epoch: number(&new_epoch)? == 1,
            })
        }
        b"NOT_MEMBER" => Err(PostError::NotMember),
        b"DELETED" => Err(PostError::Deleted),
        b"STALE_GEN" => {
            let stored = reply.next().ok_or_else(|| short("group post"))?;
            Err(PostError::StaleGeneration {
                stored: number(&stored)?,
            })
        }
        other => Err(BackplaneError::Reply(format!(
            "group post answered {:?}",
            String::from_utf8_lossy(other)
        ))
        .into()),
    }
}

/// Reads the group's posts in one snapshot; `None` if there is no such group. A
/// `generation` newer than the group's starts the epoch `new_epoch` first, as a post
/// would. Membership is not checked here.
pub async fn read(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    name: &str,
    query: Query,
    limit: u64,
    generation: u64,
    new_epoch: u64,
) -> Result<Option<Page>, BackplaneError> {
    let mut invocation = READ.prepare_invoke();
    invocation
        .key(keys.group_meta(name))
        .key(keys.group_stream(name));
    match query {
        Query::SinceSeq(seq) => invocation.arg("seq").arg(seq),
        Query::SinceTime(time) => invocation.arg("time").arg(time),
        Query::Last(count) => invocation.arg("last").arg(count),
        Query::Latest => invocation.arg("latest").arg(0),
        Query::ById(id) => invocation.arg("id").arg(&id[..]),
    };
    invocation.arg(limit).arg(generation).arg(new_epoch);
    let reply: Value = invocation.invoke_async(conn).await?;
    let mut reply = array(reply, "group read")?.into_iter();
    let status = reply.next().ok_or_else(|| short("group read"))?;
    match bytes_of(&status)? {
        b"NONE" => return Ok(None),
        b"OK" => {}
        other => {
            return Err(BackplaneError::Reply(format!(
                "group read answered {:?}",
                String::from_utf8_lossy(other)
            )));
        }
    }
    let [epoch, first_seq, top_seq, _new_epoch, entries] = fixed(reply.collect(), "group read")?;
    let entries = array(entries, "group read entries")?
        .into_iter()
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Page {
        epoch: number(&epoch)?,
        first_seq: number(&first_seq)?,
        top_seq: number(&top_seq)?,
        entries,
    }))
}

/// One stream entry as XRANGE gives it: `[id, [field, value, ...]]`.
fn entry(value: Value) -> Result<Entry, BackplaneError> {
    let [id, fields] = fixed(array(value, "stream entry")?, "stream entry")?;
    let id = bytes_of(&id)?;
    let seq = id
        .split(|&byte| byte == b'-')
        .next()
        .and_then(parse_u64)
        .ok_or_else(|| BackplaneError::Reply(format!("stream entry id {id:?}")))?;
    let mut time_us = None;
    let mut message_id = None;
    let mut payload = None;
    let mut fields = array(fields, "stream entry fields")?.into_iter();
    while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
        match bytes_of(&field)? {
            b"t" => time_us = Some(number(&value)?),
            b"i" => message_id = <[u8; 16]>::try_from(bytes_of(&value)?).ok(),
            b"f" => match value {
                Value::BulkString(payload_bytes) => payload = Some(Bytes::from(payload_bytes)),
                other => return Err(BackplaneError::Reply(format!("post payload {other:?}"))),
            },
            _ => {}
        }
    }
    match (time_us, message_id, payload) {
        (Some(time_us), Some(id), Some(payload)) => Ok(Entry {
            seq,
            time_us,
            id,
            payload,
        }),
        _ => Err(BackplaneError::Reply(format!(
            "stream entry {seq} lacks a field"
        ))),
    }
}

// Reading script replies; nodes.rs uses them too. A reply of another shape than the
// scripts promise is a `BackplaneError::Reply`, never a panic.

pub(crate) fn short(what: &str) -> BackplaneError {
    BackplaneError::Reply(format!("{what}: reply too short"))
}

pub(crate) fn array(value: Value, what: &str) -> Result<Vec<Value>, BackplaneError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(BackplaneError::Reply(format!(
            "{what}: expected an array, got {other:?}"
        ))),
    }
}

/// Exactly `N` items.
pub(crate) fn fixed<const N: usize>(
    items: Vec<Value>,
    what: &str,
) -> Result<[Value; N], BackplaneError> {
    let len = items.len();
    items
        .try_into()
        .map_err(|_| BackplaneError::Reply(format!("{what}: {len} items, expected {N}")))
}

pub(crate) fn bytes_of(value: &Value) -> Result<&[u8], BackplaneError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.as_bytes()),
        other => Err(BackplaneError::Reply(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

pub(crate) fn text(value: Value) -> Result<String, BackplaneError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|_| BackplaneError::Reply("a name or description is not UTF-8".to_owned())),
        Value::SimpleString(text) => Ok(text),
        other => Err(BackplaneError::Reply(format!(
            "expected text, got {other:?}"
        ))),
    }
}

/// A non-negative integer, sent by Redis as an integer or as decimal text.
pub(crate) fn number(value: &Value) -> Result<u64, BackplaneError> {
    match value {
        Value::Int(number) => u64::try_from(*number)
            .map_err(|_| BackplaneError::Reply(format!("negative number {number}"))),
        Value::BulkString(bytes) => parse_u64(bytes)
            .ok_or_else(|| BackplaneError::Reply(format!("not a number: {bytes:?}"))),
        Value::SimpleString(text) => parse_u64(text.as_bytes())
            .ok_or_else(|| BackplaneError::Reply(format!("not a number: {text:?}"))),
        other => Err(BackplaneError::Reply(format!(
            "expected a number, got {other:?}"
        ))),
    }
}

pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_payloads_decode() {
        let post = encode_post(7, 1 << 51, 1_700_000_000_000_000, b"a:b\xff");
        assert_eq!(
            decode(&post).unwrap(),
            GroupLive::Post {
                seq: 7,
                epoch: 1 << 51,
                time_us: 1_700_000_000_000_000,
                payload: Bytes::from_static(b"a:b\xff"),
            }
        );
        let empty = encode_post(1, 2, 3, b"");
        assert!(
            matches!(decode(&empty).unwrap(), GroupLive::Post { payload, .. } if payload.is_empty())
        );
        assert_eq!(
            decode(&Bytes::from_static(b"J:ann:x")).unwrap(),
            GroupLive::Joined("ann:x".to_owned())
        );
        assert_eq!(
            decode(&Bytes::from_static(b"L:")).unwrap(),
            GroupLive::Left(String::new())
        );
        assert_eq!(
            decode(&Bytes::from_static(b"D:42")).unwrap(),
            GroupLive::Deleted { cid: 42 }
        );
    }

    #[test]
    fn the_payload_of_a_post_is_a_slice_of_the_message() {
        let post = encode_post(1, 2, 3, b"body");
        let GroupLive::Post { payload, .. } = decode(&post).unwrap() else {
            panic!("not a post");
        };
        assert_eq!(payload.as_ptr(), post[post.len() - 4..].as_ptr());
    }

    #[test]
    fn bad_live_payloads_are_errors() {
        for bad in [
            &b""[..],
            b"J",
            b"D:",
            b"D:x",
            b"D:-1",
            b"1:2:3",
            b"1:2",
            b":1:2:x",
            b"1:x:3:body",
            b"99999999999999999999:1:1:x",
            b"L:\xff",
            b"Q:x",
        ] {
            let result = decode(&Bytes::copy_from_slice(bad));
            assert!(
                matches!(result, Err(BackplaneError::Reply(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }
}
