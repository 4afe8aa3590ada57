//! [`FrameCodec`]: frames to and from bytes, for `tokio_util::codec::Framed` or for a
//! connection that manages its own buffers.
//!
//! Decoding checks, in order: sync bytes, version, the two length fields against
//! [`Limits`] (before reserving anything), the header CRC (as soon as the header block
//! is in, so a corrupt length is caught without waiting for content that will never
//! come), the MAC flag against the session's use of HMAC, the frame type, the content
//! CRC and the HMAC tag. The decoded frame's header
//! block and content are slices of the read buffer.
//!
//! The lengths a prefix declares are the peer's word, not yet its bytes: decoding never
//! reserves more than [`RESERVE_AHEAD`] bytes beyond what has arrived, so the buffer of a
//! frame still arriving grows with its bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ProtoError;
use crate::fields::{BlockWriter, FieldWriter};
use crate::frame::{FIXED_HEADER_LEN, Flags, Frame, FrameType, MAC_TAG_LEN, SYNC};
use crate::limits::Limits;
use crate::mac::MacKey;
use crate::packet::{Encode, Envelope, Packet};
use crate::preface::PROTOCOL_VERSION;

/// Encodes and decodes frames for one session.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    limits: Limits,
    mac: Option<MacKey>,
    version: u8,
}

/// A MESSAGE whose prefix and header block surely fit this many bytes has them made on
/// the stack by [`FrameCodec::encode_envelope`].
const STACK_HEAD: usize = 256;

/// Bytes of buffer a decode that needs more reserves ahead of what has arrived, at most.
pub const RESERVE_AHEAD: usize = 64 * 1024;

/// What the prefix of a frame still arriving says: enough to account for it before its
/// bytes are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// The request id the frame carries (for an answer refusing it).
    pub request_id: u32,
    /// Bytes of the whole frame: prefix, header block, content and tag.
    pub total_len: usize,
}

/// A packet to send with its request id and extra flags: the item of the `Encoder`.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub request_id: u32,
    pub flags: Flags,
    pub packet: Packet,
}

/// What a frame's prefix says besides lengths and CRCs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub frame_type: FrameType,
    pub flags: Flags,
    pub request_id: u32,
}

/// The parsed fixed prefix of a frame.
#[derive(Debug, Clone, Copy)]
struct Prefix {
    frame_type: u8,
    flags: Flags,
    header_len: usize,
    request_id: u32,
    content_len: usize,
    content_crc: u32,
    header_crc: u32,
}

impl FrameCodec {
    /// A codec with the given limits, no HMAC, protocol version 1.
    pub fn new(limits: Limits) -> Self {
        FrameCodec {
            limits,
            mac: None,
            version: PROTOCOL_VERSION as u8,
        }
    }

    /// Requires and produces HMAC tags with `key` (or stops, with `None`).
    pub fn set_mac_key(&mut self, key: Option<MacKey>) {
        self.mac = key;
    }

    /// Builder form of [`FrameCodec::set_mac_key`].
    #[must_use]
    pub fn with_mac_key(mut self, key: Option<MacKey>) -> Self {
        self.mac = key;
        self
    }

    /// Replaces the limits, e.g. once the peer announced its own.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether frames carry HMAC tags.
    pub fn uses_mac(&self) -> bool {
        self.mac.is_some()
    }

    /// The key frames are tagged with, if any.
    pub(crate) fn mac(&self) -> Option<&MacKey> {
        self.mac.as_ref()
    }

    /// Appends one frame carrying `packet` to `dst`, reserving memory at most once.
    ///
    /// On error nothing is left in `dst`.
    pub fn encode_packet<P: Encode + ?Sized>(
        &self,
        request_id: u32,
        flags: Flags,
        packet: &P,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let start = dst.len();
        let mac_len = if self.mac.is_some() { MAC_TAG_LEN } else { 0 };
        if let Some(bound) = packet.block_bound()
            && bound <= STACK_HEAD - FIXED_HEADER_LEN
        {
            // A short block written on the stack, after room for the prefix, and
            // appended with it in one copy; the prefix is filled in by `seal`.
            let mut made = [0u8; STACK_HEAD];
            let mut fields = BlockWriter::new(&mut made[FIXED_HEADER_LEN..]);
            packet.write_block(&mut fields);
            let header_len = fields.written();
            dst.reserve(FIXED_HEADER_LEN + header_len + packet.content_len() + mac_len);
            dst.extend_from_slice(&made[..FIXED_HEADER_LEN + header_len]);
        } else {
            dst.reserve(
                FIXED_HEADER_LEN + packet.fields_len_hint() + packet.content_len() + mac_len,
            );
            dst.put_bytes(0, FIXED_HEADER_LEN);
            packet.write_fields(&mut FieldWriter::new(dst));
        }
        let header_end = dst.len();
        packet.write_content(dst);
        let flags = flags | packet.flags();
        let head = Head {
            frame_type: packet.frame_type(),
            flags,
            request_id,
        };
        if let Err(error) = self.seal(start, header_end, head, packet.content_crc(), dst) {
            dst.truncate(start);
            return Err(error);
        }
        Ok(())
    }

    /// Appends one MESSAGE frame carrying `envelope` to `dst`: the same bytes as
    /// [`FrameCodec::encode_packet`] gives for it, made the way a hub publishing many
    /// small messages needs. The header block is written without a capacity check per
    /// field: for the usual message on the stack, with the prefix, and appended in one
    /// copy; for a long one in place, its exact length worked out first so that the
    /// buffer is reserved and sized once. The header CRC is one pass over both.
    ///
    /// On error nothing is left in `dst`.
    pub fn encode_envelope(
        &self,
        request_id: u32,
        flags: Flags,
        envelope: &Envelope<'_>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let content_len = envelope.body.len();
        let mac_len = if self.mac.is_some() { MAC_TAG_LEN } else { 0 };
        let head = Head {
            frame_type: FrameType::Message,
            flags: flags | envelope.flags(),
            request_id,
        };
        if envelope.header_block_bound() <= STACK_HEAD - FIXED_HEADER_LEN {
            // The usual message: its prefix and header block are made on the stack, the
            // block's length found by writing it, and appended in one copy.
            let mut made = [0u8; STACK_HEAD];
            let (prefix, block) = made.split_at_mut(FIXED_HEADER_LEN);
            let mut fields = BlockWriter::new(block);
            envelope.write_header_block(&mut fields);
            let header_len = fields.written();
            self.check_lengths(header_len, content_len)?;
            let content_crc = envelope
                .body_crc
                .unwrap_or_else(|| crate::crc::crc32c(envelope.body));
            let block = &block[..header_len];
            self.fill_prefix(head, header_len, content_len, content_crc, prefix, block);
            let start = dst.len();
            dst.reserve(FIXED_HEADER_LEN + header_len + content_len + mac_len);
            dst.extend_from_slice(&made[..FIXED_HEADER_LEN + header_len]);
            dst.extend_from_slice(envelope.body);
            if let Some(mac) = &self.mac {
                let tag = mac.tag(&[&dst[start..]]);
                dst.put_slice(&tag);
            }
            return Ok(());
        }
        let header_len = envelope.header_block_len();
        self.check_lengths(header_len, content_len)?;
        let start = dst.len();
        let header_end = start + FIXED_HEADER_LEN + header_len;
        dst.reserve(FIXED_HEADER_LEN + header_len + content_len + mac_len);
        dst.resize(header_end, 0);
        let (prefix, block) = dst[start..header_end].split_at_mut(FIXED_HEADER_LEN);
        let mut fields = BlockWriter::new(block);
        envelope.write_header_block(&mut fields);
        debug_assert_eq!(fields.written(), header_len, "header block length");
        let content_crc = envelope
            .body_crc
            .unwrap_or_else(|| crate::crc::crc32c(envelope.body));
        self.fill_prefix(head, header_len, content_len, content_crc, prefix, block);
        dst.extend_from_slice(envelope.body);
        if let Some(mac) = &self.mac {
            let tag = mac.tag(&[&dst[start..]]);
            dst.put_slice(&tag);
        }
        Ok(())
    }

    /// Appends a raw frame to `dst` (used to forward frames and by tests).
    pub fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let start = dst.len();
        let mac_len = if self.mac.is_some() { MAC_TAG_LEN } else { 0 };
        dst.reserve(FIXED_HEADER_LEN + frame.headers.len() + frame.content.len() + mac_len);
        dst.put_bytes(0, FIXED_HEADER_LEN);
        dst.put_slice(&frame.headers);
        let header_end = dst.len();
        dst.put_slice(&frame.content);
        let head = Head {
            frame_type: frame.frame_type,
            flags: frame.flags,
            request_id: frame.request_id,
        };
        if let Err(error) = self.seal(start, header_end, head, None, dst) {
            dst.truncate(start);
            return Err(error);
        }
        Ok(())
    }

    /// Appends a copy of a frame this process encoded (a stored live MESSAGE, say) under
    /// another request id and with `flags` added: header block and content are copied as
    /// they are, and only the prefix, the header CRC and the tag are made anew.
    ///
    /// Replaying history this way costs a copy per message instead of a decode and an
    /// encode. On error nothing is left in `dst`.
    pub fn encode_reframed(
        &self,
        encoded: &[u8],
        request_id: u32,
        flags: Flags,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let layout = EncodedLayout::of(encoded)?;
        let start = dst.len();
        let mac_len = if self.mac.is_some() { MAC_TAG_LEN } else { 0 };
        dst.reserve(layout.content_end + mac_len);
        dst.put_slice(&encoded[..layout.content_end]);
        let head = Head {
            frame_type: layout.frame_type,
            flags: layout.flags | flags,
            request_id,
        };
        if let Err(error) = self.seal(
            start,
            start + layout.header_end,
            head,
            Some(layout.content_crc),
            dst,
        ) {
            dst.truncate(start);
            return Err(error);
        }
        Ok(())
    }

    /// [`FrameCodec::encode_reframed`] for a frame this process encoded whose content is
    /// kept apart from its head: appends the prefix and header block of `encoded_head`
    /// (the frame's first bytes, through its header block) under `request_id` with
    /// `flags` added, for the caller to write `content` right after them from its own
    /// buffer. The content CRC is the head's own. Returns the HMAC tag to send after the
    /// content when the session uses one.
    ///
    /// On error nothing is left in `dst`.
    pub fn encode_reframed_head(
        &self,
        encoded_head: &[u8],
        content: &[u8],
        request_id: u32,
        flags: Flags,
        dst: &mut BytesMut,
    ) -> Result<Option<[u8; MAC_TAG_LEN]>, ProtoError> {
        let layout = EncodedLayout::of_head(encoded_head)?;
        let start = dst.len();
        dst.extend_from_slice(&encoded_head[..layout.header_end]);
        let head = Head {
            frame_type: layout.frame_type,
            flags: layout.flags | flags,
            request_id,
        };
        if let Err(error) = self.write_prefix(
            start,
            start + layout.header_end,
            head,
            content.len(),
            layout.content_crc,
            dst,
        ) {
            dst.truncate(start);
            return Err(error);
        }
        Ok(self
            .mac
            .as_ref()
            .map(|mac| mac.tag(&[&dst[start..], content])))
    }

    /// Appends the fixed prefix and header block of a frame whose content the caller
    /// writes itself right after them, from its own buffer: a large body goes out
    /// without being copied into `dst`. Returns the HMAC tag to send after the content
    /// when the session uses one.
    ///
    /// On error nothing is left in `dst`.
    pub fn encode_head<P: Encode + ?Sized>(
        &self,
        request_id: u32,
        flags: Flags,
        packet: &P,
        content: &[u8],
        dst: &mut BytesMut,
    ) -> Result<Option<[u8; MAC_TAG_LEN]>, ProtoError> {
        let start = dst.len();
        dst.reserve(FIXED_HEADER_LEN + packet.fields_len_hint());
        dst.put_bytes(0, FIXED_HEADER_LEN);
        packet.write_fields(&mut FieldWriter::new(dst));
        let header_end = dst.len();
        let head = Head {
            frame_type: packet.frame_type(),
            flags: flags | packet.flags(),
            request_id,
        };
        let content_crc = packet
            .content_crc()
            .unwrap_or_else(|| crate::crc::crc32c(content));
        if let Err(error) =
            self.write_prefix(start, header_end, head, content.len(), content_crc, dst)
        {
            dst.truncate(start);
            return Err(error);
        }
        Ok(self
            .mac
            .as_ref()
            .map(|mac| mac.tag(&[&dst[start..], content])))
    }

    /// Fills in the fixed prefix of the frame that starts at `start` and whose content
    /// follows `header_end` in `dst`, and appends the tag. `content_crc` is the content's
    /// CRC when the caller already knows it.
    fn seal(
        &self,
        start: usize,
        header_end: usize,
        head: Head,
        content_crc: Option<u32>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let content_crc = content_crc.unwrap_or_else(|| crate::crc::crc32c(&dst[header_end..]));
        let content_len = dst.len() - header_end;
        self.write_prefix(start, header_end, head, content_len, content_crc, dst)?;
        if let Some(mac) = &self.mac {
            let tag = mac.tag(&[&dst[start..]]);
            dst.put_slice(&tag);
        }
        Ok(())
    }

    /// Checks the lengths against the limits and fills in the fixed prefix, header CRC
    /// included, of the frame whose header block lies between `start` and `header_end`.
    fn write_prefix(
        &self,
        start: usize,
        header_end: usize,
        head: Head,
        content_len: usize,
        content_crc: u32,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let header_len = header_end - start - FIXED_HEADER_LEN;
        self.check_lengths(header_len, content_len)?;
        let (prefix, block) = dst[start..header_end].split_at_mut(FIXED_HEADER_LEN);
        self.fill_prefix(head, header_len, content_len, content_crc, prefix, block);
        Ok(())
    }

    /// Whether a header block and a content of these lengths may be sent.
    pub(crate) fn check_lengths(
        &self,
        header_len: usize,
        content_len: usize,
    ) -> Result<(), ProtoError> {
        let max_header = self.limits.max_header_len.min(usize::from(u16::MAX));
        if header_len > max_header {
            return Err(ProtoError::HeaderTooLarge {
                len: header_len,
                max: max_header,
            });
        }
        if content_len as u64 > u64::from(self.limits.max_content_len) {
            return Err(ProtoError::ContentTooLarge {
                len: content_len as u64,
                max: u64::from(self.limits.max_content_len),
            });
        }
        Ok(())
    }

    /// Fills in the fixed prefix, header CRC included, of a frame whose header block,
    /// already written, is `block`; the lengths were checked.
    pub(crate) fn fill_prefix(
        &self,
        head: Head,
        header_len: usize,
        content_len: usize,
        content_crc: u32,
        prefix: &mut [u8],
        block: &[u8],
    ) {
        let flags = if self.mac.is_some() {
            head.flags.with(Flags::MAC)
        } else {
            head.flags.without(Flags::MAC)
        };
        let mut fixed = [0u8; 20];
        fixed[0..2].copy_from_slice(&SYNC);
        fixed[2] = self.version;
        fixed[3] = head.frame_type as u8;
        fixed[4..6].copy_from_slice(&flags.0.to_be_bytes());
        fixed[6..8].copy_from_slice(&(header_len as u16).to_be_bytes());
        fixed[8..12].copy_from_slice(&head.request_id.to_be_bytes());
        fixed[12..16].copy_from_slice(&(content_len as u32).to_be_bytes());
        fixed[16..20].copy_from_slice(&content_crc.to_be_bytes());
        let header_crc = crate::crc::header_crc(&fixed, block);
        prefix[..20].copy_from_slice(&fixed);
        prefix[20..FIXED_HEADER_LEN].copy_from_slice(&header_crc.to_be_bytes());
    }

    fn parse_prefix(&self, src: &[u8]) -> Result<Prefix, ProtoError> {
        let mut buf = &src[..FIXED_HEADER_LEN];
        let sync = buf.get_u16();
        if sync != u16::from_be_bytes(SYNC) {
            return Err(ProtoError::BadSync { found: sync });
        }
        let version = buf.get_u8();
        if version != self.version {
            return Err(ProtoError::UnsupportedVersion {
                found: u16::from(version),
                supported: u16::from(self.version),
            });
        }
        let prefix = Prefix {
            frame_type: buf.get_u8(),
            flags: Flags(buf.get_u16()),
            header_len: usize::from(buf.get_u16()),
            request_id: buf.get_u32(),
            content_len: buf.get_u32() as usize,
            content_crc: buf.get_u32(),
            header_crc: buf.get_u32(),
        };
        if prefix.header_len > self.limits.max_header_len {
            return Err(ProtoError::HeaderTooLarge {
                len: prefix.header_len,
                max: self.limits.max_header_len,
            });
        }
        if prefix.content_len as u64 > u64::from(self.limits.max_content_len) {
            return Err(ProtoError::ContentTooLarge {
                len: prefix.content_len as u64,
                max: u64::from(self.limits.max_content_len),
            });
        }
        Ok(prefix)
    }
}

/// How far the frame at the front of a buffer is in.
enum Checked {
    /// Not all in: at least this many more bytes are wanted (capped for a large
    /// content, whose room is made as its bytes come).
    Short(usize),
    /// In and checked.
    Whole(FrameParts),
}

/// Where the parts of a checked frame lie.
struct FrameParts {
    frame_type: FrameType,
    /// Without MAC, which belongs to the framing layer.
    flags: Flags,
    request_id: u32,
    header_end: usize,
    content_end: usize,
    total: usize,
    content_crc: u32,
}

impl FrameParts {
    /// The frame, as views of `bytes`, which begin with it.
    fn frame_of(&self, bytes: &Bytes) -> Frame {
        Frame {
            frame_type: self.frame_type,
            flags: self.flags,
            request_id: self.request_id,
            headers: bytes.slice(FIXED_HEADER_LEN..self.header_end),
            content: bytes.slice(self.header_end..self.content_end),
            content_crc: self.content_crc,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        match self.check_frame(src)? {
            Checked::Short(more) => {
                src.reserve(more);
                Ok(None)
            }
            Checked::Whole(parts) => {
                // Split, not sliced from a frame then dropped: each view takes one count
                // of the shared buffer, and none is taken only to be given back (the
                // counts are atomic, and a small message's are most of its cost here).
                let mut headers = src.split_to(parts.total);
                let mut content = headers.split_off(parts.header_end);
                content.truncate(parts.content_end - parts.header_end);
                headers.advance(FIXED_HEADER_LEN);
                Ok(Some(Frame {
                    frame_type: parts.frame_type,
                    flags: parts.flags,
                    request_id: parts.request_id,
                    headers: headers.freeze(),
                    content: content.freeze(),
                    content_crc: parts.content_crc,
                }))
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtoError::Truncated {
                needed: self.bytes_needed(src),
                have: src.len(),
            }),
        }
    }
}

impl FrameCodec {
    /// Decodes the whole frame at the front of `src`, with every check
    /// [`Decoder::decode`] makes, as a view of `src` (no byte copied): for a frame read
    /// into a buffer of its own. `None` while the frame is not all in; what follows it
    /// in `src`, from the returned length on, is the caller's.
    pub fn decode_whole(&self, src: &Bytes) -> Result<Option<(Frame, usize)>, ProtoError> {
        match self.check_frame(src)? {
            Checked::Short(_) => Ok(None),
            Checked::Whole(parts) => Ok(Some((parts.frame_of(src), parts.total))),
        }
    }

    /// The checks [`Decoder::decode`] makes of a frame whose bytes are not all in yet:
    /// its prefix, and its header CRC once the header block is in (so that a corrupt
    /// length is seen before waiting for the content it declares).
    pub fn check_partial(&self, src: &[u8]) -> Result<(), ProtoError> {
        if declared_frame_len(src).is_some_and(|len| len <= src.len()) {
            // Whole: the checks are the decoding's.
            return Ok(());
        }
        self.check_frame(src).map(|_| ())
    }

    /// Checks the frame at the front of `src` as far as its bytes are in: the prefix,
    /// the header CRC, the MAC flag, then, once it is whole, the content CRC and the tag.
    fn check_frame(&self, src: &[u8]) -> Result<Checked, ProtoError> {
        if src.len() < FIXED_HEADER_LEN {
            return Ok(Checked::Short(FIXED_HEADER_LEN - src.len()));
        }
        let prefix = self.parse_prefix(src)?;
        let header_end = FIXED_HEADER_LEN + prefix.header_len;
        if src.len() < header_end {
            return Ok(Checked::Short(header_end - src.len()));
        }
        let Some(fixed) = src.first_chunk::<20>() else {
            return Ok(Checked::Short(FIXED_HEADER_LEN - src.len()));
        };
        let content_end = header_end + prefix.content_len;
        let mac_len = if self.mac.is_some() { MAC_TAG_LEN } else { 0 };
        let total = content_end + mac_len;
        // A frame in whole (most small ones) has both CRCs computed in one pass; one
        // still arriving has its head checked now, before its content is waited for.
        let (header_crc, content_crc) = if src.len() >= total {
            let (header_crc, content_crc) = crate::crc::frame_crcs(
                fixed,
                &src[FIXED_HEADER_LEN..header_end],
                &src[header_end..content_end],
            );
            (header_crc, Some(content_crc))
        } else {
            let block = &src[FIXED_HEADER_LEN..header_end];
            (crate::crc::header_crc(fixed, block), None)
        };
        if header_crc != prefix.header_crc {
            return Err(ProtoError::HeaderCrcMismatch {
                expected: prefix.header_crc,
                actual: header_crc,
            });
        }
        // Checked after the header CRC, so that a corrupt flags byte reads as corruption.
        match (prefix.flags.contains(Flags::MAC), self.mac.is_some()) {
            (false, true) => return Err(ProtoError::MissingMac),
            (true, false) => return Err(ProtoError::UnexpectedMac),
            _ => {}
        }
        // Not `ok_or`: an error built up front is dropped again on every decode.
        let Some(frame_type) = FrameType::from_u8(prefix.frame_type) else {
            return Err(ProtoError::UnknownFrameType(prefix.frame_type));
        };
        let Some(content_crc) = content_crc else {
            return Ok(Checked::Short((total - src.len()).min(RESERVE_AHEAD)));
        };
        if content_crc != prefix.content_crc {
            return Err(ProtoError::ContentCrcMismatch {
                expected: prefix.content_crc,
                actual: content_crc,
            });
        }
        if let Some(mac) = &self.mac
            && !mac.verify(&[&src[..content_end]], &src[content_end..total])
        {
            return Err(ProtoError::BadMac);
        }
        Ok(Checked::Whole(FrameParts {
            frame_type,
            flags: prefix.flags.without(Flags::MAC),
            request_id: prefix.request_id,
            header_end,
            content_end,
            total,
            content_crc,
        }))
    }

    /// The head of the frame at the front of `src`: `None` until its fixed prefix is in,
    /// an error if the prefix is bad (wrong sync or version, lengths over the limits).
    /// Its length is [`declared_frame_len`]'s.
    pub fn frame_head(&self, src: &[u8]) -> Result<Option<FrameHead>, ProtoError> {
        if src.len() < FIXED_HEADER_LEN {
            return Ok(None);
        }
        let prefix = self.parse_prefix(src)?;
        Ok(declared_frame_len(src).map(|total_len| FrameHead {
            request_id: prefix.request_id,
            total_len,
        }))
    }

    /// How many bytes the frame at the front of `src` needs in all, as far as known.
    fn bytes_needed(&self, src: &[u8]) -> usize {
        if src.len() < FIXED_HEADER_LEN {
            return FIXED_HEADER_LEN;
        }
        match self.parse_prefix(src) {
            Ok(prefix) => {
                let mac_len = if self.mac.is_some() { MAC_TAG_LEN } else { 0 };
                FIXED_HEADER_LEN + prefix.header_len + prefix.content_len + mac_len
            }
            Err(_) => FIXED_HEADER_LEN,
        }
    }
}

/// The header block's length as a frame's fixed prefix declares it (unchecked).
pub(crate) fn declared_header_len(prefix: &[u8; FIXED_HEADER_LEN]) -> usize {
    usize::from(u16::from_be_bytes([prefix[6], prefix[7]]))
}

/// Bytes of the whole frame at the front of `src` as its prefix declares them (prefix,
/// header block, content, and a tag if its own MAC flag says one follows); `None` until
/// the prefix is in. Nothing is checked: the same bytes always give the same length,
/// which is what accounting for a frame still arriving needs.
pub fn declared_frame_len(src: &[u8]) -> Option<usize> {
    let prefix = src.first_chunk::<FIXED_HEADER_LEN>()?;
    let header_len = declared_header_len(prefix);
    let content_len = u32::from_be_bytes([prefix[12], prefix[13], prefix[14], prefix[15]]) as usize;
    let flags = Flags(u16::from_be_bytes([prefix[4], prefix[5]]));
    let mac_len = if flags.contains(Flags::MAC) {
        MAC_TAG_LEN
    } else {
        0
    };
    Some(FIXED_HEADER_LEN + header_len + content_len + mac_len)
}

/// Views a frame this process encoded itself as a [`Frame`] whose header block and content
/// are slices of `encoded`, without re-checking CRCs or the tag.
///
/// The server uses it to keep one buffer per stored message: the live frame, from which
/// the envelope's fields and body are read back without copying.
pub fn view_encoded(encoded: &Bytes) -> Result<Frame, ProtoError> {
    let layout = EncodedLayout::of(encoded)?;
    Ok(Frame {
        frame_type: layout.frame_type,
        flags: layout.flags,
        request_id: layout.request_id,
        headers: encoded.slice(FIXED_HEADER_LEN..layout.header_end),
        content: encoded.slice(layout.header_end..layout.content_end),
        content_crc: layout.content_crc,
    })
}

/// [`view_encoded`] for a frame whose content is kept apart from its head: `head` holds
/// the frame's prefix and header block (and perhaps more after them, such as its tag),
/// `content` the content the prefix declares.
pub fn view_encoded_apart(head: &Bytes, content: &Bytes) -> Result<Frame, ProtoError> {
    let layout = EncodedLayout::of_head(head)?;
    if layout.content_end - layout.header_end != content.len() {
        return Err(ProtoError::Truncated {
            needed: layout.content_end - layout.header_end,
            have: content.len(),
        });
    }
    Ok(Frame {
        frame_type: layout.frame_type,
        flags: layout.flags,
        request_id: layout.request_id,
        headers: head.slice(FIXED_HEADER_LEN..layout.header_end),
        content: content.clone(),
        content_crc: layout.content_crc,
    })
}

/// Where the parts of a frame this process encoded lie, read from its prefix without
/// checking CRCs or the tag.
struct EncodedLayout {
    frame_type: FrameType,
    /// Without MAC, which belongs to the session that sends the frame.
    flags: Flags,
    request_id: u32,
    header_end: usize,
    content_end: usize,
    content_crc: u32,
}

impl EncodedLayout {
    fn of(encoded: &[u8]) -> Result<EncodedLayout, ProtoError> {
        let layout = EncodedLayout::of_head(encoded)?;
        if layout.content_end > encoded.len() {
            return Err(ProtoError::Truncated {
                needed: layout.content_end,
                have: encoded.len(),
            });
        }
        Ok(layout)
    }

    /// The layout from the prefix alone, with the header block in `encoded` but not
    /// necessarily the content.
    fn of_head(encoded: &[u8]) -> Result<EncodedLayout, ProtoError> {
        let Some(prefix) = encoded.first_chunk::<FIXED_HEADER_LEN>() else {
            return Err(ProtoError::Truncated {
                needed: FIXED_HEADER_LEN,
                have: encoded.len(),
            });
        };
        let be16 = |at: usize| u16::from_be_bytes([prefix[at], prefix[at + 1]]);
        let be32 = |at: usize| {
            u32::from_be_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
        };
        let frame_type =
            FrameType::from_u8(prefix[3]).ok_or(ProtoError::UnknownFrameType(prefix[3]))?;
        let header_end = FIXED_HEADER_LEN + usize::from(be16(6));
        let content_end = usize::try_from(be32(12))
            .ok()
            .and_then(|len| header_end.checked_add(len))
            .unwrap_or(usize::MAX);
        if header_end > encoded.len() {
            return Err(ProtoError::Truncated {
                needed: header_end,
                have: encoded.len(),
            });
        }
        Ok(EncodedLayout {
            frame_type,
            flags: Flags(be16(4)).without(Flags::MAC),
            request_id: be32(8),
            header_end,
            content_end,
            content_crc: be32(16),
        })
    }
}

impl Encoder<Outbound> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: Outbound, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_packet(item.request_id, item.flags, &item.packet, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_frame(item, dst)
    }
}

/// `packet` encoded under `request_id` with the default limits and decoded back: the
/// frame a peer would receive (for tests of decoding).
#[cfg(test)]
pub(crate) fn round_trip<P: Encode + ?Sized>(request_id: u32, packet: &P) -> Frame {
    let mut codec = FrameCodec::new(crate::limits::Limits::default());
    let mut buffer = BytesMut::new();
    codec
        .encode_packet(request_id, Flags::empty(), packet, &mut buffer)
        .expect("encodes");
    codec
        .decode(&mut buffer)
        .expect("decodes")
        .expect("a whole frame")
}
