//! The Switchboard wire protocol.
//!
//! Every stream transport (TCP, Unix sockets, later TLS and WebSocket) carries the same
//! bytes: a connection [`preface`], then a sequence of [`frame`]s. A frame is a fixed
//! 24-byte prefix, a block of typed header fields ([`fields`]), an opaque content part and,
//! when the session negotiated one, an HMAC-SHA256 tag.
//!
//! The crate is layered the way a reader of `docs/PROTOCOL.md` would expect:
//!
//! * [`frame`] — the raw frame: type, flags, request id, header block and content, all as
//!   shared [`bytes::Bytes`] so decoding never copies a body;
//! * [`codec`] — a `tokio_util` codec that checks every length against [`Limits`] before
//!   reserving memory, verifies both CRC32C checksums and the HMAC tag;
//! * [`packet`] — one typed struct per frame type, converting to and from frames;
//! * [`message_head`] — the head of a channel's last MESSAGE, patched to encode the next
//!   one alike;
//! * [`batch`] — the sizes connections read and write by, and the write batch both ends'
//!   writers gather frames into;
//! * [`frame_buffers`] — the buffers large frames are read into, used again once the
//!   last view of their bytes is dropped;
//! * [`subject`] — channel names, wildcard patterns and hashtags, shared by server and
//!   clients so that both route messages the same way.
//!
//! The crate does no I/O of its own beyond the codec.

pub mod batch;
pub mod codec;
pub mod crc;
pub mod error;
pub mod fields;
pub mod frame;
pub mod frame_buffers;
pub mod limits;
pub mod mac;
pub mod message_head;
pub mod packet;
pub mod preface;
pub mod subject;
pub mod text;

pub use codec::{FrameCodec, FrameHead};
pub use error::{ErrorCode, ProtoError};
pub use frame::{FIXED_HEADER_LEN, Flags, Frame, FrameType, MAC_TAG_LEN, SYNC};
pub use limits::Limits;
pub use mac::MacKey;
pub use packet::Packet;
pub use preface::{MAGIC, PREFACE_LEN, PROTOCOL_VERSION, Preface};
pub use text::Text;
