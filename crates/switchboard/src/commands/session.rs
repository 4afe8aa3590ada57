//! `whoami`, `clients`, `stats`, `stop` and `reload`.

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Context;
use crate::output::{print_json, rfc3339, shown};

pub async fn whoami(ctx: &Context) -> Result<()> {
    let client = ctx.connect().await?;
    let identity = client.identity().await?;
    if ctx.json {
        print_json(&json!({
            "client_id": identity.client_id,
            "name": identity.name.as_str(),
            "session_id": identity.session_id.to_string(),
            "connected_since": rfc3339(identity.connected_since_us),
            "user": client.session().user,
        }));
    } else {
        crate::outln!("client id:  {}", identity.client_id);
        crate::outln!("name:       {}", identity.name);
        if let Some(user) = &client.session().user {
            crate::outln!("user:       {user}");
        }
        crate::outln!("session id: {}", identity.session_id);
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn clients(ctx: &Context) -> Result<()> {
    let client = ctx.connect().await?;
    let clients = client.list_clients().await?;
    for info in &clients {
        if ctx.json {
            print_json(&json!({
                "client_id": info.client_id,
                "name": info.name.as_str(),
                "connected_since": rfc3339(info.connected_since_us),
            }));
        } else {
            crate::outln!(
                "{:>8}  {:<24} since {}",
                info.client_id,
                shown(&info.name),
                rfc3339(info.connected_since_us)
            );
        }
    }
    if !ctx.json && clients.is_empty() {
        crate::outln!("(no other clients)");
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn stats(ctx: &Context) -> Result<()> {
    let client = ctx.connect().await?;
    let stats = client.stats().await?;
    if ctx.json {
        let object: serde_json::Map<String, serde_json::Value> = stats
            .stats
            .iter()
            .map(|stat| (stat.name.to_string(), json!(stat.value)))
            .collect();
        print_json(&serde_json::Value::Object(object));
    } else {
        for stat in &stats.stats {
            crate::outln!("{:<32} {}", stat.name, stat.value);
        }
    }
    let _ = client.close().await;
    Ok(())
}

/// Where `stop` and `reload` connect: an explicit unix: address, the server's default socket for a
/// TCP address (unless a token was given), or the TCP address with the token.
fn stop_target(ctx: &Context) -> String {
    if ctx.server.starts_with("unix:") || ctx.token.is_some() {
        return ctx.server.clone();
    }
    match ctx
        .server
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
    {
        Some(port) if cfg!(unix) => {
            let path = crate::serve::default_unix_socket(port);
            if path.exists() {
                format!("unix:{}", path.display())
            } else {
                ctx.server.clone()
            }
        }
        _ => ctx.server.clone(),
    }
}

pub async fn stop(ctx: &Context) -> Result<()> {
    let target = stop_target(ctx);
    let client = ctx.connect_to(&target).await?;
    client
        .stop_server()
        .await
        .context("the server refused to stop")?;
    if ctx.json {
        print_json(&json!({"stopped": true, "server": target}));
    } else {
        crate::outln!("server at {target} is stopping");
    }
    Ok(())
}

/// `reload`: the server re-reads its config file; a refusal's reason is the error.
pub async fn reload(ctx: &Context) -> Result<()> {
    let target = stop_target(ctx);
    let client = ctx.connect_to(&target).await?;
    let result = client.reload_server().await;
    let _ = client.close().await;
    result.context("the server refused the configuration and keeps the one it had")?;
    if ctx.json {
        print_json(&json!({"reloaded": true, "server": target}));
    } else {
        crate::outln!("server at {target} reloaded its configuration");
    }
    Ok(())
}
