//! Size limits the decoder enforces before it reserves or reads anything.

/// Upper bounds for one frame, checked against the length fields of the fixed prefix
/// before any memory is reserved for the rest of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block accepted (at most 65535, the width of its length field).
    pub max_header_len: usize,
    /// Largest content accepted in one frame. Bodies above this are streamed in CHUNKs.
    pub max_content_len: u32,
}

impl Limits {
    /// Default largest content of one frame: 8 MiB.
    pub const DEFAULT_MAX_CONTENT: u32 = 8 * 1024 * 1024;
    /// Default largest header block: 16 KiB, ample for names and user headers.
    pub const DEFAULT_MAX_HEADER: usize = 16 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_len: Self::DEFAULT_MAX_HEADER,
            max_content_len: Self::DEFAULT_MAX_CONTENT,
        }
    }
}

/// The most bytes a sender puts in one WebSocket message (see PROTOCOL.md, "WebSocket"):
/// a write of many small frames goes out whole, a longer one spans several messages.
pub const WEBSOCKET_MESSAGE_BYTES: usize = 1 << 20;

/// The next WebSocket message of a vectored write: its first bytes, up to
/// [`WEBSOCKET_MESSAGE_BYTES`], gathered in one buffer (one copy). The rest of the write
/// goes in the next messages.
pub fn websocket_message(bufs: &[std::io::IoSlice<'_>]) -> bytes::Bytes {
    let total = bufs.iter().map(|buf| buf.len()).sum::<usize>();
    let take = total.min(WEBSOCKET_MESSAGE_BYTES);
    let mut message = bytes::BytesMut::with_capacity(take);
    for buf in bufs {
        let room = take - message.len();
        if room == 0 {
            break;
        }
        message.extend_from_slice(&buf[..buf.len().min(room)]);
    }
    message.freeze()
}

/// The largest WebSocket message a receiver whose frames may be `limits` large takes: one
/// whole frame at its largest (fixed header, header block, content, HMAC tag), and never
/// less than a sender's [`WEBSOCKET_MESSAGE_BYTES`].
pub fn websocket_message_limit(limits: &Limits) -> usize {
    let largest_frame = crate::FIXED_HEADER_LEN
        + limits.max_header_len
        + limits.max_content_len as usize
        + crate::MAC_TAG_LEN;
    largest_frame.max(WEBSOCKET_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::{WEBSOCKET_MESSAGE_BYTES, websocket_message};

    #[test]
    fn a_vectored_write_is_gathered_up_to_one_message() {
        let bufs = [IoSlice::new(b"abc"), IoSlice::new(b"defg")];
        assert_eq!(&websocket_message(&bufs)[..], b"abcdefg");
        let large = vec![7u8; WEBSOCKET_MESSAGE_BYTES * 3 / 4];
        let bufs = [
            IoSlice::new(b"abc"),
            IoSlice::new(&large),
            IoSlice::new(&large),
        ];
        let message = websocket_message(&bufs);
        assert_eq!(message.len(), WEBSOCKET_MESSAGE_BYTES);
        assert_eq!(&message[..4], &[b'a', b'b', b'c', 7]);
    }
}
