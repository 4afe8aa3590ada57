//! `sub`: prints messages of one or more patterns as they arrive, after any replay.

use anyhow::{Result, bail};
use futures::StreamExt;
use futures::stream::SelectAll;
use switchboard_proto::packet::Replay;

use super::Context;
use crate::cli::SubscribeArgs;
use crate::output::{message_json, message_text, print_json};
use crate::since::{self, SincePoint};

pub async fn subscribe(ctx: &Context, args: SubscribeArgs) -> Result<()> {
    let replay = match (&args.since, args.last) {
        (Some(text), _) => match since::parse(text)? {
            SincePoint::Seq(seq) => Replay::SinceSeq(seq),
            SincePoint::Time(time) => Replay::SinceTime(time),
        },
        (None, Some(count)) => Replay::Last(count),
        (None, None) => Replay::None,
    };
    let client = ctx.connect().await?;
    let mut streams = SelectAll::new();
    for pattern in &args.patterns {
        streams.push(client.subscribe(pattern, replay).await?);
    }
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let Some(message) = streams.next().await else {
            bail!("the server closed the connection");
        };
        let message = message?;
        if ctx.json {
            print_json(&message_json(&message));
        } else {
            crate::outln!("{}", message_text(&message));
        }
        received += 1;
    }
    let _ = client.close().await;
    Ok(())
}
