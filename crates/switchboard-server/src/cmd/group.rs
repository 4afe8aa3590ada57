//! The group directory: CREATE_GROUP, LIST_GROUPS, JOIN_GROUP, LEAVE_GROUP,
//! GROUP_MEMBERS and DELETE_GROUP.

use switchboard_proto::packet::{
    CreateGroup, DeleteGroup, GroupList, GroupMembers, ListGroups, MemberList, OkReply, Packet,
};

use super::session::Session;
use crate::hub::Hub;
use crate::hub::listing::PageSize;
use crate::security::permissions::Operation;
use crate::security::usage::Owned;

/// CREATE_GROUP; a new group counts against its creator's cap until deleted.
pub(crate) async fn create(hub: &Hub, session: &Session, request_id: u32, create: CreateGroup) {
    if let Err(refusal) = session.permit(hub, Operation::CreateGroup, &create.name) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let creation = match session.reserve_creation(hub, Owned::Group) {
        Ok(creation) => creation,
        Err(refusal) => return session.refuse(request_id, refusal).await,
    };
    let created = match hub.cluster() {
        Some(cluster) => {
            cluster
                .create_group(&session.caller, &create.name, &create.description)
                .await
        }
        None => hub.create_group(&create.name, &create.description),
    };
    match created {
        Ok(()) => {
            creation.made(hub, &create.name);
            session.reply(request_id, Packet::Ok(OkReply)).await;
        }
        Err(refusal) => {
            creation.not_made();
            session.refuse(request_id, refusal).await;
        }
    }
}

/// One page of the group directory (see `hub::listing`).
pub(crate) async fn list(hub: &Hub, session: &Session, request_id: u32, list: ListGroups) {
    let size = PageSize::new(list.limit, hub.config().max_frame);
    let page = match hub.cluster() {
        Some(cluster) => {
            cluster
                .group_page(hub, list.cursor.as_ref(), list.limit)
                .await
        }
        None => hub.group_page(list.cursor.as_ref(), size),
    };
    match page {
        Ok(page) => {
            let reply = GroupList {
                groups: page.entries,
                next: page.next,
            };
            session.reply(request_id, Packet::GroupList(reply)).await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

pub(crate) async fn membership(
    hub: &Hub,
    session: &Session,
    request_id: u32,
    group: &str,
    join: bool,
) {
    // Leaving is always allowed.
    if join && let Err(refusal) = session.permit(hub, Operation::JoinGroup, group) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let changed = match hub.cluster() {
        Some(cluster) => cluster.set_membership(&session.caller, group, join).await,
        None => hub.set_membership(&session.caller, group, join),
    };
    match changed {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

pub(crate) async fn members(hub: &Hub, session: &Session, request_id: u32, members: GroupMembers) {
    if let Err(refusal) = session.permit(hub, Operation::ReadGroup, &members.group) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let size = PageSize::new(members.limit, hub.config().max_frame);
    let page = match hub.cluster() {
        Some(cluster) => {
            cluster
                .member_page(hub, &members.group, members.cursor.as_ref(), members.limit)
                .await
        }
        None => hub.member_page(&members.group, members.cursor.as_ref(), size),
    };
    match page {
        Ok(page) => {
            let list = MemberList {
                group: members.group,
                members: page.entries,
                next: page.next,
            };
            session.reply(request_id, Packet::MemberList(list)).await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

/// DELETE_GROUP. Anyone may delete a group until sessions are authenticated; then only
/// its owner or an admin will.
pub(crate) async fn delete(hub: &Hub, session: &Session, request_id: u32, delete: DeleteGroup) {
    let deleted = match hub.cluster() {
        Some(cluster) => cluster.delete_group(hub, &delete.group).await,
        None => hub.delete_group(&delete.group),
    };
    match deleted {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
