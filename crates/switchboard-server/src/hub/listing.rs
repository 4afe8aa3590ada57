//! Listings in pages: LIST_CHANNELS, LIST_GROUPS, LIST_CLIENTS and GROUP_MEMBERS answer
//! one page at a time, in a stable order (names, or client ids), starting after the
//! cursor the client sends back. A page holds at most the entries asked for and at most
//! what one frame's content holds, so a listing of any length is never a reply over the
//! frame limit; a page that leaves entries out carries the cursor of the next one.

use std::ops::Bound;

use bytes::Bytes;
use switchboard_proto::packet::{ChannelInfo, ClientInfo, GroupInfo, MemberInfo};

use super::Hub;
use crate::error::Refusal;

/// Room kept in a frame's content for what an entry's size bound may miss.
const CONTENT_MARGIN: usize = 256;

/// How large one page may be.
#[derive(Debug, Clone, Copy)]
pub struct PageSize {
    entries: usize,
    bytes: usize,
}

impl PageSize {
    /// At most `limit` entries (none or 0: no limit but the frame's), and at most what
    /// fits in a frame's content of `max_frame` bytes.
    pub fn new(limit: Option<u64>, max_frame: u32) -> PageSize {
        let entries = match limit {
            None | Some(0) => usize::MAX,
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        };
        let bytes = usize::try_from(max_frame)
            .unwrap_or(usize::MAX)
            .saturating_sub(CONTENT_MARGIN);
        PageSize { entries, bytes }
    }

    /// The most entries a page holds.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }
}

/// One page of a listing: its entries, and the cursor of the next page if more follow.
#[derive(Debug)]
pub struct Page<T> {
    pub entries: Vec<T>,
    pub next: Option<Bytes>,
}

/// Takes entries, in listing order, until the page is full; `key` makes the cursor of
/// an entry. A page holds at least one entry when there is one, whatever its size.
pub(crate) fn take_page<T>(
    entries: impl Iterator<Item = T>,
    size: PageSize,
    len: impl Fn(&T) -> usize,
    key: impl Fn(&T) -> Bytes,
) -> Page<T> {
    let mut page = Vec::new();
    let mut bytes = 0usize;
    let mut more = false;
    for entry in entries {
        let entry_len = len(&entry);
        if page.len() >= size.entries
            || (!page.is_empty() && bytes.saturating_add(entry_len) > size.bytes)
        {
            more = true;
            break;
        }
        bytes = bytes.saturating_add(entry_len);
        page.push(entry);
    }
    let next = if more { page.last().map(key) } else { None };
    Page {
        entries: page,
        next,
    }
}

/// The name a cursor names (channels, groups, members).
fn name_cursor(cursor: Option<&Bytes>) -> Result<Option<&str>, Refusal> {
    cursor
        .map(|cursor| {
            std::str::from_utf8(cursor)
                .map_err(|_| Refusal::invalid("the listing cursor is not one this server gave"))
        })
        .transpose()
}

/// The client id a cursor names.
fn id_cursor(cursor: Option<&Bytes>) -> Result<Option<u64>, Refusal> {
    cursor
        .map(|cursor| {
            <[u8; 8]>::try_from(cursor.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| Refusal::invalid("the listing cursor is not one this server gave"))
        })
        .transpose()
}

/// The entries of an ordered map after `after` (all of them without one).
fn after_name(after: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    match after {
        Some(name) => (Bound::Excluded(name), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

impl Hub {
    /// A page of LIST_CHANNELS, in name order, after the channel the cursor names.
    pub fn channel_page(
        &self,
        cursor: Option<&Bytes>,
        size: PageSize,
    ) -> Result<Page<ChannelInfo>, Refusal> {
        let after = name_cursor(cursor)?;
        let table = self.channels.read();
        let infos = table
            .range::<str, _>(after_name(after))
            .map(|(_, channel)| channel.info());
        Ok(take_page(infos, size, ChannelInfo::record_len, |info| {
            Bytes::copy_from_slice(info.name.as_bytes())
        }))
    }

    /// Cluster mode: the channel after which a LIST_CHANNELS page starts.
    pub(crate) fn channel_cursor(cursor: Option<&Bytes>) -> Result<Option<&str>, Refusal> {
        name_cursor(cursor)
    }

    /// Cluster mode: a page of LIST_CHANNELS from channels read from the backplane, in
    /// name order.
    pub(crate) fn channel_page_of(infos: Vec<ChannelInfo>, size: PageSize) -> Page<ChannelInfo> {
        take_page(infos.into_iter(), size, ChannelInfo::record_len, |info| {
            Bytes::copy_from_slice(info.name.as_bytes())
        })
    }

    /// A page of LIST_GROUPS, in name order, after the group the cursor names.
    pub fn group_page(
        &self,
        cursor: Option<&Bytes>,
        size: PageSize,
    ) -> Result<Page<GroupInfo>, Refusal> {
        let after = name_cursor(cursor)?;
        let table = self.groups.read();
        let infos = table
            .range::<str, _>(after_name(after))
            .map(|(_, group)| group.info());
        Ok(take_page(infos, size, GroupInfo::record_len, |info| {
            Bytes::copy_from_slice(info.name.as_bytes())
        }))
    }

    /// A page of GROUP_MEMBERS, in name order, after the member the cursor names, each
    /// with whether a session of that name is connected now.
    pub fn member_page(
        &self,
        group: &str,
        cursor: Option<&Bytes>,
        size: PageSize,
    ) -> Result<Page<MemberInfo>, Refusal> {
        let after = name_cursor(cursor)?;
        let group = self.group(group)?;
        let members = group.members.lock();
        let infos = members
            .range::<str, _>(after_name(after))
            .map(|name| MemberInfo {
                name: name.as_str().into(),
                online: self.directory.is_online(name),
            });
        Ok(take_page(infos, size, MemberInfo::record_len, |info| {
            Bytes::copy_from_slice(info.name.as_bytes())
        }))
    }

    /// A page of LIST_CLIENTS (every client but `except`), in client id order, after
    /// the client the cursor names.
    pub fn client_page(
        &self,
        except: u64,
        cursor: Option<&Bytes>,
        size: PageSize,
        visible: impl Fn(&super::directory::ClientEntry) -> bool,
    ) -> Result<Page<ClientInfo>, Refusal> {
        let after = id_cursor(cursor)?;
        let clients = self.directory.list_after(except, after, visible);
        Ok(take_page(
            clients.into_iter(),
            size,
            ClientInfo::record_len,
            |info| Bytes::copy_from_slice(&info.client_id.to_be_bytes()),
        ))
    }

    /// Cluster mode: the client after which a LIST_CLIENTS page starts.
    pub(crate) fn client_cursor(cursor: Option<&Bytes>) -> Result<Option<u64>, Refusal> {
        id_cursor(cursor)
    }

    /// Cluster mode: this node's clients but `except` after `after`, in id order.
    pub(crate) fn local_clients_after(
        &self,
        except: u64,
        after: Option<u64>,
        visible: impl Fn(&super::directory::ClientEntry) -> bool,
    ) -> Vec<ClientInfo> {
        self.directory.list_after(except, after, visible)
    }

    /// Cluster mode: a page of LIST_CLIENTS from clients in id order, read up to
    /// `read_up_to` when more are known to follow it.
    pub(crate) fn client_page_of(
        clients: Vec<ClientInfo>,
        size: PageSize,
        read_up_to: Option<u64>,
    ) -> Page<ClientInfo> {
        let cursor = |id: u64| Bytes::copy_from_slice(&id.to_be_bytes());
        let mut page = take_page(clients.into_iter(), size, ClientInfo::record_len, |info| {
            cursor(info.client_id)
        });
        if page.next.is_none()
            && let Some(bound) = read_up_to
        {
            // Every client up to the bound is on this page: the next starts after it.
            page.next = Some(cursor(bound));
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("name-{index:05}")).collect()
    }

    #[test]
    fn pages_stop_at_the_limit_or_the_bytes_and_say_where_to_go_on() {
        let all = names(100);
        let by_count = take_page(
            all.iter().cloned(),
            PageSize::new(Some(30), u32::MAX),
            String::len,
            |name| Bytes::from(name.clone()),
        );
        assert_eq!(by_count.entries.len(), 30);
        assert_eq!(by_count.next.as_deref(), Some(&b"name-00029"[..]));

        // 10 bytes each: 25 fit in 250 bytes of content once the margin is kept.
        let by_bytes = take_page(
            all.iter().cloned(),
            PageSize::new(None, 250 + CONTENT_MARGIN as u32),
            String::len,
            |name| Bytes::from(name.clone()),
        );
        assert_eq!(by_bytes.entries.len(), 25);
        assert!(by_bytes.next.is_some());

        let everything = take_page(
            all.iter().cloned(),
            PageSize::new(Some(0), u32::MAX),
            String::len,
            |name| Bytes::from(name.clone()),
        );
        assert_eq!(everything.entries.len(), 100);
        assert_eq!(everything.next, None, "a complete page has no cursor");
    }

    #[test]
    fn an_entry_larger_than_a_page_is_still_sent_alone() {
        let page = take_page(
            ["x".repeat(1000), "y".to_owned()].into_iter(),
            PageSize::new(None, 300),
            String::len,
            |name| Bytes::from(name.clone()),
        );
        assert_eq!(page.entries.len(), 1);
        assert!(page.next.is_some());
    }

    #[test]
    fn a_cluster_page_read_up_to_a_bound_goes_on_after_it() {
        let clients = |ids: &[u64]| -> Vec<ClientInfo> {
            ids.iter()
                .map(|&client_id| ClientInfo {
                    client_id,
                    name: "c".into(),
                    connected_since_us: 0,
                })
                .collect()
        };
        let cursor = |id: u64| Some(Bytes::copy_from_slice(&id.to_be_bytes()));
        // Every client up to 9 fits: the next page starts after 9, not after 5.
        let page =
            Hub::client_page_of(clients(&[2, 5]), PageSize::new(Some(10), u32::MAX), Some(9));
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.next, cursor(9));
        // A full page goes on after its last entry, whatever the bound.
        let page = Hub::client_page_of(
            clients(&[2, 5, 7]),
            PageSize::new(Some(2), u32::MAX),
            Some(9),
        );
        assert_eq!(page.next, cursor(5));
        // Nothing more known: the listing ends.
        let page = Hub::client_page_of(clients(&[2]), PageSize::new(Some(2), u32::MAX), None);
        assert_eq!(page.next, None);
    }

    #[test]
    fn cursors_that_this_server_did_not_give_are_refused() {
        assert!(name_cursor(Some(&Bytes::from_static(&[0xFF, 0xFE]))).is_err());
        assert!(id_cursor(Some(&Bytes::from_static(b"123"))).is_err());
        assert_eq!(
            id_cursor(Some(&Bytes::copy_from_slice(&7u64.to_be_bytes()))).unwrap(),
            Some(7)
        );
    }
}
