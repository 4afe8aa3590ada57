//! Listings page by page: the server answers LIST_CHANNELS, LIST_GROUPS, LIST_CLIENTS and
//! GROUP_MEMBERS one page at a time (at most one frame each), with a cursor for the next
//! page while more entries follow. The `list_*` methods follow the cursors to the end;
//! the `*_page` methods give one page for callers that want to go at their own pace.

use std::future::Future;

use bytes::Bytes;

use crate::error::{ErrorDetail, Result};

/// One page of a listing, in the server's order (names, or client ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage<T> {
    /// The entries of this page.
    pub entries: Vec<T>,
    /// Present when more entries follow: pass it as the cursor of the next request.
    pub next: Option<Bytes>,
}

/// Collects every page of a listing; `fetch` asks for the page after a cursor (none for
/// the first). Entries created or removed while the pages are read may or may not be
/// in the result; none is listed twice, since pages follow a stable order.
pub(crate) async fn collect_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<Bytes>) -> Fut,
    Fut: Future<Output = Result<ListPage<T>>>,
{
    let mut all = Vec::new();
    let mut cursor: Option<Bytes> = None;
    loop {
        let page = fetch(cursor.clone()).await?;
        let advanced = !page.entries.is_empty();
        all.extend(page.entries);
        match page.next {
            None => return Ok(all),
            // A server that hands back an empty page or the same cursor would keep a
            // caller here forever.
            Some(next) if advanced && cursor.as_ref() != Some(&next) => cursor = Some(next),
            Some(_) => return Err(ErrorDetail::ListingStalled.into()),
        }
    }
}
