//! PUBLISH to a channel or group, through the embedding application's hook.

use switchboard_proto::packet::Publish;

use crate::connection::Session;
use crate::error::Refusal;
use crate::hooks::PublishVerdict;
use crate::hub::Hub;
use crate::outbox::Outgoing;

pub(crate) async fn publish(
    hub: &Hub,
    session: &Session,
    request_id: u32,
    quiet: bool,
    mut publish: Publish,
) {
    if publish.stream.is_some() {
        session
            .refuse(
                request_id,
                Refusal::invalid("streamed bodies are not supported by this server yet"),
            )
            .await;
        return;
    }
    if let PublishVerdict::Reject(reason) = hub.hooks.on_publish(&session.info, &mut publish) {
        session
            .refuse(
                request_id,
                Refusal::new(switchboard_proto::ErrorCode::Rejected, reason),
            )
            .await;
        return;
    }
    match hub.publish(&session.caller, publish) {
        Ok(ack) if !quiet => {
            let _ = session
                .outbox()
                .send(Outgoing::PublishAck { request_id, ack })
                .await;
        }
        Ok(_) => {}
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}
