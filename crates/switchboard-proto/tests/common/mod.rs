//! Shared helpers for the integration tests: proptest strategies that generate every
//! packet type with arbitrary field values, a deterministic proptest configuration, and
//! small encode/decode helpers.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use switchboard_proto::packet::{
    ChannelInfo, ChannelList, ChannelOptions, Chunk, ClientInfo, ClientList, CreateChannel,
    CreateGroup, DIGEST_LEN, DeleteChannel, DeleteGroup, Direct, Disconnect, Durability, Encode,
    ErrorPacket, Event, EventKind, GetMessage, GetMessages, GroupInfo, GroupList, GroupMembers,
    Heartbeat, Identify, Identity, JoinGroup, LeaveGroup, ListChannels, ListClients, ListGroups,
    MemberInfo, MemberList, Message, MessagesEnd, OkReply, Publish, PublishAck, Relay,
    RelayOutcome, RelayResult, RelayStatus, Replay, Scope, SessionAck, SessionInit, Since,
    SlowConsumerPolicy, Stat, Stats, StatsReply, Stop, StreamAbort, StreamStart, Subscribe,
    SubscribeAck, Unsubscribe,
};
use switchboard_proto::{
    ErrorCode, Flags, Frame, FrameCodec, FrameType, Limits, MacKey, Packet, Text,
};
use tokio_util::codec::Decoder;
use uuid::Uuid;

/// A fixed-seed configuration so that every run explores the same cases.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5342_0001),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The key used by tests that need an HMAC session.
pub fn test_key() -> MacKey {
    MacKey::new(b"switchboard-test-key")
}

/// A codec with default limits and, if `mac`, the test key.
pub fn codec(mac: bool) -> FrameCodec {
    FrameCodec::new(Limits::default()).with_mac_key(mac.then(test_key))
}

/// Encodes one packet into a fresh buffer.
pub fn encode(codec: &FrameCodec, request_id: u32, flags: Flags, packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    codec
        .encode_packet(request_id, flags, packet, &mut buf)
        .expect("encode");
    buf
}

/// Decodes exactly one frame from `bytes`, which must hold nothing else.
pub fn decode_one(codec: &mut FrameCodec, bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = codec
        .decode(&mut buf)
        .expect("decode")
        .expect("a whole frame");
    assert!(buf.is_empty(), "{} bytes left after the frame", buf.len());
    frame
}

/// The flags a packet's frame carries on the wire once decoded (MAC is stripped).
pub fn expected_flags(extra: Flags, packet: &Packet) -> Flags {
    (extra | packet.flags()).without(Flags::MAC)
}

/// Recomputes the header CRC of a frame whose first 20 bytes or header block were edited.
pub fn fix_header_crc(frame: &mut [u8]) {
    let header_len = usize::from(u16::from_be_bytes([frame[6], frame[7]]));
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[..20]), &frame[24..24 + header_len]);
    frame[20..24].copy_from_slice(&crc.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// Field value strategies
// ---------------------------------------------------------------------------------------

/// Any Unicode text of up to `max` scalar values (including control characters and
/// characters outside the BMP), or a short ASCII word.
pub fn text_upto(max: usize) -> BoxedStrategy<Text> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..=max)
            .prop_map(|c| Text::from(String::from_iter(c))),
        "[a-z][a-z0-9.]{0,12}".prop_map(Text::from),
        Just(Text::default()),
        // Long enough for two-byte length varints.
        "[a-zé]{100,180}".prop_map(Text::from),
    ]
    .boxed()
}

pub fn text() -> BoxedStrategy<Text> {
    text_upto(24)
}

/// A name that is never empty, as channels, groups and clients have: any Unicode, a
/// dotted ASCII name, or a mixed-script one.
/// An optional listing cursor (opaque bytes).
pub fn cursor() -> BoxedStrategy<Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)).boxed()
}

pub fn name() -> BoxedStrategy<Text> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 1..=20).prop_map(|c| Text::from(String::from_iter(c))),
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}".prop_map(Text::from),
        Just(Text::from("chat.ünïcødé.🚀")),
    ]
    .boxed()
}

/// Bodies: empty, small, or a few hundred arbitrary bytes.
pub fn body() -> BoxedStrategy<Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(Bytes::from),
        prop::collection::vec(any::<u8>(), 32..400).prop_map(Bytes::from),
    ]
    .boxed()
}

/// Integers biased towards varint length boundaries.
pub fn uint() -> BoxedStrategy<u64> {
    prop_oneof![
        any::<u64>(),
        0u64..300,
        prop::sample::select(vec![
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ]),
    ]
    .boxed()
}

pub fn uint32() -> BoxedStrategy<u32> {
    prop_oneof![any::<u32>(), 0u32..70_000, Just(u32::MAX)].boxed()
}

pub fn uuid() -> BoxedStrategy<Uuid> {
    prop_oneof![
        any::<u128>().prop_map(Uuid::from_u128),
        Just(Uuid::nil()),
        Just(Uuid::max())
    ]
    .boxed()
}

pub fn scope() -> BoxedStrategy<Scope> {
    prop::sample::select(vec![Scope::Channel, Scope::Group, Scope::Tag]).boxed()
}

/// Error codes in canonical form: every number maps to exactly one `ErrorCode`.
pub fn error_code() -> BoxedStrategy<ErrorCode> {
    prop_oneof![
        any::<u16>().prop_map(ErrorCode::from_u16),
        prop::sample::select(vec![
            0u16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 100, 101, 110, 500
        ])
        .prop_map(ErrorCode::from_u16),
    ]
    .boxed()
}

pub fn user_headers() -> BoxedStrategy<Vec<(Text, Text)>> {
    prop::collection::vec((text_upto(12), text_upto(16)), 0..4).boxed()
}

pub fn stream_start() -> BoxedStrategy<Option<StreamStart>> {
    prop::option::of(
        (uint(), uint()).prop_map(|(stream_id, total_len)| StreamStart {
            stream_id,
            total_len,
        }),
    )
    .boxed()
}

pub fn channel_options() -> BoxedStrategy<ChannelOptions> {
    (
        prop::option::of(uint()),
        prop::option::of(uint()),
        prop::option::of(uint()),
        prop::option::of(uint()),
        prop::option::of(uint()),
        prop::option::of(prop::sample::select(vec![
            SlowConsumerPolicy::Disconnect,
            SlowConsumerPolicy::DropOldest,
        ])),
        prop::option::of(prop::sample::select(vec![
            Durability::Memory,
            Durability::Never,
            Durability::Interval,
            Durability::Always,
        ])),
    )
        .prop_map(
            |(
                history,
                max_bytes,
                max_chars,
                max_age_ms,
                max_total_bytes,
                slow_consumer,
                durability,
            )| {
                ChannelOptions {
                    history,
                    max_bytes,
                    max_chars,
                    max_age_ms,
                    max_total_bytes,
                    slow_consumer,
                    durability,
                }
            },
        )
        .boxed()
}

pub fn channel_info() -> BoxedStrategy<ChannelInfo> {
    (name(), uint(), uint(), uint(), uint(), channel_options())
        .prop_map(
            |(name, message_count, first_seq, last_seq, bytes, options)| ChannelInfo {
                name,
                message_count,
                first_seq,
                last_seq,
                bytes,
                options,
            },
        )
        .boxed()
}

/// Flags a caller may add to any packet without changing how it decodes: everything
/// except STREAM and LAST (which the packets set themselves), MAC (set by the codec) and
/// BATCH (which gives a PUBLISH's content a structure).
pub fn extra_flags() -> BoxedStrategy<Flags> {
    let allowed = !(Flags::STREAM.0 | Flags::LAST.0 | Flags::MAC.0 | Flags::BATCH.0);
    prop_oneof![
        Just(Flags::empty()),
        prop::sample::select(vec![Flags::REPLAY, Flags::PONG, Flags::NO_REPLY]),
        any::<u16>().prop_map(move |bits| Flags(bits & allowed)),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// One strategy per frame type
// ---------------------------------------------------------------------------------------

/// A strategy for packets of the given frame type. The match is exhaustive, so a new
/// frame type cannot be added without a strategy here.
pub fn packet_of(frame_type: FrameType) -> BoxedStrategy<Packet> {
    match frame_type {
        FrameType::SessionInit => ((name(), uint32(), body(), text()), (text(), body(), body()))
            .prop_map(
                |((name, heartbeat_ms, credentials, software), (user, password, jwt))| {
                    Packet::from(SessionInit {
                        name,
                        heartbeat_ms,
                        credentials,
                        software,
                        user,
                        password,
                        jwt,
                    })
                },
            )
            .boxed(),
        FrameType::SessionAck => (
            (uint(), uuid(), uint32(), uint32(), uint(), text()),
            (text(), text()),
        )
            .prop_map(
                |(
                    (client_id, session_id, heartbeat_ms, max_frame, max_body, software),
                    (name, user),
                )| {
                    Packet::from(SessionAck {
                        client_id,
                        session_id,
                        heartbeat_ms,
                        max_frame,
                        max_body,
                        software,
                        name,
                        user,
                        features: client_id % 4,
                    })
                },
            )
            .boxed(),
        FrameType::Heartbeat => Just(Packet::from(Heartbeat)).boxed(),
        FrameType::Error => (error_code(), text())
            .prop_map(|(code, message)| Packet::from(ErrorPacket { code, message }))
            .boxed(),
        FrameType::Disconnect => (error_code(), text())
            .prop_map(|(code, reason)| Packet::from(Disconnect { code, reason }))
            .boxed(),
        FrameType::Ok => Just(Packet::from(OkReply)).boxed(),
        FrameType::Identify => Just(Packet::from(Identify)).boxed(),
        FrameType::Identity => (uint(), text(), uuid(), uint())
            .prop_map(|(client_id, name, session_id, connected_since_us)| {
                Packet::from(Identity {
                    client_id,
                    name,
                    session_id,
                    connected_since_us,
                })
            })
            .boxed(),
        FrameType::ListClients => (cursor(), prop::option::of(uint()))
            .prop_map(|(cursor, limit)| Packet::from(ListClients { cursor, limit }))
            .boxed(),
        FrameType::ClientList => (
            prop::collection::vec(
                (uint(), text(), uint()).prop_map(|(client_id, name, connected_since_us)| {
                    ClientInfo {
                        client_id,
                        name,
                        connected_since_us,
                    }
                }),
                0..6,
            ),
            cursor(),
        )
            .prop_map(|(clients, next)| Packet::from(ClientList { clients, next }))
            .boxed(),
        FrameType::Relay => (prop::collection::vec(uint(), 0..40), text(), body())
            .prop_map(|(receivers, content_type, body)| {
                Packet::from(Relay {
                    receivers,
                    content_type,
                    body,
                })
            })
            .boxed(),
        FrameType::RelayResult => prop::collection::vec(
            (
                uint(),
                prop::sample::select(vec![
                    RelayStatus::Delivered,
                    RelayStatus::Unknown,
                    RelayStatus::Dropped,
                ]),
            )
                .prop_map(|(client_id, status)| RelayOutcome { client_id, status }),
            0..8,
        )
        .prop_map(|outcomes| Packet::from(RelayResult { outcomes }))
        .boxed(),
        FrameType::CreateChannel => (name(), channel_options())
            .prop_map(|(name, options)| Packet::from(CreateChannel { name, options }))
            .boxed(),
        FrameType::ChannelInfo => channel_info().prop_map(Packet::from).boxed(),
        FrameType::Publish => (
            scope(),
            name(),
            text(),
            user_headers(),
            body(),
            stream_start(),
        )
            .prop_map(
                |(scope, channel, content_type, user_headers, body, stream)| {
                    Packet::from(Publish {
                        scope,
                        channel,
                        content_type,
                        user_headers,
                        body,
                        stream,
                    })
                },
            )
            .boxed(),
        FrameType::PublishAck => (uuid(), uint())
            .prop_map(|(id, seq)| Packet::from(PublishAck { id, seq }))
            .boxed(),
        FrameType::Subscribe => (
            name(),
            prop_oneof![
                Just(Replay::None),
                uint().prop_map(Replay::SinceSeq),
                uint().prop_map(Replay::SinceTime),
                uint().prop_map(Replay::Last),
            ],
        )
            .prop_map(|(pattern, replay)| Packet::from(Subscribe { pattern, replay }))
            .boxed(),
        FrameType::SubscribeAck => (uint(), uint())
            .prop_map(|(subscription_id, replay_count)| {
                Packet::from(SubscribeAck {
                    subscription_id,
                    replay_count,
                })
            })
            .boxed(),
        FrameType::Unsubscribe => uint()
            .prop_map(|subscription_id| Packet::from(Unsubscribe { subscription_id }))
            .boxed(),
        FrameType::GetMessage => (scope(), name(), prop::option::of(uuid()))
            .prop_map(|(scope, channel, id)| Packet::from(GetMessage { scope, channel, id }))
            .boxed(),
        FrameType::GetMessages => (
            scope(),
            name(),
            prop_oneof![
                Just(Since::All),
                uint().prop_map(Since::Seq),
                uint().prop_map(Since::Time),
            ],
            prop::option::of(uint()),
        )
            .prop_map(|(scope, channel, since, limit)| {
                Packet::from(GetMessages {
                    scope,
                    channel,
                    since,
                    limit,
                })
            })
            .boxed(),
        FrameType::MessagesEnd => (uint(), uint())
            .prop_map(|(count, last_seq)| Packet::from(MessagesEnd { count, last_seq }))
            .boxed(),
        FrameType::ListChannels => (cursor(), prop::option::of(uint()))
            .prop_map(|(cursor, limit)| Packet::from(ListChannels { cursor, limit }))
            .boxed(),
        FrameType::ChannelList => (prop::collection::vec(channel_info(), 0..4), cursor())
            .prop_map(|(channels, next)| Packet::from(ChannelList { channels, next }))
            .boxed(),
        FrameType::DeleteChannel => name()
            .prop_map(|name| Packet::from(DeleteChannel { name }))
            .boxed(),
        FrameType::DeleteGroup => name()
            .prop_map(|group| Packet::from(DeleteGroup { group }))
            .boxed(),
        FrameType::CreateGroup => (name(), text())
            .prop_map(|(name, description)| Packet::from(CreateGroup { name, description }))
            .boxed(),
        FrameType::ListGroups => (cursor(), prop::option::of(uint()))
            .prop_map(|(cursor, limit)| Packet::from(ListGroups { cursor, limit }))
            .boxed(),
        FrameType::GroupList => (
            prop::collection::vec(
                (text(), text(), uint()).prop_map(|(name, description, member_count)| GroupInfo {
                    name,
                    description,
                    member_count,
                }),
                0..6,
            ),
            cursor(),
        )
            .prop_map(|(groups, next)| Packet::from(GroupList { groups, next }))
            .boxed(),
        FrameType::JoinGroup => name()
            .prop_map(|group| Packet::from(JoinGroup { group }))
            .boxed(),
        FrameType::LeaveGroup => name()
            .prop_map(|group| Packet::from(LeaveGroup { group }))
            .boxed(),
        FrameType::GroupMembers => (name(), cursor(), prop::option::of(uint()))
            .prop_map(|(group, cursor, limit)| {
                Packet::from(GroupMembers {
                    group,
                    cursor,
                    limit,
                })
            })
            .boxed(),
        FrameType::MemberList => (
            text(),
            prop::collection::vec(
                (text(), any::<bool>()).prop_map(|(name, online)| MemberInfo { name, online }),
                0..8,
            ),
            cursor(),
        )
            .prop_map(|(group, members, next)| {
                Packet::from(MemberList {
                    group,
                    members,
                    next,
                })
            })
            .boxed(),
        FrameType::Stop => Just(Packet::from(Stop)).boxed(),
        FrameType::Reload => Just(Packet::from(switchboard_proto::packet::Reload)).boxed(),
        FrameType::Stats => Just(Packet::from(Stats)).boxed(),
        FrameType::StatsReply => prop::collection::vec(
            (text(), uint()).prop_map(|(name, value)| Stat { name, value }),
            0..8,
        )
        .prop_map(|stats| Packet::from(StatsReply { stats }))
        .boxed(),
        FrameType::Message => (
            (scope(), name(), uuid(), uint(), uint(), uint()),
            (text(), text(), user_headers(), body(), stream_start()),
        )
            .prop_map(
                |(
                    (scope, channel, id, seq, time_us, sender_id),
                    (sender_name, content_type, user_headers, body, stream),
                )| {
                    Packet::from(Message {
                        scope,
                        channel,
                        id,
                        seq,
                        time_us,
                        sender_id,
                        sender_name,
                        content_type,
                        user_headers,
                        body,
                        stream,
                    })
                },
            )
            .boxed(),
        FrameType::Direct => (uint(), text(), uint(), text(), body())
            .prop_map(|(sender_id, sender_name, time_us, content_type, body)| {
                Packet::from(Direct {
                    sender_id,
                    sender_name,
                    time_us,
                    content_type,
                    body,
                })
            })
            .boxed(),
        FrameType::Event => (
            prop_oneof![
                prop::sample::select(vec![
                    EventKind::MemberJoined,
                    EventKind::MemberLeft,
                    EventKind::Skipped,
                    EventKind::SubscriptionClosed,
                    EventKind::ChannelDeleted,
                    EventKind::GroupDeleted,
                    EventKind::SubscriptionRevoked,
                    EventKind::EpochChanged,
                ]),
                // Canonical form: numbers 1..=8 always mean the named kinds.
                uint().prop_map(EventKind::from_u64),
            ],
            scope(),
            text(),
            text(),
            (uint(), uint(), uint()),
        )
            .prop_map(
                |(kind, scope, channel, subject, (count, subscription_id, time_us))| {
                    Packet::from(Event {
                        kind,
                        scope,
                        channel,
                        subject,
                        count,
                        subscription_id,
                        time_us,
                    })
                },
            )
            .boxed(),
        FrameType::Chunk => (uint(), body(), prop::option::of(any::<[u8; DIGEST_LEN]>()))
            .prop_map(|(stream_id, data, digest)| {
                Packet::from(Chunk {
                    stream_id,
                    data,
                    digest,
                })
            })
            .boxed(),
        FrameType::StreamAbort => (uint(), error_code(), text())
            .prop_map(|(stream_id, code, reason)| {
                Packet::from(StreamAbort {
                    stream_id,
                    code,
                    reason,
                })
            })
            .boxed(),
    }
}

/// Any packet, every frame type equally likely.
pub fn any_packet() -> BoxedStrategy<Packet> {
    Union::new(
        FrameType::ALL
            .iter()
            .map(|&frame_type| packet_of(frame_type)),
    )
    .boxed()
}

/// One packet of every frame type, in wire order: properties over this see each type in
/// every case instead of about one case in 39.
pub fn one_of_each() -> BoxedStrategy<Vec<Packet>> {
    FrameType::ALL
        .iter()
        .map(|&frame_type| packet_of(frame_type))
        .collect::<Vec<_>>()
        .boxed()
}
