//! Streamed bodies: CHUNK and STREAM_ABORT.
//!
//! A PUBLISH or MESSAGE with flag STREAM opens a stream; CHUNK frames with the same
//! STREAM_ID carry the rest of the body in order; the last has flag LAST and the SHA-256
//! of the whole body. Either side may send STREAM_ABORT instead, and the receiver then
//! discards everything it received for that stream.

use bytes::Bytes;

use super::{Encode, content_is_body, for_each_field, required, text_len};
use crate::error::{ErrorCode, ProtoError};
use crate::fields::{FieldWriter, key};
use crate::frame::{Flags, Frame, FrameType};
use crate::text::Text;

/// Length of the SHA-256 digest closing a stream.
pub const DIGEST_LEN: usize = 32;

/// A piece of a streamed body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    pub stream_id: u64,
    pub data: Bytes,
    /// SHA-256 of the whole body; present exactly on the last chunk.
    pub digest: Option<[u8; DIGEST_LEN]>,
}

impl Chunk {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut stream_id = None;
        let mut digest = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::STREAM_ID => stream_id = Some(field.uint()?),
                key::DIGEST => {
                    let bytes: [u8; DIGEST_LEN] =
                        field
                            .value
                            .as_ref()
                            .try_into()
                            .map_err(|_| ProtoError::InvalidField {
                                frame: FrameType::Chunk,
                                field: "digest",
                                reason: "not 32 bytes".into(),
                            })?;
                    digest = Some(bytes);
                }
                _ => {}
            }
            Ok(())
        })?;
        let last = frame.flags.contains(Flags::LAST);
        if last && digest.is_none() {
            return Err(ProtoError::MissingField {
                frame: FrameType::Chunk,
                field: "digest",
            });
        }
        Ok(Chunk {
            stream_id: required(stream_id, FrameType::Chunk, "stream id")?,
            data: frame.content.clone(),
            digest: if last { digest } else { None },
        })
    }

    /// Whether this is the last chunk of its stream.
    pub fn is_last(&self) -> bool {
        self.digest.is_some()
    }
}

impl Encode for Chunk {
    fn frame_type(&self) -> FrameType {
        FrameType::Chunk
    }
    fn flags(&self) -> Flags {
        if self.digest.is_some() {
            Flags::LAST
        } else {
            Flags::empty()
        }
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.uint(key::STREAM_ID, self.stream_id);
        if let Some(digest) = &self.digest {
            fields.bytes(key::DIGEST, digest);
        }
    }
    content_is_body!(data);
    fn fields_len_hint(&self) -> usize {
        12 + DIGEST_LEN + 2
    }
}

/// Abandons a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    pub stream_id: u64,
    pub code: ErrorCode,
    pub reason: Text,
}

impl StreamAbort {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut stream_id = None;
        let mut code = ErrorCode::StreamAborted;
        let mut reason = Text::default();
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::STREAM_ID => stream_id = Some(field.uint()?),
                key::ERROR_CODE => code = ErrorCode::from_u16(field.uint_as()?),
                key::MESSAGE => reason = field.text()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(StreamAbort {
            stream_id: required(stream_id, FrameType::StreamAbort, "stream id")?,
            code,
            reason,
        })
    }
}

impl Encode for StreamAbort {
    fn frame_type(&self) -> FrameType {
        FrameType::StreamAbort
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields
            .uint(key::STREAM_ID, self.stream_id)
            .uint(key::ERROR_CODE, u64::from(self.code.as_u16()))
            .text(key::MESSAGE, &self.reason);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.reason) + 16
    }
}
