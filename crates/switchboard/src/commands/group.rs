//! Groups: `groups`, `group create`, `group history`, `group delete`, `join`, `leave`,
//! `members`, `post`.

use anyhow::Result;
use serde_json::json;
use switchboard_client::Payload;

use super::Context;
use super::channel::{print_messages, since_of};
use crate::cli::{GroupCreateArgs, GroupHistoryArgs, GroupName, PostArgs};
use crate::output::{print_json, shown};

pub async fn list(ctx: &Context) -> Result<()> {
    let client = ctx.connect().await?;
    let groups = client.list_groups().await?;
    for group in &groups {
        if ctx.json {
            print_json(&json!({
                "group": group.name.as_str(),
                "description": group.description.as_str(),
                "members": group.member_count,
            }));
        } else {
            crate::outln!(
                "{:<24} {:>4} members  {}",
                shown(&group.name),
                group.member_count,
                shown(&group.description)
            );
        }
    }
    if !ctx.json && groups.is_empty() {
        crate::outln!("(no groups)");
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn create(ctx: &Context, args: GroupCreateArgs) -> Result<()> {
    let client = ctx.connect().await?;
    client.create_group(&args.group, &args.description).await?;
    if ctx.json {
        print_json(&json!({"group": args.group, "created": true}));
    } else {
        crate::outln!("group {} created", args.group);
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn delete(ctx: &Context, args: GroupName) -> Result<()> {
    let client = ctx.connect().await?;
    client.delete_group(&args.group).await?;
    if ctx.json {
        print_json(&json!({"group": args.group, "deleted": true}));
    } else {
        crate::outln!("group {} deleted", args.group);
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn join(ctx: &Context, args: GroupName, join: bool) -> Result<()> {
    let client = ctx.connect().await?;
    if join {
        client.join_group(&args.group).await?;
    } else {
        client.leave_group(&args.group).await?;
    }
    // The server's name for the session: a logged-in user's, whatever --name asked.
    let name = &client.session().name;
    if ctx.json {
        print_json(&json!({"group": args.group, "member": name, "joined": join}));
    } else if join {
        crate::outln!("{name} joined {}", args.group);
    } else {
        crate::outln!("{name} left {}", args.group);
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn members(ctx: &Context, args: GroupName) -> Result<()> {
    let client = ctx.connect().await?;
    let members = client.group_members(&args.group).await?;
    for member in &members {
        if ctx.json {
            print_json(&json!({"name": member.name.as_str(), "online": member.online}));
        } else {
            crate::outln!(
                "{}{}",
                shown(&member.name),
                if member.online { "  (online)" } else { "" }
            );
        }
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn post(ctx: &Context, args: PostArgs) -> Result<()> {
    let client = ctx.connect().await?;
    let ack = client.post(&args.group, Payload::text(&args.text)).await?;
    if ctx.json {
        print_json(&json!({"id": ack.id.to_string(), "seq": ack.seq, "group": args.group}));
    } else {
        crate::outln!("{} seq {} in {}", ack.id, ack.seq, args.group);
    }
    let _ = client.close().await;
    Ok(())
}

pub async fn history(ctx: &Context, args: GroupHistoryArgs) -> Result<()> {
    let since = since_of(args.since.as_deref())?;
    let client = ctx.connect().await?;
    let messages = client
        .group_messages(&args.group, since, args.limit)
        .await?;
    let _ = client.close().await;
    print_messages(ctx, &messages);
    Ok(())
}
