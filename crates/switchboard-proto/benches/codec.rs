//! Wire codec benchmarks: a PUBLISH to "bench.channel" (content type "text/plain") with a
//! 16-byte and a 1 KiB body, encoded, decoded (including `Packet::from_frame`) and both,
//! without and with an HMAC-SHA256 tag. Throughput is reported in frames per second.
//! Then the CRC32C of bodies from 64 bytes to 64 KiB, by this crate's `crc` module and,
//! beside it, by the `crc32c` and `crc-fast` crates alone, in bytes per second.
//!
//! Run with `cargo bench -p switchboard-proto --bench codec` (`-- crc32c` for the CRCs
//! alone).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_proto::packet::Publish;
use switchboard_proto::{Flags, FrameCodec, Limits, MacKey, Packet};
use tokio_util::codec::Decoder;

fn publish(body_len: usize) -> Publish {
    Publish {
        channel: "bench.channel".into(),
        content_type: "text/plain".into(),
        body: Bytes::from(vec![b'x'; body_len]),
        ..Publish::default()
    }
}

fn codec(mac: bool) -> FrameCodec {
    let key = mac.then(|| MacKey::new(b"switchboard-bench-key"));
    FrameCodec::new(Limits::default()).with_mac_key(key)
}

fn decode_packet(codec: &mut FrameCodec, buf: &mut BytesMut) -> Packet {
    match codec.decode(buf) {
        Ok(Some(frame)) => match Packet::from_frame(&frame) {
            Ok(packet) => packet,
            Err(error) => panic!("packet: {error}"),
        },
        other => panic!("decode: {other:?}"),
    }
}

fn bench_codec(c: &mut Criterion) {
    for (label, body_len) in [("16B", 16usize), ("1KiB", 1024)] {
        let packet = publish(body_len);
        let mut group = c.benchmark_group(format!("publish_{label}"));
        group.throughput(Throughput::Elements(1));
        for mac in [false, true] {
            let suffix = if mac { "_hmac" } else { "" };
            let mut codec = codec(mac);
            let mut encoded = BytesMut::new();
            codec
                .encode_packet(1, Flags::empty(), &packet, &mut encoded)
                .expect("encode");
            let encoded = encoded.freeze();

            // Encode into a connection's reused write buffer.
            group.bench_function(format!("encode{suffix}"), |b| {
                let mut buf = BytesMut::with_capacity(4096);
                b.iter(|| {
                    buf.clear();
                    codec
                        .encode_packet(1, Flags::empty(), black_box(&packet), &mut buf)
                        .expect("encode");
                    black_box(buf.len())
                });
            });

            // Decode one frame and type it; copying the bytes into the read buffer is
            // setup, not measured.
            group.bench_function(format!("decode{suffix}"), |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&encoded[..]),
                    |buf| black_box(decode_packet(&mut codec, buf)),
                    BatchSize::SmallInput,
                );
            });

            // Encode, then decode the same bytes, as a loopback connection would.
            group.bench_function(format!("roundtrip{suffix}"), |b| {
                let mut buf = BytesMut::with_capacity(4096);
                b.iter(|| {
                    codec
                        .encode_packet(1, Flags::empty(), black_box(&packet), &mut buf)
                        .expect("encode");
                    black_box(decode_packet(&mut codec, &mut buf))
                });
            });
        }
        group.finish();
    }
}

fn bench_crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for len in [64usize, 256, 1024, 4096, 64 * 1024] {
        let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("switchboard/{len}"), |b| {
            b.iter(|| switchboard_proto::crc::crc32c(black_box(&body)))
        });
        group.bench_function(format!("crc32c-crate/{len}"), |b| {
            b.iter(|| crc32c::crc32c(black_box(&body)))
        });
        group.bench_function(format!("crc-fast/{len}"), |b| {
            b.iter(|| crc_fast::crc32_iscsi(black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_codec, bench_crc);
criterion_main!(benches);
