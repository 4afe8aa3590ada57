//! CREATE_CHANNEL, LIST_CHANNELS and DELETE_CHANNEL.

use switchboard_proto::packet::{
    ChannelList, ChannelOptions, CreateChannel, DeleteChannel, ListChannels, OkReply, Packet,
    Publish, Scope,
};

use super::permission::denied;
use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::listing::PageSize;
use crate::security::permissions::Operation;
use crate::security::usage::Owned;

/// CREATE_CHANNEL; a new channel counts against its creator's cap until deleted.
pub(crate) async fn create(
    hub: &Hub,
    session: &Session,
    request_id: u32,
    mut create: CreateChannel,
) {
    if let Err(refusal) = permit_create(hub, session, &mut create) {
        session.refuse(request_id, refusal).await;
        return;
    }
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

/// Whether the session may create the channel, with the options it asks: asking for
/// more history or a larger body than its roles' caps is FORBIDDEN; an option left
/// unset whose server default is over the cap is set to the cap.
/// Publishing to a channel nobody created creates it, so a session its roles restrict
/// needs the permission to create that channel as well, and gets it with the server's
/// defaults capped by its role's caps, as CREATE_CHANNEL without options would. Returns
/// the options to create the channel with first, when they differ from the defaults;
/// sessions that may do everything pay nothing.
pub(super) fn implicit_creation(
    hub: &Hub,
    session: &Session,
    publish: &Publish,
) -> Result<Option<ChannelOptions>, Refusal> {
    if publish.scope != Scope::Channel
        || session.permissions.is_everything()
        || hub.has_channel(&publish.channel)
    {
        return Ok(None);
    }
    let mut create = CreateChannel {
        name: publish.channel.clone(),
        options: ChannelOptions::default(),
    };
    permit_create(hub, session, &mut create)?;
    Ok((create.options != ChannelOptions::default()).then_some(create.options))
}

fn permit_create(hub: &Hub, session: &Session, create: &mut CreateChannel) -> Result<(), Refusal> {
    session.permit(hub, Operation::CreateChannel, &create.name)?;
    let (max_history, max_body) = session.permissions.grants().channel_caps(&create.name);
    let options = &mut create.options;
    let capped = [
        (
            &mut options.history,
            max_history,
            hub.config().default_history,
            "history",
            "messages",
        ),
        (
            &mut options.max_bytes,
            max_body,
            hub.config().max_body,
            "max_bytes",
            "bytes",
        ),
    ];
    for (asked, cap, default, what, unit) in capped {
        let Some(cap) = cap else { continue };
        match *asked {
            Some(value) if value > cap => {
                let why = format!("{what} {value} is over the role's cap of {cap} {unit}");
                return Err(denied(hub, "create channel", &create.name, Some(&why)));
            }
            Some(_) => {}
            None if default > cap => *asked = Some(cap),
            None => {}
        }
    }
    Ok(())
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
