//! `GET /api/v1/identity`: who the caller is, as the hub sees the session serving it.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::Session;
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/identity", get(identity))
}

#[derive(Serialize)]
struct IdentityReply {
    client_id: u64,
    name: String,
    user: Option<String>,
    session_id: String,
    connected_since_us: u64,
}

async fn identity(Session(client): Session) -> Result<Json<IdentityReply>, ApiError> {
    let identity = client.identity().await?;
    Ok(Json(IdentityReply {
        client_id: identity.client_id,
        name: identity.name.to_string(),
        user: client.session().user.clone(),
        session_id: identity.session_id.to_string(),
        connected_since_us: identity.connected_since_us,
    }))
}
