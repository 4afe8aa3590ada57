//! `channels`, `channel create`, `channel delete`, `get`, `history` and `tag`.

use anyhow::{Result, anyhow};
use serde_json::json;
use switchboard_client::{
    ChannelInfo, ChannelOptions, Durability, ReceivedMessage, Since, SlowConsumerPolicy,
};

use super::{Context, transfer};
use crate::cli::{
    ChannelCreateArgs, ChannelDeleteArgs, DurabilityArg, GetArgs, HistoryArgs, SlowConsumerArg,
    TagArgs,
};
use crate::output::{message_json, message_text, print_json, shown};
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
        "durability": info.options.durability.map(Durability::name),
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
                shown(&info.name),
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

pub async fn delete(ctx: &Context, args: ChannelDeleteArgs) -> Result<()> {
    let client = ctx.connect().await?;
    client.delete_channel(&args.channel).await?;
    if ctx.json {
        print_json(&json!({"channel": args.channel, "deleted": true}));
    } else {
        crate::outln!("channel {} deleted", args.channel);
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
        slow_consumer: args.slow_consumer.map(|policy| match policy {
            SlowConsumerArg::Disconnect => SlowConsumerPolicy::Disconnect,
            SlowConsumerArg::DropOldest => SlowConsumerPolicy::DropOldest,
        }),
        durability: args.durability.map(|d| match d {
            DurabilityArg::Memory => Durability::Memory,
            DurabilityArg::Never => Durability::Never,
            DurabilityArg::Interval => Durability::Interval,
            DurabilityArg::Always => Durability::Always,
        }),
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
    let result = match (found, &args.output) {
        (Some(mut message), Some(path)) => {
            // The connection stays open while the body streams in.
            let saved = transfer::save_body(&mut message, path).await;
            if saved.is_ok() {
                transfer::print_saved(ctx, &message, path);
            }
            saved.map(drop)
        }
        (Some(message), None) => {
            print_messages(ctx, std::slice::from_ref(&message));
            Ok(())
        }
        (None, _) => match args.id {
            Some(id) => Err(anyhow!("no message {id} in {}", args.channel)),
            None => Err(anyhow!("{} has no messages", args.channel)),
        },
    };
    // Any body not read is dropped before closing, so nothing waits for it.
    let _ = client.close().await;
    result
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
    print_messages(ctx, &messages);
    // Streamed bodies are not printed: dropping them discards them.
    drop(messages);
    let _ = client.close().await;
    Ok(())
}

pub async fn tag(ctx: &Context, args: TagArgs) -> Result<()> {
    let tag = args.tag.trim_start_matches('#');
    let client = ctx.connect().await?;
    let messages = client.tag_messages(tag, Since::All, args.limit).await?;
    print_messages(ctx, &messages);
    drop(messages);
    let _ = client.close().await;
    Ok(())
}
