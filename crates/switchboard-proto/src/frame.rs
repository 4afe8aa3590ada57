//! The raw frame: what the codec reads and writes before any typed interpretation.
//!
//! Layout of the fixed prefix (all integers big-endian):
//!
//! ```text
//! offset size field
//!      0    2 sync          0x53 0x42 ("SB")
//!      2    1 version       protocol version of the session (1)
//!      3    1 frame type    see FrameType
//!      4    2 flags         see Flags
//!      6    2 header length bytes in the header block
//!      8    4 request id    chosen by the requester, echoed by the reply; 0 for pushes
//!     12    4 content length
//!     16    4 content CRC32C
//!     20    4 header CRC32C over bytes 0..20 and the header block
//!     24      header block, content, then a 32-byte HMAC-SHA256 tag if flag MAC is set
//! ```

use bytes::Bytes;

/// The two sync bytes that open every frame ("SB").
pub const SYNC: [u8; 2] = *b"SB";
/// Size of the fixed prefix of every frame.
pub const FIXED_HEADER_LEN: usize = 24;
/// Size of the HMAC-SHA256 trailer when a session uses one.
pub const MAC_TAG_LEN: usize = 32;

macro_rules! frame_types {
    ($($(#[$doc:meta])* $variant:ident = $value:literal, $name:literal;)*) => {
        /// The type of a frame, one byte on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum FrameType {
            $($(#[$doc])* $variant = $value,)*
        }

        impl FrameType {
            /// Every frame type this version knows, in wire order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$variant,)*];

            /// The frame type for a wire byte, or `None` if this version does not know it.
            pub fn from_u8(value: u8) -> Option<FrameType> {
                match value {
                    $($value => Some(FrameType::$variant),)*
                    _ => None,
                }
            }

            /// The upper-case name used in PROTOCOL.md and in logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(FrameType::$variant => $name,)*
                }
            }
        }
    };
}

frame_types! {
    /// Client opens a session: name, credentials, heartbeat interval, HMAC use.
    SessionInit = 0x01, "SESSION_INIT";
    /// Server accepts a session: client id, session id, heartbeat interval, limits.
    SessionAck = 0x02, "SESSION_ACK";
    /// Liveness probe; the answer carries flag PONG.
    Heartbeat = 0x03, "HEARTBEAT";
    /// A request failed, or the peer sent something it cannot accept.
    Error = 0x04, "ERROR";
    /// The sender is closing the session, with a reason.
    Disconnect = 0x05, "DISCONNECT";
    /// Generic success answer for requests that return nothing else.
    Ok = 0x06, "OK";
    /// Ask for one's own client id, name and session id.
    Identify = 0x10, "IDENTIFY";
    /// Answer to IDENTIFY.
    Identity = 0x11, "IDENTITY";
    /// Ask for the other connected clients.
    ListClients = 0x12, "LIST_CLIENTS";
    /// Answer to LIST_CLIENTS.
    ClientList = 0x13, "CLIENT_LIST";
    /// Relay a body to 1..255 client ids.
    Relay = 0x14, "RELAY";
    /// Answer to RELAY: delivered or unknown, per receiver.
    RelayResult = 0x15, "RELAY_RESULT";
    /// Create a channel with options.
    CreateChannel = 0x20, "CREATE_CHANNEL";
    /// Description of one channel; answer to CREATE_CHANNEL.
    ChannelInfo = 0x21, "CHANNEL_INFO";
    /// Publish a message to a channel, group or (read-only) nothing else.
    Publish = 0x22, "PUBLISH";
    /// Answer to PUBLISH: message id and sequence number.
    PublishAck = 0x23, "PUBLISH_ACK";
    /// Subscribe to a pattern, optionally replaying history first.
    Subscribe = 0x24, "SUBSCRIBE";
    /// Answer to SUBSCRIBE: the subscription id.
    SubscribeAck = 0x25, "SUBSCRIBE_ACK";
    /// Cancel a subscription.
    Unsubscribe = 0x26, "UNSUBSCRIBE";
    /// Fetch the latest message of a channel, or one by id.
    GetMessage = 0x27, "GET_MESSAGE";
    /// Fetch a range of messages; answered by MESSAGE frames then MESSAGES_END.
    GetMessages = 0x28, "GET_MESSAGES";
    /// Ends the answer to GET_MESSAGES.
    MessagesEnd = 0x29, "MESSAGES_END";
    /// Ask for the list of channels.
    ListChannels = 0x2A, "LIST_CHANNELS";
    /// Answer to LIST_CHANNELS.
    ChannelList = 0x2B, "CHANNEL_LIST";
    /// Delete a channel: its history, its streamed bodies and its stored options.
    DeleteChannel = 0x2C, "DELETE_CHANNEL";
    /// Create a group in the directory.
    CreateGroup = 0x30, "CREATE_GROUP";
    /// Ask for the directory of groups.
    ListGroups = 0x31, "LIST_GROUPS";
    /// Answer to LIST_GROUPS.
    GroupList = 0x32, "GROUP_LIST";
    /// Join a group under the session's name.
    JoinGroup = 0x33, "JOIN_GROUP";
    /// Leave a group.
    LeaveGroup = 0x34, "LEAVE_GROUP";
    /// Ask for the members of a group.
    GroupMembers = 0x35, "GROUP_MEMBERS";
    /// Answer to GROUP_MEMBERS.
    MemberList = 0x36, "MEMBER_LIST";
    /// Delete a group: its history, its members and its directory entry.
    DeleteGroup = 0x37, "DELETE_GROUP";
    /// Ask the server to shut down (admin only).
    Stop = 0x40, "STOP";
    /// Ask for server statistics.
    Stats = 0x41, "STATS";
    /// Answer to STATS.
    StatsReply = 0x42, "STATS_REPLY";
    /// Ask the server to re-read its configuration (admin only).
    Reload = 0x43, "RELOAD";
    /// A message of a channel, group or hashtag: pushed live, replayed, or fetched.
    Message = 0x50, "MESSAGE";
    /// A body relayed from another client.
    Direct = 0x51, "DIRECT";
    /// A subscription, channel or group event: join, leave, skipped messages, closed
    /// subscription, deleted channel or group.
    Event = 0x52, "EVENT";
    /// A further piece of a streamed body.
    Chunk = 0x60, "CHUNK";
    /// Abandons a streamed body.
    StreamAbort = 0x61, "STREAM_ABORT";
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The 16 flag bits of a frame. Unknown bits are carried but ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// A 32-byte HMAC-SHA256 tag follows the content.
    pub const MAC: Flags = Flags(0x0001);
    /// The body is streamed: CHUNK frames with the same STREAM_ID field follow.
    pub const STREAM: Flags = Flags(0x0002);
    /// The last CHUNK of a stream.
    pub const LAST: Flags = Flags(0x0004);
    /// A MESSAGE from history (replay or fetch), not a live delivery.
    pub const REPLAY: Flags = Flags(0x0008);
    /// A HEARTBEAT that answers another.
    pub const PONG: Flags = Flags(0x0010);
    /// The requester wants no answer unless the request fails (fire-and-forget publish).
    pub const NO_REPLY: Flags = Flags(0x0020);
    /// A PUBLISH whose content is a run of bodies, each a 4-byte big-endian length and
    /// its bytes, published in order with the frame's header block (NO_REPLY only).
    pub const BATCH: Flags = Flags(0x0040);

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other` added.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// These flags with `other` removed.
    #[must_use]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

/// A decoded frame: checked for sync, version, lengths, CRCs and HMAC, but not yet typed.
///
/// `headers` and `content` are slices of the buffer the frame was read into, so a body of
/// any size is never copied by decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: FrameType,
    pub flags: Flags,
    pub request_id: u32,
    /// The header block: a sequence of fields (see [`crate::fields`]).
    pub headers: Bytes,
    /// The opaque content.
    pub content: Bytes,
    /// CRC32C of `content` as the decoder checked it, so that a frame forwarding the same
    /// content need not compute it again. Encoding a `Frame` ignores it and computes the
    /// CRC of `content`.
    pub content_crc: u32,
}
