//! The RESP2 replies a pub/sub connection receives, decoded from its byte stream: what
//! the server pushes (messages, subscription confirmations) and what it answers (OK,
//! errors). Decoding stops at a frame's end, so a connection reads no further than the
//! node consumes and a slow node leaves the backlog in Redis, which bounds it.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The largest bulk string accepted: Redis's own default `proto-max-bulk-len`.
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Replies on a pub/sub connection nest one level; a little room beyond that.
const MAX_DEPTH: usize = 4;
/// Arrays on a pub/sub connection have at most four elements; a little room beyond.
const MAX_ARRAY: usize = 64;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Frame>),
}

/// Bytes that are not RESP2 (or exceed the limits above).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("malformed reply from Redis: {0}")]
    Malformed(&'static str),
    #[error("reading from Redis: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes [`Frame`]s.
#[derive(Debug, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let mut cursor = 0;
        match parse(src, &mut cursor, 0)? {
            Some(frame) => {
                src.advance(cursor);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }
}

/// Parses one frame at `*at`; `None` when the buffer does not hold all of it yet.
fn parse(src: &[u8], at: &mut usize, depth: usize) -> Result<Option<Frame>, FrameError> {
    let Some(line) = line(src, *at)? else {
        return Ok(None);
    };
    let (kind, text) = (line[0], &line[1..]);
    let next = *at + line.len() + 2;
    let frame = match kind {
        b'+' => Frame::Simple(String::from_utf8_lossy(text).into_owned()),
        b'-' => Frame::Error(String::from_utf8_lossy(text).into_owned()),
        b':' => Frame::Integer(number(text)?),
        b'$' => {
            let len = number(text)?;
            if len < 0 {
                *at = next;
                return Ok(Some(Frame::Null));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= MAX_BULK)
                .ok_or(FrameError::Malformed("bulk string too long"))?;
            let end = next + len;
            if src.len() < end + 2 {
                return Ok(None);
            }
            if &src[end..end + 2] != b"\r\n" {
                return Err(FrameError::Malformed("bulk string without its CRLF"));
            }
            *at = end + 2;
            return Ok(Some(Frame::Bulk(Bytes::copy_from_slice(&src[next..end]))));
        }
        b'*' => {
            let len = number(text)?;
            if len < 0 {
                *at = next;
                return Ok(Some(Frame::Null));
            }
            if depth >= MAX_DEPTH {
                return Err(FrameError::Malformed("arrays nested too deep"));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|len| *len <= MAX_ARRAY)
                .ok_or(FrameError::Malformed("array too long"))?;
            let mut cursor = next;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                match parse(src, &mut cursor, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            *at = cursor;
            return Ok(Some(Frame::Array(items)));
        }
        _ => return Err(FrameError::Malformed("unknown reply type")),
    };
    *at = next;
    Ok(Some(frame))
}

/// The line at `at` without its CRLF; `None` until the CRLF arrived.
fn line(src: &[u8], at: usize) -> Result<Option<&[u8]>, FrameError> {
    let rest = src.get(at..).unwrap_or_default();
    match rest.windows(2).position(|pair| pair == b"\r\n") {
        Some(0) => Err(FrameError::Malformed("empty line")),
        Some(end) => Ok(Some(&rest[..end])),
        // A header line is short; a long one without CRLF is not Redis.
        None if rest.len() > 1024 => Err(FrameError::Malformed("line too long")),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, FrameError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(FrameError::Malformed("not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<Frame> {
        let mut codec = FrameCodec;
        let mut buffer = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = codec.decode(&mut buffer) {
            frames.push(frame);
        }
        assert!(buffer.is_empty(), "left over: {buffer:?}");
        frames
    }

    fn bulk(text: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn pub_sub_replies() {
        let frames = decode_all(
            b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
              *4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$2\r\nab\r\n$5\r\nhe\r\no\r\n\
              -ERR nope\r\n$-1\r\n",
        );
        assert_eq!(
            frames,
            vec![
                Frame::Simple("OK".into()),
                Frame::Array(vec![bulk("subscribe"), bulk("a"), Frame::Integer(1)]),
                Frame::Array(vec![
                    bulk("pmessage"),
                    bulk("a*"),
                    bulk("ab"),
                    bulk("he\r\no")
                ]),
                Frame::Error("ERR nope".into()),
                Frame::Null,
            ]
        );
    }

    #[test]
    fn a_frame_split_anywhere_is_decoded_once_complete() {
        let whole = b"*3\r\n$7\r\nmessage\r\n$3\r\nabc\r\n$4\r\n1234\r\n";
        for split in 0..whole.len() {
            let mut codec = FrameCodec;
            let mut buffer = BytesMut::from(&whole[..split]);
            assert!(matches!(codec.decode(&mut buffer), Ok(None)), "at {split}");
            buffer.extend_from_slice(&whole[split..]);
            let frame = codec.decode(&mut buffer);
            assert!(
                matches!(frame, Ok(Some(Frame::Array(ref items))) if items.len() == 3),
                "at {split}: {frame:?}"
            );
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for input in [
            &b"?what\r\n"[..],
            b":12x\r\n",
            b"$3\r\nabcd\r\n",
            b"*100000\r\n",
            b"\r\n",
        ] {
            let mut buffer = BytesMut::from(input);
            assert!(FrameCodec.decode(&mut buffer).is_err(), "{input:?}");
        }
        let mut deep = BytesMut::from(&b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"[..]);
        assert!(FrameCodec.decode(&mut deep).is_err());
    }
}
