//! Bodies as files: the streaming side of `pub --file`, `get --output` and
//! `sub --output`, with a progress bar on stderr for large transfers.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use switchboard_client::{Client, ReceivedMessage};

use super::Context;
use crate::output::{message_fields, message_heading, print_json};

/// Transfers larger than this show a progress bar (when stderr is a terminal).
pub const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

/// `pub --file` streams files larger than this, or than the server's `max_frame` if
/// that is smaller.
pub const STREAM_THRESHOLD: u64 = 1024 * 1024;

/// The size above which `pub --file` streams a file to `client`'s server.
pub fn stream_threshold(client: &Client) -> u64 {
    STREAM_THRESHOLD.min(u64::from(client.session().limits.max_frame))
}

/// A progress bar for `len` bytes on stderr, or a hidden one when the transfer is small
/// or stderr is not a terminal.
pub fn progress_bar(len: u64, label: &str) -> ProgressBar {
    if len <= PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::new(len).with_style(style);
    bar.set_message(label.to_owned());
    bar
}

/// Writes a message's body to `path` as it arrives (verified against its length and
/// digest when streamed), with a progress bar. A failed transfer leaves no file.
pub async fn save_body(message: &mut ReceivedMessage, path: &Path) -> Result<u64> {
    let bar = progress_bar(message.body_len(), "receiving");
    let saved = message
        .save_body_to(path, |written| bar.set_position(written))
        .await;
    bar.finish_and_clear();
    saved.with_context(|| {
        format!(
            "cannot save the body of message {} to {}",
            message.id(),
            path.display()
        )
    })
}

/// Where `sub --output DIR` puts a message's body: `DIR/<seq>-<id>`.
pub fn body_path(dir: &Path, message: &ReceivedMessage) -> PathBuf {
    dir.join(format!("{}-{}", message.seq(), message.id()))
}

/// Prints a message whose body went to `path`: its metadata, without the body.
pub fn print_saved(ctx: &Context, message: &ReceivedMessage, path: &Path) {
    if ctx.json {
        let mut object = message_fields(message);
        object.insert("body_len".into(), json!(message.body_len()));
        object.insert("file".into(), json!(path.display().to_string()));
        print_json(&serde_json::Value::Object(object));
    } else {
        crate::outln!(
            "{}: <{} bytes written to {}>",
            message_heading(message),
            message.body_len(),
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_or_piped_transfers_have_no_bar() {
        assert!(progress_bar(1024, "x").is_hidden());
        // Under `cargo test` stderr is captured, so even a large transfer stays quiet.
        if !std::io::stderr().is_terminal() {
            assert!(progress_bar(1 << 30, "x").is_hidden());
        }
    }
}
