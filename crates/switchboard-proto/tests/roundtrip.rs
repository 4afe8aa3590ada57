//! Round-trip properties of the codec for every packet type: encoding with
//! `FrameCodec::encode_packet` and decoding with `Decoder::decode` + `Packet::from_frame`
//! gives back the same request id, flags and packet, with and without an HMAC key; frames
//! concatenated in one buffer decode in order; a frame split at any byte position decodes
//! the same as in one piece; the encoder's size estimate covers what it writes (so it
//! reserves once); and the fixed per-frame overhead stays small.

mod common;

use std::collections::HashSet;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use switchboard_proto::packet::{Encode, Heartbeat, Publish};
use switchboard_proto::{FIXED_HEADER_LEN, Flags, FrameType, MAC_TAG_LEN, Packet};
use tokio_util::codec::Decoder;

use common::{
    any_packet, codec, config, encode, expected_flags, extra_flags, one_of_each, packet_of,
};

#[test]
fn every_frame_type_has_a_strategy_producing_it() {
    assert_eq!(FrameType::ALL.len(), 42, "the packet enum has 42 variants");
    let mut runner = TestRunner::new(config(1));
    let mut seen = HashSet::new();
    for &frame_type in FrameType::ALL {
        for _ in 0..8 {
            let packet = packet_of(frame_type)
                .new_tree(&mut runner)
                .expect("strategy")
                .current();
            assert_eq!(packet.frame_type(), frame_type);
            seen.insert(frame_type as u8);
        }
    }
    assert_eq!(seen.len(), FrameType::ALL.len());
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn packets_round_trip(
        packets in one_of_each(),
        request_id in any::<u32>(),
        flags in extra_flags(),
        mac in any::<bool>(),
    ) {
        for packet in packets {
            round_trip(&packet, request_id, flags, mac)?;
        }
    }

    #[test]
    fn size_estimate_covers_the_encoded_frame(packets in one_of_each(), mac in any::<bool>()) {
        // encode_packet reserves FIXED_HEADER_LEN + fields_len_hint + content_len (+ tag)
        // once; if that is enough for what is written, the buffer never grows again.
        let codec = codec(mac);
        let mac_len = if mac { MAC_TAG_LEN } else { 0 };
        for packet in packets {
            let reserved =
                FIXED_HEADER_LEN + packet.fields_len_hint() + packet.content_len() + mac_len;
            let buf = encode(&codec, 1, Flags::empty(), &packet);
            prop_assert!(
                buf.len() <= reserved,
                "{} frame of {} bytes but only {} reserved",
                packet.frame_type(),
                buf.len(),
                reserved
            );
        }
    }
    #[test]
    fn concatenated_frames_decode_in_order(
        packets in prop::collection::vec((any_packet(), any::<u32>(), extra_flags()), 1..8),
        mac in any::<bool>(),
    ) {
        let mut codec = codec(mac);
        let mut buf = BytesMut::new();
        for (packet, request_id, flags) in &packets {
            codec.encode_packet(*request_id, *flags, packet, &mut buf).expect("encode");
        }
        for (packet, request_id, flags) in &packets {
            let frame = codec.decode(&mut buf).expect("decode").expect("a whole frame");
            prop_assert_eq!(frame.request_id, *request_id);
            prop_assert_eq!(frame.flags, expected_flags(*flags, packet));
            prop_assert_eq!(&Packet::from_frame(&frame).expect("packet"), packet);
        }
        prop_assert!(buf.is_empty());
        prop_assert!(codec.decode(&mut buf).expect("decode").is_none());
        prop_assert!(codec.decode_eof(&mut buf).expect("clean end").is_none());
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn split_frames_decode_identically(
        packet in any_packet(),
        request_id in any::<u32>(),
        mac in any::<bool>(),
    ) {
        let mut codec = codec(mac);
        let bytes = encode(&codec, request_id, Flags::empty(), &packet).freeze();
        let whole = common::decode_one(&mut codec, &bytes);

        // Byte by byte: nothing until the last byte, then the same frame.
        let mut buf = BytesMut::new();
        for (index, byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let result = codec.decode(&mut buf).expect("decode");
            if index + 1 < bytes.len() {
                prop_assert!(result.is_none(), "frame after {} of {} bytes", index + 1, bytes.len());
            } else {
                prop_assert_eq!(result.as_ref(), Some(&whole));
            }
        }
        prop_assert!(buf.is_empty());

        // In two parts, split at every position.
        for split in 0..=bytes.len() {
            let mut buf = BytesMut::from(&bytes[..split]);
            if split < bytes.len() {
                prop_assert!(codec.decode(&mut buf).expect("decode").is_none());
                buf.extend_from_slice(&bytes[split..]);
            }
            let frame = codec.decode(&mut buf).expect("decode").expect("a whole frame");
            prop_assert_eq!(&frame, &whole);
            prop_assert!(buf.is_empty());
        }
        prop_assert_eq!(Packet::from_frame(&whole).expect("packet"), packet);
    }
}

/// Encodes `packet`, decodes it again and checks that nothing changed on the way.
fn round_trip(
    packet: &Packet,
    request_id: u32,
    flags: Flags,
    mac: bool,
) -> Result<(), TestCaseError> {
    let mut codec = codec(mac);
    let mut buf = encode(&codec, request_id, flags, packet);
    let encoded_len = buf.len();
    let frame = codec
        .decode(&mut buf)
        .expect("decode")
        .expect("a whole frame");
    prop_assert!(buf.is_empty());
    prop_assert_eq!(frame.frame_type, packet.frame_type());
    prop_assert_eq!(frame.request_id, request_id);
    prop_assert_eq!(frame.flags, expected_flags(flags, packet));
    let mac_len = if mac { MAC_TAG_LEN } else { 0 };
    prop_assert_eq!(
        encoded_len,
        FIXED_HEADER_LEN + frame.headers.len() + frame.content.len() + mac_len
    );
    let decoded = Packet::from_frame(&frame).expect("packet");
    prop_assert_eq!(&decoded, packet);

    // Forwarding the raw frame reproduces the exact bytes.
    let again = encode(&codec, request_id, flags, &decoded);
    let mut forwarded = BytesMut::new();
    codec
        .encode_frame(&frame, &mut forwarded)
        .expect("encode frame");
    prop_assert_eq!(&again[..], &forwarded[..]);
    Ok(())
}

#[test]
fn fixed_overhead_is_small() {
    assert_eq!(FIXED_HEADER_LEN, 24);
    const { assert!(FIXED_HEADER_LEN <= 32) };
    // A packet without fields or content is exactly the fixed prefix...
    let plain = encode(&codec(false), 0, Flags::empty(), &Packet::from(Heartbeat));
    assert_eq!(plain.len(), FIXED_HEADER_LEN);
    // ...plus the tag when the session uses HMAC.
    let tagged = encode(&codec(true), 0, Flags::empty(), &Packet::from(Heartbeat));
    assert_eq!(tagged.len(), FIXED_HEADER_LEN + MAC_TAG_LEN);
    // A 16-byte publish to "bench.channel" costs the prefix plus its two text fields.
    let publish = Publish {
        channel: "bench.channel".into(),
        content_type: "text/plain".into(),
        body: bytes::Bytes::from_static(&[7; 16]),
        ..Publish::default()
    };
    let frame = encode(&codec(false), 1, Flags::empty(), &Packet::from(publish));
    assert_eq!(frame.len(), FIXED_HEADER_LEN + (2 + 13) + (2 + 10) + 16);
}

#[test]
fn publish_reserves_once_into_an_empty_buffer() {
    for mac in [false, true] {
        let codec = codec(mac);
        let publish = Publish {
            channel: "bench.channel".into(),
            content_type: "text/plain".into(),
            body: bytes::Bytes::from_static(&[7; 16]),
            ..Publish::default()
        };
        let mac_len = if mac { MAC_TAG_LEN } else { 0 };
        let reservation =
            FIXED_HEADER_LEN + publish.fields_len_hint() + publish.content_len() + mac_len;
        let mut buf = BytesMut::new();
        codec
            .encode_packet(1, Flags::empty(), &publish, &mut buf)
            .expect("encode");
        // One reservation of exactly the estimate, never grown afterwards.
        let mut once = BytesMut::new();
        once.reserve(reservation);
        assert_eq!(buf.capacity(), once.capacity());
        assert!(buf.len() <= buf.capacity());
    }
}

/// A stored live MESSAGE re-sent as a reply (history replay) must decode to the same
/// message under the reply's request id and flags, whichever sessions use HMAC.
#[test]
fn a_reframed_message_decodes_to_the_same_message_under_the_new_request_id() {
    use switchboard_proto::packet::{Message, StreamStart};
    let message = Message {
        channel: "news.eu".into(),
        id: uuid::Uuid::now_v7(),
        seq: 42,
        time_us: 1_790_000_000_000_000,
        sender_id: 7,
        sender_name: "ada".into(),
        content_type: "text/plain".into(),
        user_headers: vec![("k".into(), "v".into())],
        body: bytes::Bytes::from_static(b"hello #world"),
        stream: None,
        ..Message::default()
    };
    let streamed = Message {
        body: bytes::Bytes::new(),
        stream: Some(StreamStart {
            stream_id: 0,
            total_len: 1 << 30,
        }),
        ..message.clone()
    };
    for original in [message, streamed] {
        for (stored_mac, sent_mac) in [(false, false), (true, false), (false, true), (true, true)] {
            let stored = common::encode(
                &common::codec(stored_mac),
                0,
                Flags::empty(),
                &Packet::Message(original.clone()),
            );
            let sender = common::codec(sent_mac);
            let mut out = BytesMut::from(&b"earlier frames"[..]);
            sender
                .encode_reframed(&stored, 9, Flags::REPLAY, &mut out)
                .expect("reframe");
            assert_eq!(&out[..14], b"earlier frames", "what was there is kept");
            let mut decoder = common::codec(sent_mac);
            let frame = common::decode_one(&mut decoder, &out[14..]);
            assert_eq!(frame.request_id, 9);
            assert!(frame.flags.contains(Flags::REPLAY));
            assert_eq!(
                frame.flags.contains(Flags::STREAM),
                original.stream.is_some()
            );
            assert_eq!(Message::from_frame(&frame).expect("message"), original);
        }
    }
}

#[test]
fn reframing_something_that_is_not_a_whole_frame_is_an_error_and_writes_nothing() {
    let stored = common::encode(
        &common::codec(false),
        0,
        Flags::empty(),
        &Packet::Heartbeat(Heartbeat),
    );
    let codec = common::codec(false);
    let mut out = BytesMut::new();
    for cut in [0, 10, FIXED_HEADER_LEN - 1] {
        assert!(
            codec
                .encode_reframed(&stored[..cut], 1, Flags::REPLAY, &mut out)
                .is_err()
        );
    }
    let mut bad = stored.to_vec();
    bad[12..16].copy_from_slice(&1000u32.to_be_bytes());
    assert!(
        codec
            .encode_reframed(&bad, 1, Flags::REPLAY, &mut out)
            .is_err()
    );
    assert!(out.is_empty());
}

/// A frame encoded as a head with its content sent separately is byte for byte the
/// frame `encode_packet` makes, tag included.
#[test]
fn a_head_encoded_apart_from_its_content_makes_the_same_frame() {
    let body = bytes::Bytes::from(vec![7u8; 100_000]);
    let packet = Publish {
        channel: "big".into(),
        content_type: "application/octet-stream".into(),
        body: body.clone(),
        ..Publish::default()
    };
    for mac in [false, true] {
        let codec = common::codec(mac);
        let whole = common::encode(&codec, 3, Flags::NO_REPLY, &Packet::Publish(packet.clone()));
        let mut split = BytesMut::from(&b"before"[..]);
        let tag = codec
            .encode_head(3, Flags::NO_REPLY, &packet, &body, &mut split)
            .expect("head");
        assert_eq!(tag.is_some(), mac);
        split.extend_from_slice(&body);
        if let Some(tag) = tag {
            split.extend_from_slice(&tag);
        }
        assert_eq!(&split[..6], b"before");
        assert_eq!(&split[6..], &whole[..]);
    }
}
