//! The group directory: CREATE_GROUP, LIST_GROUPS, JOIN_GROUP, LEAVE_GROUP,
//! GROUP_MEMBERS and DELETE_GROUP.

use switchboard_proto::packet::{
    CreateGroup, DeleteGroup, GroupList, GroupMembers, MemberList, OkReply, Packet,
};

use super::session::Session;
use crate::hub::Hub;

pub(crate) async fn create(hub: &Hub, session: &Session, request_id: u32, create: CreateGroup) {
    match hub.create_group(&create.name, &create.description) {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

pub(crate) async fn list(hub: &Hub, session: &Session, request_id: u32) {
    let groups = hub.group_infos();
    session
        .reply(request_id, Packet::GroupList(GroupList { groups }))
        .await;
}

pub(crate) async fn membership(
    hub: &Hub,
    session: &Session,
    request_id: u32,
    group: &str,
    join: bool,
) {
    match hub.set_membership(&session.caller, group, join) {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

pub(crate) async fn members(hub: &Hub, session: &Session, request_id: u32, members: GroupMembers) {
    match hub.group_members(&members.group) {
        Ok(list) => {
            let list = MemberList {
                group: members.group,
                members: list,
            };
            session.reply(request_id, Packet::MemberList(list)).await;
        }
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

/// DELETE_GROUP. Anyone may delete a group until sessions are authenticated; then only
/// its owner or an admin will.
pub(crate) async fn delete(hub: &Hub, session: &Session, request_id: u32, delete: DeleteGroup) {
    match hub.delete_group(&delete.group) {
        Ok(()) => session.reply(request_id, Packet::Ok(OkReply)).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
