//! Moving frames in bulk: the sizes both ends of a connection read and write by, and
//! [`WriteBatch`], the frames a writer has gathered for one write.
//!
//! A writer takes every frame already queued, up to [`BATCH_BYTES`], and writes them with
//! one (vectored) system call. Small frames are encoded or copied into one buffer; a
//! frame or body of [`WRITE_APART_BYTES`] or more is kept as it is and written from its
//! own buffer, between the buffered bytes before and after it, instead of being copied
//! once more. The batch does no I/O itself: it is a [`Buf`], so a writer sends it with
//! `write_all_buf`, which writes all of its parts in one vectored write when the
//! transport supports that.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::FrameCodec;
use crate::error::ProtoError;
use crate::frame::Flags;
use crate::packet::Encode;

/// A batch is written once it holds this many bytes, even if more is queued: memory stays
/// bounded and the first frames are not held back for long.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Frames and bodies at least this large are written from their own buffer rather than
/// copied into the batch's (a copy that a shared frame would cost once per receiver).
pub const WRITE_APART_BYTES: usize = 16 * 1024;

/// Room a reader asks of the socket per read while frames stream in: enough for many
/// small frames per system call.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The bytes of one write: the buffer frames are encoded into, and the large pieces kept
/// apart, each to be written where the buffer stood when it was added. Empty until
/// something is encoded or pushed: an idle writer that drops it holds nothing, and a
/// busy one that clears it after each write keeps its memory and allocates no more.
#[derive(Debug, Default)]
pub struct WriteBatch {
    buffer: BytesMut,
    /// Pieces written from their own buffers, in order, each after `buffer[..at]`;
    /// never an empty piece.
    apart: VecDeque<(usize, Bytes)>,
    /// Bytes in `apart`.
    apart_len: usize,
    /// Bytes at the start of `buffer` already written.
    written: usize,
}

impl WriteBatch {
    /// An empty batch, holding no memory.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// An empty batch whose buffer has room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        WriteBatch {
            buffer: BytesMut::with_capacity(capacity),
            ..WriteBatch::default()
        }
    }

    /// Bytes left to write.
    pub fn len(&self) -> usize {
        self.buffer.len() - self.written + self.apart_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the batch should be written before more is added.
    pub fn is_full(&self) -> bool {
        self.len() >= BATCH_BYTES
    }

    /// The buffer frames are encoded into, after everything already in the batch.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Encodes a packet into the batch. A body of [`WRITE_APART_BYTES`] or more stays in
    /// its own buffer: only the frame's head (and HMAC tag) is encoded around it. On error
    /// nothing was added.
    pub fn encode<P: Encode + ?Sized>(
        &mut self,
        codec: &FrameCodec,
        request_id: u32,
        flags: Flags,
        packet: &P,
    ) -> Result<(), ProtoError> {
        match packet.body() {
            Some(body) if body.len() >= WRITE_APART_BYTES => {
                let tag = codec.encode_head(request_id, flags, packet, body, &mut self.buffer)?;
                self.push_apart(body.clone());
                if let Some(tag) = tag {
                    self.buffer.extend_from_slice(&tag);
                }
                Ok(())
            }
            _ => codec.encode_packet(request_id, flags, packet, &mut self.buffer),
        }
    }

    /// Adds a frame encoded already (one shared by several receivers, say): copied into
    /// the buffer if small, else kept apart.
    pub fn push_frame(&mut self, frame: Bytes) {
        if frame.len() >= WRITE_APART_BYTES {
            self.push_apart(frame);
        } else {
            self.buffer.extend_from_slice(&frame);
        }
    }

    /// Adds bytes that are not a whole frame (a body kept apart from its encoded head,
    /// say) after everything in the batch: copied into the buffer if small, else kept
    /// apart.
    pub fn push_bytes(&mut self, bytes: &Bytes) {
        if bytes.len() >= WRITE_APART_BYTES {
            self.push_apart(bytes.clone());
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Adds `bytes` after everything in the batch, without copying them.
    fn push_apart(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.apart_len += bytes.len();
        self.apart.push_back((self.buffer.len(), bytes));
    }

    /// Where the buffered bytes before the next piece kept apart end.
    fn buffered_until(&self) -> usize {
        self.apart.front().map_or(self.buffer.len(), |(at, _)| *at)
    }

    /// Empties the batch once it was written, keeping its buffer for the next batch
    /// unless it grew past `keep` bytes.
    pub fn clear(&mut self, keep: usize) {
        self.apart.clear();
        self.apart_len = 0;
        self.written = 0;
        if self.buffer.capacity() > keep {
            self.buffer = BytesMut::new();
        } else {
            self.buffer.clear();
        }
    }
}

impl Buf for WriteBatch {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        let until = self.buffered_until();
        match self.apart.front() {
            Some((_, piece)) if self.written == until => piece,
            _ => &self.buffer[self.written..until],
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        let mut add = |chunk: &'a [u8]| match dst.get_mut(filled) {
            Some(slot) if !chunk.is_empty() => {
                *slot = IoSlice::new(chunk);
                filled += 1;
                true
            }
            Some(_) => true,
            None => false,
        };
        let mut from = self.written;
        for (at, piece) in &self.apart {
            if !add(&self.buffer[from..*at]) || !add(piece) {
                return filled;
            }
            from = *at;
        }
        add(&self.buffer[from..]);
        filled
    }

    fn advance(&mut self, mut count: usize) {
        while count > 0 {
            let until = self.buffered_until();
            if self.written < until {
                let step = count.min(until - self.written);
                self.written += step;
                count -= step;
                continue;
            }
            let Some((_, piece)) = self.apart.front_mut() else {
                return;
            };
            if count < piece.len() {
                piece.advance(count);
                self.apart_len -= count;
                return;
            }
            count -= piece.len();
            self.apart_len -= piece.len();
            self.apart.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio_util::codec::Decoder;

    use super::*;
    use crate::frame::FrameType;
    use crate::limits::Limits;
    use crate::mac::MacKey;
    use crate::packet::{Packet, Publish};

    /// Writes the batch the way an async writer does, `step` bytes per write at most
    /// (vectored writes when `vectored`), and returns what was written and how many
    /// writes it took.
    fn drain(batch: &mut WriteBatch, step: usize, vectored: bool) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut writes = 0;
        while batch.has_remaining() {
            let written = if vectored {
                let mut slices = [IoSlice::new(&[]); 64];
                let count = batch.chunks_vectored(&mut slices);
                let mut room = step;
                for slice in &slices[..count] {
                    let take = slice.len().min(room);
                    out.write_all(&slice[..take]).unwrap();
                    room -= take;
                }
                step - room
            } else {
                let chunk = batch.chunk();
                let take = chunk.len().min(step);
                out.write_all(&chunk[..take]).unwrap();
                take
            };
            assert!(
                written > 0,
                "a write of nothing would look like a closed peer"
            );
            writes += 1;
            batch.advance(written);
        }
        (out, writes)
    }

    fn publish(index: usize, size: usize) -> Publish {
        Publish {
            channel: "big".into(),
            body: Bytes::from(vec![index as u8; size]),
            ..Publish::default()
        }
    }

    #[test]
    fn large_bodies_kept_apart_leave_the_frames_whole_and_in_order() {
        let sizes = [10, 100_000, 20, 40_000, 70_000, 5, WRITE_APART_BYTES];
        for mac in [false, true] {
            let key = mac.then(|| MacKey::new(b"batch-test"));
            let codec = FrameCodec::new(Limits::default()).with_mac_key(key);
            for (step, vectored) in [(usize::MAX, true), (7_000, true), (3_000, false)] {
                let mut batch = WriteBatch::new();
                for (index, size) in sizes.iter().enumerate() {
                    batch
                        .encode(
                            &codec,
                            index as u32 + 1,
                            Flags::empty(),
                            &publish(index, *size),
                        )
                        .unwrap();
                }
                let expected = batch.len();
                let (bytes, _) = drain(&mut batch, step, vectored);
                assert_eq!(bytes.len(), expected);
                let mut bytes = BytesMut::from(&bytes[..]);
                let mut decoder = codec.clone();
                let mut seen = Vec::new();
                while let Some(frame) = decoder.decode(&mut bytes).unwrap() {
                    assert_eq!(frame.frame_type, FrameType::Publish);
                    let Ok(Packet::Publish(publish)) = Packet::from_frame(&frame) else {
                        panic!("not a publish");
                    };
                    let index = frame.request_id as usize - 1;
                    assert!(publish.body.iter().all(|&byte| byte == index as u8));
                    seen.push(publish.body.len());
                }
                assert!(bytes.is_empty(), "nothing left over");
                assert_eq!(seen, sizes, "mac {mac}, step {step}");
            }
        }
    }

    #[test]
    fn small_frames_share_one_buffer_and_one_write() {
        let codec = FrameCodec::new(Limits::default());
        let mut batch = WriteBatch::new();
        for index in 0..1000 {
            batch
                .encode(&codec, index, Flags::empty(), &publish(1, 16))
                .unwrap();
        }
        let (_, writes) = drain(&mut batch, usize::MAX, true);
        assert_eq!(writes, 1);
    }

    #[test]
    fn frames_encoded_already_are_copied_only_when_small() {
        let small = Bytes::from_static(b"small frame");
        let large = Bytes::from(vec![7u8; WRITE_APART_BYTES]);
        let mut batch = WriteBatch::new();
        batch.push_frame(small.clone());
        batch.push_frame(large.clone());
        batch.push_frame(small.clone());
        // Written as three pieces: the buffered bytes, the large frame from its own
        // buffer, the buffered bytes after it.
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(batch.chunks_vectored(&mut slices), 3);
        assert_eq!(slices[1].as_ptr(), large.as_ptr(), "not copied");
        let (bytes, _) = drain(&mut batch, usize::MAX, true);
        assert_eq!(bytes, [&small[..], &large[..], &small[..]].concat());
    }

    #[test]
    fn empty_pieces_are_never_written() {
        let mut batch = WriteBatch::new();
        batch.push_frame(Bytes::new());
        batch.push_apart(Bytes::new());
        batch.push_apart(Bytes::from_static(b"head"));
        batch.push_apart(Bytes::new());
        batch.push_apart(Bytes::from_static(b"body"));
        batch.push_apart(Bytes::new());
        let (bytes, _) = drain(&mut batch, 3, false);
        assert_eq!(bytes, b"headbody");
        assert!(batch.is_empty());
    }

    #[test]
    fn a_batch_is_full_at_the_batch_size_and_empty_once_cleared() {
        let mut batch = WriteBatch::new();
        batch.buffer().extend_from_slice(&[0; 1000]);
        batch.push_frame(Bytes::from(vec![1; BATCH_BYTES - 1001]));
        assert!(!batch.is_full());
        batch.push_frame(Bytes::from_static(b"x"));
        assert!(batch.is_full());
        batch.clear(usize::MAX);
        assert!(batch.is_empty() && !batch.has_remaining());
        batch.buffer().extend_from_slice(&[0; 64 * 1024]);
        batch.clear(16 * 1024);
        assert_eq!(batch.buffer().capacity(), 0, "a grown buffer is given back");
    }
}
