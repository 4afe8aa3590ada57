//! `pub`: one message from TEXT, a file or stdin, or one message per line, pipelined.
//! Large files are streamed from disk (see [`super::transfer`]).

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde_json::json;
use switchboard_client::{Payload, PublishAck, Text};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::Context;
use super::transfer::{progress_bar, stream_threshold};
use crate::cli::PublishArgs;
use crate::output::print_json;

/// Publishes in flight at once in --lines mode.
const MAX_IN_FLIGHT: usize = 1024;

pub fn guess_content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("txt" | "md" | "log" | "csv") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("msgpack") => "application/msgpack",
        _ => "application/octet-stream",
    }
}

fn print_ack(ctx: &Context, channel: &str, ack: &PublishAck) {
    if ctx.json {
        print_json(&json!({"id": ack.id.to_string(), "seq": ack.seq, "channel": channel}));
    } else {
        crate::outln!("{} seq {} on {channel}", ack.id, ack.seq);
    }
}

fn parse_headers(headers: &[String]) -> Result<Vec<(Text, Text)>> {
    headers
        .iter()
        .map(|header| match header.split_once('=') {
            Some((name, value)) => Ok((name.into(), value.into())),
            None => bail!("a header is KEY=VALUE, not {header:?}"),
        })
        .collect()
}

fn with_headers(mut payload: Payload, headers: &[String]) -> Result<Payload> {
    payload.headers.extend(parse_headers(headers)?);
    Ok(payload)
}

pub async fn publish(ctx: &Context, args: PublishArgs) -> Result<()> {
    if let Some(source) = &args.lines {
        return publish_lines(ctx, &args, source).await;
    }
    if let (None, Some(path)) = (&args.text, &args.file) {
        return publish_file(ctx, &args, path).await;
    }
    let text_type = "text/plain; charset=utf-8";
    let (body, default_type) = match (&args.text, &args.file) {
        (Some(text), None) if text == "-" => {
            let mut body = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut body)
                .await
                .context("cannot read standard input")?;
            (body, "application/octet-stream")
        }
        (Some(text), None) => (text.clone().into_bytes(), text_type),
        _ => bail!("give TEXT, --file FILE, - for standard input, or --lines FILE|-"),
    };
    let content_type = args.content_type.as_deref().unwrap_or(default_type);
    let payload = with_headers(
        Payload::with_content_type(content_type, body),
        &args.headers,
    )?;
    let client = ctx.connect().await?;
    let ack = client.publish(&args.channel, payload).await?;
    print_ack(ctx, &args.channel, &ack);
    let _ = client.close().await;
    Ok(())
}

/// `pub --file`: a file over the streaming threshold is streamed from disk, so its
/// size is bounded by the server's `max_body`, not by memory; a smaller one is sent in
/// one frame.
async fn publish_file(ctx: &Context, args: &PublishArgs, path: &Path) -> Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let len = file
        .metadata()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let content_type = args
        .content_type
        .as_deref()
        .unwrap_or_else(|| guess_content_type(path));
    let headers = parse_headers(&args.headers)?;
    let client = ctx.connect().await?;
    let ack = if len > stream_threshold(&client) {
        let limit = client.session().limits.max_body;
        if len > limit {
            bail!(
                "{} is {len} bytes, over the server's limit of {limit}",
                path.display()
            );
        }
        let bar = progress_bar(len, "sending");
        let progress = bar.clone();
        let mut payload = Payload::with_content_type(content_type, Bytes::new());
        payload.headers = headers;
        let published = client
            .publish(&args.channel, payload)
            .stream_from(file, len)
            .progress(move |sent| progress.set_position(sent))
            .await;
        bar.finish_and_clear();
        published.with_context(|| format!("cannot publish {}", path.display()))?
    } else {
        // Small, or of unknown size (a pipe, a device): read it whole.
        let mut body = Vec::new();
        let mut file = file;
        file.read_to_end(&mut body)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut payload = Payload::with_content_type(content_type, body);
        payload.headers = headers;
        client.publish(&args.channel, payload).await?
    };
    print_ack(ctx, &args.channel, &ack);
    let _ = client.close().await;
    Ok(())
}

async fn publish_lines(ctx: &Context, args: &PublishArgs, source: &str) -> Result<()> {
    let reader: Box<dyn AsyncRead + Unpin + Send> = if source == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(source)
                .await
                .with_context(|| format!("cannot open {source}"))?,
        )
    };
    let content_type = args
        .content_type
        .clone()
        .unwrap_or_else(|| "text/plain; charset=utf-8".to_owned());
    let client = ctx.connect().await?;
    let mut lines = BufReader::new(reader).lines();
    let mut in_flight = FuturesOrdered::new();
    let mut published = 0u64;
    loop {
        let line = lines.next_line().await.context("cannot read input")?;
        let Some(line) = line else { break };
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let payload = with_headers(
            Payload::with_content_type(content_type.as_str(), line.as_bytes().to_vec()),
            &args.headers,
        )?;
        in_flight.push_back(client.publish(&args.channel, payload).pipelined().await?);
        // Print acks as they arrive, without waiting for the input to end.
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some(ack) = in_flight.next().await {
                print_ack(
                    ctx,
                    &args.channel,
                    &ack.with_context(|| format!("publish {} failed", published + 1))?,
                );
                published += 1;
            }
        }
        while let Some(Some(ack)) = futures::FutureExt::now_or_never(in_flight.next()) {
            print_ack(
                ctx,
                &args.channel,
                &ack.with_context(|| format!("publish {} failed", published + 1))?,
            );
            published += 1;
        }
    }
    while let Some(ack) = in_flight.next().await {
        print_ack(
            ctx,
            &args.channel,
            &ack.with_context(|| format!("publish {} failed", published + 1))?,
        );
        published += 1;
    }
    let _ = client.close().await;
    Ok(())
}
