//! `sub`: prints messages of one or more patterns as they arrive, after any replay, each
//! message once however many of the patterns match it; with `--output`, writes their
//! bodies to files instead and prints only the metadata.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use switchboard_client::{ReceivedMessage, Replay};

use super::{Context, transfer};
use crate::cli::SubscribeArgs;
use crate::output::{message_json, message_text, print_json};
use crate::since::{self, SincePoint};

/// Where `--output` puts the bodies.
enum Output {
    /// Print bodies with the messages.
    Print,
    /// `--count 1`: the one body goes to this file.
    File(PathBuf),
    /// Each body goes to `DIR/<seq>-<id>`.
    Directory(PathBuf),
}

impl Output {
    async fn prepare(args: &SubscribeArgs) -> Result<Output> {
        Ok(match (&args.output, args.count) {
            (None, _) => Output::Print,
            (Some(path), Some(1)) => Output::File(path.clone()),
            (Some(dir), _) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("cannot create directory {}", dir.display()))?;
                Output::Directory(dir.clone())
            }
        })
    }

    /// Prints the message, after saving its body if asked to.
    async fn handle(&self, ctx: &Context, mut message: ReceivedMessage) -> Result<()> {
        let path = match self {
            Output::Print => {
                if ctx.json {
                    print_json(&message_json(&message));
                } else {
                    crate::outln!("{}", message_text(&message));
                }
                return Ok(());
            }
            Output::File(path) => path.clone(),
            Output::Directory(dir) => transfer::body_path(dir, &message),
        };
        save_and_print(ctx, &mut message, &path).await
    }
}

async fn save_and_print(ctx: &Context, message: &mut ReceivedMessage, path: &Path) -> Result<()> {
    transfer::save_body(message, path).await?;
    transfer::print_saved(ctx, message, path);
    Ok(())
}

pub async fn subscribe(ctx: &Context, args: SubscribeArgs) -> Result<()> {
    let replay = match (&args.since, args.last) {
        (Some(text), _) => match since::parse(text)? {
            SincePoint::Seq(seq) => Replay::SinceSeq(seq),
            SincePoint::Time(time) => Replay::SinceTime(time),
        },
        (None, Some(count)) => Replay::Last(count),
        (None, None) => Replay::None,
    };
    let output = Output::prepare(&args).await?;
    let Some((first, rest)) = args.patterns.split_first() else {
        bail!("give at least one pattern");
    };
    let client = ctx.connect().await?;
    // One subscription for all the patterns: a message matching several of them, or
    // replayed for several, is printed once.
    let subscribing = rest
        .iter()
        .fold(client.subscribe(first, replay), |subscribing, pattern| {
            subscribing.pattern(pattern)
        });
    let mut messages = subscribing.await?;
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let Some(message) = messages.next().await else {
            bail!("the server closed the connection");
        };
        output.handle(ctx, message?).await?;
        received += 1;
    }
    // Messages queued behind the last one (and their bodies) go with the subscription.
    drop(messages);
    let _ = client.close().await;
    Ok(())
}
