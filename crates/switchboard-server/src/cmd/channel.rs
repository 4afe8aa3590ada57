//! CREATE_CHANNEL, LIST_CHANNELS and DELETE_CHANNEL.

use switchboard_proto::packet::{
    ChannelInfo, ChannelList, ChannelOptions, CreateChannel, DeleteChannel, ListChannels, OkReply,
    Packet, Publish, Scope,
};

use super::limits::Created;
use super::permission::denied;
use super::session::Session;
use crate::cluster::node::ClusterNode;
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
    let created = match hub.cluster() {
        Some(cluster) => cluster_create(hub, cluster, &create).await,
        None => hub
            .create_channel_new(&create.name, &create.options)
            .map(|(channel, new)| (channel.info(), new)),
    };
    match created {
        Ok((info, new)) => {
            if new {
                creation.made(hub, &create.name);
            } else {
                creation.not_made();
            }
            session.reply(request_id, Packet::ChannelInfo(info)).await;
        }
        Err(refusal) => {
            creation.not_made();
            session.refuse(request_id, refusal).await;
        }
    }
}

/// CREATE_CHANNEL in cluster mode: the backplane decides whether it is new.
async fn cluster_create(
    hub: &Hub,
    cluster: &ClusterNode,
    create: &CreateChannel,
) -> Result<(ChannelInfo, bool), Refusal> {
    let options = hub.channel_options(&create.name, &create.options)?;
    let (_, created) = cluster
        .create_channel(hub, &create.name, &create.options, options)
        .await?;
    let meta = cluster.channel_meta(&create.name).await?.ok_or_else(|| {
        Refusal::not_found(format!("channel {} was deleted meanwhile", create.name))
    })?;
    Ok((meta.info(&create.name), created))
}

/// Whether the session may create the channel, with the options it asks: asking for
/// more history or a larger body than its roles' caps is FORBIDDEN; an option left
/// unset whose server default is over the cap is set to the cap.
/// A channel a publish to an unknown name creates, counted against a limited user's
/// channel cap until the publish is known to have been stored or refused.
#[must_use]
pub(super) struct ImplicitChannel(Option<(Created, String)>);

impl ImplicitChannel {
    /// Nothing was reserved: the publish goes to a channel that exists, or the session
    /// is not counted.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// The publish was stored (the channel exists and counts) or refused (it does not).
    pub fn settle(self, hub: &Hub, stored: bool) {
        if let Some((creation, name)) = self.0 {
            if stored {
                creation.made(hub, &name);
            } else {
                creation.not_made();
            }
        }
    }
}

/// Publishing to a channel nobody created creates it, as CREATE_CHANNEL without options
/// would: a session its roles restrict needs the permission to create that channel, and
/// gets the server's defaults capped by its role (the channel is then created first,
/// with those options); a limited user has it counted against its channel cap. Sessions
/// neither restricted nor limited pay nothing, not even the lookup of the channel. This
/// checks the permission alone, for a streamed publish before its body arrives.
pub(super) fn permit_implicit_channel(
    hub: &Hub,
    session: &Session,
    publish: &Publish,
) -> Result<(), Refusal> {
    if publish.scope != Scope::Channel
        || session.permissions.is_everything()
        || hub.has_channel(&publish.channel)
    {
        return Ok(());
    }
    let mut create = CreateChannel {
        name: publish.channel.clone(),
        options: ChannelOptions::default(),
    };
    permit_create(hub, session, &mut create)
}

/// The creation [`permit_implicit_channel`] allows, done: counted against a limited
/// user's cap, and the channel created first when the role's caps change its defaults.
pub(super) fn implicit_channel(
    hub: &Hub,
    session: &Session,
    publish: &Publish,
) -> Result<ImplicitChannel, Refusal> {
    implicit_channel_knowing(hub, session, session.permissions.is_everything(), publish)
}

/// [`implicit_channel`] by a caller that knows whether the session may do everything.
pub(super) fn implicit_channel_knowing(
    hub: &Hub,
    session: &Session,
    everything: bool,
    publish: &Publish,
) -> Result<ImplicitChannel, Refusal> {
    let restricted = !everything;
    if publish.scope != Scope::Channel
        || (!restricted && session.limits.is_none())
        || hub.has_channel(&publish.channel)
    {
        return Ok(ImplicitChannel(None));
    }
    let mut create = CreateChannel {
        name: publish.channel.clone(),
        options: ChannelOptions::default(),
    };
    if restricted {
        permit_create(hub, session, &mut create)?;
    }
    let creation = session.reserve_creation(hub, Owned::Channel)?;
    let implicit = ImplicitChannel(Some((creation, publish.channel.to_string())));
    if create.options != ChannelOptions::default()
        && let Err(refusal) = hub.create_channel_new(&publish.channel, &create.options)
    {
        implicit.settle(hub, false);
        return Err(refusal);
    }
    Ok(implicit)
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
    let page = match hub.cluster() {
        Some(cluster) => cluster_page(hub, cluster, list.cursor.as_ref(), list.limit).await,
        None => hub.channel_page(list.cursor.as_ref(), size),
    };
    match page {
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

/// Channels listed from the backplane, at most this many per page.
const CLUSTER_LIST_BATCH: usize = 256;

/// A page of LIST_CHANNELS in cluster mode, read from the backplane.
async fn cluster_page(
    hub: &Hub,
    cluster: &ClusterNode,
    cursor: Option<&bytes::Bytes>,
    limit: Option<u64>,
) -> Result<crate::hub::listing::Page<ChannelInfo>, Refusal> {
    let after = Hub::channel_cursor(cursor)?;
    let want = match limit {
        None | Some(0) => CLUSTER_LIST_BATCH,
        Some(limit) => usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(CLUSTER_LIST_BATCH),
    };
    // One more than a page, to know whether another follows.
    let names = cluster.list_channels(after, want + 1).await?;
    let mut infos = Vec::with_capacity(names.len());
    for name in &names {
        // A channel deleted since it was listed is left out.
        if let Some(meta) = cluster.channel_meta(name).await? {
            infos.push(meta.info(name));
        }
    }
    let size = PageSize::new(Some(want as u64), hub.config().max_frame);
    Ok(Hub::channel_page_of(infos, size))
}

/// DELETE_CHANNEL. Anyone may delete a channel until sessions are authenticated; then
/// only its owner or an admin will.
pub(crate) async fn delete(hub: &Hub, session: &Session, request_id: u32, delete: DeleteChannel) {
    let deleted = match hub.cluster() {
        Some(cluster) => cluster.delete_channel(hub, &delete.name).await,
        None => hub.delete_channel(&delete.name),
    };
    match deleted {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
