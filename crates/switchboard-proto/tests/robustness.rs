//! Robustness of the decoder against hostile or damaged input: arbitrary bytes never
//! panic and never make the read buffer grow past what the limits allow; every single-bit
//! flip of a valid frame is refused with a typed error (or still waits for bytes), never
//! decoded as another frame; truncation at end of stream, unknown frame types, wrong
//! versions and oversized lengths give their specific errors; unknown header fields are
//! skipped; typed packets built from arbitrary header blocks fail softly; and the
//! connection preface is checked and negotiated.

mod common;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use switchboard_proto::fields::{FieldReader, FieldWriter, key};
use switchboard_proto::packet::Publish;
use switchboard_proto::preface::MIN_PROTOCOL_VERSION;
use switchboard_proto::{
    ErrorCode, FIXED_HEADER_LEN, Flags, Frame, FrameCodec, FrameType, Limits, MAC_TAG_LEN, MAGIC,
    MacKey, PREFACE_LEN, PROTOCOL_VERSION, Packet, Preface, ProtoError,
};
use tokio_util::codec::Decoder;

use common::{any_packet, codec, config, encode, fix_header_crc, test_key};

/// Frame-level errors the decoder may give for damaged bytes.
fn is_typed_framing_error(error: &ProtoError) -> bool {
    matches!(
        error,
        ProtoError::HeaderCrcMismatch { .. }
            | ProtoError::ContentCrcMismatch { .. }
            | ProtoError::BadSync { .. }
            | ProtoError::UnsupportedVersion { .. }
            | ProtoError::UnknownFrameType(_)
            | ProtoError::BadMac
            | ProtoError::HeaderTooLarge { .. }
            | ProtoError::ContentTooLarge { .. }
            | ProtoError::MissingMac
            | ProtoError::UnexpectedMac
    )
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (0usize..=300, 0u32..=2048).prop_map(|(max_header_len, max_content_len)| Limits {
        max_header_len,
        max_content_len,
    })
}

/// Input for the decoder: pure noise, or a stream of valid frames (encoded under the same
/// key) with some bytes overwritten, optionally with the first frame's prefix edited and
/// its header CRC recomputed (so that hostile lengths and types get past the CRC), and
/// some noise appended.
fn decoder_input(mac: bool) -> BoxedStrategy<Vec<u8>> {
    let noise = prop::collection::vec(any::<u8>(), 0..1500);
    let frames = (
        prop::collection::vec(any_packet(), 1..4),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::collection::vec((3usize..20, any::<u8>()), 0..3),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(move |(packets, edits, prefix_edits, tail)| {
            let codec = codec(mac);
            let mut bytes = Vec::new();
            for packet in &packets {
                bytes.extend_from_slice(&encode(&codec, 1, Flags::empty(), packet));
            }
            for (index, value) in edits {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            if !prefix_edits.is_empty() {
                for (at, value) in prefix_edits {
                    bytes[at] = value;
                }
                let header_len = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
                if bytes.len() >= FIXED_HEADER_LEN + header_len {
                    fix_header_crc(&mut bytes);
                }
            }
            bytes.extend_from_slice(&tail);
            bytes
        });
    prop_oneof![1 => noise, 3 => frames].boxed()
}

/// Feeds `input` to `codec` in chunks of `chunk` bytes, decoding (and typing) every frame
/// that comes out, and checks after each step that the buffer stays within `bound`.
fn feed(
    codec: &mut FrameCodec,
    input: &[u8],
    chunk: usize,
    bound: usize,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let result = codec.decode(&mut buf);
            prop_assert!(
                buf.capacity() <= bound,
                "buffer grew to {} bytes (bound {})",
                buf.capacity(),
                bound
            );
            match result {
                Ok(Some(frame)) => {
                    if let Err(error) = Packet::from_frame(&frame) {
                        prop_assert!(
                            !error.is_fatal(),
                            "fatal error from a framed packet: {error}"
                        );
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    prop_assert!(is_typed_framing_error(&error), "unexpected error {error:?}");
                    return Ok(());
                }
            }
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(_) => {}
        Err(ProtoError::Truncated { have, .. }) => prop_assert_eq!(have, buf.len()),
        Err(error) => prop_assert!(is_typed_framing_error(&error), "unexpected {error:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_input_never_panics_nor_overreserves(
        (mac, input) in any::<bool>().prop_flat_map(|mac| (Just(mac), decoder_input(mac))),
        limits in small_limits(),
        chunk in 1usize..=64,
    ) {
        let mut codec = FrameCodec::new(limits).with_mac_key(mac.then(test_key));
        let mac_len = if mac { MAC_TAG_LEN } else { 0 };
        let largest_frame =
            FIXED_HEADER_LEN + limits.max_header_len + limits.max_content_len as usize + mac_len;
        // The buffer holds at most one frame plus one chunk; growth may double a few times.
        let bound = 4 * (largest_frame + chunk) + 64;
        feed(&mut codec, &input, chunk, bound)?;
    }

    #[test]
    fn arbitrary_header_blocks_fail_softly(
        frame_type in prop::sample::select(FrameType::ALL.to_vec()),
        flags in any::<u16>(),
        fields in prop::collection::vec(
            (
                // Keys in use (and some just past them), or one from far above.
                prop_oneof![0u8..=0x3F, Just(0xEE)],
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..20),
                    prop::collection::vec(any::<u8>(), 16..=16),
                    (0u8..0x80).prop_map(|b| vec![b]),
                    any::<u64>().prop_map(|v| {
                        let mut b = BytesMut::new();
                        switchboard_proto::fields::put_varint(&mut b, v);
                        b.to_vec()
                    }),
                ],
            ),
            0..10,
        ),
        raw_tail in prop::collection::vec(any::<u8>(), 0..6),
        content in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        // A well-framed packet with nonsense fields must give a non-fatal error or a packet,
        // never a panic.
        let mut headers = BytesMut::new();
        {
            let mut writer = FieldWriter::new(&mut headers);
            for (key, value) in &fields {
                writer.bytes(*key, value);
            }
        }
        headers.extend_from_slice(&raw_tail);
        let frame = Frame {
            frame_type,
            flags: Flags(flags).without(Flags::MAC),
            request_id: 5,
            headers: headers.freeze(),
            content_crc: crc32c::crc32c(&content),
            content: Bytes::from(content),
        };
        let mut codec = codec(false);
        let mut buf = BytesMut::new();
        codec.encode_frame(&frame, &mut buf).expect("encode frame");
        let decoded = codec.decode(&mut buf).expect("decode").expect("a whole frame");
        prop_assert_eq!(&decoded, &frame);
        if let Err(error) = Packet::from_frame(&decoded) {
            prop_assert!(!error.is_fatal(), "{error:?}");
            let code = error.code();
            prop_assert!(
                matches!(code, ErrorCode::InvalidArgument | ErrorCode::BadFrame),
                "{:?} has code {}", error, code
            );
        }
    }

    #[test]
    fn unknown_fields_anywhere_are_skipped(
        packet in any_packet(),
        inserts in prop::collection::vec(
            // Keys 0x80..=0xEF are unassigned: the registry grows from 0x01 up, and from
            // 0xFF down.
            (any::<prop::sample::Index>(), 0x80u8..=0xEF, prop::collection::vec(any::<u8>(), 0..24)),
            1..4,
        ),
    ) {
        let mut codec = codec(false);
        let bytes = encode(&codec, 11, Flags::empty(), &packet);
        let frame = common::decode_one(&mut codec, &bytes);
        let mut fields: Vec<(u8, Bytes)> = FieldReader::new(&frame.headers)
            .map(|field| field.map(|field| (field.key, field.bytes())))
            .collect::<Result<_, _>>()
            .expect("fields");
        for (index, key, value) in inserts {
            let at = index.index(fields.len() + 1);
            fields.insert(at, (key, Bytes::from(value)));
        }
        let mut headers = BytesMut::new();
        {
            let mut writer = FieldWriter::new(&mut headers);
            for (key, value) in &fields {
                writer.bytes(*key, value);
            }
        }
        let extended = Frame { headers: headers.freeze(), ..frame };
        let mut buf = BytesMut::new();
        codec.encode_frame(&extended, &mut buf).expect("encode frame");
        let decoded = common::decode_one(&mut codec, &buf);
        prop_assert_eq!(Packet::from_frame(&decoded).expect("packet"), packet);
    }

    #[test]
    fn truncated_frames_are_reported_at_eof(packet in any_packet(), mac in any::<bool>()) {
        let mut codec = codec(mac);
        let bytes = encode(&codec, 3, Flags::empty(), &packet);
        for cut in 1..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            match codec.decode_eof(&mut buf) {
                Err(ProtoError::Truncated { needed, have }) => {
                    prop_assert_eq!(have, cut);
                    let expected = if cut < FIXED_HEADER_LEN { FIXED_HEADER_LEN } else { bytes.len() };
                    prop_assert_eq!(needed, expected);
                }
                other => prop_assert!(false, "cut at {}: {:?}", cut, other),
            }
        }
        let mut whole = bytes.clone();
        prop_assert!(codec.decode_eof(&mut whole).expect("decode").is_some());
        prop_assert!(codec.decode_eof(&mut whole).expect("empty").is_none());
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn every_single_bit_flip_is_detected(packet in any_packet(), mac in any::<bool>()) {
        let codec = codec(mac);
        let bytes = encode(&codec, 0x0102_0304, Flags::empty(), &packet);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let mut decoder = codec.clone();
            match decoder.decode(&mut damaged) {
                Ok(None) => {
                    // A length grew: the decoder waits, and at EOF reports truncation.
                    let at_eof = decoder.decode_eof(&mut damaged);
                    prop_assert!(
                        matches!(at_eof, Err(ProtoError::Truncated { .. })),
                        "bit {}: {:?} at EOF", bit, at_eof
                    );
                }
                Err(error) => prop_assert!(
                    is_typed_framing_error(&error),
                    "bit {}: untyped error {:?}", bit, error
                ),
                Ok(Some(frame)) => prop_assert!(
                    false,
                    "bit {} flipped, yet decoded as {:?}", bit, frame
                ),
            }
        }
    }
}

fn sample_publish() -> Publish {
    Publish {
        channel: "chat".into(),
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"hi"),
        ..Publish::default()
    }
}

/// Each CRC refuses its own part, whether the frame arrives whole (both CRCs computed
/// in one pass for a short one) or in two reads (the head checked before the content
/// arrives), for bodies on both sides of the one-pass length.
#[test]
fn a_damaged_header_block_or_content_is_refused_by_its_own_crc() {
    for mac in [false, true] {
        let codec = codec(mac);
        for body_len in [0, 1, 7, 16, 100, 255, 256, 1000] {
            let publish = Publish {
                body: Bytes::from(vec![0x5a; body_len]),
                ..sample_publish()
            };
            let bytes = encode(&codec, 7, Flags::empty(), &Packet::from(publish));
            let header_end =
                FIXED_HEADER_LEN + usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
            let content_at = header_end + body_len / 2;
            let in_header = FIXED_HEADER_LEN + 1;

            let mut damaged = bytes.clone();
            damaged[in_header] ^= 0x10;
            let mut decoder = codec.clone();
            assert!(
                matches!(
                    decoder.decode(&mut damaged),
                    Err(ProtoError::HeaderCrcMismatch { .. })
                ),
                "header block damaged, body {body_len}, mac {mac}"
            );
            let mut partial = BytesMut::from(&damaged[..header_end]);
            assert!(
                matches!(
                    codec.clone().decode(&mut partial),
                    Err(ProtoError::HeaderCrcMismatch { .. })
                ),
                "refused before the content arrives, body {body_len}, mac {mac}"
            );

            if body_len == 0 {
                continue;
            }
            let mut damaged = bytes.clone();
            damaged[content_at] ^= 0x01;
            assert!(
                matches!(
                    codec.clone().decode(&mut damaged),
                    Err(ProtoError::ContentCrcMismatch { .. })
                ),
                "content damaged, body {body_len}, mac {mac}"
            );
            let mut decoder = codec.clone();
            let mut arriving = BytesMut::from(&damaged[..header_end]);
            assert!(matches!(decoder.decode(&mut arriving), Ok(None)));
            arriving.extend_from_slice(&damaged[header_end..]);
            assert!(
                matches!(
                    decoder.decode(&mut arriving),
                    Err(ProtoError::ContentCrcMismatch { .. })
                ),
                "content damaged, read in two parts, body {body_len}, mac {mac}"
            );

            // Both damaged: the header is looked at first, as it always was.
            let mut damaged = bytes.clone();
            damaged[in_header] ^= 0x10;
            damaged[content_at] ^= 0x01;
            assert!(matches!(
                codec.clone().decode(&mut damaged),
                Err(ProtoError::HeaderCrcMismatch { .. })
            ));

            let mut intact = bytes.clone();
            let frame = codec
                .clone()
                .decode(&mut intact)
                .expect("intact")
                .expect("whole");
            assert_eq!(frame.content.len(), body_len);
        }
    }
}

#[test]
fn unknown_frame_type_is_refused_after_the_header_crc() {
    let known: Vec<u8> = FrameType::ALL.iter().map(|&t| t as u8).collect();
    for mac in [false, true] {
        let codec = codec(mac);
        let bytes = encode(&codec, 1, Flags::empty(), &Packet::from(sample_publish()));
        for byte in (0..=u8::MAX).filter(|b| !known.contains(b)) {
            let mut damaged = bytes.clone();
            damaged[3] = byte;
            fix_header_crc(&mut damaged);
            // Known as soon as the header block is in, before the content arrives.
            let header_end =
                FIXED_HEADER_LEN + usize::from(u16::from_be_bytes([damaged[6], damaged[7]]));
            let mut partial = BytesMut::from(&damaged[..header_end]);
            let mut decoder = codec.clone();
            match decoder.decode(&mut partial) {
                Err(ProtoError::UnknownFrameType(found)) => assert_eq!(found, byte),
                other => panic!("type {byte:#04x}: {other:?}"),
            }
            let mut decoder = codec.clone();
            assert!(matches!(
                decoder.decode(&mut damaged),
                Err(ProtoError::UnknownFrameType(found)) if found == byte
            ));
        }
    }
}

#[test]
fn other_versions_are_refused_from_the_prefix_alone() {
    let codec = codec(false);
    let bytes = encode(&codec, 1, Flags::empty(), &Packet::from(sample_publish()));
    for version in [0u8, 2, 3, 0x7F, 0xFF] {
        let mut damaged = bytes.clone();
        damaged[2] = version;
        fix_header_crc(&mut damaged);
        let mut prefix = BytesMut::from(&damaged[..FIXED_HEADER_LEN]);
        let mut decoder = codec.clone();
        match decoder.decode(&mut prefix) {
            Err(ProtoError::UnsupportedVersion { found, supported }) => {
                assert_eq!(found, u16::from(version));
                assert_eq!(supported, PROTOCOL_VERSION);
            }
            other => panic!("version {version}: {other:?}"),
        }
    }
}

/// A bare 24-byte prefix with the given lengths and a correct header CRC.
fn prefix(frame_type: FrameType, flags: Flags, header_len: u16, content_len: u32) -> BytesMut {
    let mut bytes = [0u8; FIXED_HEADER_LEN];
    bytes[0..2].copy_from_slice(b"SB");
    bytes[2] = 1;
    bytes[3] = frame_type as u8;
    bytes[4..6].copy_from_slice(&flags.0.to_be_bytes());
    bytes[6..8].copy_from_slice(&header_len.to_be_bytes());
    bytes[12..16].copy_from_slice(&content_len.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_be_bytes());
    BytesMut::from(&bytes[..])
}

#[test]
fn oversized_lengths_are_refused_before_any_content() {
    let limits = Limits {
        max_header_len: 256,
        max_content_len: 1024,
    };
    for content_len in [1025u32, 1 << 20, u32::MAX] {
        let mut codec = FrameCodec::new(limits);
        let mut buf = prefix(FrameType::Publish, Flags::empty(), 0, content_len);
        let capacity = buf.capacity();
        match codec.decode(&mut buf) {
            Err(ProtoError::ContentTooLarge { len, max }) => {
                assert_eq!(len, u64::from(content_len));
                assert_eq!(max, 1024);
            }
            other => panic!("content length {content_len}: {other:?}"),
        }
        assert_eq!(
            buf.capacity(),
            capacity,
            "nothing reserved for a refused frame"
        );
    }
    for header_len in [257u16, u16::MAX] {
        let mut codec = FrameCodec::new(limits);
        let mut buf = prefix(FrameType::Publish, Flags::empty(), header_len, 0);
        let capacity = buf.capacity();
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtoError::HeaderTooLarge { len, max: 256 }) if len == usize::from(header_len)
        ));
        assert_eq!(buf.capacity(), capacity);
    }
    // At the limit, the decoder waits for the content.
    let mut codec = FrameCodec::new(limits);
    let mut buf = prefix(FrameType::Publish, Flags::empty(), 0, 1024);
    assert!(codec.decode(&mut buf).expect("within limits").is_none());
}

#[test]
fn encoding_over_the_limits_fails_and_leaves_the_buffer_as_it_was() {
    let limits = Limits {
        max_header_len: 16,
        max_content_len: 8,
    };
    let codec = FrameCodec::new(limits);
    let mut buf = BytesMut::from(&b"earlier bytes"[..]);
    let long_channel = Publish {
        channel: "a.channel.name.longer.than.sixteen".into(),
        ..Publish::default()
    };
    assert!(matches!(
        codec.encode_packet(1, Flags::empty(), &long_channel, &mut buf),
        Err(ProtoError::HeaderTooLarge { max: 16, .. })
    ));
    assert_eq!(&buf[..], b"earlier bytes");
    let big_body = Publish {
        channel: "c".into(),
        body: Bytes::from_static(b"nine byte"),
        ..Publish::default()
    };
    assert!(matches!(
        codec.encode_packet(1, Flags::empty(), &big_body, &mut buf),
        Err(ProtoError::ContentTooLarge { len: 9, max: 8 })
    ));
    assert_eq!(&buf[..], b"earlier bytes");
}

#[test]
fn unknown_header_key_is_skipped() {
    let mut headers = BytesMut::new();
    FieldWriter::new(&mut headers)
        .bytes(0xEE, b"a field from a later version")
        .text(key::CHANNEL, "chat")
        .bytes(0xEE, b"")
        .text(key::CONTENT_TYPE, "text/plain")
        .uint(0xEF, 12345);
    let frame = Frame {
        frame_type: FrameType::Publish,
        flags: Flags::empty(),
        request_id: 1,
        headers: headers.freeze(),
        content: Bytes::from_static(b"hi"),
        content_crc: crc32c::crc32c(b"hi"),
    };
    for mac in [false, true] {
        let mut codec = codec(mac);
        let mut buf = BytesMut::new();
        codec.encode_frame(&frame, &mut buf).expect("encode frame");
        let decoded = codec
            .decode(&mut buf)
            .expect("decode")
            .expect("a whole frame");
        assert_eq!(decoded, frame);
        assert_eq!(
            Packet::from_frame(&decoded).expect("packet"),
            Packet::from(sample_publish())
        );
    }
}

#[test]
fn mac_mismatches_are_refused() {
    let packet = Packet::from(sample_publish());
    let tagged = encode(&codec(true), 1, Flags::empty(), &packet);
    let plain = encode(&codec(false), 1, Flags::empty(), &packet);
    assert!(matches!(
        codec(false).decode(&mut tagged.clone()),
        Err(ProtoError::UnexpectedMac)
    ));
    assert!(matches!(
        codec(true).decode(&mut plain.clone()),
        Err(ProtoError::MissingMac)
    ));
    let mut other_key =
        FrameCodec::new(Limits::default()).with_mac_key(Some(MacKey::new(b"other")));
    assert!(matches!(
        other_key.decode(&mut tagged.clone()),
        Err(ProtoError::BadMac)
    ));
    // The tag is checked only once the whole frame is in, and a wrong tag is fatal.
    let mut partial = BytesMut::from(&tagged[..tagged.len() - 1]);
    assert!(other_key.decode(&mut partial).expect("waits").is_none());
    assert!(ProtoError::BadMac.is_fatal());
    assert_eq!(ProtoError::BadMac.code(), ErrorCode::BadMac);
    assert_eq!(tagged.len(), plain.len() + MAC_TAG_LEN);
}

#[test]
fn bad_sync_is_refused() {
    let mut codec = codec(false);
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(ProtoError::BadSync { found: 0x4854 })
    ));
}

// ---------------------------------------------------------------------------------------
// Connection preface
// ---------------------------------------------------------------------------------------

#[test]
fn good_preface_round_trips() {
    let bytes = Preface::encode(PROTOCOL_VERSION);
    assert_eq!(bytes.len(), PREFACE_LEN);
    assert_eq!(bytes[..8], MAGIC);
    assert_eq!(bytes[8..], PROTOCOL_VERSION.to_be_bytes());
    assert_eq!(
        Preface::decode(&bytes).expect("preface"),
        Preface {
            version: PROTOCOL_VERSION
        }
    );
    // A preface announcing a future version still parses; negotiation picks ours.
    let future = Preface::decode(&Preface::encode(7)).expect("preface");
    assert_eq!(future.version, 7);
}

#[test]
fn wrong_magic_is_a_bad_preface() {
    let good = Preface::encode(PROTOCOL_VERSION);
    for index in 0..MAGIC.len() {
        for bit in 0..8 {
            let mut bad = good;
            bad[index] ^= 1 << bit;
            assert!(
                matches!(Preface::decode(&bad), Err(ProtoError::BadPreface)),
                "byte {index} bit {bit}"
            );
        }
    }
    assert!(matches!(
        Preface::decode(&[0; PREFACE_LEN]),
        Err(ProtoError::BadPreface)
    ));
    // A Switchboard frame sent without a preface is not a preface either.
    assert!(matches!(
        Preface::decode(b"SB\x01\x03\0\0\0\0\0\0"),
        Err(ProtoError::BadPreface)
    ));
}

#[test]
fn http_requests_are_recognised() {
    for request in [
        b"GET / HTTP/1.1\r\n".as_slice(),
        b"POST /publish HTTP/1.1\r\n",
        b"PUT /x HTTP/1.1\r\n",
        b"HEAD / HTTP/1.0\r\n",
        b"DELETE /x HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"PATCH /x HTTP/1.1\r\n",
        b"CONNECT host:443 HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let bytes: [u8; PREFACE_LEN] = request[..PREFACE_LEN].try_into().expect("10 bytes");
        let error = Preface::decode(&bytes).expect_err("not a preface");
        assert!(
            matches!(error, ProtoError::LooksLikeHttp),
            "{:?}: {error:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(error.code(), ErrorCode::BadPreface);
    }
}

#[test]
fn versions_are_negotiated_downwards() {
    assert_eq!(
        Preface::negotiate(PROTOCOL_VERSION).expect("ours"),
        PROTOCOL_VERSION
    );
    assert_eq!(
        Preface::negotiate(PROTOCOL_VERSION + 1).expect("newer"),
        PROTOCOL_VERSION
    );
    assert_eq!(
        Preface::negotiate(u16::MAX).expect("much newer"),
        PROTOCOL_VERSION
    );
    assert_eq!(
        Preface::negotiate(MIN_PROTOCOL_VERSION).expect("oldest"),
        MIN_PROTOCOL_VERSION
    );
    match Preface::negotiate(0) {
        Err(ProtoError::UnsupportedVersion { found, supported }) => {
            assert_eq!(found, 0);
            assert_eq!(supported, PROTOCOL_VERSION);
        }
        other => panic!("version 0: {other:?}"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_prefaces_never_pass_without_the_magic(bytes in any::<[u8; PREFACE_LEN]>()) {
        match Preface::decode(&bytes) {
            Ok(preface) => {
                prop_assert_eq!(&bytes[..8], &MAGIC[..]);
                prop_assert_eq!(preface.version, u16::from_be_bytes([bytes[8], bytes[9]]));
            }
            Err(ProtoError::BadPreface | ProtoError::LooksLikeHttp) => {
                prop_assert_ne!(&bytes[..8], &MAGIC[..]);
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }
}

/// A frame declaring megabytes gets buffer only as its bytes arrive: the declared length
/// is the peer's word, and a peer that never sends the rest must not cost the reader
/// the whole of it.
#[test]
fn a_large_declared_length_reserves_only_a_bounded_step_ahead() {
    use switchboard_proto::codec::RESERVE_AHEAD;
    for mac in [false, true] {
        let codec = codec(mac);
        let publish = Publish {
            body: Bytes::from(vec![7u8; 4 * 1024 * 1024]),
            ..sample_publish()
        };
        let bytes = encode(&codec, 9, Flags::empty(), &Packet::from(publish));
        let head = codec.frame_head(&bytes).unwrap().unwrap();
        assert_eq!(head.request_id, 9);
        assert_eq!(head.total_len, bytes.len());
        assert_eq!(
            codec.frame_head(&bytes[..FIXED_HEADER_LEN - 1]).unwrap(),
            None
        );

        let mut decoder = codec.clone();
        let mut partial = BytesMut::from(&bytes[..100_000]);
        assert!(decoder.decode(&mut partial).unwrap().is_none());
        // Growing a buffer may double it; never to the declared 4 MiB.
        assert!(
            partial.capacity() <= 2 * 100_000 + RESERVE_AHEAD,
            "reserved {} bytes for 100,000 arrived",
            partial.capacity()
        );
        // The rest arriving still decodes the frame.
        partial.extend_from_slice(&bytes[100_000..]);
        let frame = decoder.decode(&mut partial).unwrap().unwrap();
        assert_eq!(frame.request_id, 9);
    }
}
