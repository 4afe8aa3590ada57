//! Groups: the directory (`GET /api/v1/groups`), creating and deleting one, joining and
//! leaving (`POST .../join`, `POST .../leave`), its members, posting to it and its
//! history (`POST`/`GET /api/v1/groups/{name}/messages`).
//!
//! Membership belongs to the session's name, as for every client: a logged-in user's
//! name, or the gateway's session name for anonymous callers.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Session;
use super::body::JsonBody;
use super::messages::send;
use super::params::Params;
use super::view::{AckView, MessageView};
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/groups", get(list).post(create))
        .route("/api/v1/groups/{name}", axum::routing::delete(delete))
        .route("/api/v1/groups/{name}/join", post(join))
        .route("/api/v1/groups/{name}/leave", post(leave))
        .route("/api/v1/groups/{name}/members", get(members))
        .route("/api/v1/groups/{name}/messages", get(history).post(post_to))
}

#[derive(Debug, Serialize)]
struct GroupView {
    name: String,
    description: String,
    member_count: u64,
}

#[derive(Debug, Serialize)]
struct MemberView {
    name: String,
    online: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: String,
    #[serde(default)]
    description: String,
}

async fn list(Session(client): Session) -> Result<Json<Vec<GroupView>>, ApiError> {
    let groups = client.list_groups().await?;
    Ok(Json(
        groups
            .into_iter()
            .map(|group| GroupView {
                name: group.name.to_string(),
                description: group.description.to_string(),
                member_count: group.member_count,
            })
            .collect(),
    ))
}

async fn create(
    Session(client): Session,
    JsonBody(request): JsonBody<CreateGroup>,
) -> Result<StatusCode, ApiError> {
    client
        .create_group(&request.name, &request.description)
        .await?;
    Ok(StatusCode::CREATED)
}

async fn delete(
    Session(client): Session,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    client.delete_group(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn join(Session(client): Session, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    client.join_group(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn leave(Session(client): Session, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    client.leave_group(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    Session(client): Session,
    Path(name): Path<String>,
) -> Result<Json<Vec<MemberView>>, ApiError> {
    let members = client.group_members(&name).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|member| MemberView {
                name: member.name.to_string(),
                online: member.online,
            })
            .collect(),
    ))
}

async fn post_to(
    Session(client): Session,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AckView>), ApiError> {
    let ack = send(&client, &headers, body, |payload| {
        client.post(&group, payload)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(AckView::of(&group, &ack))))
}

/// The group's history from `since_seq` or `since_time`; with `limit`, the first that
/// many from there, or the newest that many when no start is given (as for channels).
async fn history(
    Session(client): Session,
    Path(group): Path<String>,
    params: Params,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let since = params.since()?;
    let limit = params.number("limit")?;
    let messages = client.group_messages(&group, since, limit).await?;
    Ok(Json(messages.iter().map(MessageView::of).collect()))
}
