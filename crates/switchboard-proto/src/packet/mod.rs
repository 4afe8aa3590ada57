//! Typed packets: one struct per frame type, each converting to and from a [`Frame`].
//!
//! Decoding a packet borrows from the frame (text and bodies are [`Bytes`] slices);
//! encoding writes fields straight into the output buffer through [`Encode`], so that the
//! codec reserves memory once per frame.

mod admin;
mod channel;
mod direct;
mod event;
mod fetch;
mod group;
mod message;
mod publish;
mod relay;
mod session;
mod stream;
mod subscribe;

pub use admin::{Reload, Stat, Stats, StatsReply, Stop};
pub use channel::{
    ChannelInfo, ChannelList, ChannelOptions, CreateChannel, DeleteChannel, Durability,
    ListChannels, SlowConsumerPolicy,
};
pub use direct::Direct;
pub use event::{Event, EventKind};
pub use fetch::{GetMessage, GetMessages, MessagesEnd, Since};
pub use group::{
    CreateGroup, DeleteGroup, GroupInfo, GroupList, GroupMembers, JoinGroup, LeaveGroup,
    ListGroups, MemberInfo, MemberList,
};
pub use message::{Envelope, Message, MessageFields, MessageLayout};
pub use publish::{
    BATCH_LEN_BYTES, BatchBodies, Publish, PublishAck, PublishBatchRef, PublishRef, PublishTexts,
    StreamStart, batch_request_id,
};
pub use relay::{
    ClientInfo, ClientList, Identify, Identity, ListClients, MAX_RECEIVERS, Relay, RelayOutcome,
    RelayResult, RelayStatus,
};
pub use session::{Disconnect, ErrorPacket, Heartbeat, OkReply, SessionAck, SessionInit, features};
pub use stream::{Chunk, DIGEST_LEN, StreamAbort};
pub use subscribe::{Replay, Subscribe, SubscribeAck, Unsubscribe};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtoError;
use crate::fields::{BlockWriter, Field, FieldReader, FieldWriter, RecordReader, WriteFields, key};
use crate::frame::{Flags, Frame, FrameType};
use crate::text::Text;

/// What the codec needs to write a packet as a frame.
pub trait Encode {
    /// The frame type of this packet.
    fn frame_type(&self) -> FrameType;
    /// Flags implied by the packet's contents (e.g. STREAM); OR-ed with the caller's.
    fn flags(&self) -> Flags {
        Flags::empty()
    }
    /// Writes the header block.
    fn write_fields(&self, fields: &mut FieldWriter<'_>);
    /// Writes the content.
    fn write_content(&self, _dst: &mut BytesMut) {}
    /// Exact or upper-bound size of the content, for a single reservation.
    fn content_len(&self) -> usize {
        0
    }
    /// The content when it is exactly one shared buffer (a body), so that a writer may
    /// send it from there instead of copying it; `None` for composed content.
    fn body(&self) -> Option<&Bytes> {
        None
    }
    /// The CRC32C of exactly what `write_content` writes, when the packet already knows
    /// it (a body forwarded unchanged from a checked frame); computed otherwise.
    fn content_crc(&self) -> Option<u32> {
        None
    }
    /// Likely size of the header block, for a single reservation.
    fn fields_len_hint(&self) -> usize {
        32
    }
    /// For a packet that can also write its header block with [`BlockWriter`]
    /// ([`Encode::write_block`]): an upper bound of the block's length. A short block is
    /// then made on the stack with no capacity check per field, which is what a client
    /// sending many small packets of one kind wants. `None` (the default): the block is
    /// written with [`Encode::write_fields`] only.
    fn block_bound(&self) -> Option<usize> {
        None
    }
    /// Writes the same bytes as [`Encode::write_fields`] into a block of at least
    /// [`Encode::block_bound`] bytes. Only called when `block_bound` is `Some`.
    fn write_block(&self, _fields: &mut BlockWriter<'_>) {}
}

/// The [`Encode`] methods of a packet whose content is exactly one of its fields (a
/// body): written as is, and offered to writers that send it from its own buffer.
macro_rules! content_is_body {
    ($field:ident) => {
        fn write_content(&self, dst: &mut ::bytes::BytesMut) {
            $crate::packet::put_content(dst, &self.$field);
        }
        fn content_len(&self) -> usize {
            self.$field.len()
        }
        fn body(&self) -> Option<&::bytes::Bytes> {
            Some(&self.$field)
        }
    };
}
pub(crate) use content_is_body;

/// Where a message lives: a channel, a group, or a hashtag (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    #[default]
    Channel,
    Group,
    Tag,
}

impl Scope {
    pub fn as_u8(self) -> u8 {
        match self {
            Scope::Channel => 0,
            Scope::Group => 1,
            Scope::Tag => 2,
        }
    }

    pub fn from_u64(value: u64) -> Option<Scope> {
        match value {
            0 => Some(Scope::Channel),
            1 => Some(Scope::Group),
            2 => Some(Scope::Tag),
            _ => None,
        }
    }

    pub(crate) fn write<W: WriteFields>(self, fields: &mut W) {
        if self != Scope::Channel {
            fields.uint(key::SCOPE, u64::from(self.as_u8()));
        }
    }

    pub(crate) fn read(field: &Field, frame: FrameType) -> Result<Scope, ProtoError> {
        let value = field.uint()?;
        Scope::from_u64(value).ok_or_else(|| ProtoError::InvalidField {
            frame,
            field: "scope",
            reason: format!("unknown scope {value}"),
        })
    }
}

/// Calls `visit` for every field of the header block; unknown keys are the visitor's to
/// skip.
pub(crate) fn for_each_field(
    headers: &Bytes,
    mut visit: impl FnMut(Field<'_>) -> Result<(), ProtoError>,
) -> Result<(), ProtoError> {
    for field in FieldReader::new(headers) {
        visit(field?)?;
    }
    Ok(())
}

/// Calls `visit` with the fields of each record of a list carried in the content.
pub(crate) fn for_each_record<T>(
    content: &Bytes,
    mut visit: impl FnMut(FieldReader<'_>) -> Result<T, ProtoError>,
) -> Result<Vec<T>, ProtoError> {
    RecordReader::new(content)
        .map(|record| visit(record?))
        .collect()
}

/// The value of a required field, or a clear error naming it.
pub(crate) fn required<T>(
    value: Option<T>,
    frame: FrameType,
    field: &'static str,
) -> Result<T, ProtoError> {
    // Not `ok_or`: an error built up front is dropped again on every decode.
    match value {
        Some(value) => Ok(value),
        None => Err(ProtoError::MissingField { frame, field }),
    }
}

/// Size of a record list, for reservation.
pub(crate) fn records_len<T>(items: &[T], each: impl Fn(&T) -> usize) -> usize {
    items.iter().map(|item| 2 + each(item)).sum()
}

pub(crate) fn put_content(dst: &mut BytesMut, body: &[u8]) {
    dst.put_slice(body);
}

pub(crate) fn text_len(text: &Text) -> usize {
    text.len() + 4
}

macro_rules! packets {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Any packet, as decoded from or encoded to one frame.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Packet {
            $($variant($ty),)*
        }

        impl Packet {
            /// Interprets a decoded frame as its typed packet.
            pub fn from_frame(frame: &Frame) -> Result<Packet, ProtoError> {
                match frame.frame_type {
                    $(FrameType::$variant => Ok(Packet::$variant(<$ty>::from_frame(frame)?)),)*
                }
            }
        }

        impl Encode for Packet {
            fn frame_type(&self) -> FrameType {
                match self { $(Packet::$variant(p) => p.frame_type(),)* }
            }
            fn flags(&self) -> Flags {
                match self { $(Packet::$variant(p) => p.flags(),)* }
            }
            fn write_fields(&self, fields: &mut FieldWriter<'_>) {
                match self { $(Packet::$variant(p) => p.write_fields(fields),)* }
            }
            fn write_content(&self, dst: &mut BytesMut) {
                match self { $(Packet::$variant(p) => p.write_content(dst),)* }
            }
            fn content_len(&self) -> usize {
                match self { $(Packet::$variant(p) => p.content_len(),)* }
            }
            fn content_crc(&self) -> Option<u32> {
                match self { $(Packet::$variant(p) => p.content_crc(),)* }
            }
            fn body(&self) -> Option<&Bytes> {
                match self { $(Packet::$variant(p) => p.body(),)* }
            }
            fn fields_len_hint(&self) -> usize {
                match self { $(Packet::$variant(p) => p.fields_len_hint(),)* }
            }
        }

        $(impl From<$ty> for Packet {
            fn from(packet: $ty) -> Packet { Packet::$variant(packet) }
        })*
    };
}

packets! {
    SessionInit(SessionInit),
    SessionAck(SessionAck),
    Heartbeat(Heartbeat),
    Error(ErrorPacket),
    Disconnect(Disconnect),
    Ok(OkReply),
    Identify(Identify),
    Identity(Identity),
    ListClients(ListClients),
    ClientList(ClientList),
    Relay(Relay),
    RelayResult(RelayResult),
    CreateChannel(CreateChannel),
    ChannelInfo(ChannelInfo),
    Publish(Publish),
    PublishAck(PublishAck),
    Subscribe(Subscribe),
    SubscribeAck(SubscribeAck),
    Unsubscribe(Unsubscribe),
    GetMessage(GetMessage),
    GetMessages(GetMessages),
    MessagesEnd(MessagesEnd),
    ListChannels(ListChannels),
    ChannelList(ChannelList),
    DeleteChannel(DeleteChannel),
    CreateGroup(CreateGroup),
    ListGroups(ListGroups),
    GroupList(GroupList),
    JoinGroup(JoinGroup),
    LeaveGroup(LeaveGroup),
    GroupMembers(GroupMembers),
    MemberList(MemberList),
    DeleteGroup(DeleteGroup),
    Stop(Stop),
    Reload(Reload),
    Stats(Stats),
    StatsReply(StatsReply),
    Message(Message),
    Direct(Direct),
    Event(Event),
    Chunk(Chunk),
    StreamAbort(StreamAbort),
}

/// Declares packets that carry no fields at all.
macro_rules! unit_packet {
    ($(#[$doc:meta])* $name:ident => $frame:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $name {
            pub fn from_frame(_frame: &$crate::frame::Frame) -> Result<Self, $crate::error::ProtoError> {
                Ok($name)
            }
        }

        impl $crate::packet::Encode for $name {
            fn frame_type(&self) -> $crate::frame::FrameType {
                $crate::frame::FrameType::$frame
            }
            fn write_fields(&self, _fields: &mut $crate::fields::FieldWriter<'_>) {}
            fn fields_len_hint(&self) -> usize {
                0
            }
        }
    };
}
pub(crate) use unit_packet;

/// Declares a listing request: an optional cursor (the page starts after the entry it
/// names, as given by the previous page's reply) and an optional limit on the entries of
/// the page. Neither: the first page, as large as one frame holds.
macro_rules! list_request {
    ($(#[$doc:meta])* $name:ident => $frame:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            /// The `next` of the previous page's reply; none for the first page.
            pub cursor: Option<::bytes::Bytes>,
            /// Most entries wanted in this page (the server may send fewer).
            pub limit: Option<u64>,
        }

        impl $name {
            pub fn from_frame(frame: &$crate::frame::Frame) -> Result<Self, $crate::error::ProtoError> {
                let mut packet = $name::default();
                $crate::packet::for_each_field(&frame.headers, |field| {
                    match field.key {
                        $crate::fields::key::CURSOR => packet.cursor = Some(field.bytes()),
                        $crate::fields::key::LIMIT => packet.limit = Some(field.uint()?),
                        _ => {}
                    }
                    Ok(())
                })?;
                Ok(packet)
            }
        }

        impl $crate::packet::Encode for $name {
            fn frame_type(&self) -> $crate::frame::FrameType {
                $crate::frame::FrameType::$frame
            }
            fn write_fields(&self, fields: &mut $crate::fields::FieldWriter<'_>) {
                $crate::packet::write_page_request(fields, self.cursor.as_ref(), self.limit);
            }
            fn fields_len_hint(&self) -> usize {
                $crate::packet::cursor_len(self.cursor.as_ref()) + 12
            }
        }
    };
}
pub(crate) use list_request;

/// Writes the cursor and limit of a listing request.
pub(crate) fn write_page_request(
    fields: &mut FieldWriter<'_>,
    cursor: Option<&Bytes>,
    limit: Option<u64>,
) {
    if let Some(cursor) = cursor {
        fields.bytes(key::CURSOR, cursor);
    }
    fields.opt_uint(key::LIMIT, limit);
}

/// The cursor of a listing reply's header block, if any.
pub(crate) fn read_cursor(frame: &Frame) -> Result<Option<Bytes>, ProtoError> {
    let mut cursor = None;
    for_each_field(&frame.headers, |field| {
        if field.key == key::CURSOR {
            cursor = Some(field.bytes());
        }
        Ok(())
    })?;
    Ok(cursor)
}

/// Writes the cursor of a listing reply, if more entries follow.
pub(crate) fn write_cursor(fields: &mut FieldWriter<'_>, cursor: Option<&Bytes>) {
    if let Some(cursor) = cursor {
        fields.bytes(key::CURSOR, cursor);
    }
}

/// Reserved header bytes for an optional cursor field.
pub(crate) fn cursor_len(cursor: Option<&Bytes>) -> usize {
    cursor.map_or(0, |cursor| cursor.len() + 1 + crate::fields::MAX_VARINT_LEN)
}
