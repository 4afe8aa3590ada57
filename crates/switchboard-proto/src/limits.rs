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
