//! CREATE_CHANNEL and LIST_CHANNELS.

use switchboard_proto::packet::{ChannelList, CreateChannel, Packet};

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
