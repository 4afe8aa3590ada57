//! How results are printed: readable text by default, one JSON object per line with
//! `--json`.

use base64::Engine;
use serde_json::{Value, json};
use switchboard_client::{ReceivedDirect, ReceivedMessage, Scope};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 text for a time in microseconds since the Unix epoch.
pub fn rfc3339(time_us: u64) -> String {
    let nanos = i128::from(time_us) * 1000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| time_us.to_string())
}

/// The body as JSON: `payload` when it is UTF-8, `payload_base64` otherwise.
fn body_fields(object: &mut serde_json::Map<String, Value>, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => {
            object.insert("payload".into(), Value::String(text.to_owned()));
        }
        Err(_) => {
            object.insert(
                "payload_base64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            );
        }
    }
}

/// A message as JSON, with its body (`payload` or `payload_base64`). A streamed body is
/// not in memory: it is described by `streamed` and `body_len` instead.
pub fn message_json(message: &ReceivedMessage) -> Value {
    let mut object = message_fields(message);
    if message.is_streamed() {
        object.insert("streamed".into(), json!(true));
        object.insert("body_len".into(), json!(message.body_len()));
    } else {
        body_fields(&mut object, message.body());
    }
    Value::Object(object)
}

/// A message's metadata as JSON: everything but the body.
pub fn message_fields(message: &ReceivedMessage) -> serde_json::Map<String, Value> {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), json!(message.id().to_string()));
    object.insert("seq".into(), json!(message.seq()));
    object.insert("channel".into(), json!(message.channel()));
    if message.scope() == Scope::Group {
        object.insert("group".into(), json!(true));
    }
    object.insert("time".into(), json!(rfc3339(message.time_us())));
    object.insert("from".into(), json!(message.sender_name()));
    object.insert("from_id".into(), json!(message.sender_id()));
    object.insert("content_type".into(), json!(message.content_type()));
    if !message.headers().is_empty() {
        let headers: serde_json::Map<String, Value> = message
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.as_str())))
            .collect();
        object.insert("headers".into(), Value::Object(headers));
    }
    if message.is_replay() {
        object.insert("replay".into(), json!(true));
    }
    object
}

/// A message as one line of text: its heading, then its body (or, for a streamed body,
/// its size).
pub fn message_text(message: &ReceivedMessage) -> String {
    let body = if message.is_streamed() {
        format!(
            "<streamed body of {} bytes of {}; use --output FILE to save it>",
            message.body_len(),
            if message.content_type().is_empty() {
                "binary"
            } else {
                message.content_type()
            }
        )
    } else {
        body_text(message.body(), message.content_type())
    };
    format!("{}: {body}", message_heading(message))
}

/// The start of a message's line: time, channel or group, seq and sender.
pub fn message_heading(message: &ReceivedMessage) -> String {
    let place = if message.scope() == Scope::Group {
        format!("@{}", message.channel())
    } else {
        message.channel().to_owned()
    };
    format!(
        "[{}] {} #{} {}({})",
        rfc3339(message.time_us()),
        place,
        message.seq(),
        message.sender_name(),
        message.sender_id(),
    )
}

pub fn direct_json(direct: &ReceivedDirect) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("from".into(), json!(direct.sender_name()));
    object.insert("from_id".into(), json!(direct.sender_id()));
    object.insert("time".into(), json!(rfc3339(direct.time_us())));
    object.insert("content_type".into(), json!(direct.content_type()));
    body_fields(&mut object, direct.body());
    Value::Object(object)
}

pub fn direct_text(direct: &ReceivedDirect) -> String {
    format!(
        "[{}] from {}({}): {}",
        rfc3339(direct.time_us()),
        direct.sender_name(),
        direct.sender_id(),
        body_text(direct.body(), direct.content_type())
    )
}

/// A body as one printable line: the text itself, or a summary of binary content.
pub fn body_text(body: &[u8], content_type: &str) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!(
            "<{} bytes of {}>",
            body.len(),
            if content_type.is_empty() {
                "binary"
            } else {
                content_type
            }
        ),
    }
}

/// Prints one JSON value on its own line.
pub fn print_json(value: &Value) {
    emit(format_args!("{value}"));
}

/// Writes one line to standard output. When the reader has gone away (`| head`), the
/// process ends quietly, as it would by SIGPIPE, instead of panicking.
pub fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(error) = writeln!(out, "{line}")
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(141);
    }
}
