//! Quick end-to-end checks of the codec on a few hand-built packets.

use bytes::{Bytes, BytesMut};
use switchboard_proto::packet::{Encode, Publish};
use switchboard_proto::{Flags, FrameCodec, Limits, MacKey, Packet, ProtoError};
use tokio_util::codec::Decoder;

fn publish() -> Publish {
    Publish {
        channel: "chat.rust".into(),
        content_type: "text/plain".into(),
        user_headers: vec![("k".into(), "v".into())],
        body: Bytes::from_static(b"hello #rust"),
        ..Publish::default()
    }
}

#[test]
fn publish_round_trips_with_and_without_mac() {
    for key in [None, Some(MacKey::new(b"secret"))] {
        let mut codec = FrameCodec::new(Limits::default()).with_mac_key(key.clone());
        let mut buf = BytesMut::new();
        codec
            .encode_packet(7, Flags::empty(), &publish(), &mut buf)
            .unwrap();
        let overhead = buf.len() - publish().body.len();
        assert!(overhead < 24 + publish().fields_len_hint() + 33);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.request_id, 7);
        assert_eq!(
            Packet::from_frame(&frame).unwrap(),
            Packet::Publish(publish())
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn wrong_mac_key_is_refused() {
    let sender = FrameCodec::new(Limits::default()).with_mac_key(Some(MacKey::new(b"a")));
    let mut receiver = FrameCodec::new(Limits::default()).with_mac_key(Some(MacKey::new(b"b")));
    let mut buf = BytesMut::new();
    sender
        .encode_packet(1, Flags::empty(), &publish(), &mut buf)
        .unwrap();
    assert!(matches!(receiver.decode(&mut buf), Err(ProtoError::BadMac)));
}
