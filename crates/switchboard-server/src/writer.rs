//! The writer task of a connection: takes items from the outbound queue, encodes them and
//! writes them out, many frames per system call.
//!
//! It drains whatever is queued into one buffer before writing, so that a burst of
//! deliveries costs one write instead of one per frame, and it frees that buffer while
//! the connection is idle so that idle connections stay small.

use bytes::BytesMut;
use switchboard_proto::packet::{Encode, Packet};
use switchboard_proto::{Flags, FrameCodec, ProtoError};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::log;
use crate::outbox::{OutboxReceiver, Outgoing};

/// Writes are batched up to this many bytes.
const BATCH_BYTES: usize = 256 * 1024;
/// A buffer grown past this is released after each batch.
const KEEP_BUFFER: usize = 16 * 1024;

/// Runs until the queue is closed, a Close item was written, or the socket fails.
pub(crate) async fn run<W>(mut rx: OutboxReceiver, mut sink: W, codec: FrameCodec, conn_id: u64)
where
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut closing = encode(&codec, first, &mut buf);
        while !closing && buf.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => closing = encode(&codec, item, &mut buf),
                Err(_) => break,
            }
        }
        if let Err(error) = sink.write_all(&buf).await {
            debug!(target: log::CONNECTION, conn_id, %error, "write failed");
            return;
        }
        if buf.capacity() > KEEP_BUFFER {
            buf = BytesMut::new();
        } else {
            buf.clear();
        }
        if closing {
            break;
        }
    }
    let _ = sink.flush().await;
    let _ = sink.shutdown().await;
}

/// Encodes one item into `buf`; returns true if it was a Close.
fn encode(codec: &FrameCodec, item: Outgoing, buf: &mut BytesMut) -> bool {
    match item {
        Outgoing::Packet {
            request_id,
            flags,
            packet,
        } => encode_packet(codec, request_id, flags, packet.as_ref(), buf),
        Outgoing::PublishAck { request_id, ack } => {
            encode_packet(codec, request_id, Flags::empty(), &ack, buf);
        }
        Outgoing::Shared(frame) => buf.extend_from_slice(&frame),
        Outgoing::Sequence {
            request_id,
            head,
            messages,
            tail,
        } => {
            if let Some(head) = head {
                encode_packet(codec, request_id, Flags::empty(), head.as_ref(), buf);
            }
            for message in messages {
                encode_packet(codec, request_id, Flags::REPLAY, message.envelope(), buf);
            }
            if let Some(tail) = tail {
                encode_packet(codec, request_id, Flags::empty(), tail.as_ref(), buf);
            }
        }
        Outgoing::Close(disconnect) => {
            encode_packet(
                codec,
                0,
                Flags::empty(),
                &Packet::Disconnect(disconnect),
                buf,
            );
            return true;
        }
    }
    false
}

fn encode_packet<P: Encode + ?Sized>(
    codec: &FrameCodec,
    request_id: u32,
    flags: Flags,
    packet: &P,
    buf: &mut BytesMut,
) {
    if let Err(error) = codec.encode_packet(request_id, flags, packet, buf) {
        // Only a reply too large for a frame can fail here; say so instead of sending it.
        report_encode_failure(codec, request_id, &error, buf);
    }
}

fn report_encode_failure(
    codec: &FrameCodec,
    request_id: u32,
    error: &ProtoError,
    buf: &mut BytesMut,
) {
    tracing::error!(target: log::ERROR, request_id, %error, "cannot encode reply");
    let packet = switchboard_proto::packet::ErrorPacket::new(
        switchboard_proto::ErrorCode::Internal,
        format!("reply could not be encoded: {error}"),
    );
    let _ = codec.encode_packet(request_id, Flags::empty(), &packet, buf);
}
