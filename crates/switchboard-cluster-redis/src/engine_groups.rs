//! Groups of the hub's [`Backplane`](switchboard_server::cluster::Backplane) on Redis:
//! the trait's group operations run the scripts of [`crate::groups`] through the
//! supervisor (reads run once more after a restart, as channel reads do), and the
//! group topics' payloads become the hub's feed events.

use futures::FutureExt;
use switchboard_server::Refusal;
use switchboard_server::cluster::{
    Appended, BackplaneEvent, GroupAppend, GroupMeta, LiveMessage, Membership, Page, Query,
};
use tracing::warn;

use crate::engine::{
    RedisBackplane, now_us, random_id, redis_query, seam_page, stale_generation, unavailable,
};
use crate::groups::{self, GroupLive, JoinOutcome, LeaveOutcome, PostError};
use crate::keys::Keys;
use crate::subscriber::Topic;

/// Groups per directory page asked of Redis at most.
const MAX_LIST: usize = 10_000;

/// The subscriber's topic for a group.
pub(crate) fn topic(keys: &Keys, group: &str) -> Topic {
    Topic::Exact(keys.group_topic(group))
}

/// The start every group topic shares.
pub(crate) fn topic_prefix(keys: &Keys) -> String {
    keys.group_topic("")
}

/// The feed event a control topic's payload stands for; `None` for one not understood
/// (a kind a newer node announces).
pub(crate) fn control_event(payload: &[u8]) -> Option<BackplaneEvent> {
    let joined = payload.strip_prefix(b"J")?;
    let split = joined.iter().position(|&b| b == 0)?;
    let group = std::str::from_utf8(&joined[..split]).ok()?;
    let user = std::str::from_utf8(&joined[split + 1..]).ok()?;
    Some(BackplaneEvent::JoinedAnywhere {
        group: group.to_owned(),
        user: user.to_owned(),
    })
}

/// The feed event a group topic's payload stands for; `None` for one not understood.
pub(crate) fn event(group: &str, payload: &bytes::Bytes) -> Option<BackplaneEvent> {
    let group = group.to_owned();
    match groups::decode(payload) {
        Ok(GroupLive::Post {
            seq,
            epoch,
            time_us,
            payload,
        }) => Some(BackplaneEvent::GroupPost {
            group,
            message: LiveMessage {
                seq,
                epoch,
                time_us,
                payload,
            },
        }),
        Ok(GroupLive::Joined(user)) => Some(BackplaneEvent::GroupMember {
            group,
            user,
            joined: true,
        }),
        Ok(GroupLive::Left(user)) => Some(BackplaneEvent::GroupMember {
            group,
            user,
            joined: false,
        }),
        Ok(GroupLive::Deleted { .. }) => Some(BackplaneEvent::GroupDeleted { group }),
        Err(error) => {
            warn!(target: switchboard_server::log::ERROR, group, %error, "unreadable group message from the cluster; skipped");
            None
        }
    }
}

fn seam_meta(meta: groups::GroupMeta) -> GroupMeta {
    GroupMeta {
        description: meta.description,
        member_count: meta.member_count,
        cid: meta.cid,
        epoch: meta.epoch,
        top_seq: meta.top_seq,
    }
}

impl RedisBackplane {
    pub(crate) async fn create_group_now(
        &self,
        name: &str,
        description: &str,
        creator: &str,
    ) -> Result<(GroupMeta, bool), Refusal> {
        let keys = self.keys().clone();
        let (name, description, creator) =
            (name.to_owned(), description.to_owned(), creator.to_owned());
        let generation = self.supervisor().generation();
        let (meta, created) = self
            .supervisor()
            .run(move |conn| {
                async move {
                    groups::create(
                        conn,
                        &keys,
                        &name,
                        &description,
                        &creator,
                        random_id(),
                        generation,
                    )
                    .await
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        Ok((seam_meta(meta), created))
    }

    pub(crate) async fn group_now(&self, name: &str) -> Result<Option<GroupMeta>, Refusal> {
        let keys = self.keys().clone();
        let name = name.to_owned();
        let meta = self
            .run_read(move |conn| async move { groups::meta(conn, &keys, &name).await }.boxed())
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(meta.map(seam_meta))
    }

    pub(crate) async fn delete_group_now(&self, name: &str) -> Result<bool, Refusal> {
        let keys = self.keys().clone();
        let name = name.to_owned();
        let deleted = self
            .supervisor()
            .run(move |conn| async move { groups::delete(conn, &keys, &name).await }.boxed())
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(deleted.is_some())
    }

    pub(crate) async fn list_groups_now(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, GroupMeta)>, Refusal> {
        let keys = self.keys().clone();
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_LIST);
        let page = self
            .run_read(move |conn| {
                async move { groups::list(conn, &keys, after.as_deref(), limit).await }.boxed()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(page
            .groups
            .into_iter()
            .map(|(name, meta)| (name, seam_meta(meta)))
            .collect())
    }

    pub(crate) async fn set_group_member_now(
        &self,
        name: &str,
        user: &str,
        join: bool,
    ) -> Result<Membership, Refusal> {
        let keys = self.keys().clone();
        let (name, user) = (name.to_owned(), user.to_owned());
        self.supervisor()
            .run(move |conn| {
                async move {
                    if join {
                        Ok(match groups::join(conn, &keys, &name, &user).await? {
                            JoinOutcome::Joined => Membership::Changed,
                            JoinOutcome::AlreadyMember => Membership::Unchanged,
                            JoinOutcome::NoSuchGroup => Membership::NoSuchGroup,
                        })
                    } else {
                        Ok(match groups::leave(conn, &keys, &name, &user).await? {
                            LeaveOutcome::Left => Membership::Changed,
                            LeaveOutcome::NotMember => Membership::Unchanged,
                            LeaveOutcome::NoSuchGroup => Membership::NoSuchGroup,
                        })
                    }
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))
    }

    pub(crate) async fn group_members_now(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>, Refusal> {
        let keys = self.keys().clone();
        let name = name.to_owned();
        let after = after.map(str::to_owned);
        let limit = limit.min(MAX_LIST);
        self.run_read(move |conn| {
            async move { groups::members(conn, &keys, &name, after.as_deref(), limit).await }
                .boxed()
        })
        .await
        .map_err(|e| unavailable(&e))
    }

    pub(crate) async fn is_group_member_now(
        &self,
        name: &str,
        user: &str,
    ) -> Result<bool, Refusal> {
        let keys = self.keys().clone();
        let (name, user) = (name.to_owned(), user.to_owned());
        self.run_read(move |conn| {
            async move { groups::is_member(conn, &keys, &name, &user).await }.boxed()
        })
        .await
        .map_err(|e| unavailable(&e))
    }

    pub(crate) async fn groups_of_now(&self, user: &str) -> Result<Vec<String>, Refusal> {
        let keys = self.keys().clone();
        let user = user.to_owned();
        self.run_read(move |conn| {
            async move { groups::groups_of(conn, &keys, &user).await }.boxed()
        })
        .await
        .map_err(|e| unavailable(&e))
    }

    pub(crate) async fn post_to_group_now(&self, post: GroupAppend) -> Result<Appended, Refusal> {
        let keys = self.keys().clone();
        let generation = self.supervisor().generation();
        let sent = post.clone();
        let result = self
            .supervisor()
            .run(move |conn| {
                async move {
                    let message = groups::GroupPost {
                        name: &sent.group,
                        cid: 0,
                        sender_user: &sent.sender,
                        generation,
                        new_epoch: random_id(),
                        now_us: now_us(),
                        max_len: sent.max_count,
                        id: *sent.id.as_bytes(),
                        payload: &sent.payload,
                    };
                    Ok(groups::post(conn, &keys, &message).await)
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        match result {
            Ok(appended) => Ok(Appended {
                seq: appended.seq,
                epoch: appended.epoch,
                time_us: appended.time_us,
                cid: 0,
            }),
            Err(PostError::NotMember) => Err(Refusal::forbidden(format!(
                "{} is not a member of group {}; join it first",
                post.sender, post.group
            ))),
            Err(PostError::Deleted) => {
                Err(Refusal::not_found(format!("no group named {}", post.group)))
            }
            Err(PostError::StaleGeneration { stored }) => Err(stale_generation(stored)),
            Err(PostError::Backplane(error)) => Err(unavailable(&error)),
        }
    }

    pub(crate) async fn read_group_now(
        &self,
        name: &str,
        query: Query,
        limit: u64,
    ) -> Result<Option<Page>, Refusal> {
        let keys = self.keys().clone();
        let name = name.to_owned();
        let generation = self.supervisor().generation();
        let page = self
            .run_read(move |conn| {
                async move {
                    groups::read(
                        conn,
                        &keys,
                        &name,
                        redis_query(query),
                        limit,
                        generation,
                        random_id(),
                    )
                    .await
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(page.map(seam_page))
    }
}
