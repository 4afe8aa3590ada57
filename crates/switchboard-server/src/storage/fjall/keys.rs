//! The store's keys. All integers are big-endian, so that a history's keys sort in
//! sequence order and one prefix scan reads it.
//!
//! ```text
//! keyspace "meta"
//!   c/<channel>         CREATE_CHANNEL frame: the channel's options
//!   g/<group>           CREATE_GROUP frame: name and description
//!   m/<group> 0x00 <member>   empty: one member of the group
//!   m/<group>           MEMBER_LIST frame: the members, as earlier versions kept them
//!                       (read, then rewritten as one key per member, at load)
//!   n/<kind><name>      u64: next sequence number, written at shutdown (and by earlier
//!                       versions at trims)
//!   t/<kind><name>      u64: the newest sequence number trimmed away
//!   s/synclog           u64 epoch, u64 number: the newest sync log record whose batch
//!                       the database holds (written in that batch)
//! keyspace "messages"
//!   <kind><name> 0x00 <seq:u64>   a chunk: the MESSAGE frames (no HMAC tag) one batch
//!                                 appended to the history, from <seq> on, back to back
//! ```
//!
//! `<kind>` is `c` for channels and `g` for groups. Names never contain 0x00 (control
//! characters are refused), so a history's keys are exactly those under its prefix.

use super::super::LogKind;

fn kind_byte(kind: LogKind) -> u8 {
    match kind {
        LogKind::Channel => b'c',
        LogKind::Group => b'g',
    }
}

/// `<prefix><kind><name>`: the meta key of a history's counter.
fn counter_key(prefix: &[u8; 2], kind: LogKind, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 3);
    key.extend_from_slice(prefix);
    key.push(kind_byte(kind));
    key.extend_from_slice(name.as_bytes());
    key
}

/// `c/<channel>`: a channel's options.
pub(super) fn channel_key(name: &str) -> Vec<u8> {
    format!("c/{name}").into_bytes()
}

/// `g/<group>`: a group's name and description.
pub(super) fn group_key(name: &str) -> Vec<u8> {
    format!("g/{name}").into_bytes()
}

/// `m/<group>`: a group's members as one list, as earlier versions stored them.
pub(super) fn members_key(group: &str) -> Vec<u8> {
    format!("m/{group}").into_bytes()
}

/// `m/<group> 0x00`: what the key of every member of a group begins with.
pub(super) fn members_prefix(group: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(group.len() + 3);
    prefix.extend_from_slice(b"m/");
    prefix.extend_from_slice(group.as_bytes());
    prefix.push(0);
    prefix
}

/// `m/<group> 0x00 <member>`: one member of a group.
pub(super) fn member_key(group: &str, member: &str) -> Vec<u8> {
    let mut key = members_prefix(group);
    key.extend_from_slice(member.as_bytes());
    key
}

/// The group and member a member key names, or `None` if `key` is not one.
pub(super) fn member_of(key: &[u8]) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(b"m/")?;
    let split = rest.iter().position(|&byte| byte == 0)?;
    let group = std::str::from_utf8(&rest[..split]).ok()?;
    let member = std::str::from_utf8(&rest[split + 1..]).ok()?;
    Some((group, member))
}

/// `n/<kind><name>`: a history's next sequence number.
pub(super) fn next_seq_key(kind: LogKind, name: &str) -> Vec<u8> {
    counter_key(b"n/", kind, name)
}

/// `t/<kind><name>`: the newest sequence number trimmed from a history.
pub(super) fn trim_key(kind: LogKind, name: &str) -> Vec<u8> {
    counter_key(b"t/", kind, name)
}

/// `s/synclog`: where the database stands in the sync log.
pub(super) const SYNC_LOG_MARK: &[u8] = b"s/synclog";

/// Whether a meta key holds numbers (a history's sequence numbers, the sync log's mark)
/// rather than a record.
pub(super) fn is_counter(key: &[u8]) -> bool {
    key.starts_with(b"n/") || key.starts_with(b"t/") || key == SYNC_LOG_MARK
}

/// `<kind><name> 0x00`: what every chunk key of a history begins with.
pub(super) fn log_prefix(kind: LogKind, name: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(name.len() + 2);
    prefix.push(kind_byte(kind));
    prefix.extend_from_slice(name.as_bytes());
    prefix.push(0);
    prefix
}

/// The key of the chunk of a history (given by its prefix) that begins at `first`.
pub(super) fn chunk_key(prefix: &[u8], first: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&first.to_be_bytes());
    key
}

/// The sequence number a chunk key read back from the store ends with.
pub(super) fn chunk_seq(key: &[u8]) -> Option<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))?;
    <[u8; 8]>::try_from(tail).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_documented() {
        assert_eq!(channel_key("news"), b"c/news");
        assert_eq!(group_key("team"), b"g/team");
        assert_eq!(members_key("team"), b"m/team");
        assert_eq!(next_seq_key(LogKind::Group, "team"), b"n/gteam");
        assert_eq!(trim_key(LogKind::Channel, "news"), b"t/cnews");
        let prefix = log_prefix(LogKind::Channel, "news");
        assert_eq!(prefix, b"cnews\0");
        let key = chunk_key(&prefix, 0x0102);
        assert_eq!(key, b"cnews\0\0\0\0\0\0\0\x01\x02");
        assert_eq!(chunk_seq(&key), Some(0x0102));
        assert!(is_counter(b"n/cnews") && is_counter(b"t/cnews"));
        assert!(is_counter(SYNC_LOG_MARK));
        assert!(!is_counter(b"c/news"));
        assert_eq!(member_key("team", "ann"), b"m/team\0ann");
        assert_eq!(member_of(b"m/team\0ann"), Some(("team", "ann")));
        assert_eq!(member_of(b"m/team"), None);
        assert!(member_key("team", "ann").starts_with(&members_prefix("team")));
        assert!(!member_key("teams", "ann").starts_with(&members_prefix("team")));
    }

    #[test]
    fn chunk_keys_of_a_history_sort_in_sequence_order() {
        let prefix = log_prefix(LogKind::Channel, "a");
        let keys: Vec<Vec<u8>> = [1u64, 255, 256, 70_000, u64::MAX]
            .iter()
            .map(|&seq| chunk_key(&prefix, seq))
            .collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
