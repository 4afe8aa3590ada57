//! `relay` and `listen`: direct messages between clients by id.

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use serde_json::json;

use super::Context;
use crate::cli::{ListenArgs, RelayArgs};
use crate::output::{direct_json, direct_text, print_json};

pub async fn relay(ctx: &Context, args: RelayArgs) -> Result<()> {
    let (body, content_type) = match (&args.text, &args.file) {
        (Some(text), None) => (text.clone().into_bytes(), "text/plain; charset=utf-8"),
        (None, Some(path)) => (
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            super::publish::guess_content_type(path),
        ),
        _ => bail!("give the text to relay, or --file FILE"),
    };
    let client = ctx.connect().await?;
    let outcomes = client.relay(&args.to, body, content_type).await?;
    for outcome in &outcomes {
        if ctx.json {
            print_json(&json!({"client_id": outcome.client_id, "status": outcome.status.name()}));
        } else {
            crate::outln!("{:>8}  {}", outcome.client_id, outcome.status.name());
        }
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn listen(ctx: &Context, args: ListenArgs) -> Result<()> {
    let client = ctx.connect().await?;
    let mut directs = client.direct_feed()?;
    if ctx.json {
        print_json(
            &json!({"client_id": client.session().client_id, "name": client.session().name}),
        );
    } else {
        crate::outln!("client id: {}", client.session().client_id);
    }
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let Some(direct) = directs.next().await else {
            bail!("the server closed the connection");
        };
        if ctx.json {
            print_json(&direct_json(&direct));
        } else {
            crate::outln!("{}", direct_text(&direct));
        }
        received += 1;
    }
    let _ = client.close().await;
    Ok(())
}
