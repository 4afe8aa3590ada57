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
