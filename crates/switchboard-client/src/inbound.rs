//! Streamed bodies on their way in: the streams the server opened, each with the body
//! channels of the message's recipients.
//!
//! A MESSAGE with flag STREAM opens a stream under its STREAM_ID, and each recipient of
//! the message (every matching subscription of a live message, or the one request it
//! answers) gets its own body channel ([`crate::body`]). CHUNK frames are routed by
//! stream id alone, whatever comes between them (other frames, chunks of other streams,
//! the MESSAGES_END of the request that fetched the message); the LAST chunk closes the
//! stream with its digest, STREAM_ABORT or the connection's end close it with an error.
//! The chunks of a stream whose recipients all dropped their message are discarded.
//!
//! Backpressure is the subscriptions' rule: when a body's buffer is full the dispatch
//! task waits for its reader and reads nothing else from the socket meanwhile. The one
//! exception is a body whose message sits in a GET_MESSAGES list not yet handed over:
//! nobody can read it, so waiting could only end in a timeout, and that request fails at
//! once with [`crate::ErrorKind::StreamedBodyBeforeEnd`] instead. Once the client starts
//! closing, it no longer waits for readers at all.

use std::collections::HashMap;
use std::io;

use switchboard_proto::Frame;
use switchboard_proto::packet::{Chunk, StreamAbort};

use crate::body::{self, BodySender, TrySend};
use crate::error::{CloseReason, ErrorDetail};
use crate::payload::ReceivedMessage;
use crate::shared::Shared;

/// What became of one part of a body for one recipient.
enum Delivery {
    Delivered,
    /// The recipient dropped its message or reader.
    Gone,
    /// The buffer was full and the client is closing: no more waiting.
    Closing,
}

/// A streamed body the server is sending.
#[derive(Debug)]
struct InboundStream {
    total_len: u64,
    /// One per recipient still holding its message.
    senders: Vec<BodySender>,
    /// The GET_MESSAGES whose list holds the message until MESSAGES_END.
    collecting: Option<u32>,
}

/// The streams the server has open towards this client, by stream id.
#[derive(Debug, Default)]
pub(crate) struct InboundStreams {
    streams: HashMap<u64, InboundStream>,
}

impl InboundStreams {
    /// Starts routing the chunks of a stream the server opened.
    pub(crate) fn open(&mut self, stream_id: u64, total_len: u64) {
        let stream = InboundStream {
            total_len,
            senders: Vec::new(),
            collecting: None,
        };
        if let Some(previous) = self.streams.insert(stream_id, stream) {
            tracing::warn!(stream_id, "the server reused the id of a stream still open");
            for sender in previous.senders {
                sender.fail(
                    io::ErrorKind::InvalidData,
                    "the server opened another stream with the same id before this one ended",
                );
            }
        }
    }

    /// The message as one recipient gets it: a streamed body gets a channel of its own,
    /// fed by the stream's chunks.
    pub(crate) fn recipient(&mut self, message: ReceivedMessage) -> ReceivedMessage {
        let Some(start) = message.stream_start() else {
            return message;
        };
        let (sender, receiver) = body::channel();
        if let Some(stream) = self.streams.get_mut(&start.stream_id) {
            stream.senders.push(sender);
        }
        message.with_body_receiver(receiver)
    }

    /// Hands a CHUNK to every recipient of its stream, waiting for room when a body's
    /// buffer is full; the last chunk ends the stream.
    pub(crate) async fn on_chunk(&mut self, shared: &Shared, frame: &Frame) {
        let chunk = match Chunk::from_frame(frame) {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::warn!(%error, "undecodable CHUNK from the server");
                // Its stream cannot be completed: end it rather than leave it hanging.
                // (STREAM_ABORT reads nothing but the stream id from the header block.)
                if let Ok(abort) = StreamAbort::from_frame(frame) {
                    self.fail(
                        abort.stream_id,
                        io::ErrorKind::InvalidData,
                        format!("the server sent a malformed chunk: {error}"),
                    );
                }
                return;
            }
        };
        let Some(stream) = self.streams.get_mut(&chunk.stream_id) else {
            tracing::debug!(
                stream_id = chunk.stream_id,
                "CHUNK of a stream that is not open; ignored"
            );
            return;
        };
        if !chunk.data.is_empty() {
            let mut index = 0;
            while index < stream.senders.len() {
                let delivered = match stream.senders[index].try_send(chunk.data.clone()) {
                    TrySend::Sent => Delivery::Delivered,
                    TrySend::Gone => Delivery::Gone,
                    TrySend::Full(data) => {
                        if let Some(request_id) = stream.collecting {
                            // Nobody can read this body before the list is complete.
                            let mut requests = shared.requests();
                            if requests.is_collecting(request_id) {
                                let pending = requests.take(request_id);
                                drop(requests);
                                if let Some(pending) = pending {
                                    pending.fail(
                                        ErrorDetail::StreamedBodyBeforeEnd {
                                            total_len: stream.total_len,
                                        }
                                        .into(),
                                    );
                                }
                            }
                        }
                        let close_started = shared.close_started.cancelled();
                        tokio::select! {
                            delivered = stream.senders[index].send(data) => {
                                if delivered { Delivery::Delivered } else { Delivery::Gone }
                            }
                            () = close_started => Delivery::Closing,
                        }
                    }
                };
                match delivered {
                    Delivery::Delivered => index += 1,
                    Delivery::Gone => drop(stream.senders.swap_remove(index)),
                    Delivery::Closing => stream.senders.swap_remove(index).fail(
                        io::ErrorKind::ConnectionAborted,
                        "the client closed the connection before the body was read",
                    ),
                }
            }
        }
        if let Some(digest) = chunk.digest
            && let Some(stream) = self.streams.remove(&chunk.stream_id)
        {
            for sender in stream.senders {
                sender.end(digest);
            }
        }
    }

    /// Ends the stream a STREAM_ABORT names, with the server's reason.
    pub(crate) fn on_abort(&mut self, frame: &Frame) {
        match StreamAbort::from_frame(frame) {
            Ok(abort) => self.fail(
                abort.stream_id,
                io::ErrorKind::ConnectionAborted,
                format!(
                    "the server aborted the streamed body ({}): {}",
                    abort.code, abort.reason
                ),
            ),
            Err(error) => tracing::warn!(%error, "undecodable STREAM_ABORT from the server"),
        }
    }

    /// Ends a stream with an error for every recipient.
    fn fail(&mut self, stream_id: u64, kind: io::ErrorKind, reason: String) {
        match self.streams.remove(&stream_id) {
            Some(stream) => {
                for sender in stream.senders {
                    sender.fail(kind, reason.clone());
                }
            }
            None => tracing::debug!(stream_id, "end of a stream that is not open"),
        }
    }

    /// Notes that the message of `stream_id` sits in the list GET_MESSAGES `request_id`
    /// is gathering, which nobody can read before MESSAGES_END.
    pub(crate) fn collected_by(&mut self, stream_id: u64, request_id: u32) {
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            stream.collecting = Some(request_id);
        }
    }

    /// Ends every body still arriving with an error: the connection is over.
    pub(crate) fn end_all(&mut self, reason: &CloseReason) {
        for (_, stream) in self.streams.drain() {
            for sender in stream.senders {
                sender.fail(
                    io::ErrorKind::ConnectionAborted,
                    format!("the connection ended before the streamed body was complete: {reason}"),
                );
            }
        }
    }

    /// Number of streams still open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }
}
