//! Requests: one module per area of the protocol, each turning a typed packet into hub
//! calls and a reply; `apply` is the dispatcher. [`Session`] is the state a session's
//! requests share (each area keeps its own part of it: subscriptions, streamed uploads,
//! acknowledgements waiting for a sync). The connection hands frames in and never looks
//! inside a request.

mod channel;
mod clients;
mod cluster_acks;
mod fetch;
mod group;
pub(crate) mod limits;
mod permission;
mod publish;
mod relay;
mod server;
mod session;
mod stream;
mod subscribe;

use switchboard_proto::packet::{Encode, Packet, Publish};
use switchboard_proto::{ErrorCode, Flags, Frame, FrameType};
use tracing::debug;

use crate::error::Refusal;
use crate::hub::Hub;
use crate::log;

pub(crate) use self::publish::PublishRun;
pub(crate) use self::session::Session;

/// What becomes of the session once a request is served.
pub(crate) enum AfterRequest {
    /// Serve the next request.
    Continue,
    /// End the session, telling the peer this code and reason.
    Close(ErrorCode, String),
}

/// Serves a frame that needs no waiting at once, without the future of [`apply`] (which
/// holds the state of every kind of request, and is moved into place for each frame): a
/// PUBLISH of an inline body on a server outside a cluster. Returns the answer still to
/// send, or `None` if the frame is not one of those and is for [`apply`]. (The frame is
/// lent, not moved in and handed back: a frame is large enough for its moves to show.)
///
/// `run` is what the publishes of the same read share; a frame handed back for [`apply`]
/// must be followed by a fresh one, so that what that request changes is seen.
pub(crate) fn apply_at_once(
    hub: &Hub,
    session: &Session,
    run: &mut PublishRun,
    frame: &Frame,
) -> Option<publish::Answer> {
    if frame.frame_type != FrameType::Publish
        || frame.flags.contains(Flags::STREAM)
        || hub.cluster().is_some()
    {
        return None;
    }
    // A PUBLISH that does not decode is refused by `apply`, which decodes it again.
    let Ok(mut publish) = Publish::from_frame_sharing(frame, &mut run.texts) else {
        return None;
    };
    let request_id = frame.request_id;
    debug!(target: log::GENERAL, client_id = session.caller.client_id(), request_id, frame = %frame.frame_type, "request");
    if frame.flags.contains(Flags::BATCH) {
        // Decoded (and its batch checked) above: each body is checked on its own.
        return Some(publish::publish_batch_at_once(
            hub, session, run, request_id, &publish,
        ));
    }
    if let Some(limits) = &session.limits
        && let Err(refusal) = limits::admit_publish(hub, limits, &publish)
    {
        // As in `apply`: at debug only.
        debug!(target: log::ERROR, client_id = session.caller.client_id(), request_id, code = %refusal.code, reason = %refusal.message, "request refused by a limit");
        return Some(publish::Answer::OverLimit(request_id, refusal));
    }
    let quiet = frame.flags.contains(Flags::NO_REPLY);
    Some(publish::publish_at_once(
        hub,
        session,
        run,
        request_id,
        quiet,
        &mut publish,
        Some(frame.content_crc),
    ))
}

/// Serves one frame of an open session.
pub(crate) async fn apply(hub: &Hub, session: &mut Session, frame: Frame) -> AfterRequest {
    let request_id = frame.request_id;
    if !sent_by_clients(frame.frame_type) {
        // Judged by the type alone, before decoding: a server frame missing fields that
        // only a client would need is still BAD_FRAME, not INVALID_ARGUMENT.
        session
            .refuse(
                request_id,
                Refusal::new(
                    ErrorCode::BadFrame,
                    format!("{} is sent by servers, not clients", frame.frame_type),
                ),
            )
            .await;
        return AfterRequest::Continue;
    }
    let packet = match Packet::from_frame(&frame) {
        Ok(packet) => packet,
        Err(error) => {
            // The frame was well delimited, so the stream is still in step: answer and go on.
            session
                .refuse(request_id, Refusal::new(error.code(), error.to_string()))
                .await;
            return AfterRequest::Continue;
        }
    };
    debug!(target: log::GENERAL, client_id = session.caller.client_id(), request_id, frame = %packet.frame_type(), "request");
    let packet = match packet {
        // Each body of a batch goes through the limits on its own.
        Packet::Publish(publish) if frame.flags.contains(Flags::BATCH) => {
            publish::publish_batch(hub, session, request_id, publish).await;
            return AfterRequest::Continue;
        }
        packet => packet,
    };
    if let Some(limits) = &session.limits
        && let Err(refusal) = limits::admit(hub, limits, &packet)
    {
        // Logged at debug only, unlike other refusals: a client over its rate would
        // otherwise write a log line for every request it floods in (the counters say
        // how many).
        debug!(target: log::ERROR, client_id = session.caller.client_id(), request_id, code = %refusal.code, reason = %refusal.message, "request refused by a limit");
        session
            .reply(request_id, Packet::Error(refusal.to_packet()))
            .await;
        return AfterRequest::Continue;
    }
    if let Some(acks) = &mut session.cluster_acks
        && !matches!(packet, Packet::Publish(_) | Packet::Heartbeat(_))
    {
        // What follows publishes sees them stored, as on a single server.
        acks.settle().await;
    }
    match packet {
        Packet::Heartbeat(_) => {
            if !frame.flags.contains(Flags::PONG) {
                session
                    .reply_flags(
                        request_id,
                        Flags::PONG,
                        Packet::Heartbeat(Default::default()),
                    )
                    .await;
            }
        }
        Packet::Disconnect(disconnect) => {
            return AfterRequest::Close(
                ErrorCode::Normal,
                format!(
                    "client said goodbye ({}): {}",
                    disconnect.code, disconnect.reason
                ),
            );
        }
        Packet::Identify(_) => clients::identify(session, request_id).await,
        Packet::ListClients(list) => clients::list(hub, session, request_id, list).await,
        Packet::Relay(relay) => relay::relay(hub, session, request_id, relay).await,
        Packet::CreateChannel(create) => channel::create(hub, session, request_id, create).await,
        Packet::ListChannels(list) => channel::list(hub, session, request_id, list).await,
        Packet::DeleteChannel(delete) => channel::delete(hub, session, request_id, delete).await,
        Packet::Publish(publish) => {
            let quiet = frame.flags.contains(Flags::NO_REPLY);
            if publish.stream.is_some() {
                stream::open(hub, session, request_id, quiet, publish).await;
            } else {
                let crc = Some(frame.content_crc);
                publish::publish(hub, session, request_id, quiet, publish, crc, false).await;
            }
        }
        Packet::Chunk(chunk) => stream::chunk(hub, session, chunk).await,
        Packet::StreamAbort(abort) => stream::abort(session, abort).await,
        Packet::Subscribe(subscribe) => {
            subscribe::subscribe(hub, session, request_id, subscribe).await;
        }
        Packet::Unsubscribe(unsubscribe) => {
            subscribe::unsubscribe(hub, session, request_id, unsubscribe).await;
        }
        Packet::GetMessage(get) => fetch::get_message(hub, session, request_id, get).await,
        Packet::GetMessages(get) => fetch::get_messages(hub, session, request_id, get).await,
        Packet::CreateGroup(create) => group::create(hub, session, request_id, create).await,
        Packet::ListGroups(list) => group::list(hub, session, request_id, list).await,
        Packet::JoinGroup(join) => {
            group::membership(hub, session, request_id, &join.group, true).await
        }
        Packet::LeaveGroup(leave) => {
            group::membership(hub, session, request_id, &leave.group, false).await
        }
        Packet::GroupMembers(members) => group::members(hub, session, request_id, members).await,
        Packet::DeleteGroup(delete) => group::delete(hub, session, request_id, delete).await,
        Packet::Stop(_) => server::stop(hub, session, request_id).await,
        Packet::Reload(_) => server::reload(hub, session, request_id).await,
        Packet::Stats(_) => server::stats(hub, session, request_id).await,
        Packet::SessionInit(_) => {
            session
                .refuse(
                    request_id,
                    Refusal::new(ErrorCode::SessionRequired, "the session is already open"),
                )
                .await;
        }
        other => {
            session
                .refuse(
                    request_id,
                    Refusal::new(
                        ErrorCode::BadFrame,
                        format!("{} is sent by servers, not clients", other.frame_type()),
                    ),
                )
                .await;
        }
    }
    AfterRequest::Continue
}

/// Whether clients may send frames of this type (PROTOCOL.md §3.5, C→S and both).
/// Exhaustive, so that a new frame type must be placed on one side.
fn sent_by_clients(frame_type: FrameType) -> bool {
    match frame_type {
        FrameType::SessionInit
        | FrameType::Heartbeat
        | FrameType::Disconnect
        | FrameType::Identify
        | FrameType::ListClients
        | FrameType::Relay
        | FrameType::CreateChannel
        | FrameType::Publish
        | FrameType::Subscribe
        | FrameType::Unsubscribe
        | FrameType::GetMessage
        | FrameType::GetMessages
        | FrameType::ListChannels
        | FrameType::DeleteChannel
        | FrameType::CreateGroup
        | FrameType::ListGroups
        | FrameType::JoinGroup
        | FrameType::LeaveGroup
        | FrameType::GroupMembers
        | FrameType::DeleteGroup
        | FrameType::Stop
        | FrameType::Reload
        | FrameType::Stats
        | FrameType::Chunk
        | FrameType::StreamAbort => true,
        FrameType::SessionAck
        | FrameType::Error
        | FrameType::Ok
        | FrameType::Identity
        | FrameType::ClientList
        | FrameType::RelayResult
        | FrameType::ChannelInfo
        | FrameType::PublishAck
        | FrameType::SubscribeAck
        | FrameType::MessagesEnd
        | FrameType::ChannelList
        | FrameType::GroupList
        | FrameType::MemberList
        | FrameType::StatsReply
        | FrameType::Message
        | FrameType::Direct
        | FrameType::Event => false,
    }
}
