//! IDENTIFY and LIST_CLIENTS: who this session is, and who else is connected.

use switchboard_proto::packet::{ClientList, Identity, Packet};

use super::session::Session;
use crate::hub::Hub;

pub(crate) async fn identify(session: &Session, request_id: u32) {
    let identity = Identity {
        client_id: session.caller.client_id,
        name: session.caller.name.clone(),
        session_id: session.info.session_id,
        connected_since_us: session.connected_since_us,
    };
    session.reply(request_id, Packet::Identity(identity)).await;
}

/// Every other connected client.
pub(crate) async fn list(hub: &Hub, session: &Session, request_id: u32) {
    let clients = hub.list_clients(session.caller.client_id);
    session
        .reply(request_id, Packet::ClientList(ClientList { clients }))
        .await;
}
