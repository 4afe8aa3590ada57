//! CREATE_CHANNEL, LIST_CHANNELS and DELETE_CHANNEL.

use switchboard_proto::packet::{ChannelList, CreateChannel, DeleteChannel, OkReply, Packet};

use super::session::Session;
use crate::hub::Hub;

pub(crate) async fn create(hub: &Hub, session: &Session, request_id: u32, create: CreateChannel) {
    match hub.create_channel(&create.name, &create.options) {
        Ok(channel) => {
            session
                .reply(request_id, Packet::ChannelInfo(channel.info()))
                .await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

pub(crate) async fn list(hub: &Hub, session: &Session, request_id: u32) {
    let channels = hub.channel_infos();
    session
        .reply(request_id, Packet::ChannelList(ChannelList { channels }))
        .await;
}

/// DELETE_CHANNEL. Anyone may delete a channel until sessions are authenticated; then
/// only its owner or an admin will.
pub(crate) async fn delete(hub: &Hub, session: &Session, request_id: u32, delete: DeleteChannel) {
    match hub.delete_channel(&delete.name) {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
