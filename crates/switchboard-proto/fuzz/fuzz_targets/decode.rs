//! Fuzz target `decode`: feeds arbitrary bytes to the connection preface check and the
//! frame decoder, and types every frame that comes out.
//!
//! Input layout: the first byte holds settings, the rest is the byte stream.
//! * bit 0: the session uses the HMAC key "switchboard-test-key";
//! * bit 1: small limits (header 256 bytes, content 1024 bytes) instead of the defaults;
//! * bits 2..8: the stream is fed in chunks of (value + 1) bytes, 1..=64.
//!
//! If the stream starts with the preface magic, the 10-byte preface is parsed and its
//! version negotiated first, as a server would; the frames follow it.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_proto::{
    FIXED_HEADER_LEN, FrameCodec, Limits, MAC_TAG_LEN, MAGIC, MacKey, PREFACE_LEN, Packet, Preface,
    ProtoError,
};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut stream)) = data.split_first() else {
        return;
    };
    let mac = settings & 1 != 0;
    let limits = if settings & 2 != 0 {
        Limits {
            max_header_len: 256,
            max_content_len: 1024,
        }
    } else {
        Limits::default()
    };
    let chunk = usize::from(settings >> 2) + 1;

    if stream.len() >= PREFACE_LEN {
        let mut preface = [0u8; PREFACE_LEN];
        preface.copy_from_slice(&stream[..PREFACE_LEN]);
        match Preface::decode(&preface) {
            Ok(preface) => {
                let _ = Preface::negotiate(preface.version);
                stream = &stream[PREFACE_LEN..];
            }
            Err(error) => {
                assert!(matches!(
                    error,
                    ProtoError::BadPreface | ProtoError::LooksLikeHttp
                ));
                assert!(stream[..MAGIC.len()] != MAGIC);
            }
        }
    }

    let key = mac.then(|| MacKey::new(b"switchboard-test-key"));
    let mut codec = FrameCodec::new(limits).with_mac_key(key);
    let tag = if mac { MAC_TAG_LEN } else { 0 };
    let largest = FIXED_HEADER_LEN + limits.max_header_len + limits.max_content_len as usize + tag;
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(error) = Packet::from_frame(&frame) {
                        // A well-framed packet with bad fields must not kill the stream.
                        assert!(!error.is_fatal(), "{error:?}");
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    assert!(error.is_fatal(), "{error:?}");
                    return;
                }
            }
            // Lengths are checked before reserving: the buffer never grows far past
            // the largest frame the limits allow.
            assert!(buf.capacity() <= 4 * (largest + chunk) + 64);
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(_) | Err(ProtoError::Truncated { .. }) => {}
        Err(error) => assert!(error.is_fatal(), "{error:?}"),
    }
});
