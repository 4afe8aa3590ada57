//! `FrameCodec::encode_envelope`, the hub's encoder of MESSAGE frames, against the
//! general `FrameCodec::encode_packet`: the same bytes for every envelope (any scope,
//! sender, content type, user headers, stream start, empty or not body, body CRC known
//! or not, with and without HMAC, appended behind other frames), and the same refusals
//! of frames over the limits, leaving nothing behind.

mod common;

use bytes::BytesMut;
use proptest::prelude::*;
use switchboard_proto::packet::Message;
use switchboard_proto::{FIXED_HEADER_LEN, Flags, FrameCodec, FrameType, Limits, Packet};

use common::{codec, config, extra_flags, packet_of};

fn message() -> BoxedStrategy<Message> {
    packet_of(FrameType::Message)
        .prop_map(|packet| match packet {
            Packet::Message(message) => message,
            other => panic!("a MESSAGE strategy gave {other:?}"),
        })
        .boxed()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn envelopes_encode_to_the_bytes_of_encode_packet(
        message in message(),
        request_id in any::<u32>(),
        flags in extra_flags(),
        mac in any::<bool>(),
        crc_known in any::<bool>(),
        before in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let codec = codec(mac);
        let mut expected = BytesMut::from(&before[..]);
        codec.encode_packet(request_id, flags, &message, &mut expected).expect("encode_packet");
        let mut envelope = message.as_envelope();
        envelope.body_crc = crc_known.then(|| crc32c::crc32c(&message.body));
        let mut encoded = BytesMut::from(&before[..]);
        codec.encode_envelope(request_id, flags, &envelope, &mut encoded).expect("encode_envelope");
        prop_assert_eq!(&encoded[..], &expected[..]);
    }

    #[test]
    fn envelopes_over_the_limits_are_refused_alike(
        message in message(),
        max_header_len in 0usize..200,
        max_content_len in 0u32..64,
        mac in any::<bool>(),
    ) {
        let mut codec = codec(mac);
        codec.set_limits(Limits { max_header_len, max_content_len });
        let mut expected = BytesMut::from(&b"before"[..]);
        let packet = codec.encode_packet(0, Flags::empty(), &message, &mut expected);
        let mut encoded = BytesMut::from(&b"before"[..]);
        let envelope = codec.encode_envelope(0, Flags::empty(), &message.as_envelope(), &mut encoded);
        prop_assert_eq!(format!("{envelope:?}"), format!("{packet:?}"));
        prop_assert_eq!(&encoded[..], &expected[..]);
    }
}

/// The common live message: a channel, an id, integers of every varint length, the
/// sender's name (short, or too long for the header block made on the stack), no
/// content type, bodies of every length up to past the CRC's cut-over to long inputs.
#[test]
fn live_messages_of_every_body_length_encode_alike() {
    let codec = FrameCodec::new(Limits::default());
    for len in 0..600usize {
        let message = Message {
            channel: "bench.pubsub".into(),
            id: uuid::Uuid::from_u128(0x0189_0a5d_ac96_774b_bcce_b302_099a_8057 + len as u128),
            seq: 1 << (len % 64),
            time_us: 1_700_000_000_000_000 + len as u64,
            sender_id: len as u64,
            sender_name: if len % 2 == 0 {
                "publisher".into()
            } else {
                "p".repeat(300).into()
            },
            body: (0..len).map(|i| i as u8).collect::<Vec<u8>>().into(),
            ..Message::default()
        };
        let mut expected = BytesMut::new();
        codec
            .encode_packet(0, Flags::empty(), &message, &mut expected)
            .expect("encode_packet");
        let mut encoded = BytesMut::new();
        codec
            .encode_envelope(0, Flags::empty(), &message.as_envelope(), &mut encoded)
            .expect("encode_envelope");
        assert_eq!(&encoded[..], &expected[..], "body of {len} bytes");
        assert!(encoded.len() > FIXED_HEADER_LEN + len);
    }
}
