//! Groups: the directory, membership, posting, history and the group feed.

use bytes::Bytes;
use switchboard_proto::FrameType;
use switchboard_proto::packet::{
    CreateGroup, DeleteGroup, GetMessages, GroupInfo, GroupList, GroupMembers, JoinGroup,
    LeaveGroup, ListGroups, MemberInfo, MemberList, Scope, Since,
};

use crate::client::{Client, expect, expect_ok};
use crate::error::Result;
use crate::feeds::GroupFeed;
use crate::listing::{ListPage, collect_pages};
use crate::payload::ReceivedMessage;

impl Client {
    /// Creates a group in the directory.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// client.create_group("team", "the release crew").await?;
    /// client.join_group("team").await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_group(&self, name: &str, description: &str) -> Result<()> {
        let reply = self
            .call(CreateGroup {
                name: name.into(),
                description: description.into(),
            })
            .await?;
        expect_ok(&reply)
    }

    /// The group directory, in name order, however many pages the server answers in.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// for group in client.list_groups().await? {
    ///     println!("{}: {}", group.name, group.description);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        collect_pages(|cursor| self.groups_page(cursor, None)).await
    }

    /// One page of the group directory: the groups after `cursor` (none: from the
    /// first), at most `limit` of them (none: as many as one frame holds).
    pub async fn groups_page(
        &self,
        cursor: Option<Bytes>,
        limit: Option<u64>,
    ) -> Result<ListPage<GroupInfo>> {
        let reply = self.call(ListGroups { cursor, limit }).await?;
        let list = expect(&reply, FrameType::GroupList, GroupList::from_frame)?;
        Ok(ListPage {
            entries: list.groups,
            next: list.next,
        })
    }

    /// Joins a group under this session's name; its messages then arrive on the
    /// [group feed](Client::group_feed).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut feed = client.group_feed()?;
    /// client.join_group("team").await?;
    /// while let Some(item) = feed.next().await {
    ///     println!("{item:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn join_group(&self, name: &str) -> Result<()> {
        let reply = self.call(JoinGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// Leaves a group.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// client.leave_group("team").await?;
    /// # Ok(()) }
    /// ```
    pub async fn leave_group(&self, name: &str) -> Result<()> {
        let reply = self.call(LeaveGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// Deletes a group: its history, its members and its directory entry. Every member's
    /// sessions get a [`GroupItem::Event`](crate::GroupItem) of kind
    /// [`EventKind::GroupDeleted`](crate::EventKind). The name can then be created again,
    /// as a new empty group. Any session may delete a group for now; once sessions are
    /// authenticated, only its owner or an admin will.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// client.delete_group("team").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        let reply = self.call(DeleteGroup { group: name.into() }).await?;
        expect_ok(&reply)
    }

    /// The members of a group, in name order, and whether each is online, however many
    /// pages the server answers in.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// for member in client.group_members("team").await? {
    ///     println!("{} online: {}", member.name, member.online);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn group_members(&self, name: &str) -> Result<Vec<MemberInfo>> {
        collect_pages(|cursor| self.members_page(name, cursor, None)).await
    }

    /// One page of a group's members: those after `cursor` (none: from the first), at
    /// most `limit` of them (none: as many as one frame holds).
    pub async fn members_page(
        &self,
        name: &str,
        cursor: Option<Bytes>,
        limit: Option<u64>,
    ) -> Result<ListPage<MemberInfo>> {
        let request = GroupMembers {
            group: name.into(),
            cursor,
            limit,
        };
        let reply = self.call(request).await?;
        let list = expect(&reply, FrameType::MemberList, MemberList::from_frame)?;
        Ok(ListPage {
            entries: list.members,
            next: list.next,
        })
    }

    /// A group's history from `since`, oldest first; with `limit`, at most that many: the
    /// first from `since`, or the newest when `since` is [`Since::All`] (as for channels).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Since;
    ///
    /// let history = client.group_messages("team", Since::All, Some(20)).await?;
    /// println!("the last {} messages of the group", history.len());
    /// # Ok(()) }
    /// ```
    pub async fn group_messages(
        &self,
        group: &str,
        since: Since,
        limit: Option<u64>,
    ) -> Result<Vec<ReceivedMessage>> {
        self.collect(GetMessages {
            scope: Scope::Group,
            channel: group.into(),
            since,
            limit,
        })
        .await
    }

    /// Takes the group feed: messages of joined groups and member events. Posting to a
    /// group is [`Client::post`].
    ///
    /// Only one handle at a time: a second call while the first feed is alive fails with
    /// an error of kind [`ErrorKind::FeedTaken`](crate::ErrorKind::FeedTaken). Items arriving before it is taken are kept (up to the
    /// configured feed capacity, oldest dropped first).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    /// use switchboard_client::GroupItem;
    ///
    /// let mut feed = client.group_feed()?;
    /// while let Some(item) = feed.next().await {
    ///     match item {
    ///         GroupItem::Message(message) => println!("{}: {:?}", message.channel(), message.text()),
    ///         GroupItem::Event(event) => println!("{:?} {}", event.kind, event.subject),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn group_feed(&self) -> Result<GroupFeed> {
        GroupFeed::take(self)
    }
}
