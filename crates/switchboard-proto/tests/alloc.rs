//! Allocation behaviour of the codec, measured with a counting global allocator: encoding
//! a packet into an empty buffer allocates at most once (the single reservation), and
//! decoding a publish without user headers shares the read buffer instead of copying the
//! body, and a write batch in steady use allocates nothing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use switchboard_proto::packet::{Encode, Publish};
use switchboard_proto::{Flags, Packet};
use tokio_util::codec::Decoder;

use common::{codec, config, one_of_each};

/// Counts allocations (and growing reallocations) made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    // `try_with` so that allocations during thread teardown are simply not counted.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the number of allocations it made.
fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    let after = ALLOCATIONS.with(Cell::get);
    (value, after - before)
}

fn publish_16() -> Publish {
    Publish {
        channel: "bench.channel".into(),
        content_type: "text/plain".into(),
        body: Bytes::from_static(&[0x42; 16]),
        ..Publish::default()
    }
}

#[test]
fn encoding_a_small_publish_allocates_once() {
    for mac in [false, true] {
        let codec = codec(mac);
        let publish = publish_16();
        let mut buf = BytesMut::new();
        let (result, allocations) =
            counting(|| codec.encode_packet(1, Flags::empty(), &publish, &mut buf));
        result.expect("encode");
        assert!(allocations <= 1, "mac={mac}: {allocations} allocations");
        assert!(!buf.is_empty());
    }
}

#[test]
fn encoding_into_a_buffer_with_room_does_not_allocate() {
    let codec = codec(true);
    let publish = publish_16();
    let mut buf = BytesMut::with_capacity(4096);
    let (result, allocations) =
        counting(|| codec.encode_packet(1, Flags::empty(), &publish, &mut buf));
    result.expect("encode");
    assert_eq!(allocations, 0);
}

#[test]
fn decoded_publish_body_shares_the_read_buffer() {
    for mac in [false, true] {
        let mut codec = codec(mac);
        let publish = publish_16();
        let mut buf = BytesMut::new();
        codec
            .encode_packet(9, Flags::empty(), &publish, &mut buf)
            .expect("encode");
        let start = buf.as_ptr() as usize;
        let end = start + buf.len();

        let (decoded, allocations) = counting(|| {
            let frame = codec
                .decode(&mut buf)
                .expect("decode")
                .expect("a whole frame");
            Packet::from_frame(&frame).expect("packet")
        });
        let Packet::Publish(decoded) = decoded else {
            panic!("not a publish: {decoded:?}");
        };
        assert_eq!(decoded, publish);
        // Splitting the frame off the buffer may allocate the shared-ownership record;
        // nothing else (no copies of body, channel or content type).
        assert!(allocations <= 1, "mac={mac}: {allocations} allocations");
        for (what, pointer) in [
            ("body", decoded.body.as_ptr() as usize),
            ("channel", decoded.channel.as_bytes().as_ptr() as usize),
            (
                "content type",
                decoded.content_type.as_bytes().as_ptr() as usize,
            ),
        ] {
            assert!(
                (start..end).contains(&pointer),
                "mac={mac}: {what} at {pointer:#x} is outside the read buffer {start:#x}..{end:#x}"
            );
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// `encode_packet` promises a single reservation per frame, for every packet type.
    #[test]
    fn every_packet_type_encodes_with_at_most_one_allocation(
        packets in one_of_each(),
        mac in any::<bool>(),
    ) {
        let codec = codec(mac);
        for packet in packets {
            let mut buf = BytesMut::new();
            let (result, allocations) =
                counting(|| codec.encode_packet(3, Flags::empty(), &packet, &mut buf));
            result.expect("encode");
            prop_assert!(
                allocations <= 1,
                "{} frame of {} bytes took {} allocations",
                packet.frame_type(),
                buf.len(),
                allocations
            );
        }
    }
}

/// A writer reuses one write batch for batch after batch: once warm, gathering small
/// frames and a large shared frame and writing them out allocates nothing, however many
/// batches go through.
#[test]
fn a_write_batch_in_steady_use_allocates_nothing() {
    use bytes::Buf;
    use switchboard_proto::batch::{WRITE_APART_BYTES, WriteBatch};

    for mac in [false, true] {
        let codec = codec(mac);
        let publish = publish_16();
        let large = Bytes::from(vec![7u8; WRITE_APART_BYTES]);
        let round = |batch: &mut WriteBatch| {
            for request_id in 0..8 {
                batch
                    .encode(&codec, request_id, Flags::empty(), &publish)
                    .expect("encode");
            }
            batch.push_frame(large.clone());
            for request_id in 8..16 {
                batch
                    .encode(&codec, request_id, Flags::empty(), &publish)
                    .expect("encode");
            }
            // Written out, a piece at a time.
            while batch.has_remaining() {
                let written = batch.chunk().len();
                batch.advance(written);
            }
            batch.clear(64 * 1024);
        };
        let mut batch = WriteBatch::new();
        for _ in 0..3 {
            round(&mut batch);
        }
        let ((), allocations) = counting(|| {
            for _ in 0..100 {
                round(&mut batch);
            }
        });
        assert_eq!(allocations, 0, "mac {mac}");
    }
}
