//! Clients and direct bodies: who is connected, relaying a body to some of them, and the
//! direct feed of bodies relayed to this client.

use bytes::Bytes;
use switchboard_proto::FrameType;
use switchboard_proto::packet::{
    ClientInfo, ClientList, ListClients, MAX_RECEIVERS, Relay, RelayOutcome, RelayResult,
};

use crate::client::{Client, expect};
use crate::error::{ErrorDetail, Result};
use crate::feeds::DirectFeed;
use crate::listing::{ListPage, collect_pages};

impl Client {
    /// The other connected clients, in client id order, however many pages the server
    /// answers in.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// for other in client.list_clients().await? {
    ///     println!("{} is client {}", other.name, other.client_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>> {
        collect_pages(|cursor| self.clients_page(cursor, None)).await
    }

    /// One page of the other connected clients: those after `cursor` (none: from the
    /// first), at most `limit` of them (none: as many as one frame holds).
    pub async fn clients_page(
        &self,
        cursor: Option<Bytes>,
        limit: Option<u64>,
    ) -> Result<ListPage<ClientInfo>> {
        let reply = self.call(ListClients { cursor, limit }).await?;
        let list = expect(&reply, FrameType::ClientList, ClientList::from_frame)?;
        Ok(ListPage {
            entries: list.clients,
            next: list.next,
        })
    }

    /// Relays a body to up to 255 connected clients; one outcome per receiver, in order.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// let bob = client.list_clients().await?.into_iter().find(|other| other.name == "bob");
    /// if let Some(bob) = bob {
    ///     let outcomes = client.relay(&[bob.client_id], "psst", "text/plain").await?;
    ///     println!("{:?}", outcomes[0].status);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn relay(
        &self,
        receivers: &[u64],
        body: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<Vec<RelayOutcome>> {
        if receivers.is_empty() || receivers.len() > MAX_RECEIVERS {
            return Err(ErrorDetail::InvalidArgument(format!(
                "a relay names 1 to {MAX_RECEIVERS} receivers, not {}",
                receivers.len()
            ))
            .into());
        }
        let body = body.into();
        self.check_body(body.len())?;
        let relay = Relay {
            receivers: receivers.to_vec(),
            content_type: content_type.into(),
            body,
        };
        let reply = self.call(relay).await?;
        Ok(expect(&reply, FrameType::RelayResult, RelayResult::from_frame)?.outcomes)
    }

    /// Takes the direct feed: bodies relayed to this client. Same rules as
    /// [`Client::group_feed`].
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut directs = client.direct_feed()?;
    /// while let Some(direct) = directs.next().await {
    ///     println!("from {}: {:?}", direct.sender_name(), direct.text());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn direct_feed(&self) -> Result<DirectFeed> {
        DirectFeed::take(self)
    }
}
