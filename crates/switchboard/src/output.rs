//! How results are printed: readable text by default, one JSON object per line with
//! `--json`.
//!
//! Text output never hands the reader's terminal a character someone else chose to drive
//! it: control characters (C0, DEL, C1) and invisible or bidirectional formatting
//! characters in bodies, names and channels are shown escaped, as `less` does (`^[` for
//! ESC, `\n` for a newline, `\u{202e}` for the others), so a body can neither retitle the
//! terminal nor forge a line of its own. `--raw` prints them as received. JSON escapes
//! them by itself.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use serde_json::{Value, json};
use switchboard_client::{ReceivedDirect, ReceivedMessage, Scope};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Whether text output shows what senders chose as received (`--raw`), set once at start.
static RAW: AtomicBool = AtomicBool::new(false);

/// Prints bodies and names as received from now on (`--raw`), control characters included.
pub fn print_raw(raw: bool) {
    RAW.store(raw, Ordering::Relaxed);
}

/// `text` as text output shows it: escaped ([`escape_controls`]) unless `--raw`.
pub fn shown(text: &str) -> Cow<'_, str> {
    if RAW.load(Ordering::Relaxed) {
        Cow::Borrowed(text)
    } else {
        escape_controls(text)
    }
}

/// Whether a terminal would act on `c` rather than show it, or show nothing: control
/// characters and the invisible and bidirectional formatting characters names may not
/// hold, except the zero-width joiner and the variation selectors, which draw emoji.
fn needs_escape(c: char) -> bool {
    switchboard_proto::subject::is_invisible(c)
        && !matches!(c, '\u{200D}' | '\u{FE00}'..='\u{FE0F}')
}

/// `text` with every character a terminal would act on shown instead: `\n`, `\r`, `\t`,
/// `^X` for the other C0 controls and DEL (`^[` is ESC), `\u{...}` for C1 controls and
/// invisible or bidirectional formatting characters. Borrowed when nothing needed it.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            '\u{0}'..='\u{1f}' => {
                shown.push('^');
                shown.push(char::from(c as u8 + b'@'));
            }
            '\u{7f}' => shown.push_str("^?"),
            c if needs_escape(c) => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

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
                Cow::Borrowed("binary")
            } else {
                shown(message.content_type())
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
        format!("@{}", shown(message.channel()))
    } else {
        shown(message.channel()).into_owned()
    };
    format!(
        "[{}] {} #{} {}({})",
        rfc3339(message.time_us()),
        place,
        message.seq(),
        shown(message.sender_name()),
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
        shown(direct.sender_name()),
        direct.sender_id(),
        body_text(direct.body(), direct.content_type())
    )
}

/// A body as one printable line: the text itself (escaped unless `--raw`), or a summary of
/// binary content.
pub fn body_text(body: &[u8], content_type: &str) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => shown(text).into_owned(),
        Err(_) => format!(
            "<{} bytes of {}>",
            body.len(),
            if content_type.is_empty() {
                Cow::Borrowed("binary")
            } else {
                shown(content_type)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_shown_not_obeyed() {
        assert_eq!(
            escape_controls("\u{1b}]0;pwned\u{7}title"),
            "^[]0;pwned^Gtitle"
        );
        assert_eq!(
            escape_controls("one\nesc #99 admin(1): forged"),
            "one\\nesc #99 admin(1): forged"
        );
        assert_eq!(escape_controls("a\r\tb\u{7f}"), "a\\r\\tb^?");
        assert_eq!(escape_controls("csi\u{9b}31m"), "csi\\u{9b}31m");
        assert_eq!(escape_controls("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape_controls("zero\u{200b}width"), "zero\\u{200b}width");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["plain", "zoë 日本語", "👩\u{200d}💻 ❤\u{fe0f}", "C:\\path"] {
            assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
        }
    }
}
