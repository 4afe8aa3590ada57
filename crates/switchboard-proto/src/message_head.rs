//! [`MessageHead`]: the head (prefix and header block) of the last live MESSAGE encoded
//! for a channel, kept so that the next one alike is encoded by patching it.
//!
//! The messages of a channel mostly come in runs from one publisher with one content
//! type: one message differs from the one before only in its id, sequence number, time
//! and body. Its head is then the kept one with those three fields, the content's length
//! and CRC and the header CRC written over, which costs a copy and a few stores instead
//! of writing every field again. The bytes are the ones [`FrameCodec::encode_envelope`]
//! gives; whatever does not fit the kept head is encoded that way, and kept in its place.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, BytesMut};

use crate::codec::{FrameCodec, Head, declared_header_len};
use crate::error::ProtoError;
use crate::fields::{same_bytes, varint_len, varint_word};
use crate::frame::{FIXED_HEADER_LEN, Flags, FrameType, MAC_TAG_LEN};
use crate::packet::{Envelope, Scope};

/// Heads longer than this are not kept: offsets into a kept head fit in a `u16`, and a
/// head that long is no common message.
const MAX_KEPT_HEAD: usize = 1024;

/// Bytes of a SCOPE field when there is one (key, length, one-byte value).
const SCOPE_FIELD: usize = 3;

/// The head of the last live MESSAGE (request id 0, no extra flags) encoded through it,
/// with where its varying fields lie. Empty until a message that may be patched was
/// encoded: one without user headers or a streamed body.
#[derive(Debug, Default, Clone)]
pub struct MessageHead {
    /// Prefix and header block as last encoded; empty if none is kept.
    bytes: Vec<u8>,
    /// A number no other head kept here or anywhere has had: see
    /// [`MessageHead::generation`].
    generation: u64,
    scope: Scope,
    sender_id: u64,
    /// Whether the head was encoded with an HMAC key (the MAC flag of its prefix).
    mac: bool,
    /// Where the values of the text fields lie in `bytes` (an absent one is empty).
    channel: Span,
    sender_name: Span,
    content_type: Span,
    /// Where the id's 16 bytes start.
    id_at: u16,
    /// Where the seq's varint starts, and its length.
    seq_at: u16,
    seq_len: u8,
    /// Where the time's varint starts, and its length.
    time_at: u16,
    time_len: u8,
}

/// A range of a kept head.
#[derive(Debug, Default, Clone, Copy)]
struct Span {
    start: u16,
    end: u16,
}

impl Span {
    /// Whether `text` is what this span of `bytes` holds.
    #[inline]
    fn holds(self, bytes: &[u8], text: &str) -> bool {
        let (start, end) = (usize::from(self.start), usize::from(self.end));
        end - start == text.len()
            && bytes
                .get(start..end)
                .is_some_and(|kept| same_bytes(kept, text.as_bytes()))
    }
}

/// Where the generations of heads come from.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl MessageHead {
    /// Which head this is: a number that changes whenever another head is kept in its
    /// place. While it stays the same, every message encoded through it had the same
    /// channel, scope, sender, content type and user headers, which is what lets a
    /// caller that knows a message is alike to one encoded before skip comparing them
    /// (see [`FrameCodec::encode_live_message_alike`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `envelope`, encoded by `codec`, has this head but for its id, seq, time
    /// and body: the same channel, scope, sender and content type, no user headers, an
    /// inline body, and a seq and time of the kept varint lengths.
    fn fits(&self, codec: &FrameCodec, envelope: &Envelope<'_>) -> bool {
        self.fits_but_texts(codec, envelope)
            && self.content_type.holds(&self.bytes, envelope.content_type)
            && self.sender_name.holds(&self.bytes, envelope.sender_name)
            && self.channel.holds(&self.bytes, envelope.channel)
    }

    /// [`MessageHead::fits`] but for the channel, sender name and content type.
    fn fits_but_texts(&self, codec: &FrameCodec, envelope: &Envelope<'_>) -> bool {
        !self.bytes.is_empty()
            && envelope.sender_id == self.sender_id
            && envelope.scope == self.scope
            && envelope.user_headers.is_empty()
            && envelope.stream.is_none()
            && codec.uses_mac() == self.mac
            && varint_len(envelope.seq) == usize::from(self.seq_len)
            && varint_len(envelope.time_us) == usize::from(self.time_len)
    }

    /// Keeps `head`, the prefix and header block just encoded for `envelope`, if a
    /// message alike may be patched from it; otherwise keeps nothing. Either way the
    /// head has a new generation.
    fn keep(&mut self, head: &[u8], envelope: &Envelope<'_>, mac: bool) {
        self.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        self.bytes.clear();
        if envelope.stream.is_some()
            || !envelope.user_headers.is_empty()
            || head.len() > MAX_KEPT_HEAD
        {
            return;
        }
        // The fields in the order `Envelope::write_header_block` writes them.
        let text = |at: usize, text: &str| -> (Span, usize) {
            if text.is_empty() {
                return (Span::default(), at);
            }
            let start = at + 1 + varint_len(text.len() as u64);
            let end = start + text.len();
            (span(start, end), end)
        };
        let (channel, at) = text(FIXED_HEADER_LEN, envelope.channel);
        let at = at
            + if envelope.scope == Scope::Channel {
                0
            } else {
                SCOPE_FIELD
            };
        let id_at = at + 2;
        let seq_at = id_at + 16 + 2;
        let seq_len = varint_len(envelope.seq);
        let time_at = seq_at + seq_len + 2;
        let time_len = varint_len(envelope.time_us);
        let at = time_at + time_len + 2 + varint_len(envelope.sender_id);
        let (sender_name, at) = text(at, envelope.sender_name);
        let (content_type, at) = text(at, envelope.content_type);
        if at != head.len() || time_len > 8 || seq_len > 8 {
            // Not the layout worked out (a varint past eight bytes is patched by no
            // one): nothing is kept rather than a head patched in the wrong places.
            debug_assert!(at == head.len(), "MESSAGE head layout");
            return;
        }
        self.bytes.extend_from_slice(head);
        self.scope = envelope.scope;
        self.sender_id = envelope.sender_id;
        self.mac = mac;
        self.channel = channel;
        self.sender_name = sender_name;
        self.content_type = content_type;
        self.id_at = id_at as u16;
        self.seq_at = seq_at as u16;
        self.seq_len = seq_len as u8;
        self.time_at = time_at as u16;
        self.time_len = time_len as u8;
    }
}

/// A span of a head no longer than [`MAX_KEPT_HEAD`] (checked before it is kept).
fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u16,
        end: end as u16,
    }
}

/// Writes over `out` the varint of `value`, which is exactly `out.len()` bytes long (at
/// most eight).
#[inline]
fn patch_varint(out: &mut [u8], value: u64) {
    let word = varint_word(value, out.len()).to_le_bytes();
    if let Ok(out) = <&mut [u8; 8]>::try_from(&mut *out) {
        // A timestamp: one store.
        *out = word;
        return;
    }
    for (byte, value) in out.iter_mut().zip(word) {
        *byte = value;
    }
}

impl FrameCodec {
    /// Appends the live MESSAGE frame (request id 0, no extra flags) carrying `envelope`
    /// to `dst`: the bytes of [`FrameCodec::encode_envelope`], patched from `head` when
    /// the envelope fits it, and otherwise encoded and kept in `head` for the next one.
    ///
    /// On error nothing is left in `dst`.
    pub fn encode_live_message(
        &self,
        envelope: &Envelope<'_>,
        head: &mut MessageHead,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        if head.fits(self, envelope) {
            return self.encode_from_head(head, envelope, dst);
        }
        let start = dst.len();
        self.encode_envelope(0, Flags::empty(), envelope, dst)?;
        let frame = &dst[start..];
        let header_len = frame.first_chunk().map_or(0, declared_header_len);
        head.keep(
            &frame[..FIXED_HEADER_LEN + header_len],
            envelope,
            self.uses_mac(),
        );
        Ok(())
    }

    /// [`FrameCodec::encode_live_message`] of an envelope that the caller knows has the
    /// channel, scope, sender, content type and user headers of one it encoded through
    /// `head` when its generation was `generation` (the next publish of a publisher
    /// with the same header block): while the generation is the same, those are not
    /// compared again.
    ///
    /// On error nothing is left in `dst`.
    pub fn encode_live_message_alike(
        &self,
        envelope: &Envelope<'_>,
        head: &mut MessageHead,
        generation: u64,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        if head.generation == generation && head.fits_but_texts(self, envelope) {
            debug_assert!(head.fits(self, envelope), "not alike: {envelope:?}");
            return self.encode_from_head(head, envelope, dst);
        }
        self.encode_live_message(envelope, head, dst)
    }

    /// [`FrameCodec::encode_live_message`] of an envelope that fits `head`.
    fn encode_from_head(
        &self,
        head: &MessageHead,
        envelope: &Envelope<'_>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let body = envelope.body;
        let header_len = head.bytes.len() - FIXED_HEADER_LEN;
        self.check_lengths(header_len, body.len())?;
        let content_crc = envelope
            .body_crc
            .unwrap_or_else(|| crate::crc::crc32c(body));
        let mac_len = if self.uses_mac() { MAC_TAG_LEN } else { 0 };
        let start = dst.len();
        dst.reserve(head.bytes.len() + body.len() + mac_len);
        dst.extend_from_slice(&head.bytes);
        let frame = &mut dst[start..];
        let id_at = usize::from(head.id_at);
        frame[id_at..id_at + 16].copy_from_slice(envelope.id.as_bytes());
        let seq_at = usize::from(head.seq_at);
        patch_varint(
            &mut frame[seq_at..seq_at + usize::from(head.seq_len)],
            envelope.seq,
        );
        let time_at = usize::from(head.time_at);
        patch_varint(
            &mut frame[time_at..time_at + usize::from(head.time_len)],
            envelope.time_us,
        );
        let (prefix, block) = frame.split_at_mut(FIXED_HEADER_LEN);
        // Only the lengths and CRCs differ from the kept prefix; it is written whole by
        // the one function that knows its layout.
        let live = Head {
            frame_type: FrameType::Message,
            flags: Flags::empty(),
            request_id: 0,
        };
        self.fill_prefix(live, header_len, body.len(), content_crc, prefix, block);
        dst.extend_from_slice(body);
        if let Some(mac) = self.mac() {
            let tag = mac.tag(&[&dst[start..]]);
            dst.put_slice(&tag);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::text::Text;
    use uuid::Uuid;

    fn envelope<'a>(seq: u64, time_us: u64, body: &'a [u8]) -> Envelope<'a> {
        Envelope {
            scope: Scope::Channel,
            channel: "bench.pubsub",
            id: Uuid::from_u128(0x0189_0a5d_ac96_774b_bcce_b302_099a_8057 + u128::from(seq)),
            seq,
            time_us,
            sender_id: 7,
            sender_name: "publisher",
            content_type: "",
            user_headers: &[],
            body,
            body_crc: None,
            stream: None,
        }
    }

    /// `envelope` encoded through `head` into a buffer of its own.
    fn live(codec: &FrameCodec, envelope: &Envelope<'_>, head: &mut MessageHead) -> BytesMut {
        let mut dst = BytesMut::new();
        codec
            .encode_live_message(envelope, head, &mut dst)
            .expect("encoded");
        dst
    }

    /// `envelope` encoded as alike to what `head` encoded at `generation`.
    fn alike(
        codec: &FrameCodec,
        envelope: &Envelope<'_>,
        head: &mut MessageHead,
        generation: u64,
    ) -> BytesMut {
        let mut dst = BytesMut::new();
        codec
            .encode_live_message_alike(envelope, head, generation, &mut dst)
            .expect("encoded");
        dst
    }

    fn plain(codec: &FrameCodec, envelope: &Envelope<'_>) -> BytesMut {
        let mut encoded = BytesMut::new();
        codec
            .encode_envelope(0, Flags::empty(), envelope, &mut encoded)
            .expect("encode_envelope");
        encoded
    }

    /// A run of messages alike is patched from the kept head (which stays as it was
    /// kept) and gives the bytes of `encode_envelope`, behind what `dst` held.
    #[test]
    fn a_run_alike_is_patched_to_the_same_bytes() {
        let codec = FrameCodec::new(Limits::default());
        let mut head = MessageHead::default();
        let first = envelope(1, 1_700_000_000_000_000, b"first");
        let dst = live(&codec, &first, &mut head);
        assert_eq!(dst, plain(&codec, &first));
        let kept = head.bytes.clone();
        assert!(!kept.is_empty());
        for seq in 2..300u64 {
            let body = vec![seq as u8; seq as usize];
            let next = envelope(seq, 1_700_000_000_000_000 + seq * 1000, &body);
            // Only the first seq of two varint bytes needs a new head.
            assert_eq!(head.fits(&codec, &next), seq != 128, "seq {seq}");
            let mut dst = BytesMut::from(&b"before"[..]);
            codec
                .encode_live_message(&next, &mut head, &mut dst)
                .expect("encoded");
            assert_eq!(&dst[..6], b"before");
            assert_eq!(&dst[6..], &plain(&codec, &next)[..], "seq {seq}");
        }
        assert_ne!(head.bytes, kept, "a seq of two bytes made a new head");
    }

    /// What differs in more than id, seq, time and body is encoded whole, and kept.
    #[test]
    fn a_message_not_alike_is_encoded_whole_and_kept() {
        let codec = FrameCodec::new(Limits::default());
        let headers = [(Text::from("lang"), Text::from("en"))];
        let base = envelope(5, 1_700_000_000_000_000, b"body");
        let others = [
            Envelope {
                sender_id: 8,
                ..base
            },
            Envelope {
                sender_name: "other",
                ..base
            },
            Envelope {
                sender_name: "",
                ..base
            },
            Envelope {
                content_type: "text/plain",
                ..base
            },
            Envelope {
                channel: "bench.other",
                ..base
            },
            Envelope {
                scope: Scope::Group,
                ..base
            },
            Envelope {
                user_headers: &headers,
                ..base
            },
            Envelope { time_us: 5, ..base },
        ];
        for other in &others {
            let mut head = MessageHead::default();
            live(&codec, &base, &mut head);
            assert!(!head.fits(&codec, other), "{other:?}");
            let dst = live(&codec, other, &mut head);
            assert_eq!(dst, plain(&codec, other), "{other:?}");
            let again = Envelope {
                seq: 6,
                id: Uuid::from_u128(6),
                ..*other
            };
            assert_eq!(head.fits(&codec, &again), other.user_headers.is_empty());
            let dst = live(&codec, &again, &mut head);
            assert_eq!(dst, plain(&codec, &again), "{again:?}");
        }
    }

    /// A message alike to one encoded at the head's generation is patched; once
    /// another head was kept (another content type from the same sender), the same
    /// generation is not taken for it.
    #[test]
    fn a_message_alike_is_patched_while_the_generation_holds() {
        let codec = FrameCodec::new(Limits::default());
        let mut head = MessageHead::default();
        let first = envelope(1, 1_700_000_000_000_000, b"first");
        live(&codec, &first, &mut head);
        let generation = head.generation();
        let second = envelope(2, 1_700_000_000_000_001, b"second");
        let dst = alike(&codec, &second, &mut head, generation);
        assert_eq!(dst, plain(&codec, &second));
        assert_eq!(head.generation(), generation);
        let other = Envelope {
            content_type: "text/plain",
            ..envelope(3, 1_700_000_000_000_002, b"other")
        };
        live(&codec, &other, &mut head);
        assert_ne!(head.generation(), generation);
        let third = envelope(4, 1_700_000_000_000_003, b"third");
        let dst = alike(&codec, &third, &mut head, generation);
        assert_eq!(dst, plain(&codec, &third));
    }

    /// A head kept by a codec with or without HMAC is not used by the other.
    #[test]
    fn the_mac_flag_is_part_of_the_head() {
        let plain_codec = FrameCodec::new(Limits::default());
        let tagging = plain_codec
            .clone()
            .with_mac_key(Some(crate::MacKey::new(b"a key")));
        let mut head = MessageHead::default();
        let first = envelope(1, 1_700_000_000_000_000, b"first");
        let second = envelope(2, 1_700_000_000_000_001, b"second");
        live(&plain_codec, &first, &mut head);
        for codec in [&tagging, &tagging, &plain_codec] {
            let dst = live(codec, &second, &mut head);
            assert_eq!(dst, plain(codec, &second));
        }
    }

    /// A body over the limit is refused from a kept head too, leaving nothing.
    #[test]
    fn a_body_over_the_limit_is_refused_from_a_kept_head() {
        let mut codec = FrameCodec::new(Limits::default());
        let mut head = MessageHead::default();
        live(&codec, &envelope(1, 1 << 50, b"a"), &mut head);
        codec.set_limits(Limits {
            max_content_len: 4,
            ..Limits::default()
        });
        let mut dst = BytesMut::from(&b"before"[..]);
        let long = envelope(2, 1 << 50, b"too long");
        assert!(head.fits(&codec, &long));
        assert!(
            codec
                .encode_live_message(&long, &mut head, &mut dst)
                .is_err()
        );
        assert_eq!(&dst[..], b"before");
    }
}
