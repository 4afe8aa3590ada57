//! Streamed bodies: a PUBLISH with flag STREAM opens an upload, CHUNK frames fill it, and
//! the last chunk (with the body's SHA-256) commits it as one message. STREAM_ABORT, a bad
//! length or digest, or a broken connection discards the upload: nothing half-stored is
//! ever visible.

use bytes::Bytes;
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{Chunk, Publish, Scope, StreamAbort};
use tracing::info;

use super::publish::{acknowledge, run_hooks};
use super::session::Session;
use crate::blobs::{BlobError, Upload};
use crate::error::Refusal;
use crate::hub::admission::{Admission, BodyShape};
use crate::hub::{Hub, blob_refusal};
use crate::log;

/// Uploads one session may have open at once.
pub(crate) const MAX_OPEN_STREAMS: usize = 16;

/// An upload in progress on a session.
#[derive(Debug)]
pub(super) struct Ingest {
    request_id: u32,
    quiet: bool,
    publish: Publish,
    total_len: u64,
    upload: Upload,
}

/// A session's uploads in progress, by stream id: at most [`MAX_OPEN_STREAMS`], so a
/// vector searched in order, boxed when the first opens (8 bytes in the session for its
/// whole life, against a vector's 24 and a hash map's 48, and every idle session has
/// one).
#[derive(Debug, Default)]
pub(super) struct OpenStreams {
    #[allow(clippy::box_collection)]
    open: Option<Box<Vec<(u64, Ingest)>>>,
}

impl OpenStreams {
    fn len(&self) -> usize {
        self.open.as_ref().map_or(0, |open| open.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.open.is_none()
    }

    fn contains_key(&self, stream_id: &u64) -> bool {
        self.open
            .iter()
            .flat_map(|open| open.iter())
            .any(|(id, _)| id == stream_id)
    }

    /// Opens a stream whose id is not open (see [`OpenStreams::contains_key`]).
    fn insert(&mut self, stream_id: u64, ingest: Ingest) {
        self.open
            .get_or_insert_with(Box::default)
            .push((stream_id, ingest));
    }

    fn get_mut(&mut self, stream_id: &u64) -> Option<&mut Ingest> {
        self.open
            .as_mut()?
            .iter_mut()
            .find(|(id, _)| id == stream_id)
            .map(|(_, ingest)| ingest)
    }

    fn remove(&mut self, stream_id: &u64) -> Option<Ingest> {
        let open = self.open.as_mut()?;
        let index = open.iter().position(|(id, _)| id == stream_id)?;
        let (_, ingest) = open.swap_remove(index);
        if open.is_empty() {
            // The session keeps no storage for uploads while it has none.
            self.open = None;
        }
        Some(ingest)
    }
}

fn aborted(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::StreamAborted, message)
}

/// PUBLISH with flag STREAM: checks everything that can be checked before the body
/// arrives, then starts the upload with the frame's first part.
pub(crate) async fn open(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    quiet: bool,
    mut publish: Publish,
) {
    let Some(stream) = publish.stream else {
        return;
    };
    if session.streams.len() >= MAX_OPEN_STREAMS {
        let refusal = Refusal::new(
            ErrorCode::LimitReached,
            format!("a session may stream at most {MAX_OPEN_STREAMS} bodies at once"),
        );
        session.refuse(request_id, refusal).await;
        return;
    }
    if session.streams.contains_key(&stream.stream_id) {
        let refusal = Refusal::invalid(format!("stream {} is already open", stream.stream_id));
        session.refuse(request_id, refusal).await;
        return;
    }
    if let Err(refusal) = run_hooks(hub, session, &mut publish) {
        session.refuse(request_id, refusal).await;
        return;
    }
    // Refused before any of the body arrives if the session may not create the channel;
    // the creation itself waits for the whole body.
    if let Err(refusal) = super::channel::permit_implicit_channel(hub, session, &publish) {
        session.refuse(request_id, refusal).await;
        return;
    }
    let body = BodyShape::Streamed(stream.total_len);
    let admitted = if hub.cluster().is_some() && publish.scope == Scope::Group {
        // The cluster's groups are in the backplane, whose post checks membership with
        // the append; the size rules are judged here, before the body comes.
        let target = crate::hub::admission::Target::Group {
            name: &publish.channel,
            sender: session.caller.name(),
            member: true,
        };
        hub.publish_parts().0.admit(target, body).map(|_| ())
    } else {
        hub.admit(&session.caller, &publish, body).map(|_| ())
    };
    if let Err(refusal) = admitted {
        session.refuse(request_id, refusal).await;
        return;
    }
    let mut upload = match hub.blobs().begin(stream.total_len).await {
        Ok(upload) => upload,
        Err(error) => {
            let refusal = match error {
                BlobError::Io(error) => Refusal::new(
                    ErrorCode::Internal,
                    format!("cannot store the body: {error}"),
                ),
                error => blob_refusal(&error),
            };
            session.refuse(request_id, refusal).await;
            return;
        }
    };
    if let Err(error) = upload.write(&publish.body).await {
        session.refuse(request_id, aborted(error.to_string())).await;
        return;
    }
    // The first part is in the file now; keep only the metadata in memory.
    publish.body = Bytes::new();
    info!(target: log::GENERAL, client_id = session.caller.client_id(), channel = %publish.channel, total_len = stream.total_len, "receiving a streamed body");
    session.streams.insert(
        stream.stream_id,
        Ingest {
            request_id,
            quiet,
            publish,
            total_len: stream.total_len,
            upload,
        },
    );
}

/// CHUNK: appends to its upload; the last one commits the message.
pub(crate) async fn chunk(hub: &Hub, session: &mut Session, chunk: Chunk) {
    // Chunks of a stream that was refused or aborted are dropped without a word: the
    // sender has its answer already.
    let Some(ingest) = session.streams.get_mut(&chunk.stream_id) else {
        return;
    };
    if let Err(error) = ingest.upload.write(&chunk.data).await {
        if let Some(ingest) = session.streams.remove(&chunk.stream_id) {
            session
                .refuse(ingest.request_id, aborted(error.to_string()))
                .await;
        }
        return;
    }
    let Some(digest) = chunk.digest else {
        return;
    };
    // A streamed publish is read once its last chunk is: its latency starts there.
    let started = std::time::Instant::now();
    let Some(ingest) = session.streams.remove(&chunk.stream_id) else {
        return;
    };
    let Ingest {
        request_id,
        quiet,
        publish,
        total_len,
        upload,
    } = ingest;
    // Whether the body must be on disk before the acknowledgement; a publish the rules
    // now refuse is refused by the publish itself, once the body is checked.
    let sync = hub
        .admit(&session.caller, &publish, BodyShape::Streamed(total_len))
        .is_ok_and(Admission::must_sync);
    let upload = match hub.blobs().verify(upload, &digest, sync).await {
        Ok(upload) => upload,
        Err(error) => {
            session.refuse(request_id, aborted(error.to_string())).await;
            return;
        }
    };
    let creation = match super::channel::implicit_channel(hub, session, &publish) {
        Ok(creation) => creation,
        Err(refusal) => return session.refuse(request_id, refusal).await,
    };
    let result = match hub.cluster() {
        Some(cluster) if publish.scope == switchboard_proto::packet::Scope::Channel => {
            cluster
                .publish_streamed(hub, &session.caller, &publish, upload)
                .await
        }
        Some(cluster) if publish.scope == switchboard_proto::packet::Scope::Group => {
            cluster
                .post_streamed(hub, &session.caller, &publish, upload)
                .await
        }
        _ => hub.publish_streamed(&session.caller, publish, upload),
    };
    creation.settle(hub, result.is_ok());
    match result {
        Ok(published) => acknowledge(hub, session, request_id, quiet, published, started).await,
        Err(refusal) => session.refuse(request_id, refusal).await,
    }
}

/// STREAM_ABORT from the client: discard, and answer the PUBLISH that opened it.
pub(crate) async fn abort(session: &mut Session, abort: StreamAbort) {
    if let Some(ingest) = session.streams.remove(&abort.stream_id) {
        let reason = format!("the client abandoned the body: {}", abort.reason);
        session.refuse(ingest.request_id, aborted(reason)).await;
    }
}
