//! `channels`, `channel create`, `get`, `history` and `tag`.

use anyhow::{Result, bail};
use serde_json::json;
use switchboard_client::ReceivedMessage;
use switchboard_proto::packet::{ChannelInfo, ChannelOptions, Since};

use super::Context;
use crate::cli::{ChannelCreateArgs, GetArgs, HistoryArgs, TagArgs};
use crate::output::{message_json, message_text, print_json};
use crate::since::{self, SincePoint};

fn channel_json(info: &ChannelInfo) -> serde_json::Value {
    json!({
        "channel": info.name.as_str(),
        "messages": info.message_count,
        "first_seq": info.first_seq,
        "last_seq": info.last_seq,
        "bytes": info.bytes,
        "history": info.options.history,
        "max_bytes": info.options.max_bytes,
        "max_chars": info.options.max_chars,
    })
}

pub async fn list(ctx: &Context) -> Result<()> {
    let client = ctx.connect().await?;
    let channels = client.list_channels().await?;
    for info in &channels {
        if ctx.json {
            print_json(&channel_json(info));
        } else {
            crate::outln!(
                "{:<32} {:>8} messages  (seq {}..{})",
                info.name,
                info.message_count,
                info.first_seq,
                info.last_seq
            );
        }
    }
    if !ctx.json && channels.is_empty() {
        crate::outln!("(no channels)");
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn create(ctx: &Context, args: ChannelCreateArgs) -> Result<()> {
    let options = ChannelOptions {
        history: args.history,
        max_bytes: args.max_bytes,
        max_chars: args.max_chars,
        max_age_ms: args
            .max_age
            .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        max_total_bytes: args.max_total_bytes,
        slow_consumer: None,
    };
    let client = ctx.connect().await?;
    let info = client.create_channel(&args.channel, options).await?;
    if ctx.json {
        print_json(&channel_json(&info));
    } else {
        crate::outln!(
            "channel {} ready: keeps {} messages",
            info.name,
            info.options.history.unwrap_or_default()
        );
    }
    let _ = client.close().await;
    Ok(())
}

pub fn print_messages(ctx: &Context, messages: &[ReceivedMessage]) {
    for message in messages {
        if ctx.json {
            print_json(&message_json(message));
        } else {
            crate::outln!("{}", message_text(message));
        }
    }
}

pub async fn get(ctx: &Context, args: GetArgs) -> Result<()> {
    let client = ctx.connect().await?;
    let found = client.get_message(&args.channel, args.id).await?;
    let _ = client.close().await;
    match found {
        Some(message) => {
            print_messages(ctx, std::slice::from_ref(&message));
            Ok(())
        }
        None => match args.id {
            Some(id) => bail!("no message {id} in {}", args.channel),
            None => bail!("{} has no messages", args.channel),
        },
    }
}

pub fn since_of(text: Option<&str>) -> Result<Since> {
    Ok(match text.map(since::parse).transpose()? {
        None => Since::All,
        Some(SincePoint::Seq(seq)) => Since::Seq(seq),
        Some(SincePoint::Time(time)) => Since::Time(time),
    })
}

pub async fn history(ctx: &Context, args: HistoryArgs) -> Result<()> {
    let since = since_of(args.since.as_deref())?;
    let client = ctx.connect().await?;
    let messages = client
        .get_messages(&args.channel, since, args.limit)
        .await?;
    let _ = client.close().await;
    print_messages(ctx, &messages);
    Ok(())
}

pub async fn tag(ctx: &Context, args: TagArgs) -> Result<()> {
    let tag = args.tag.trim_start_matches('#');
    let client = ctx.connect().await?;
    let messages = client.tag_messages(tag, args.limit).await?;
    let _ = client.close().await;
    print_messages(ctx, &messages);
    Ok(())
}
