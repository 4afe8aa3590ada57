//! PUBLISH to a channel or group, through the embedding application's hook, and its
//! acknowledgement (after the store synced, for durability `always`).

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::Publish;

use crate::connection::Session;
use crate::error::Refusal;
use crate::hooks::PublishVerdict;
use crate::hub::{Hub, Published};
use crate::outbox::Outgoing;

pub(crate) async fn publish(
    hub: &Hub,
    session: &Session,
    request_id: u32,
    quiet: bool,
    mut publish: Publish,
) {
    if let Err(refusal) = run_hooks(hub, session, &mut publish) {
        session.refuse(request_id, refusal).await;
        return;
    }
    match hub.publish(&session.caller, publish) {
        Ok(published) => acknowledge(hub, session, request_id, quiet, published).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

/// Lets the embedding application reject or rewrite the publish.
pub(crate) fn run_hooks(
    hub: &Hub,
    session: &Session,
    publish: &mut Publish,
) -> Result<(), Refusal> {
    match hub.hooks.on_publish(&session.info, publish) {
        PublishVerdict::Accept => Ok(()),
        PublishVerdict::Reject(reason) => Err(Refusal::new(ErrorCode::Rejected, reason)),
    }
}

/// Answers a stored publish: after the store synced, when its durability asks for it.
pub(crate) async fn acknowledge(
    hub: &Hub,
    session: &Session,
    request_id: u32,
    quiet: bool,
    published: Published,
) {
    if published.must_sync
        && let Err(error) = hub.storage.sync().await
    {
        let refusal = Refusal::new(
            ErrorCode::Internal,
            format!("the message was not made durable: {error}"),
        );
        session.refuse(request_id, refusal).await;
        return;
    }
    if !quiet {
        let _ = session
            .outbox()
            .send(Outgoing::PublishAck {
                request_id,
                ack: published.ack,
            })
            .await;
    }
}
