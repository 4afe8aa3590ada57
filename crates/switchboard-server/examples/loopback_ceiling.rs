//! The ceiling of large messages over loopback on this machine: bodies moved from a
//! publisher socket through a relay to a subscriber socket with no protocol at all.
//!
//! The same path as `switchboard bench pubsub --server ADDR` against `serve`: the
//! publisher and the subscriber in one process, the relay (standing for the hub) in
//! another, each on a default multi-thread tokio runtime. Whatever the hub's MB/s is
//! short of this one is user space or the shape of its system calls; the rest is the
//! kernel copying each body into and out of two sockets.
//!
//! * `relay --listen ADDR`: accepts a publisher, then a subscriber, and moves every byte
//!   from the first to the second. `--shape split` reads in one task and writes in
//!   another, handing over through a bounded queue as the hub's reader and writer do;
//!   `--shape copy` reads and writes in turn in one task.
//! * `clients --relay ADDR`: connects the publisher, then the subscriber, writes
//!   `--count` bodies of `--size` bytes (one write each) and reads them all back, then
//!   prints the rate (MB/s of bodies, 10^6 bytes) from the first write to the last byte
//!   read.
//!
//! `--keep N` (relay, with `--size` the clients' body size) stands for a hub that keeps
//! the last N bodies of its channel, as switchboard's history keeps 1 000: the relay reads
//! each body into a buffer of its own, writes it on and keeps it, taking the buffer of
//! the body that falls out of the last N for the next one. Each body is then copied into
//! memory last touched N bodies ago, as a history's is.
//!
//! `--crc` adds the hub's CRC32C passes over each body: the publisher computes one,
//! the relay checks one, the subscriber checks one (bodies are cut by a 4-byte length
//! at the front, so each end knows where one ends). `--sndbuf BYTES` and `--rcvbuf
//! BYTES` set SO_SNDBUF and SO_RCVBUF on every socket of the process they are given to
//! (a set size turns the kernel's own sizing off).
//!
//! ```sh
//! cargo build --release -p switchboard-server --example loopback_ceiling
//! E=target/release/examples/loopback_ceiling
//! $E relay --listen 127.0.0.1:4300 &
//! $E clients --relay 127.0.0.1:4300 --size 65536 --count 100000
//! $E relay --listen 127.0.0.1:4301 --keep 1000 --size 65536 &
//! $E clients --relay 127.0.0.1:4301 --size 65536 --count 100000
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use switchboard_proto::crc::crc32c_append;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// How much one read may take, on the relay and the subscriber.
const READ_SIZE: usize = 256 * 1024;

/// Bodies' worth of data the relay's reader may be ahead of its writer (`split`).
const QUEUE_DEPTH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Split,
    Copy,
}

#[derive(Debug)]
struct Options {
    role: String,
    address: SocketAddr,
    size: usize,
    count: u64,
    shape: Shape,
    crc: bool,
    keep: Option<usize>,
    sndbuf: Option<u32>,
    rcvbuf: Option<u32>,
}

fn usage() -> ! {
    eprintln!(
        "usage: loopback_ceiling relay --listen ADDR [--shape split|copy] [--crc] \
         [--keep N --size BYTES] [--sndbuf N] [--rcvbuf N]\n       loopback_ceiling clients --relay ADDR \
         [--size BYTES] [--count N] [--crc] [--sndbuf N] [--rcvbuf N]"
    );
    std::process::exit(2)
}

fn parse() -> Options {
    let mut arguments = std::env::args().skip(1);
    let role = arguments.next().unwrap_or_else(|| usage());
    if role != "relay" && role != "clients" {
        usage();
    }
    let mut options = Options {
        role,
        address: SocketAddr::from(([127, 0, 0, 1], 4300)),
        size: 65536,
        count: 100_000,
        shape: Shape::Split,
        crc: false,
        keep: None,
        sndbuf: None,
        rcvbuf: None,
    };
    while let Some(flag) = arguments.next() {
        if flag == "--crc" {
            options.crc = true;
            continue;
        }
        let value = arguments.next().unwrap_or_else(|| usage());
        let number = || value.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--listen" | "--relay" => {
                options.address = value.parse().unwrap_or_else(|_| usage());
            }
            "--size" => options.size = number() as usize,
            "--count" => options.count = number(),
            "--shape" => {
                options.shape = match value.as_str() {
                    "split" => Shape::Split,
                    "copy" => Shape::Copy,
                    _ => usage(),
                }
            }
            "--keep" => options.keep = Some(number().max(1) as usize),
            "--sndbuf" => options.sndbuf = Some(number() as u32),
            "--rcvbuf" => options.rcvbuf = Some(number() as u32),
            _ => usage(),
        }
    }
    if options.size < 8 {
        usage();
    }
    options
}

fn socket(options: &Options) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = options.sndbuf {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = options.rcvbuf {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(socket)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = parse();
    if options.role == "relay" {
        relay(&options).await
    } else {
        clients(&options).await
    }
}

async fn relay(options: &Options) -> std::io::Result<()> {
    let listening = socket(options)?;
    listening.set_reuseaddr(true)?;
    listening.bind(options.address)?;
    let listener = listening.listen(16)?;
    loop {
        let (from, _) = listener.accept().await?;
        let (to, _) = listener.accept().await?;
        from.set_nodelay(true)?;
        to.set_nodelay(true)?;
        let moved = match (options.keep, options.shape) {
            (Some(keep), _) => relay_keeping(from, to, keep, options.size).await?,
            (None, Shape::Copy) => relay_in_turn(from, to, options.crc).await?,
            (None, Shape::Split) => relay_split(from, to, options.crc).await?,
        };
        eprintln!("relay: moved {moved} bytes");
    }
}

/// Reads and writes in turn, in one task.
async fn relay_in_turn(mut from: TcpStream, mut to: TcpStream, crc: bool) -> std::io::Result<u64> {
    let mut buffer = BytesMut::with_capacity(READ_SIZE);
    let mut bodies = Bodies::default();
    let mut moved = 0;
    loop {
        buffer.clear();
        if from.read_buf(&mut buffer).await? == 0 {
            return Ok(moved);
        }
        if crc {
            bodies.check(&buffer);
        }
        to.write_all(&buffer).await?;
        moved += buffer.len() as u64;
    }
}

/// Reads each body of `size` bytes into a buffer of its own, writes it on and keeps the
/// last `keep` of them; the buffer of the body that falls out is read into next.
async fn relay_keeping(
    mut from: TcpStream,
    mut to: TcpStream,
    keep: usize,
    size: usize,
) -> std::io::Result<u64> {
    let mut kept: VecDeque<Vec<u8>> = VecDeque::with_capacity(keep);
    let mut moved = 0;
    loop {
        let mut body = if kept.len() == keep {
            kept.pop_front().unwrap_or_default()
        } else {
            vec![0u8; size]
        };
        match from.read_exact(&mut body).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(moved),
            Err(error) => return Err(error),
        }
        to.write_all(&body).await?;
        moved += body.len() as u64;
        kept.push_back(body);
    }
}

/// Reads in one task and writes in another, as the hub's reader hands frames to a
/// connection's writer.
async fn relay_split(mut from: TcpStream, mut to: TcpStream, crc: bool) -> std::io::Result<u64> {
    let (sender, mut receiver) = mpsc::channel::<Bytes>(QUEUE_DEPTH);
    let writer = tokio::spawn(async move {
        let mut moved = 0u64;
        while let Some(bytes) = receiver.recv().await {
            to.write_all(&bytes).await?;
            moved += bytes.len() as u64;
        }
        Ok::<u64, std::io::Error>(moved)
    });
    let mut bodies = Bodies::default();
    let mut buffer = BytesMut::with_capacity(READ_SIZE);
    loop {
        // Takes the memory of chunks the writer is done with back (no fresh pages per
        // read, which the kernel would fault in while copying into them).
        buffer.reserve(READ_SIZE);
        if from.read_buf(&mut buffer).await? == 0 {
            break;
        }
        let chunk = buffer.split().freeze();
        if crc {
            bodies.check(&chunk);
        }
        if sender.send(chunk).await.is_err() {
            break;
        }
    }
    drop(sender);
    writer.await.map_err(std::io::Error::other)?
}

async fn clients(options: &Options) -> std::io::Result<()> {
    let mut publisher = socket(options)?.connect(options.address).await?;
    let mut subscriber = socket(options)?.connect(options.address).await?;
    publisher.set_nodelay(true)?;
    subscriber.set_nodelay(true)?;
    let total = options.size as u64 * options.count;
    let (size, count, crc) = (options.size, options.count, options.crc);
    let started = Instant::now();
    let reading = tokio::spawn(async move {
        let mut buffer = BytesMut::with_capacity(READ_SIZE);
        let mut bodies = Bodies::default();
        let mut received = 0u64;
        while received < total {
            buffer.clear();
            let read = subscriber.read_buf(&mut buffer).await?;
            if read == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            if crc {
                bodies.check(&buffer);
            }
            received += read as u64;
        }
        Ok::<(u64, u32), std::io::Error>((received, bodies.sum))
    });
    let mut body = vec![0u8; size];
    for (index, byte) in body.iter_mut().enumerate() {
        *byte = (index as u8).wrapping_mul(31);
    }
    body[..4].copy_from_slice(&(size as u32).to_be_bytes());
    let mut sent_sum = 0u32;
    for _ in 0..count {
        if crc {
            sent_sum ^= crc32c_append(0, &body[4..]);
        }
        publisher.write_all(&body).await?;
    }
    let (received, received_sum) = reading.await.map_err(std::io::Error::other)??;
    let elapsed = started.elapsed();
    publisher.shutdown().await?;
    if crc && sent_sum != received_sum {
        return Err(std::io::Error::other("the bodies' checksums differ"));
    }
    println!(
        "{count} bodies of {size} B in {:.3} s: {:.0} msg/s, {:.0} MB/s{}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64() / 1e6,
        if crc { " (with CRC32C passes)" } else { "" },
    );
    Ok(())
}

/// Cuts a byte stream of length-prefixed bodies back into bodies and checksums each
/// one, continuing the CRC across reads as the hub does for a body split over several
/// (no byte copied).
#[derive(Default)]
struct Bodies {
    length: Vec<u8>,
    left: usize,
    crc: u32,
    sum: u32,
}

impl Bodies {
    fn check(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left == 0 {
                let taken = (4 - self.length.len()).min(bytes.len());
                self.length.extend_from_slice(&bytes[..taken]);
                bytes = &bytes[taken..];
                if self.length.len() < 4 {
                    return;
                }
                let mut length = [0u8; 4];
                length.copy_from_slice(&self.length);
                self.length.clear();
                self.left = u32::from_be_bytes(length) as usize - 4;
                self.crc = 0;
            }
            let taken = self.left.min(bytes.len());
            self.crc = crc32c_append(self.crc, &bytes[..taken]);
            bytes = &bytes[taken..];
            self.left -= taken;
            if self.left == 0 {
                self.sum ^= self.crc;
            }
        }
    }
}
