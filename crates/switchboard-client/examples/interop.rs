//! The Rust side of the cross-language payload test: publishes, or reads back and checks,
//! one message of each kind another client must understand (text, bytes, a serde struct
//! as MessagePack and as JSON, a large streamed body).
//!
//! ```text
//! interop send  SERVER PREFIX BIG_FILE     publish PREFIX.text, .bytes, .msgpack, .json, .big
//! interop check SERVER PREFIX BIG_SHA256   read the latest of each and check it
//! interop dump  KIND                       print the body Rust makes for KIND, as hex
//! ```
//!
//! `check` prints one line per message and exits with status 1 on the first mismatch.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_client::{Client, ClientConfig, Payload};

/// The text both sides publish.
const TEXT: &str = "héllo from the other side #interop";
/// The bytes both sides publish: every byte value once.
fn bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Location {
    room: String,
    floor: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Placement {
    Indoor,
    Outdoor,
}

/// The struct both sides publish, with the shapes a reader in another language must map:
/// nested structs, sequences, optional fields, maps, unit enum variants.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
    count: u32,
    tags: Vec<String>,
    location: Option<Location>,
    previous: Option<f64>,
    placement: Placement,
    limits: BTreeMap<String, i64>,
}

fn reading() -> Reading {
    Reading {
        sensor: "hall".into(),
        celsius: 21.5,
        count: 300,
        tags: vec!["indoor".into(), "ground".into()],
        location: Some(Location {
            room: "hall".into(),
            floor: -1,
        }),
        previous: None,
        placement: Placement::Indoor,
        limits: BTreeMap::from([("high".to_owned(), 40), ("low".to_owned(), -20)]),
    }
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["send", server, prefix, big_file] => send(server, prefix, big_file).await,
        ["check", server, prefix, big_sha256] => check(server, prefix, big_sha256).await,
        ["dump", kind] => dump(kind),
        _ => Err("usage: interop send SERVER PREFIX BIG_FILE | check SERVER PREFIX BIG_SHA256 | dump KIND".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("interop: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(server: &str) -> Result<Client, switchboard_client::ClientError> {
    Client::connect(ClientConfig::new(server, "rust-interop")).await
}

async fn send(server: &str, prefix: &str, big_file: &str) -> Outcome {
    let client = connect(server).await?;
    let channel = |kind: &str| format!("{prefix}.{kind}");
    client
        .publish(&channel("text"), Payload::text(TEXT))
        .await?;
    client
        .publish(&channel("bytes"), Payload::bytes(bytes()))
        .await?;
    client
        .publish(&channel("msgpack"), Payload::msgpack(&reading())?)
        .await?;
    client
        .publish(&channel("json"), Payload::json(&reading())?)
        .await?;
    let file = tokio::fs::File::open(big_file).await?;
    let len = file.metadata().await?.len();
    client
        .publish(&channel("big"), Payload::default())
        .stream_from(file, len)
        .await?;
    client.close().await?;
    println!("sent");
    Ok(())
}

async fn check(server: &str, prefix: &str, big_sha256: &str) -> Outcome {
    let client = connect(server).await?;
    let latest = |kind: &'static str| {
        let client = &client;
        let channel = format!("{prefix}.{kind}");
        async move {
            let message = client.get_message(&channel, None).await?;
            message.ok_or_else(|| {
                Box::<dyn std::error::Error>::from(format!("{channel} holds no message"))
            })
        }
    };
    let text = latest("text").await?;
    if text.text() != Some(TEXT) {
        return Err(format!("text: got {:?}", text.text()).into());
    }
    println!("text ok ({})", text.content_type());
    let raw = latest("bytes").await?;
    if raw.body()[..] != bytes()[..] {
        return Err(format!("bytes: got {} bytes that differ", raw.body().len()).into());
    }
    println!("bytes ok ({})", raw.content_type());
    for kind in ["msgpack", "json"] {
        let message = latest(kind).await?;
        let decoded: Reading = message.decode()?;
        if decoded != reading() {
            return Err(format!("{kind}: decoded {decoded:?}").into());
        }
        println!("{kind} ok ({})", message.content_type());
    }
    let big = latest("big").await?;
    let len = big.body_len();
    let mut body = big.body_reader();
    let mut hasher = Sha256::new();
    while let Some(part) = body.chunk().await? {
        hasher.update(&part);
    }
    let digest = hex(&hasher.finalize());
    if digest != big_sha256 {
        return Err(format!("big: SHA-256 {digest}, expected {big_sha256}").into());
    }
    println!("big ok ({len} bytes)");
    client.close().await?;
    Ok(())
}

fn dump(kind: &str) -> Outcome {
    let payload = match kind {
        "msgpack" => Payload::msgpack(&reading())?,
        "json" => Payload::json(&reading())?,
        other => return Err(format!("nothing to dump for {other:?}").into()),
    };
    println!("{} {}", payload.content_type, hex(&payload.body));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
