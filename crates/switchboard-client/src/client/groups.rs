//! Groups: the directory, membership, posting, history and the group feed.

use switchboard_proto::FrameType;
use switchboard_proto::packet::{
    CreateGroup, DeleteGroup, GetMessages, GroupInfo, GroupList, GroupMembers, JoinGroup,
    LeaveGroup, ListGroups, MemberInfo, MemberList, Scope, Since,
};

use crate::client::{Client, expect, expect_ok};
use crate::error::Result;
use crate::feeds::GroupFeed;
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

    /// The group directory.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// for group in client.list_groups().await? {
    ///     println!("{}: {}", group.name, group.description);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let reply = self.call(ListGroups).await?;
        Ok(expect(&reply, FrameType::GroupList, GroupList::from_frame)?.groups)
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

    /// The members of a group, and whether each is online.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// for member in client.group_members("team").await? {
    ///     println!("{} online: {}", member.name, member.online);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn group_members(&self, name: &str) -> Result<Vec<MemberInfo>> {
        let reply = self.call(GroupMembers { group: name.into() }).await?;
        Ok(expect(&reply, FrameType::MemberList, MemberList::from_frame)?.members)
    }

    /// A group's history from `since`, oldest first.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Since;
    ///
    /// let history = client.group_messages("team", Since::All).await?;
    /// println!("{} messages in the group", history.len());
    /// # Ok(()) }
    /// ```
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
