//! Header fields: the typed key/value pairs of a frame's header block.
//!
//! A field is `key: u8`, `length: varint`, then `length` bytes of value. Integers are
//! LEB128 varints inside the value, text is UTF-8, ids are 16 raw bytes. A receiver skips
//! keys it does not know, which is how new optional fields are added without a new
//! protocol version. Keys are global: a key means the same thing in every frame type.
//!
//! Lists (clients, channels, groups) are carried in the content as records: a u16
//! big-endian length followed by a block of fields in the same format.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::error::ProtoError;
use crate::text::Text;

/// The registry of field keys. Numbers are stable; unknown keys are skipped.
pub mod key {
    pub const CHANNEL: u8 = 0x01;
    pub const CONTENT_TYPE: u8 = 0x02;
    pub const USER_HEADER: u8 = 0x03;
    pub const MESSAGE_ID: u8 = 0x04;
    pub const SEQ: u8 = 0x05;
    pub const TIME: u8 = 0x06;
    pub const SENDER_ID: u8 = 0x07;
    pub const SENDER_NAME: u8 = 0x08;
    pub const SCOPE: u8 = 0x09;
    pub const CLIENT_ID: u8 = 0x0A;
    pub const CLIENT_NAME: u8 = 0x0B;
    pub const SESSION_ID: u8 = 0x0C;
    pub const HEARTBEAT_MS: u8 = 0x0D;
    pub const SOFTWARE: u8 = 0x0E;
    pub const ERROR_CODE: u8 = 0x0F;
    pub const MESSAGE: u8 = 0x10;
    pub const RECEIVERS: u8 = 0x11;
    pub const HISTORY: u8 = 0x12;
    pub const MAX_BYTES: u8 = 0x13;
    pub const MAX_CHARS: u8 = 0x14;
    pub const SINCE_SEQ: u8 = 0x15;
    pub const SINCE_TIME: u8 = 0x16;
    pub const LAST_N: u8 = 0x17;
    pub const LIMIT: u8 = 0x18;
    pub const SUBSCRIPTION_ID: u8 = 0x19;
    pub const COUNT: u8 = 0x1A;
    pub const DESCRIPTION: u8 = 0x1B;
    pub const EVENT_KIND: u8 = 0x1C;
    pub const STREAM_ID: u8 = 0x1D;
    pub const TOTAL_LEN: u8 = 0x1E;
    pub const DIGEST: u8 = 0x1F;
    pub const MAX_FRAME: u8 = 0x20;
    pub const MAX_BODY: u8 = 0x21;
    pub const CONNECTED_SINCE: u8 = 0x22;
    pub const ONLINE: u8 = 0x23;
    pub const STATUS: u8 = 0x24;
    pub const MEMBER_COUNT: u8 = 0x26;
    pub const LAST_SEQ: u8 = 0x27;
    pub const FIRST_SEQ: u8 = 0x28;
    pub const CREDENTIALS: u8 = 0x29;
    pub const MAX_AGE_MS: u8 = 0x2A;
    pub const MAX_TOTAL_BYTES: u8 = 0x2B;
    pub const SLOW_CONSUMER: u8 = 0x2C;
    pub const BYTES: u8 = 0x2D;
    pub const DURABILITY: u8 = 0x2E;
    /// SESSION_INIT: the user logging in with a password; SESSION_ACK: the user the
    /// session is authenticated as.
    pub const USER: u8 = 0x2F;
    /// SESSION_INIT: the password of `USER`.
    pub const PASSWORD: u8 = 0x30;
    /// SESSION_INIT: a JSON Web Token.
    pub const JWT: u8 = 0x31;
    /// SESSION_ACK: what the server accepts beyond version 1's baseline, a bit set
    /// (see `packet::features`).
    pub const FEATURES: u8 = 0x32;
    /// Where a listing continues: in a request, the page starts after it; in a reply,
    /// present when more entries follow, to be sent back for the next page.
    pub const CURSOR: u8 = 0xFF;
}

/// Largest encoding of a u64 as LEB128.
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(buf: &mut BytesMut, value: u64) {
    let mut bytes = [0u8; MAX_VARINT_LEN];
    let len = write_varint(value, &mut bytes);
    buf.extend_from_slice(&bytes[..len]);
}

/// Writes `value` as a varint at the start of `out` (which must have room for it: at most
/// [`MAX_VARINT_LEN`] bytes) and returns its length. Encoding on the stack and appending once costs a fraction of
/// appending byte by byte, which showed in encode profiles.
fn write_varint(mut value: u64, out: &mut [u8]) -> usize {
    if value < 0x80 {
        out[0] = value as u8;
        return 1;
    }
    let len = varint_len(value);
    if len <= 8 && out.len() >= 8 {
        // Bytes past `len` are written too, and left for whatever the caller writes
        // next.
        out[..8].copy_from_slice(&varint_word(value, len).to_le_bytes());
        return len;
    }
    let mut len = 0;
    while value >= 0x80 {
        out[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    out[len] = value as u8;
    len + 1
}

/// The varint of `value`, which takes `len` bytes (at most eight: `value` has at most
/// 56 bits), in the low bytes of a little-endian word: the seven-bit groups spread over
/// eight bytes at once, the continuation bit set on every byte but the last, which costs
/// a few shifts instead of a loop (a timestamp takes eight bytes). The value's halves go
/// 32 bits apart, then their halves 16 apart, then theirs 8 apart.
#[inline]
pub(crate) fn varint_word(value: u64, len: usize) -> u64 {
    debug_assert!((1..=8).contains(&len) && varint_len(value) == len);
    let mut spread = (value & 0x0fff_ffff) | ((value & 0x00ff_ffff_f000_0000) << 4);
    spread = (spread & 0x0000_3fff_0000_3fff) | ((spread & 0x0fff_c000_0fff_c000) << 2);
    spread = (spread & 0x007f_007f_007f_007f) | ((spread & 0x3f80_3f80_3f80_3f80) << 1);
    let continuation = 0x8080_8080_8080_8080u64 & ((1u64 << (8 * (len - 1))) - 1);
    spread | continuation
}

/// Whether two byte strings are equal, compared a word at a time inline: for the few
/// dozen bytes of a header block or a name in it, a call to `memcmp` costs more than
/// the comparison.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len < 8 {
        let mut differ = 0;
        for (a, b) in a.iter().zip(b) {
            differ |= a ^ b;
        }
        return differ == 0;
    }
    let word = |word: Option<&[u8; 8]>| word.map_or(0, |word| u64::from_le_bytes(*word));
    // The last word overlaps the one before unless the length is a multiple of eight.
    let mut differ = word(a.last_chunk()) ^ word(b.last_chunk());
    for (a, b) in a.as_chunks::<8>().0.iter().zip(b.as_chunks::<8>().0) {
        differ |= u64::from_le_bytes(*a) ^ u64::from_le_bytes(*b);
    }
    differ == 0
}

/// The value of an integer field, read as [`Field::uint`] reads it; `None` where that
/// refuses it.
#[inline]
pub(crate) fn uint_value(value: &[u8]) -> Option<u64> {
    if let Some(value) = varint_filling(value) {
        return Some(value);
    }
    let mut slice = value;
    let value = get_varint(&mut slice).ok()?;
    slice.is_empty().then_some(value)
}

/// Number of bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint from the front of `buf`, advancing it.
#[inline]
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    // Most varints of a frame (field lengths, small numbers) are one byte: read inline,
    // the rest out of line.
    if let Some((&byte, rest)) = buf.split_first()
        && byte & 0x80 == 0
    {
        *buf = rest;
        return Ok(u64::from(byte));
    }
    get_long_varint(buf)
}

fn get_long_varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value: u64 = 0;
    for index in 0..MAX_VARINT_LEN {
        let Some((&byte, rest)) = buf.split_first() else {
            return Err("varint truncated");
        };
        *buf = rest;
        let payload = u64::from(byte & 0x7F);
        if index == MAX_VARINT_LEN - 1 && payload > 1 {
            return Err("varint overflows u64");
        }
        value |= payload << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes")
}

/// The varint that fills `bytes` exactly, if it is at most eight bytes long: every byte
/// but the last with its continuation bit set. Read with a few shifts over one word
/// instead of a step per byte; `None` for anything else, which [`get_varint`] then reads
/// or refuses (eight bytes hold 56 bits: nothing here can overflow).
#[inline]
fn varint_filling(bytes: &[u8]) -> Option<u64> {
    let len = bytes.len();
    if len == 0 || len > 8 {
        return None;
    }
    let mut word = 0u64;
    for (at, &byte) in bytes.iter().enumerate() {
        word |= u64::from(byte) << (8 * at);
    }
    varint_in_word(word, len)
}

/// [`varint_filling`] of the `len` low bytes of `word` (1 to 8; the bytes above are
/// ignored): a reader that has eight bytes at hand loads them at once instead of
/// gathering the value's bytes one by one.
#[inline]
pub(crate) fn varint_in_word(word: u64, len: usize) -> Option<u64> {
    if len == 0 || len > 8 {
        return None;
    }
    let word = if len == 8 {
        word
    } else {
        word & ((1u64 << (8 * len)) - 1)
    };
    let continuation = 0x8080_8080_8080_8080u64 & ((1u64 << (8 * (len - 1))) - 1);
    if word & 0x8080_8080_8080_8080 != continuation {
        return None;
    }
    // Seven bits per byte, packed together: pairs of bytes, then pairs of pairs, then
    // the two halves.
    let mut value = word & 0x7f7f_7f7f_7f7f_7f7f;
    value = (value & 0x007f_007f_007f_007f) | ((value & 0x7f00_7f00_7f00_7f00) >> 1);
    value = (value & 0x0000_3fff_0000_3fff) | ((value & 0x3fff_0000_3fff_0000) >> 2);
    value = (value & 0x0000_0000_0fff_ffff) | ((value & 0x0fff_ffff_0000_0000) >> 4);
    Some(value)
}

/// Where a header block's fields go: a growing buffer ([`FieldWriter`]) or a block
/// sized beforehand ([`BlockWriter`]). A packet written both ways writes its fields
/// once, generically; the two give the same bytes for the same fields.
pub trait WriteFields {
    /// A field with raw bytes as value.
    fn bytes(&mut self, key: u8, value: &[u8]) -> &mut Self;
    /// An unsigned integer field.
    fn uint(&mut self, key: u8, value: u64) -> &mut Self;
    /// A 16-byte UUID field.
    fn uuid(&mut self, key: u8, value: &Uuid) -> &mut Self;
    /// A USER_HEADER field: varint key length, key, value.
    fn user_header(&mut self, name: &str, value: &str) -> &mut Self;
}

/// Most bytes a bytes field takes besides its value: its key and its length.
pub const MAX_BYTES_FIELD_HEAD: usize = 1 + MAX_VARINT_LEN;
/// Most bytes an unsigned integer field takes.
pub const MAX_UINT_FIELD: usize = 2 + MAX_VARINT_LEN;

/// Most bytes a USER_HEADER field of this name and value takes: its key, its length
/// and the name's length, each counted with the longest varint.
pub fn user_header_field_bound(name: &str, value: &str) -> usize {
    name.len() + value.len() + MAX_BYTES_FIELD_HEAD + MAX_VARINT_LEN
}

/// Writes fields straight into an encode buffer.
pub struct FieldWriter<'a> {
    buf: &'a mut BytesMut,
}

impl<'a> FieldWriter<'a> {
    pub fn new(buf: &'a mut BytesMut) -> Self {
        FieldWriter { buf }
    }

    /// A field with raw bytes as value.
    pub fn bytes(&mut self, key: u8, value: &[u8]) -> &mut Self {
        let mut head = [0u8; 1 + MAX_VARINT_LEN];
        head[0] = key;
        let len = 1 + write_varint(value.len() as u64, &mut head[1..]);
        self.buf.reserve(len + value.len());
        self.buf.extend_from_slice(&head[..len]);
        self.buf.extend_from_slice(value);
        self
    }

    /// A text field.
    pub fn text(&mut self, key: u8, value: &str) -> &mut Self {
        self.bytes(key, value.as_bytes())
    }

    /// A text field, only if present.
    pub fn opt_text(&mut self, key: u8, value: Option<&Text>) -> &mut Self {
        if let Some(value) = value {
            self.text(key, value);
        }
        self
    }

    /// An unsigned integer field.
    pub fn uint(&mut self, key: u8, value: u64) -> &mut Self {
        let mut field = [0u8; 2 + MAX_VARINT_LEN];
        field[0] = key;
        let len = write_varint(value, &mut field[2..]);
        field[1] = len as u8;
        self.buf.extend_from_slice(&field[..2 + len]);
        self
    }

    /// An unsigned integer field, only if present.
    pub fn opt_uint(&mut self, key: u8, value: Option<u64>) -> &mut Self {
        if let Some(value) = value {
            self.uint(key, value);
        }
        self
    }

    /// A list of u64 values, each 8 bytes big-endian.
    pub fn u64_list(&mut self, key: u8, values: &[u64]) -> &mut Self {
        self.buf.put_u8(key);
        put_varint(self.buf, (values.len() * 8) as u64);
        for value in values {
            self.buf.put_u64(*value);
        }
        self
    }

    /// A 16-byte UUID field.
    pub fn uuid(&mut self, key: u8, value: &Uuid) -> &mut Self {
        self.bytes(key, value.as_bytes())
    }

    /// A USER_HEADER field: varint key length, key, value.
    pub fn user_header(&mut self, name: &str, value: &str) -> &mut Self {
        self.buf.put_u8(key::USER_HEADER);
        put_varint(self.buf, user_header_value_len(name, value) as u64);
        put_varint(self.buf, name.len() as u64);
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(value.as_bytes());
        self
    }

    /// A record in a list: fields written by `write`, prefixed by their u16 length.
    pub fn record(&mut self, write: impl FnOnce(&mut FieldWriter<'_>)) -> &mut Self {
        let start = self.buf.len();
        self.buf.put_u16(0);
        write(&mut FieldWriter::new(self.buf));
        let len = self.buf.len() - start - 2;
        // Records hold a handful of short fields; a record over 64 KiB is clipped to an
        // empty one rather than producing a length that lies.
        match u16::try_from(len) {
            Ok(len) => self.buf[start..start + 2].copy_from_slice(&len.to_be_bytes()),
            Err(_) => {
                self.buf.truncate(start);
                self.buf.put_u16(0);
            }
        }
        self
    }
}

/// Bytes a field with a value of `value_len` bytes takes: key, varint length, value.
pub fn bytes_field_len(value_len: usize) -> usize {
    1 + varint_len(value_len as u64) + value_len
}

/// Bytes an unsigned integer field takes.
pub fn uint_field_len(value: u64) -> usize {
    2 + varint_len(value)
}

/// Bytes a USER_HEADER field takes.
pub fn user_header_field_len(name: &str, value: &str) -> usize {
    bytes_field_len(user_header_value_len(name, value))
}

fn user_header_value_len(name: &str, value: &str) -> usize {
    varint_len(name.len() as u64) + name.len() + value.len()
}

/// Writes fields into a header block already sized to hold them exactly (its length
/// worked out with [`bytes_field_len`] and its kin): no capacity check or growth per
/// field, as [`FieldWriter`] must do on a growing buffer. The same bytes as
/// [`FieldWriter`] for the same fields.
///
/// Writing past the end of the block panics: sizing the block is the caller's part.
pub struct BlockWriter<'a> {
    block: &'a mut [u8],
    at: usize,
}

impl<'a> BlockWriter<'a> {
    pub fn new(block: &'a mut [u8]) -> Self {
        BlockWriter { block, at: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.at
    }

    /// A field with raw bytes as value.
    pub fn bytes(&mut self, key: u8, value: &[u8]) -> &mut Self {
        self.block[self.at] = key;
        self.at += 1;
        self.varint(value.len() as u64);
        self.put(value);
        self
    }

    /// An unsigned integer field.
    pub fn uint(&mut self, key: u8, value: u64) -> &mut Self {
        let len = write_varint(value, &mut self.block[self.at + 2..]);
        self.block[self.at] = key;
        self.block[self.at + 1] = len as u8;
        self.at += 2 + len;
        self
    }

    /// A 16-byte UUID field.
    pub fn uuid(&mut self, key: u8, value: &Uuid) -> &mut Self {
        let field = &mut self.block[self.at..self.at + 18];
        field[0] = key;
        field[1] = 16;
        field[2..].copy_from_slice(value.as_bytes());
        self.at += 18;
        self
    }

    /// A USER_HEADER field: varint key length, key, value.
    pub fn user_header(&mut self, name: &str, value: &str) -> &mut Self {
        self.block[self.at] = key::USER_HEADER;
        self.at += 1;
        self.varint(user_header_value_len(name, value) as u64);
        self.varint(name.len() as u64);
        self.put(name.as_bytes());
        self.put(value.as_bytes());
        self
    }

    fn varint(&mut self, value: u64) {
        self.at += write_varint(value, &mut self.block[self.at..]);
    }

    fn put(&mut self, bytes: &[u8]) {
        self.block[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

impl WriteFields for FieldWriter<'_> {
    fn bytes(&mut self, key: u8, value: &[u8]) -> &mut Self {
        FieldWriter::bytes(self, key, value)
    }
    fn uint(&mut self, key: u8, value: u64) -> &mut Self {
        FieldWriter::uint(self, key, value)
    }
    fn uuid(&mut self, key: u8, value: &Uuid) -> &mut Self {
        FieldWriter::uuid(self, key, value)
    }
    fn user_header(&mut self, name: &str, value: &str) -> &mut Self {
        FieldWriter::user_header(self, name, value)
    }
}

impl WriteFields for BlockWriter<'_> {
    fn bytes(&mut self, key: u8, value: &[u8]) -> &mut Self {
        BlockWriter::bytes(self, key, value)
    }
    fn uint(&mut self, key: u8, value: u64) -> &mut Self {
        BlockWriter::uint(self, key, value)
    }
    fn uuid(&mut self, key: u8, value: &Uuid) -> &mut Self {
        BlockWriter::uuid(self, key, value)
    }
    fn user_header(&mut self, name: &str, value: &str) -> &mut Self {
        BlockWriter::user_header(self, name, value)
    }
}

/// One field read from a block: its key and its value, borrowed from the frame.
///
/// Reading a field costs nothing but bounds checks; only the values a packet keeps
/// ([`Field::text`], [`Field::bytes`]) become shared slices of the frame's buffer, so
/// decoding does not touch the buffer's reference count once per field.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub key: u8,
    pub value: &'a [u8],
    /// The buffer `value` lies in, for values kept beyond the frame.
    source: &'a Bytes,
}

impl Field<'_> {
    /// The value as a shared slice of the frame's buffer.
    pub fn bytes(&self) -> Bytes {
        self.source.slice_ref(self.value)
    }

    /// The value as UTF-8 text.
    pub fn text(&self) -> Result<Text, ProtoError> {
        Text::from_utf8(self.bytes()).map_err(|_| ProtoError::MalformedField {
            key: self.key,
            reason: "text is not valid UTF-8",
        })
    }

    /// The value as an unsigned varint filling the whole value.
    #[inline]
    pub fn uint(&self) -> Result<u64, ProtoError> {
        // Integers fill their field exactly: a sequence number, a time or an id of up to
        // eight bytes is read at once rather than byte by byte. Anything else (longer,
        // malformed, trailing bytes) takes the reader below, which reads it or refuses it.
        if let Some(value) = varint_filling(self.value) {
            return Ok(value);
        }
        let mut slice: &[u8] = self.value;
        let value = get_varint(&mut slice).map_err(|reason| ProtoError::MalformedField {
            key: self.key,
            reason,
        })?;
        if !slice.is_empty() {
            return Err(ProtoError::MalformedField {
                key: self.key,
                reason: "trailing bytes after integer",
            });
        }
        Ok(value)
    }

    /// The value as an integer that must fit `T`.
    pub fn uint_as<T: TryFrom<u64>>(&self) -> Result<T, ProtoError> {
        T::try_from(self.uint()?).map_err(|_| ProtoError::MalformedField {
            key: self.key,
            reason: "integer out of range",
        })
    }

    /// The value as a 16-byte UUID.
    pub fn uuid(&self) -> Result<Uuid, ProtoError> {
        Uuid::from_slice(self.value).map_err(|_| ProtoError::MalformedField {
            key: self.key,
            reason: "id is not 16 bytes",
        })
    }

    /// The value as a USER_HEADER pair.
    pub fn user_header(&self) -> Result<(Text, Text), ProtoError> {
        let malformed = |reason| ProtoError::MalformedField {
            key: self.key,
            reason,
        };
        let mut slice: &[u8] = self.value;
        let name_len = get_varint(&mut slice).map_err(malformed)?;
        let name_len = usize::try_from(name_len).map_err(|_| malformed("name too long"))?;
        if name_len > slice.len() {
            return Err(malformed("header name runs past the field"));
        }
        let (name, value) = slice.split_at(name_len);
        let name = Text::from_utf8(self.source.slice_ref(name))
            .map_err(|_| malformed("header name is not UTF-8"))?;
        let value = Text::from_utf8(self.source.slice_ref(value))
            .map_err(|_| malformed("header value is not UTF-8"))?;
        Ok((name, value))
    }
}

/// Iterates the fields of a header block or record without copying values.
pub struct FieldReader<'a> {
    block: &'a [u8],
    source: &'a Bytes,
}

impl<'a> FieldReader<'a> {
    /// Reads the fields of a whole block.
    pub fn new(block: &'a Bytes) -> Self {
        FieldReader {
            block,
            source: block,
        }
    }
}

impl<'a> Iterator for FieldReader<'a> {
    type Item = Result<Field<'a>, ProtoError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (&key, rest) = self.block.split_first()?;
        let mut slice = rest;
        let len = match get_varint(&mut slice) {
            Ok(len) => len,
            Err(reason) => {
                self.block = &[];
                return Some(Err(ProtoError::MalformedField { key, reason }));
            }
        };
        let Some(len) = usize::try_from(len).ok().filter(|&len| len <= slice.len()) else {
            self.block = &[];
            return Some(Err(ProtoError::MalformedField {
                key,
                reason: "value runs past the end of the block",
            }));
        };
        let (value, rest) = slice.split_at(len);
        self.block = rest;
        Some(Ok(Field {
            key,
            value,
            source: self.source,
        }))
    }
}

/// Iterates the records of a list carried in a frame's content.
pub struct RecordReader<'a> {
    content: &'a [u8],
    source: &'a Bytes,
}

impl<'a> RecordReader<'a> {
    pub fn new(content: &'a Bytes) -> Self {
        RecordReader {
            content,
            source: content,
        }
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = Result<FieldReader<'a>, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.content.is_empty() {
            return None;
        }
        let Some((len, rest)) = self.content.split_first_chunk::<2>() else {
            self.content = &[];
            return Some(Err(ProtoError::MalformedField {
                key: 0,
                reason: "record length truncated",
            }));
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if len > rest.len() {
            self.content = &[];
            return Some(Err(ProtoError::MalformedField {
                key: 0,
                reason: "record runs past the end of the content",
            }));
        }
        let (record, rest) = rest.split_at(len);
        self.content = rest;
        Some(Ok(FieldReader {
            block: record,
            source: self.source,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_varint_read_from_a_word_reads_as_from_its_bytes() {
        let patterns: [&[u8]; 6] = [
            &[0x05],
            &[0x85, 0x01],
            &[0x80, 0x00],
            &[0x85, 0x81],
            &[0x05, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ];
        for bytes in patterns {
            for len in 1..=bytes.len() {
                // Whatever follows the value in the word does not count.
                let mut word = [0xaa; 8];
                word[..len].copy_from_slice(&bytes[..len]);
                assert_eq!(
                    varint_in_word(u64::from_le_bytes(word), len),
                    uint_value(&bytes[..len]),
                    "{:x?}",
                    &bytes[..len]
                );
            }
        }
        for value in [
            0,
            1,
            127,
            128,
            300,
            1 << 35,
            1_700_000_000_000_000,
            (1 << 56) - 1,
        ] {
            let mut bytes = [0u8; MAX_VARINT_LEN];
            let len = write_varint(value, &mut bytes);
            let mut word = [0x99; 8];
            word[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(varint_in_word(u64::from_le_bytes(word), len), Some(value));
        }
    }

    /// Byte strings of every length up to past a few words, differing in any one byte
    /// or in none.
    #[test]
    fn short_byte_strings_compare_as_slices_do() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "{len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "{len}, differing at {at}");
            }
            assert!(!same_bytes(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }

    /// LEB128 one byte at a time, as the format defines it.
    fn reference_varint(mut value: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        while value >= 0x80 {
            bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
        bytes
    }

    #[test]
    fn varints_are_written_as_the_format_defines_them() {
        let mut values = vec![0, 1, u64::MAX - 1, u64::MAX];
        for bits in 1..64 {
            let edge = 1u64 << bits;
            values.extend([edge - 1, edge, edge + 1, edge | 0x55]);
        }
        values.extend((0..64).map(|i| 0x0123_4567_89ab_cdefu64.rotate_left(i)));
        for value in values {
            let expected = reference_varint(value);
            assert_eq!(varint_len(value), expected.len(), "length of {value:#x}");
            // Room for the varint exactly, and room to spare (where the fast path
            // writes eight bytes at once).
            for room in [expected.len(), MAX_VARINT_LEN + 4] {
                let mut out = vec![0xee; room];
                let len = write_varint(value, &mut out);
                assert_eq!(&out[..len], &expected[..], "{value:#x} in {room} bytes");
                let mut read: &[u8] = &out[..len];
                assert_eq!(get_varint(&mut read), Ok(value));
            }
        }
    }

    /// One-byte varints take a short path; every length reads back what was written and
    /// leaves what follows, and bad encodings are still refused.
    #[test]
    fn varints_read_back_at_every_length_and_bad_ones_are_refused() {
        let mut values = vec![0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, u64::MAX];
        values.extend((0..64).map(|shift| 1u64 << shift));
        for value in values {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value));
            buf.extend_from_slice(&[0xAB]);
            let mut slice: &[u8] = &buf;
            assert_eq!(get_varint(&mut slice), Ok(value));
            assert_eq!(slice, &[0xAB]);
        }
        assert!(get_varint(&mut &[][..]).is_err(), "empty");
        assert!(get_varint(&mut &[0x80][..]).is_err(), "truncated");
        assert!(
            get_varint(&mut &[0xFF; 9][..]).is_err(),
            "truncated after nine"
        );
        let mut overflow = [0xFF; 10];
        overflow[9] = 0x02;
        assert!(get_varint(&mut &overflow[..]).is_err(), "past u64");
        assert!(get_varint(&mut &[0x80; 11][..]).is_err(), "longer than ten");
    }

    /// An integer field is read as the byte-by-byte reader reads its value, with no
    /// byte left over, whatever its bytes: every length, non-canonical encodings (a
    /// zero continued), trailing bytes, truncation and overflow.
    #[test]
    fn integer_fields_read_as_the_byte_by_byte_reader_does() {
        fn by_bytes(value: &[u8]) -> Option<u64> {
            let mut slice = value;
            let read = get_varint(&mut slice).ok()?;
            slice.is_empty().then_some(read)
        }
        let mut values = vec![0, 1, 0x7F, 0x80, u64::MAX - 1, u64::MAX];
        for bits in 1..64 {
            let edge = 1u64 << bits;
            values.extend([edge - 1, edge, edge + 1, edge | 0x55]);
        }
        values.extend((0..64).map(|i| 0x0123_4567_89ab_cdefu64.rotate_left(i)));
        let mut encodings: Vec<Vec<u8>> = values.iter().map(|&v| reference_varint(v)).collect();
        encodings.extend([
            vec![],
            vec![0x80],
            vec![0x80, 0x00],
            vec![0xFF, 0x80, 0x80, 0x00],
            vec![0x00, 0x00],
            vec![0x05, 0x80],
            vec![0x81, 0x01, 0x01],
            vec![0xFF; 8],
            vec![0xFF; 9],
            vec![0x80; 10],
        ]);
        let mut overflow = vec![0xFF; 10];
        overflow[9] = 0x02;
        encodings.push(overflow);
        // Every byte pattern of up to two bytes, continuation bits or not.
        for first in 0..=u8::MAX {
            encodings.push(vec![first]);
            for second in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                encodings.push(vec![first, second]);
            }
        }
        let source = Bytes::new();
        for value in encodings {
            let field = Field {
                key: key::SEQ,
                value: &value,
                source: &source,
            };
            assert_eq!(field.uint().ok(), by_bytes(&value), "{value:02x?}");
        }
    }
}
