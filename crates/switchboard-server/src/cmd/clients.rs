//! IDENTIFY and LIST_CLIENTS: who this session is, and who else is connected.

use switchboard_proto::Text;
use switchboard_proto::packet::{ClientList, Identity, ListClients, Packet};

use super::relay;
use super::session::Session;
use crate::cluster::{ClientRecord, directory};
use crate::hub::Hub;
use crate::hub::directory::ClientEntry;
use crate::hub::listing::PageSize;
use crate::security::permissions::AdminOperation;

pub(crate) async fn identify(session: &Session, request_id: u32) {
    let identity = Identity {
        client_id: session.caller.client_id(),
        // A copy: a clone would make the name's buffer shared, an allocation kept for
        // the session's life.
        name: Text::from(session.caller.name().as_str()),
        session_id: session.session_id,
        connected_since_us: session.caller.outbox.connected_since_us(),
    };
    session.reply(request_id, Packet::Identity(identity)).await;
}

/// One page of the other connected clients (see `hub::listing`). A session whose roles
/// do not grant the `clients` admin operation sees only the clients it may relay to.
pub(crate) async fn list(hub: &Hub, session: &Session, request_id: u32, list: ListClients) {
    let size = PageSize::new(list.limit, hub.config().max_frame);
    let grants = session.permissions.grants();
    let everyone = grants.may_admin(AdminOperation::Clients);
    let visible = |entry: &ClientEntry| everyone || relay::reachable(session, entry);
    let page = match hub.cluster() {
        Some(cluster) => {
            let visible_there =
                |record: &ClientRecord| everyone || relay::reachable_record(session, record);
            directory::client_page(
                hub,
                cluster,
                session.caller.client_id(),
                list.cursor.as_ref(),
                size,
                visible,
                visible_there,
            )
            .await
        }
        None => hub.client_page(
            session.caller.client_id(),
            list.cursor.as_ref(),
            size,
            visible,
        ),
    };
    match page {
        Ok(page) => {
            let reply = ClientList {
                clients: page.entries,
                next: page.next,
            };
            session.reply(request_id, Packet::ClientList(reply)).await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
