//! CREATE_CHANNEL, LIST_CHANNELS and DELETE_CHANNEL.

use switchboard_proto::packet::{
    ChannelList, CreateChannel, DeleteChannel, ListChannels, OkReply, Packet,
};

use super::session::Session;
use crate::hub::Hub;
use crate::hub::listing::PageSize;
use crate::security::usage::Owned;

/// CREATE_CHANNEL; a new channel counts against its creator's cap until deleted.
pub(crate) async fn create(hub: &Hub, session: &Session, request_id: u32, create: CreateChannel) {
    let creation = match session.reserve_creation(hub, Owned::Channel) {
        Ok(creation) => creation,
        Err(refusal) => return session.refuse(request_id, refusal).await,
    };
    match hub.create_channel_new(&create.name, &create.options) {
        Ok((channel, new)) => {
            if new {
                creation.made(hub, &create.name);
            } else {
                creation.not_made();
            }
            session
                .reply(request_id, Packet::ChannelInfo(channel.info()))
                .await;
        }
        Err(refusal) => {
            creation.not_made();
            session.refuse(request_id, refusal).await;
        }
    }
}

/// One page of the channel list (see `hub::listing`).
pub(crate) async fn list(hub: &Hub, session: &Session, request_id: u32, list: ListChannels) {
    let size = PageSize::new(list.limit, hub.config().max_frame);
    match hub.channel_page(list.cursor.as_ref(), size) {
        Ok(page) => {
            let reply = ChannelList {
                channels: page.entries,
                next: page.next,
            };
            session.reply(request_id, Packet::ChannelList(reply)).await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

/// DELETE_CHANNEL. Anyone may delete a channel until sessions are authenticated; then
/// only its owner or an admin will.
pub(crate) async fn delete(hub: &Hub, session: &Session, request_id: u32, delete: DeleteChannel) {
    match hub.delete_channel(&delete.name) {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
