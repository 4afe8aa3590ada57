//! Channels: creating and listing them, subscribing, and reading their history (and
//! the history of a hashtag).

use std::sync::Arc;

use bytes::Bytes;

use crate::message_queue;
use switchboard_proto::packet::{
    ChannelInfo, ChannelList, ChannelOptions, CreateChannel, DeleteChannel, GetMessage,
    GetMessages, ListChannels, Replay, Scope, Since, Subscribe,
};
use switchboard_proto::subject::Pattern;
use switchboard_proto::{ErrorCode, FrameType};
use uuid::Uuid;

use crate::client::{Client, expect, expect_ok};
use crate::error::{ErrorDetail, Result};
use crate::listing::{ListPage, collect_pages};
use crate::payload::ReceivedMessage;
use crate::requests::{Pending, PendingSubscription};
use crate::subscription::{SubscribeBuilder, Subscription, SubscriptionState};

impl Client {
    /// Creates a channel (succeeds if it exists with the same options).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::ChannelOptions;
    ///
    /// let options = ChannelOptions {
    ///     history: Some(100),
    ///     ..ChannelOptions::default()
    /// };
    /// let info = client.create_channel("alerts", options).await?;
    /// println!("{} holds {} messages", info.name, info.message_count);
    /// # Ok(()) }
    /// ```
    pub async fn create_channel(&self, name: &str, options: ChannelOptions) -> Result<ChannelInfo> {
        let reply = self
            .call(CreateChannel {
                name: name.into(),
                options,
            })
            .await?;
        expect(&reply, FrameType::ChannelInfo, ChannelInfo::from_frame)
    }

    /// Every channel on the server, in name order, however many pages the server
    /// answers in.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// for channel in client.list_channels().await? {
    ///     println!("{}: {} messages", channel.name, channel.message_count);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_channels(&self) -> Result<Vec<ChannelInfo>> {
        collect_pages(|cursor| self.channels_page(cursor, None)).await
    }

    /// One page of the channel list: the channels after `cursor` (none: from the first),
    /// at most `limit` of them (none: as many as one frame holds).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// let mut cursor = None;
    /// loop {
    ///     let page = client.channels_page(cursor, Some(100)).await?;
    ///     for channel in &page.entries {
    ///         println!("{}", channel.name);
    ///     }
    ///     cursor = page.next;
    ///     if cursor.is_none() {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn channels_page(
        &self,
        cursor: Option<Bytes>,
        limit: Option<u64>,
    ) -> Result<ListPage<ChannelInfo>> {
        let reply = self.call(ListChannels { cursor, limit }).await?;
        let list = expect(&reply, FrameType::ChannelList, ChannelList::from_frame)?;
        Ok(ListPage {
            entries: list.channels,
            next: list.next,
        })
    }

    /// Deletes a channel: its history, its streamed bodies and its options. Subscriptions
    /// naming the channel exactly, on every client, end with an error of kind
    /// [`ErrorKind::SubscriptionClosed`](crate::ErrorKind); wildcard and hashtag
    /// subscriptions go on. The name can then be created again, as a new empty channel
    /// numbered from 1. Any session may delete a channel for now; once sessions are
    /// authenticated, only its owner or an admin will.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// client.delete_channel("alerts").await?;
    /// assert!(client.list_channels().await?.iter().all(|c| c.name != "alerts"));
    /// # Ok(()) }
    /// ```
    pub async fn delete_channel(&self, name: &str) -> Result<()> {
        let reply = self.call(DeleteChannel { name: name.into() }).await?;
        expect_ok(&reply)
    }

    /// Subscribes to a channel name, a wildcard pattern (`chat.*`, `chat.>`) or a hashtag
    /// (`#rust`). `replay` asks for history before live messages ([`Replay::None`]: live
    /// only); replays come pattern by pattern, in the order the patterns were given.
    /// Awaiting the returned [`SubscribeBuilder`] sends the request; before that,
    /// [`SubscribeBuilder::pattern`] adds more patterns to the same subscription.
    ///
    /// One subscription is one consumer: a message matching several of its patterns is
    /// received once, in the order the server sent it, and so is a message that the
    /// replays of two patterns both hold. Separate `subscribe` calls are separate
    /// consumers, as in NATS: a message matching both arrives on each.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    /// use switchboard_client::Replay;
    ///
    /// let mut chat = client.subscribe("chat.>", Replay::Last(5)).pattern("#rust").await?;
    /// while let Some(message) = chat.next().await {
    ///     println!("{}", message?.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, pattern: &str, replay: Replay) -> SubscribeBuilder<'_> {
        SubscribeBuilder::new(self, pattern, replay)
    }

    /// Sends one SUBSCRIBE per pattern, all feeding one consumer.
    pub(crate) async fn subscribe_patterns(
        &self,
        patterns: Vec<String>,
        replay: Replay,
    ) -> Result<Subscription> {
        let mut parsed = Vec::with_capacity(patterns.len());
        for pattern in &patterns {
            parsed.push(Pattern::parse(pattern)?);
        }
        let (sender, receiver) = message_queue::channel(self.subscription_capacity());
        let state = Arc::new(SubscriptionState::default());
        // Dropped half way (an error, a timeout), it cancels what was acknowledged.
        let mut subscription = Subscription::new(self.clone(), receiver, state.clone());
        for (pattern, parsed) in patterns.into_iter().zip(parsed) {
            let waiting = |done| {
                Pending::Subscribe(PendingSubscription {
                    pattern: parsed,
                    sender: sender.clone(),
                    state: state.clone(),
                    done,
                })
            };
            let subscribe = Subscribe {
                pattern: pattern.as_str().into(),
                replay,
            };
            let ack = self.request(waiting, subscribe, "subscribe").await?;
            subscription.add(ack, pattern);
        }
        Ok(subscription)
    }

    /// The latest message of a channel, or the one with `id`; `None` if there is none.
    ///
    /// A streamed body is returned as soon as its message arrives and follows through
    /// [`ReceivedMessage::body_reader`]; read it (or drop the message) promptly.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// if let Some(latest) = client.get_message("chat.rust", None).await? {
    ///     println!("latest: {}", latest.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_message(
        &self,
        channel: &str,
        id: Option<Uuid>,
    ) -> Result<Option<ReceivedMessage>> {
        let request = GetMessage {
            scope: Scope::Channel,
            channel: channel.into(),
            id,
        };
        let answer = self
            .request(Pending::Message, request, "fetching a message")
            .await;
        match answer {
            Ok(message) => Ok(Some(message)),
            Err(error)
                if matches!(
                    error.detail(),
                    ErrorDetail::Server {
                        code: ErrorCode::NotFound,
                        ..
                    }
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// A range of a channel's history, oldest first: from `since`, at most `limit`
    /// messages (with [`Since::All`] and a limit, the newest `limit`).
    ///
    /// The list is handed over once complete (at MESSAGES_END). Streamed bodies can be
    /// read from then on; they are buffered up to [`crate::BODY_BUFFER_BYTES`] each
    /// meanwhile, and a server that sends more of one before the end of the list makes
    /// this fail with an error of kind
    /// [`ErrorKind::StreamedBodyBeforeEnd`](crate::ErrorKind::StreamedBodyBeforeEnd) rather than stall.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Since;
    ///
    /// for message in client.get_messages("chat.rust", Since::All, Some(20)).await? {
    ///     println!("#{} {}", message.seq(), message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_messages(
        &self,
        channel: &str,
        since: Since,
        limit: Option<u64>,
    ) -> Result<Vec<ReceivedMessage>> {
        self.collect(GetMessages {
            scope: Scope::Channel,
            channel: channel.into(),
            since,
            limit,
        })
        .await
    }

    /// The recent messages carrying a hashtag (given with or without `#`), oldest first,
    /// from `since`; with `limit`, at most that many: the first from `since`, or the newest
    /// when `since` is [`Since::All`]. A hashtag gathers several channels, whose seqs are
    /// their own: [`Since::Seq`] keeps the messages at or above that seq in each channel.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Since;
    ///
    /// for message in client.tag_messages("#rust", Since::All, Some(10)).await? {
    ///     println!("{}: {}", message.channel(), message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn tag_messages(
        &self,
        tag: &str,
        since: Since,
        limit: Option<u64>,
    ) -> Result<Vec<ReceivedMessage>> {
        let tag = tag.strip_prefix('#').unwrap_or(tag).to_lowercase();
        if tag.is_empty() {
            return Err(ErrorDetail::InvalidArgument("empty hashtag".into()).into());
        }
        self.collect(GetMessages {
            scope: Scope::Tag,
            channel: tag.into(),
            since,
            limit,
        })
        .await
    }

    /// Sends GET_MESSAGES and gathers its MESSAGE frames until MESSAGES_END.
    pub(crate) async fn collect(&self, request: GetMessages) -> Result<Vec<ReceivedMessage>> {
        let collect = |done| Pending::Collect {
            messages: Vec::new(),
            done,
        };
        self.request(collect, request, "fetching messages").await
    }
}
