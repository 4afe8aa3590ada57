//! The request loop: serves the frames of an open session one after another until the
//! session ends (the peer leaves or says goodbye, a bad frame, the heartbeat deadline,
//! the frame deadline, a large frame the server has no room for, the slow-consumer kill
//! switch, or shutdown), and says why it ended.
//!
//! Two deadlines bound a wait: the heartbeat deadline (three heartbeats without a byte)
//! and, while a frame is arriving, the frame deadline from the frame's first byte, which
//! bytes trickling in do not move: a peer cannot keep a partial frame, and what it holds,
//! alive by sending a byte now and then.
//!
//! A session that has waited [`PARK_AFTER`] between frames, with nothing of a frame
//! read, leaves the loop to park without a task (see `parking`); it comes back with its
//! heartbeat deadline unchanged. The first time a session goes quiet after serving its
//! first request, it parks at once.

use switchboard_proto::packet::{ErrorPacket, Packet};
use switchboard_proto::{ErrorCode, ProtoError};
use tracing::warn;

use super::frame_reader::{BusyFrame, FrameReader};
use super::transport::Readable;
use crate::cmd::{self, AfterRequest, PublishRun, Session};
use crate::hub::Hub;
use crate::hub::stats::Counters;
use crate::log;
use crate::time::now_us;

use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// What woke the waiting request loop.
enum Wake {
    /// The session was killed, or the server is shutting down.
    Closing,
    /// The outbox's signal: the loop looks again at why.
    Signalled,
    /// A reload put a new policy in force.
    PolicyChanged,
    Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
}

/// How long a session waits between frames in its own task before it parks: a session
/// that is busy keeps its task (parking and resuming cost more than a wait), one that
/// went quiet gives it up.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(100);

/// Serving frames that delivered at least this many messages was a burst, after which
/// the session lets the writers it woke run before it reads on.
const YIELD_AFTER_DELIVERIES: u64 = 256;

/// How the request loop ended.
pub(super) enum Outcome {
    /// The session ends, with this code and reason.
    End(ErrorCode, String),
    /// The session went quiet and may park; nothing is buffered. `heartbeat` is its
    /// heartbeat deadline, which parking does not move.
    Park { heartbeat: Instant },
}

impl From<(ErrorCode, String)> for Outcome {
    fn from((code, reason): (ErrorCode, String)) -> Self {
        Outcome::End(code, reason)
    }
}

/// Serves requests until the session ends (returns why), or until it has waited
/// [`PARK_AFTER`] between frames (returns its heartbeat deadline, for it to park).
/// `heartbeat` is the heartbeat deadline of a session coming back from parking.
///
/// This is where a connection waits before it parks, so it holds only what waiting
/// needs; serving frames takes far more (the future of every request handler, a codec),
/// which is boxed and lives only while there are bytes to serve.
pub(super) async fn request_loop<R: Readable>(
    hub: &Hub,
    session: &mut Session,
    reader: &mut FrameReader<R>,
    mut heartbeat: Option<Instant>,
) -> Outcome {
    // A session whose credentials expire (a JWT's `exp`) ends then, busy or idle.
    let expiry = session.identity.expires_at_us.map(instant_of);
    // Frames were served since the loop started (a session's first request, if it is
    // still `opening`).
    let mut served = false;
    loop {
        if let Some(end) = expiry.and_then(|expiry| credentials_expired(session, expiry)) {
            return end.into();
        }
        // Frames may be waiting already: sent right behind SESSION_INIT, or left by a
        // batch that stopped at a partial frame or for the kill switch.
        if reader.has_bytes() {
            served = true;
            let delivered = &hub.counters().messages_delivered;
            let before = delivered.load(Ordering::Relaxed);
            if let Some(end) = Box::pin(serve_buffered(hub, session, reader)).await {
                return end.into();
            }
            // After a burst of deliveries, the writers it woke (on this worker as often
            // as not) run before more is read: they write what it queued while that is
            // still in the cache, and their queues stay a read long rather than growing
            // by every read the socket has ready (tokio lets a task read on until its
            // budget of 128 operations is spent). Reads of a few large messages, or of
            // publishes nobody receives, gain nothing by it and are read on. The count
            // is the hub's, so it may include other sessions' deliveries: a yield more.
            let burst = delivered.load(Ordering::Relaxed).wrapping_sub(before);
            if burst >= YIELD_AFTER_DELIVERIES {
                tokio::task::yield_now().await;
            }
        }
        // A large frame still arriving is admitted against the server's budget before
        // more of it is read.
        if let Err(busy) = reader.admit_partial_frame(hub.codec()) {
            return Box::pin(refuse_busy(session, *busy)).await.into();
        }
        let now = Instant::now();
        let heartbeat_at = heartbeat.take().unwrap_or(now + session.idle_limit());
        let mut deadline = reader.wait_deadline(heartbeat_at, hub.config().frame_timeout);
        if let Some(expiry) = expiry {
            deadline = deadline.min(expiry);
        }
        // The first quiet moment after the session's first request parks it at once:
        // most sessions that go quiet then (opened, subscribed) stay quiet, and a
        // thousand sessions opening at once would otherwise each keep its task for the
        // linger. A session that is busy after all resumes once and lingers from then on.
        let at_once = session.opening && served;
        let linger = if at_once { Duration::ZERO } else { PARK_AFTER };
        // Parking is worth it only before the deadline, between frames, with no upload
        // open (what an upload holds is not waited on alone).
        let park_at = Some(now + linger).filter(|&park_at| {
            park_at < deadline
                && reader.is_between_frames()
                && session.may_park()
                && hub.parking().is_open()
        });
        if at_once && park_at.is_some() {
            session.opening = false;
        }
        let wait_until = park_at.unwrap_or(deadline);
        // The kill switch, shutdown and a reload all wake the outbox's signal: one
        // future for the three, enabled before they are looked at so that none is missed.
        let wake = {
            let signal = session.caller.outbox.signal();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if session.caller.outbox.is_killed() {
                Wake::Closing
            } else if session.policy_changed(hub.policy_generation()) {
                Wake::PolicyChanged
            } else {
                tokio::select! {
                    biased;
                    () = signal => Wake::Signalled,
                    read = tokio::time::timeout_at(wait_until, reader.fill()) => Wake::Read(read),
                }
            }
        };
        let client_id = session.caller.client_id();
        match wake {
            Wake::Read(Err(_)) if park_at.is_some() => {
                return Outcome::Park {
                    heartbeat: heartbeat_at,
                };
            }
            Wake::Closing if hub.is_shutting_down() => {
                return Outcome::End(ErrorCode::ShuttingDown, "server shutting down".to_owned());
            }
            Wake::Closing => {
                let (code, reason) = session.caller.outbox.kill_reason();
                warn!(target: log::ERROR, client_id, %code, %reason, "closing session");
                return Outcome::End(code, reason);
            }
            Wake::Read(Err(_)) if expiry.is_some_and(|expiry| expiry <= Instant::now()) => {}
            Wake::Read(Err(_)) if reader.frame_overdue(hub.config().frame_timeout) => {
                return frame_timed_out(hub, session, reader).into();
            }
            Wake::Read(Err(_)) => {
                let idle_limit = session.idle_limit();
                Counters::add(&hub.counters().heartbeat_timeouts, 1);
                warn!(target: log::CONNECTION, client_id, "no heartbeat for {idle_limit:?}; closing");
                return Outcome::End(
                    ErrorCode::HeartbeatTimeout,
                    format!(
                        "nothing received for {} ms (three heartbeats)",
                        idle_limit.as_millis()
                    ),
                );
            }
            Wake::Read(Ok(Err(error))) => {
                // The peer is gone (a reset): like an end of stream, not a protocol error.
                return Outcome::End(ErrorCode::Normal, format!("connection lost: {error}"));
            }
            Wake::Read(Ok(Ok(0))) => {
                return match reader.ended() {
                    Ok(_) => Outcome::End(
                        ErrorCode::Normal,
                        "connection closed by the client".to_owned(),
                    ),
                    Err(error) => Box::pin(bad_frame(hub, session, error)).await.into(),
                };
            }
            // Looked at again from the top: what woke it is seen before the next wait.
            Wake::Signalled => {}
            Wake::PolicyChanged => {
                if let Some(end) = Box::pin(cmd::limits::policy_changed(hub, session)).await {
                    return end.into();
                }
            }
            Wake::Read(Ok(Ok(read))) => {
                Counters::add(&hub.counters().bytes_received, read as u64);
            }
        }
    }
}

/// The instant of a wall-clock time in microseconds since the Unix epoch.
pub(super) fn instant_of(at_us: u64) -> Instant {
    let left = Duration::from_micros(at_us.saturating_sub(now_us()));
    // Far-off expiries are capped so that adding them to now cannot overflow.
    Instant::now() + left.min(Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The end of a session whose credentials have expired, if they have.
fn credentials_expired(session: &Session, expiry: Instant) -> Option<(ErrorCode, String)> {
    if expiry > Instant::now() {
        return None;
    }
    warn!(target: log::CONNECTION, client_id = session.caller.client_id(), user = ?session.identity.user, "credentials expired; closing");
    Some((ErrorCode::AuthFailed, "token expired".to_owned()))
}

/// Serves every frame complete in the read buffer; returns why the session ends if it
/// does, `None` once the buffer holds no complete frame or the session is being closed
/// (which the request loop then sees). Frames in the buffer are served one after another
/// without setting up the request loop's wait (a timer and a cancellation future per
/// frame cost more than a small publish).
async fn serve_buffered<R: Readable>(
    hub: &Hub,
    session: &mut Session,
    reader: &mut FrameReader<R>,
) -> Option<(ErrorCode, String)> {
    let mut codec = hub.codec().clone();
    let mut run = PublishRun::default();
    loop {
        // The kill switch is pulled by the server's shutdown too (one look, not two).
        if session.caller.outbox.is_killed() {
            return None;
        }
        if !reader.holds_whole_frame() {
            // What the run keeps are slices of the read buffer: let go of them before the
            // reader makes room for the rest of a frame, so that it may reuse its buffer
            // rather than take another.
            run = PublishRun::default();
        }
        let frame = match reader.buffered_frame(&mut codec) {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(error) => return Some(bad_frame(hub, session, error).await),
        };
        session.more_read = reader.has_bytes();
        if let Some(answer) = cmd::apply_at_once(hub, session, &mut run, &frame) {
            // Served: the frame's share of the read buffer is not kept while waiting.
            drop(frame);
            if !answer.is_nothing() {
                answer.send(hub, session).await;
                run.waited();
            }
            continue;
        }
        // Whatever that request changed (a channel, the session's state), the
        // publishes after it see.
        run = PublishRun::default();
        if let AfterRequest::Close(code, reason) = cmd::apply(hub, session, frame).await {
            return Some((code, reason));
        }
    }
}

/// Refuses a large frame the server has no room for, answering its request id; the
/// session ends (the rest of the frame is still on its way and cannot be skipped).
async fn refuse_busy(session: &Session, busy: BusyFrame) -> (ErrorCode, String) {
    let message = busy.message();
    let client_id = session.caller.client_id();
    let BusyFrame { head, no_room } = busy;
    warn!(target: log::ERROR, client_id, len = no_room.len, held = no_room.held, "large frame refused: the partial-frame budget is spent; closing");
    let refusal = ErrorPacket::new(ErrorCode::ServerBusy, message.as_str());
    session.reply(head.request_id, Packet::Error(refusal)).await;
    (ErrorCode::ServerBusy, message)
}

/// The frame deadline passed with the frame still incomplete.
fn frame_timed_out<R: Readable>(
    hub: &Hub,
    session: &Session,
    reader: &FrameReader<R>,
) -> (ErrorCode, String) {
    let limit = hub.config().frame_timeout;
    let (arrived, declared) = reader.partial_frame(hub.codec());
    Counters::add(&hub.counters().frame_timeouts, 1);
    let client_id = session.caller.client_id();
    warn!(target: log::ERROR, client_id, arrived, ?declared, "frame not complete within {limit:?}; closing");
    let declared = declared.map_or_else(|| "?".to_owned(), |len| len.to_string());
    (
        ErrorCode::FrameTimeout,
        format!(
            "a frame must arrive whole within {} ms of its first byte; {arrived} of its \
             {declared} bytes came",
            limit.as_millis()
        ),
    )
}

/// Tells the peer why its frame is refused; the session ends with that reason.
async fn bad_frame(hub: &Hub, session: &Session, error: ProtoError) -> (ErrorCode, String) {
    Counters::add(&hub.counters().protocol_errors, 1);
    warn!(target: log::ERROR, client_id = session.caller.client_id(), %error, "bad frame; closing");
    session
        .reply(
            0,
            Packet::Error(ErrorPacket::new(error.code(), error.to_string())),
        )
        .await;
    (error.code(), error.to_string())
}
