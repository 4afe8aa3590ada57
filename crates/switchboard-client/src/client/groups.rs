//! Groups: the directory, membership, posting, history and the group feed.

use switchboard_proto::FrameType;
use switchboard_proto::packet::{
    CreateGroup, GetMessages, GroupInfo, GroupList, GroupMembers, JoinGroup, LeaveGroup,
    ListGroups, MemberInfo, MemberList, Scope, Since,
};

use crate::client::{Client, expect, expect_ok};
use crate::error::Result;
use crate::feeds::GroupFeed;
use crate::payload::ReceivedMessage;

impl Client {
    /// Creates a group in the directory.
    pub async fn create_group(&self, name: &str, description: &str) -> Result<()> {
        let reply = self
            .call(CreateGroup {
                name: name.into(),
                description: description.into(),
            })
            .await?;
        expect_ok(&reply)
    }

    /// The group directory.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let reply = self.call(ListGroups).await?;
        Ok(expect(&reply, FrameType::GroupList, GroupList::from_frame)?.groups)
    }

    /// Joins a group under this session's name; its messages then arrive on the
    /// [group feed](Client::group_feed).
    pub async fn join_group(&self, name: &str) -> Result<()> {
        let reply = self.call(JoinGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// Leaves a group.
    pub async fn leave_group(&self, name: &str) -> Result<()> {
        let reply = self.call(LeaveGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// The members of a group, and whether each is online.
    pub async fn group_members(&self, name: &str) -> Result<Vec<MemberInfo>> {
        let reply = self.call(GroupMembers { group: name.into() }).await?;
        Ok(expect(&reply, FrameType::MemberList, MemberList::from_frame)?.members)
    }

    /// A group's history from `since`, oldest first.
    pub async fn group_messages(&self, group: &str, since: Since) -> Result<Vec<ReceivedMessage>> {
        self.collect(GetMessages {
            scope: Scope::Group,
            channel: group.into(),
            since,
            limit: None,
        })
        .await
    }

    /// Takes the group feed: messages of joined groups and member events. Posting to a
    /// group is [`Client::post`].
    ///
    /// Only one handle at a time: a second call while the first feed is alive fails with
    /// an error of kind [`ErrorKind::FeedTaken`](crate::ErrorKind::FeedTaken). Items arriving before it is taken are kept (up to the
    /// configured feed capacity, oldest dropped first).
    pub fn group_feed(&self) -> Result<GroupFeed> {
        GroupFeed::take(self)
    }
}
