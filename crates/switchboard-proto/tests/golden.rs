//! Golden vectors: the frames in `tests/golden/frames.txt` are the reference bytes for
//! clients in other languages. Each described packet must encode to exactly those bytes,
//! and those bytes must decode to that packet, request id and flags.
//!
//! The checked-in file is the truth. After a deliberate wire change, rewrite it with
//! `cargo test -p switchboard-proto --test golden -- --ignored regenerate` and review the
//! diff; the same way, `-- --ignored write_fuzz_seeds` rewrites the fuzz seed corpus.

mod common;

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use switchboard_proto::packet::{
    Chunk, DeleteChannel, ErrorPacket, Event, EventKind, GroupInfo, GroupList, Heartbeat,
    ListGroups, Message, Publish, PublishAck, Relay, Reload, Replay, Scope, SessionAck,
    SessionInit, Subscribe,
};
use switchboard_proto::{
    ErrorCode, Flags, FrameCodec, Limits, MacKey, PROTOCOL_VERSION, Packet, Preface,
};
use tokio_util::codec::Decoder;
use uuid::Uuid;

/// One golden frame as the test suite describes it.
struct Vector {
    name: &'static str,
    desc: &'static str,
    key: Option<&'static str>,
    request_id: u32,
    flags: Flags,
    packet: Packet,
}

const MESSAGE_ID: Uuid = Uuid::from_u128(0x0189_0a5d_ac96_774b_bcce_b302_099a_8057);
const SESSION_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
/// SHA-256 of "hello world".
const HELLO_WORLD_SHA256: [u8; 32] = [
    0xb9, 0x4d, 0x27, 0xb9, 0x93, 0x4d, 0x3e, 0x08, 0xa5, 0x2e, 0x52, 0xd7, 0xda, 0x7d, 0xab, 0xfa,
    0xc4, 0x84, 0xef, 0xe3, 0x7a, 0x53, 0x80, 0xee, 0x90, 0x88, 0xf7, 0xac, 0xe2, 0xef, 0xcd, 0xe9,
];

fn chat_publish() -> Publish {
    Publish {
        channel: "chat".into(),
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"hi"),
        ..Publish::default()
    }
}

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "session_init",
            desc: "SESSION_INIT name \"alice\", heartbeat 5000 ms, no credentials; request id 1",
            key: None,
            request_id: 1,
            flags: Flags::empty(),
            packet: SessionInit {
                name: "alice".into(),
                heartbeat_ms: 5000,
                ..SessionInit::default()
            }
            .into(),
        },
        Vector {
            name: "session_ack",
            desc: "SESSION_ACK client id 42, session 01900000-0000-7000-8000-000000000001, \
                   heartbeat 5000 ms, max frame 8388608, max body 67108864, software \
                   \"switchboard/0.1.0\"; request id 1",
            key: None,
            request_id: 1,
            flags: Flags::empty(),
            packet: SessionAck {
                client_id: 42,
                session_id: SESSION_ID,
                heartbeat_ms: 5000,
                max_frame: 8 * 1024 * 1024,
                max_body: 64 * 1024 * 1024,
                software: "switchboard/0.1.0".into(),
                ..SessionAck::default()
            }
            .into(),
        },
        Vector {
            name: "session_init_token",
            desc: "SESSION_INIT name \"deploy\", heartbeat 0, bearer token (CREDENTIALS) \
                   \"s3cret-token\"; request id 1",
            key: None,
            request_id: 1,
            flags: Flags::empty(),
            packet: SessionInit {
                name: "deploy".into(),
                credentials: Bytes::from_static(b"s3cret-token"),
                ..SessionInit::default()
            }
            .into(),
        },
        Vector {
            name: "session_init_password",
            desc: "SESSION_INIT name \"alice\", heartbeat 0, user \"alice\", password \
                   \"hunter2\"; request id 1",
            key: None,
            request_id: 1,
            flags: Flags::empty(),
            packet: SessionInit {
                name: "alice".into(),
                user: "alice".into(),
                password: Bytes::from_static(b"hunter2"),
                ..SessionInit::default()
            }
            .into(),
        },
        Vector {
            name: "session_init_jwt",
            desc: "SESSION_INIT name \"svc\", heartbeat 0, JWT \"eyJhbGciOiJIUzI1NiJ9.e30.sig\"; \
                   request id 1",
            key: None,
            request_id: 1,
            flags: Flags::empty(),
            packet: SessionInit {
                name: "svc".into(),
                jwt: Bytes::from_static(b"eyJhbGciOiJIUzI1NiJ9.e30.sig"),
                ..SessionInit::default()
            }
            .into(),
        },
        Vector {
            name: "session_ack_user",
            desc: "SESSION_ACK client id 42, session 01900000-0000-7000-8000-000000000001, \
                   heartbeat 5000 ms, max frame 8388608, max body 67108864, software \
                   \"switchboard/0.1.0\", name \"alice\", user \"alice\"; request id 1",
            key: None,
            request_id: 1,
            flags: Flags::empty(),
            packet: SessionAck {
                client_id: 42,
                session_id: SESSION_ID,
                heartbeat_ms: 5000,
                max_frame: 8 * 1024 * 1024,
                max_body: 64 * 1024 * 1024,
                software: "switchboard/0.1.0".into(),
                name: "alice".into(),
                user: "alice".into(),
                features: 0,
            }
            .into(),
        },
        Vector {
            name: "publish",
            desc: "PUBLISH to channel \"chat\", content type \"text/plain\", body \"hi\"; \
                   request id 2",
            key: None,
            request_id: 2,
            flags: Flags::empty(),
            packet: chat_publish().into(),
        },
        Vector {
            name: "publish_batch",
            desc: "PUBLISH to \"chat\", content type \"text/plain\", flags NO_REPLY and BATCH \
                   (0x0060), two bodies \"hi\" and \"there\" (each after its 4-byte length); \
                   request id 0x80000005 (the second body's is 0x80000006)",
            key: None,
            request_id: 0x8000_0005,
            flags: Flags::NO_REPLY | Flags::BATCH,
            packet: Publish {
                body: Bytes::from_static(b"\0\0\0\x02hi\0\0\0\x05there"),
                ..chat_publish()
            }
            .into(),
        },
        Vector {
            name: "publish_ack",
            desc: "PUBLISH_ACK message id 01890a5d-ac96-774b-bcce-b302099a8057, seq 1; \
                   request id 2",
            key: None,
            request_id: 2,
            flags: Flags::empty(),
            packet: PublishAck {
                id: MESSAGE_ID,
                seq: 1,
            }
            .into(),
        },
        Vector {
            name: "message",
            desc: "MESSAGE (live) on \"chat\", id 01890a5d-ac96-774b-bcce-b302099a8057, seq 1, \
                   time 1700000000000000 us, sender 42 \"alice\", content type \
                   \"text/plain\", body \"hi\"; request id 0",
            key: None,
            request_id: 0,
            flags: Flags::empty(),
            packet: Message {
                channel: "chat".into(),
                id: MESSAGE_ID,
                seq: 1,
                time_us: 1_700_000_000_000_000,
                sender_id: 42,
                sender_name: "alice".into(),
                content_type: "text/plain".into(),
                body: Bytes::from_static(b"hi"),
                ..Message::default()
            }
            .into(),
        },
        Vector {
            name: "error_not_found",
            desc: "ERROR code NOT_FOUND (101), message \"no such channel: nope\"; request id 3",
            key: None,
            request_id: 3,
            flags: Flags::empty(),
            packet: ErrorPacket::new(ErrorCode::NotFound, "no such channel: nope").into(),
        },
        Vector {
            name: "heartbeat_pong",
            desc: "HEARTBEAT with flag PONG (0x0010), no fields; request id 0",
            key: None,
            request_id: 0,
            flags: Flags::PONG,
            packet: Heartbeat.into(),
        },
        Vector {
            name: "publish_hmac",
            desc: "PUBLISH to \"chat\", content type \"text/plain\", body \"hi\", tagged with \
                   HMAC-SHA256 key \"switchboard-test-key\" (flag MAC); request id 4",
            key: Some("switchboard-test-key"),
            request_id: 4,
            flags: Flags::empty(),
            packet: chat_publish().into(),
        },
        Vector {
            name: "relay",
            desc: "RELAY to client ids 7, 8 and 9, content type \"text/plain\", body \"psst\"; \
                   request id 5",
            key: None,
            request_id: 5,
            flags: Flags::empty(),
            packet: Relay {
                receivers: vec![7, 8, 9],
                content_type: "text/plain".into(),
                body: Bytes::from_static(b"psst"),
            }
            .into(),
        },
        Vector {
            name: "subscribe",
            desc: "SUBSCRIBE pattern \"chat.>\", replay the last 10 messages; request id 6",
            key: None,
            request_id: 6,
            flags: Flags::empty(),
            packet: Subscribe {
                pattern: "chat.>".into(),
                replay: Replay::Last(10),
            }
            .into(),
        },
        Vector {
            name: "publish_group_headers",
            desc: "PUBLISH to group \"friends\" (scope 1), user headers lang=fr and \
                   \u{e9}moji=\u{1f389}, no content type, body \"salut\", flag NO_REPLY \
                   (0x0020); request id 7",
            key: None,
            request_id: 7,
            flags: Flags::NO_REPLY,
            packet: Publish {
                scope: Scope::Group,
                channel: "friends".into(),
                user_headers: vec![
                    ("lang".into(), "fr".into()),
                    ("\u{e9}moji".into(), "\u{1f389}".into()),
                ],
                body: Bytes::from_static(b"salut"),
                ..Publish::default()
            }
            .into(),
        },
        Vector {
            name: "chunk_last",
            desc: "CHUNK of stream 1 with data \" world\", last (flag LAST 0x0004), digest \
                   SHA-256(\"hello world\"); request id 8",
            key: None,
            request_id: 8,
            flags: Flags::empty(),
            packet: Chunk {
                stream_id: 1,
                data: Bytes::from_static(b" world"),
                digest: Some(HELLO_WORLD_SHA256),
            }
            .into(),
        },
        Vector {
            name: "list_groups_page",
            desc: "LIST_GROUPS after cursor \"team\" (CURSOR 0xFF), limit 50; request id 9",
            key: None,
            request_id: 9,
            flags: Flags::empty(),
            packet: ListGroups {
                cursor: Some(Bytes::from_static(b"team")),
                limit: Some(50),
            }
            .into(),
        },
        Vector {
            name: "delete_channel",
            desc: "DELETE_CHANNEL \"news\"; request id 9",
            key: None,
            request_id: 9,
            flags: Flags::empty(),
            packet: DeleteChannel {
                name: "news".into(),
            }
            .into(),
        },
        Vector {
            name: "group_list_partial",
            desc: "GROUP_LIST with one group \"zoo\" (description \"animals\", 3 members), \
                   more to follow after cursor \"zoo\" (CURSOR 0xFF); request id 9",
            key: None,
            request_id: 9,
            flags: Flags::empty(),
            packet: GroupList {
                groups: vec![GroupInfo {
                    name: "zoo".into(),
                    description: "animals".into(),
                    member_count: 3,
                }],
                next: Some(Bytes::from_static(b"zoo")),
            }
            .into(),
        },
        Vector {
            name: "event_group_deleted",
            desc: "EVENT GROUP_DELETED (kind 6) of group \"friends\" (scope 1), time \
                   1700000000000000 us; request id 0",
            key: None,
            request_id: 0,
            flags: Flags::empty(),
            packet: Event {
                scope: Scope::Group,
                channel: "friends".into(),
                time_us: 1_700_000_000_000_000,
                ..Event::new(EventKind::GroupDeleted)
            }
            .into(),
        },
        Vector {
            name: "error_rate_limited",
            desc: "ERROR code RATE_LIMITED (111), message \"publish rate of 10 per second \
                   (burst 20) reached; retry in 120 ms\"; request id 4",
            key: None,
            request_id: 4,
            flags: Flags::empty(),
            packet: ErrorPacket::new(
                ErrorCode::RateLimited,
                "publish rate of 10 per second (burst 20) reached; retry in 120 ms",
            )
            .into(),
        },
        Vector {
            name: "reload",
            desc: "RELOAD, no fields; request id 5",
            key: None,
            request_id: 5,
            flags: Flags::empty(),
            packet: Reload.into(),
        },
        Vector {
            name: "event_subscription_revoked",
            desc: "EVENT SUBSCRIPTION_REVOKED (kind 7) of subscription 3, pattern \"chat.*\", \
                   time 1700000000000000 us; request id 0",
            key: None,
            request_id: 0,
            flags: Flags::empty(),
            packet: Event {
                channel: "chat.*".into(),
                subscription_id: 3,
                time_us: 1_700_000_000_000_000,
                ..Event::new(EventKind::SubscriptionRevoked)
            }
            .into(),
        },
    ]
}

fn codec_for(key: Option<&str>) -> FrameCodec {
    FrameCodec::new(Limits::default()).with_mac_key(key.map(|key| MacKey::new(key.as_bytes())))
}

fn encode(vector: &Vector) -> BytesMut {
    let mut buf = BytesMut::new();
    codec_for(vector.key)
        .encode_packet(vector.request_id, vector.flags, &vector.packet, &mut buf)
        .expect("encode");
    buf
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_path() -> PathBuf {
    crate_dir().join("tests/golden/frames.txt")
}

/// One entry of the golden file.
#[derive(Debug, Default)]
struct Entry {
    name: String,
    desc: String,
    key: Option<String>,
    hex: String,
}

/// Parses the golden file format described at its top.
fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            entries.extend(current.take());
            continue;
        }
        let (field, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("line {}: expected `field: value`", number + 1));
        let entry = current.get_or_insert_with(Entry::default);
        match field {
            "name" => entry.name = value.to_owned(),
            "desc" => entry.desc = value.to_owned(),
            "key" => entry.key = Some(value.to_owned()),
            "hex" => entry.hex = value.to_owned(),
            other => panic!("line {}: unknown field {other:?}", number + 1),
        }
    }
    entries.extend(current);
    entries
}

fn golden_entries() -> Vec<Entry> {
    let text = std::fs::read_to_string(golden_path()).expect("tests/golden/frames.txt");
    parse(&text)
}

#[test]
fn golden_file_has_exactly_the_described_vectors() {
    let entries = golden_entries();
    let vectors = vectors();
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    let expected: Vec<&str> = vectors.iter().map(|vector| vector.name).collect();
    assert_eq!(names, expected);
    for (entry, vector) in entries.iter().zip(&vectors) {
        assert_eq!(entry.desc, vector.desc, "{}: description", vector.name);
        assert_eq!(entry.key.as_deref(), vector.key, "{}: key", vector.name);
    }
}

#[test]
fn packets_encode_to_the_golden_bytes() {
    let entries = golden_entries();
    for (entry, vector) in entries.iter().zip(vectors()) {
        let golden = hex::decode(&entry.hex).expect("hex");
        let encoded = encode(&vector);
        assert_eq!(
            hex::encode(&encoded),
            hex::encode(&golden),
            "{}: encoding differs from the golden bytes",
            vector.name
        );
    }
}

/// The hub's encoder of live messages gives the golden bytes too.
#[test]
fn messages_encode_to_the_golden_bytes_from_their_envelope() {
    let entries = golden_entries();
    let mut checked = 0;
    for (entry, vector) in entries.iter().zip(vectors()) {
        let Packet::Message(message) = &vector.packet else {
            continue;
        };
        let golden = hex::decode(&entry.hex).expect("hex");
        let mut encoded = BytesMut::new();
        codec_for(vector.key)
            .encode_envelope(
                vector.request_id,
                vector.flags,
                &message.as_envelope(),
                &mut encoded,
            )
            .expect("encode");
        assert_eq!(
            hex::encode(&encoded),
            hex::encode(&golden),
            "{}: encoding differs from the golden bytes",
            vector.name
        );
        checked += 1;
    }
    assert!(checked > 0, "the golden file holds a MESSAGE");
}

#[test]
fn golden_bytes_decode_to_the_packets() {
    let entries = golden_entries();
    for (entry, vector) in entries.iter().zip(vectors()) {
        let golden = hex::decode(&entry.hex).expect("hex");
        let mut codec = codec_for(entry.key.as_deref());
        let mut buf = BytesMut::from(&golden[..]);
        let frame = codec
            .decode(&mut buf)
            .unwrap_or_else(|error| panic!("{}: {error}", vector.name))
            .unwrap_or_else(|| panic!("{}: incomplete frame", vector.name));
        assert!(buf.is_empty(), "{}: trailing bytes", vector.name);
        assert_eq!(frame.request_id, vector.request_id, "{}", vector.name);
        assert_eq!(
            frame.flags,
            common::expected_flags(vector.flags, &vector.packet),
            "{}",
            vector.name
        );
        let packet = Packet::from_frame(&frame).expect("packet");
        assert_eq!(packet, vector.packet, "{}", vector.name);
    }
}

#[test]
fn golden_bytes_are_well_formed() {
    // Independent of the codec: sync, version, and lengths that add up.
    for entry in golden_entries() {
        let bytes = hex::decode(&entry.hex).expect("hex");
        assert_eq!(&bytes[..2], b"SB", "{}", entry.name);
        assert_eq!(u16::from(bytes[2]), PROTOCOL_VERSION, "{}", entry.name);
        let header_len = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
        let content_len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let flags = u16::from_be_bytes([bytes[4], bytes[5]]);
        let tag = if flags & Flags::MAC.0 != 0 { 32 } else { 0 };
        assert_eq!(
            bytes.len(),
            24 + header_len + content_len + tag,
            "{}",
            entry.name
        );
        assert_eq!(entry.key.is_some(), tag != 0, "{}", entry.name);
    }
}

const HEADER: &str = "\
# Switchboard wire protocol, version 1: golden frames.
#
# Reference bytes for implementations in other languages. A decoder configured with
# the entry's HMAC key (or with none) must decode `hex` to the packet that `desc`
# describes, with that request id and those flags; an encoder writing that packet
# with the same request id, flags and key must produce exactly `hex`. The order of
# fields in a header block is the order this implementation writes them in;
# decoders must not depend on it.
#
# Format: UTF-8 text. Lines starting with '#' are comments. Entries are separated
# by one or more blank lines. Each entry is a set of `field: value` lines (the
# separator is a colon followed by one space):
#   name: a stable identifier (lower case, underscores)
#   desc: what the frame carries, in words; request id and flags included
#   key:  the HMAC-SHA256 pre-shared key, as UTF-8 text; absent when the frame
#         carries no tag
#   hex:  the whole frame (24-byte prefix, header block, content and, with a key,
#         the 32-byte tag) as lower-case hexadecimal on one line
#
# Generated by `cargo test -p switchboard-proto --test golden -- --ignored
# regenerate`; this file, not the generator, is the reference.
";

#[test]
#[ignore = "rewrites tests/golden/frames.txt; run after a deliberate wire change"]
fn regenerate() {
    let mut text = String::from(HEADER);
    for vector in vectors() {
        text.push('\n');
        text.push_str(&format!("name: {}\n", vector.name));
        text.push_str(&format!("desc: {}\n", vector.desc));
        if let Some(key) = vector.key {
            text.push_str(&format!("key: {key}\n"));
        }
        text.push_str(&format!("hex: {}\n", hex::encode(encode(&vector))));
    }
    let path = golden_path();
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write golden file");
}

/// The fuzz target reads its first byte as settings: bit 0 selects the HMAC key
/// "switchboard-test-key", bit 1 small limits, bits 2..8 the feed chunk size minus one.
fn fuzz_seed(settings: u8, stream: &[u8]) -> Vec<u8> {
    let mut seed = vec![settings];
    seed.extend_from_slice(stream);
    seed
}

fn write_seed(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

#[test]
#[ignore = "rewrites fuzz/seeds/decode; run after a wire change"]
fn write_fuzz_seeds() {
    let dir = crate_dir().join("fuzz/seeds/decode");
    std::fs::create_dir_all(&dir).expect("mkdir");
    const WHOLE: u8 = 63 << 2; // feed in chunks of 64 bytes
    let vectors = vectors();
    for vector in &vectors {
        let mac = u8::from(vector.key.is_some());
        write_seed(&dir, vector.name, &fuzz_seed(WHOLE | mac, &encode(vector)));
    }
    // A whole conversation opening: preface, then several frames, fed byte by byte.
    let mut stream = Preface::encode(PROTOCOL_VERSION).to_vec();
    for vector in vectors.iter().filter(|vector| vector.key.is_none()).take(4) {
        stream.extend_from_slice(&encode(vector));
    }
    write_seed(&dir, "preface_and_frames", &fuzz_seed(0, &stream));
    // Small limits, so the same bytes hit the size checks.
    let message = vectors
        .iter()
        .find(|vector| vector.name == "message")
        .expect("message vector");
    write_seed(
        &dir,
        "message_small_limits",
        &fuzz_seed(WHOLE | 2, &encode(message)),
    );
}
