//! The node registry and the client directory in Redis.
//!
//! Each node takes an incarnation number at start (`INCR`); its client ids are
//! `incarnation << 32 | n`, so `id >> 32` names the node of any client. A node stays
//! registered while it heartbeats: its entry in the `nodes` sorted set is scored by
//! when it expires on the Redis clock, and its keys (info, client ids, client records)
//! expire with it, so a node that dies without a word leaves nothing behind after its
//! TTL. Listing clients walks the live nodes in incarnation order and each node's ids
//! in order, which is id order overall.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::error::BackplaneError;
use crate::groups::{array, bytes_of, fixed, number, parse_u64, text};
use crate::keys::Keys;

static REGISTER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/node_register.lua")));
static HEARTBEAT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/node_heartbeat.lua")));
static LIVE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/node_live.lua")));
static CLIENTS_PAGE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../lua/node_clients_page.lua")));

/// Incarnations stay below 2^21 so that client ids (`incarnation << 32 | n`) stay below
/// 2^53, which JavaScript clients read as plain numbers.
pub const INCARNATION_LIMIT: u64 = 1 << 21;

/// Past this incarnation a warning says the limit is near.
const INCARNATION_WARNING: u64 = 1 << 20;

/// Most client ids read in one script call (Lua's `unpack` has a bounded stack).
const CLIENTS_PER_CALL: usize = 1000;

/// What other nodes know of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Where the node link listens (bodies are fetched there).
    pub link_addr: String,
    pub started_us: u64,
    pub version: String,
}

/// What other nodes know of a connected client: enough to list it and to decide
/// whether a relay may reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: u64,
    pub name: String,
    pub user: String,
    pub connected_us: u64,
    pub receives_relay: bool,
}

impl ClientRecord {
    /// The node the client is connected to.
    pub fn incarnation(&self) -> u64 {
        self.id >> 32
    }

    /// `connected_us:relay:name_len:name` then the user, so that names may hold any
    /// character.
    fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}{}",
            self.connected_us,
            u8::from(self.receives_relay),
            self.name.len(),
            self.name,
            self.user
        )
    }

    fn decode(id: u64, record: &[u8]) -> Result<ClientRecord, BackplaneError> {
        let bad = || BackplaneError::Reply(format!("client record of {id} not understood"));
        let record = std::str::from_utf8(record).map_err(|_| bad())?;
        let mut fields = record.splitn(4, ':');
        let mut number = || {
            fields
                .next()
                .and_then(|field| parse_u64(field.as_bytes()))
                .ok_or_else(bad)
        };
        let (connected_us, relay, name_len) = (number()?, number()?, number()?);
        let rest = fields.next().ok_or_else(bad)?;
        let name_len = usize::try_from(name_len).map_err(|_| bad())?;
        if relay > 1 || !rest.is_char_boundary(name_len) {
            return Err(bad());
        }
        let (name, user) = rest.split_at(name_len);
        Ok(ClientRecord {
            id,
            name: name.to_owned(),
            user: user.to_owned(),
            connected_us,
            receives_relay: relay == 1,
        })
    }
}

/// Why the registry refused a node's request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "incarnation {incarnation} is not below 2^21, so client ids would pass 2^53; \
         the cluster's incarnation counter must be reset while no node runs"
    )]
    IncarnationsExhausted { incarnation: u64 },
    #[error("client {id} belongs to node {}, not to node {incarnation}", id >> 32)]
    ForeignClient { id: u64, incarnation: u64 },
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Takes a new incarnation and registers the node under it for `ttl`.
pub async fn register(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    info: &NodeInfo,
    ttl: Duration,
) -> Result<u64, NodeError> {
    let incarnation: u64 = redis::cmd("INCR")
        .arg(keys.incarnation())
        .query_async(conn)
        .await
        .map_err(BackplaneError::from)?;
    if incarnation >= INCARNATION_LIMIT {
        return Err(NodeError::IncarnationsExhausted { incarnation });
    }
    if incarnation >= INCARNATION_WARNING {
        tracing::warn!(
            incarnation,
            limit = INCARNATION_LIMIT,
            "node incarnations are nearing their limit"
        );
    }
    reregister(conn, keys, incarnation, info, ttl).await?;
    Ok(incarnation)
}

/// Registers the node again under the incarnation it has, after a heartbeat found it
/// expired; its clients must then be added again.
pub async fn reregister(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
    info: &NodeInfo,
    ttl: Duration,
) -> Result<(), BackplaneError> {
    let _expires: Value = REGISTER
        .key(keys.nodes())
        .key(keys.node_info(incarnation))
        .key(keys.node_clients(incarnation))
        .key(keys.node_client_info(incarnation))
        .key(keys.node_names(incarnation))
        .arg(incarnation)
        .arg(ttl_ms(ttl))
        .arg(&info.link_addr)
        .arg(info.started_us)
        .arg(&info.version)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// Keeps the node registered for another `ttl`, and drops expired nodes from the
/// registry. False if the node had expired: its keys are gone, and it must
/// [`reregister`] and add its clients again.
pub async fn heartbeat(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
    ttl: Duration,
) -> Result<bool, BackplaneError> {
    let renewed: Value = HEARTBEAT
        .key(keys.nodes())
        .key(keys.node_info(incarnation))
        .key(keys.node_clients(incarnation))
        .key(keys.node_client_info(incarnation))
        .key(keys.node_names(incarnation))
        .arg(incarnation)
        .arg(ttl_ms(ttl))
        .invoke_async(conn)
        .await?;
    Ok(number(&renewed)? == 1)
}

/// Removes the node and its clients at a clean stop.
pub async fn deregister(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
) -> Result<(), BackplaneError> {
    redis::pipe()
        .atomic()
        .cmd("ZREM")
        .arg(keys.nodes())
        .arg(incarnation)
        .ignore()
        .cmd("DEL")
        .arg(keys.node_info(incarnation))
        .arg(keys.node_clients(incarnation))
        .arg(keys.node_client_info(incarnation))
        .arg(keys.node_names(incarnation))
        .ignore()
        .exec_async(conn)
        .await?;
    Ok(())
}

/// Writes how many sessions of each name the node has now (0 removes the name); the
/// key lives as long as the node.
pub async fn set_names(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
    names: &[(String, usize)],
    ttl: Duration,
) -> Result<(), BackplaneError> {
    let key = keys.node_names(incarnation);
    let (present, gone): (Vec<_>, Vec<_>) = names.iter().partition(|(_, count)| *count > 0);
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !present.is_empty() {
        let hset = pipe.cmd("HSET").arg(&key);
        for (name, count) in &present {
            hset.arg(name).arg(*count);
        }
        hset.ignore();
    }
    if !gone.is_empty() {
        let hdel = pipe.cmd("HDEL").arg(&key);
        for (name, _) in &gone {
            hdel.arg(name);
        }
        hdel.ignore();
    }
    pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms(ttl)).ignore();
    pipe.exec_async(conn).await?;
    Ok(())
}

/// Whether each name has a session on some live node, in the order given.
pub async fn names_online(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    names: &[String],
) -> Result<Vec<bool>, BackplaneError> {
    let mut online = vec![false; names.len()];
    if names.is_empty() {
        return Ok(online);
    }
    let incarnations = live_incarnations(conn, keys).await?;
    if incarnations.is_empty() {
        return Ok(online);
    }
    let mut pipe = redis::pipe();
    for incarnation in &incarnations {
        pipe.cmd("HMGET")
            .arg(keys.node_names(*incarnation))
            .arg(names);
    }
    let replies: Vec<Value> = pipe.query_async(conn).await?;
    for reply in replies {
        let counts = array(reply, "node names")?;
        if counts.len() != names.len() {
            return Err(BackplaneError::Reply(format!(
                "node names: {} counts for {} names",
                counts.len(),
                names.len()
            )));
        }
        for (online, count) in online.iter_mut().zip(counts) {
            *online |= count != Value::Nil;
        }
    }
    Ok(online)
}

/// The incarnations of the live nodes, in order.
async fn live_incarnations(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> Result<Vec<u64>, BackplaneError> {
    let reply: Value = LIVE.key(keys.nodes()).invoke_async(conn).await?;
    let mut incarnations = array(reply, "live nodes")?
        .iter()
        .map(number)
        .collect::<Result<Vec<_>, _>>()?;
    incarnations.sort_unstable();
    Ok(incarnations)
}

/// The live nodes in incarnation order, with what they published of themselves.
pub async fn live_nodes(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
) -> Result<Vec<(u64, NodeInfo)>, BackplaneError> {
    let incarnations = live_incarnations(conn, keys).await?;
    if incarnations.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for incarnation in &incarnations {
        pipe.cmd("HMGET")
            .arg(keys.node_info(*incarnation))
            .arg(&["a", "s", "v"]);
    }
    let infos: Vec<Value> = pipe.query_async(conn).await?;
    if infos.len() != incarnations.len() {
        return Err(BackplaneError::Reply(format!(
            "node infos: {} replies for {} nodes",
            infos.len(),
            incarnations.len()
        )));
    }
    let mut nodes = Vec::with_capacity(incarnations.len());
    for (incarnation, info) in incarnations.into_iter().zip(infos) {
        let [link_addr, started_us, version] = fixed(array(info, "node info")?, "node info")?;
        // Expired between the two reads.
        if link_addr == Value::Nil {
            continue;
        }
        nodes.push((
            incarnation,
            NodeInfo {
                link_addr: text(link_addr)?,
                started_us: number(&started_us)?,
                version: text(version)?,
            },
        ));
    }
    Ok(nodes)
}

/// Publishes the node's clients (one round trip); their keys live as long as the node.
pub async fn add_clients(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
    clients: &[ClientRecord],
    ttl: Duration,
) -> Result<(), NodeError> {
    if let Some(foreign) = clients.iter().find(|c| c.incarnation() != incarnation) {
        return Err(NodeError::ForeignClient {
            id: foreign.id,
            incarnation,
        });
    }
    if clients.is_empty() {
        return Ok(());
    }
    let ids = keys.node_clients(incarnation);
    let records = keys.node_client_info(incarnation);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let zadd = pipe.cmd("ZADD").arg(&ids);
    for client in clients {
        zadd.arg(client.id & u64::from(u32::MAX)).arg(client.id);
    }
    zadd.ignore();
    let hset = pipe.cmd("HSET").arg(&records);
    for client in clients {
        hset.arg(client.id).arg(client.encode());
    }
    hset.ignore();
    let ttl = ttl_ms(ttl);
    pipe.cmd("PEXPIRE")
        .arg(&ids)
        .arg(ttl)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&records)
        .arg(ttl)
        .ignore();
    pipe.exec_async(conn).await.map_err(BackplaneError::from)?;
    Ok(())
}

/// Withdraws clients of the node that left (one round trip).
pub async fn remove_clients(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
    ids: &[u64],
) -> Result<(), BackplaneError> {
    if ids.is_empty() {
        return Ok(());
    }
    redis::pipe()
        .atomic()
        .cmd("ZREM")
        .arg(keys.node_clients(incarnation))
        .arg(ids)
        .ignore()
        .cmd("HDEL")
        .arg(keys.node_client_info(incarnation))
        .arg(ids)
        .ignore()
        .exec_async(conn)
        .await?;
    Ok(())
}

/// Up to `limit` clients of the live nodes in id order, after the client `after`.
pub async fn list_clients(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<ClientRecord>, BackplaneError> {
    let mut listed = Vec::new();
    if limit == 0 {
        return Ok(listed);
    }
    let first_node = after.map_or(0, |after| after >> 32);
    for incarnation in live_incarnations(conn, keys).await? {
        if incarnation < first_node {
            continue;
        }
        let mut min = match after {
            Some(after) if after >> 32 == incarnation => {
                format!("({}", after & u64::from(u32::MAX))
            }
            _ => "-inf".to_owned(),
        };
        loop {
            let count = (limit - listed.len()).min(CLIENTS_PER_CALL);
            let (ids, records) = clients_page(conn, keys, incarnation, &min, count).await?;
            let Some(last) = ids.last() else { break };
            min = format!("({}", last & u64::from(u32::MAX));
            let full = ids.len() == count;
            for (id, record) in ids.into_iter().zip(records) {
                // Removed between the two reads of the script: not listed.
                if let Some(record) = record {
                    listed.push(ClientRecord::decode(id, &record)?);
                }
            }
            if listed.len() >= limit {
                return Ok(listed);
            }
            if !full {
                break;
            }
        }
    }
    Ok(listed)
}

/// One node's client ids from score `min` on, with their records.
async fn clients_page(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    incarnation: u64,
    min: &str,
    count: usize,
) -> Result<(Vec<u64>, Vec<Option<Vec<u8>>>), BackplaneError> {
    let reply: Value = CLIENTS_PAGE
        .key(keys.node_clients(incarnation))
        .key(keys.node_client_info(incarnation))
        .arg(min)
        .arg(count)
        .invoke_async(conn)
        .await?;
    let [ids, records] = fixed(array(reply, "clients page")?, "clients page")?;
    let ids = array(ids, "client ids")?
        .iter()
        .map(number)
        .collect::<Result<Vec<_>, _>>()?;
    let records = optional_bytes(records, "client records")?;
    if records.len() != ids.len() {
        return Err(BackplaneError::Reply(format!(
            "clients page: {} records for {} ids",
            records.len(),
            ids.len()
        )));
    }
    Ok((ids, records))
}

fn optional_bytes(value: Value, what: &str) -> Result<Vec<Option<Vec<u8>>>, BackplaneError> {
    array(value, what)?
        .into_iter()
        .map(|value| match value {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => Ok(Some(bytes)),
            other => Err(BackplaneError::Reply(format!(
                "{what}: expected a string or nil, got {other:?}"
            ))),
        })
        .collect()
}

/// The records of these clients, in their order: `None` for a client whose node is not
/// live or that is not connected there. One round trip.
pub async fn client_records(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    ids: &[u64],
) -> Result<Vec<Option<ClientRecord>>, BackplaneError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_node: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for id in ids {
        by_node.entry(id >> 32).or_default().push(*id);
    }
    let mut pipe = redis::pipe();
    pipe.cmd("TIME");
    for (incarnation, node_ids) in &by_node {
        pipe.cmd("ZSCORE")
            .arg(keys.nodes())
            .arg(*incarnation)
            .cmd("HMGET")
            .arg(keys.node_client_info(*incarnation))
            .arg(node_ids);
    }
    let replies: Vec<Value> = pipe.query_async(conn).await?;
    if replies.len() != 1 + 2 * by_node.len() {
        return Err(BackplaneError::Reply(format!(
            "client records: {} replies for {} nodes",
            replies.len(),
            by_node.len()
        )));
    }
    let mut replies = replies.into_iter();
    let now_ms = match replies.next() {
        Some(time) => {
            let [seconds, micros] = fixed(array(time, "TIME")?, "TIME")?;
            number(&seconds)?
                .saturating_mul(1000)
                .saturating_add(number(&micros)? / 1000)
        }
        None => return Err(BackplaneError::Reply("client records: no TIME".to_owned())),
    };
    let mut found: BTreeMap<u64, ClientRecord> = BTreeMap::new();
    for node_ids in by_node.values() {
        let (Some(expires), Some(records)) = (replies.next(), replies.next()) else {
            break;
        };
        if !live_until(&expires, now_ms)? {
            continue;
        }
        let records = optional_bytes(records, "client records")?;
        for (id, record) in node_ids.iter().zip(records) {
            if let Some(record) = record {
                found.insert(*id, ClientRecord::decode(*id, &record)?);
            }
        }
    }
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}

/// Whether a registry score (expiry in ms, or nil) is still in the future.
fn live_until(expires: &Value, now_ms: u64) -> Result<bool, BackplaneError> {
    let expires_ms = match expires {
        Value::Nil => return Ok(false),
        Value::Double(score) => *score,
        other => {
            let score = bytes_of(other)?;
            std::str::from_utf8(score)
                .ok()
                .and_then(|score| score.parse::<f64>().ok())
                .ok_or_else(|| BackplaneError::Reply(format!("node score {score:?}")))?
        }
    };
    // Scores are whole milliseconds well below 2^53: the float is exact.
    Ok(expires_ms > now_ms as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_records_round_trip_whatever_the_names_hold() {
        for (name, user) in [
            ("ann", "ann"),
            ("", ""),
            ("a:b:3:c", "x:y"),
            ("été", "名前"),
        ] {
            let record = ClientRecord {
                id: 5 << 32 | 17,
                name: name.to_owned(),
                user: user.to_owned(),
                connected_us: 1_700_000_000_000_000,
                receives_relay: name.len().is_multiple_of(2),
            };
            let decoded = ClientRecord::decode(record.id, record.encode().as_bytes()).unwrap();
            assert_eq!(decoded, record);
            assert_eq!(decoded.incarnation(), 5);
        }
    }

    #[test]
    fn bad_client_records_are_errors() {
        for bad in [
            &b""[..],
            b"1:1",
            b"1:1:3",
            b"1:2:0:",
            b"x:1:0:",
            b"1:1:9:abc",
            b"1:1:1:\xc3\xa9",
            b"1:1:1:\xff",
        ] {
            let result = ClientRecord::decode(1, bad);
            assert!(
                matches!(result, Err(BackplaneError::Reply(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }
}
