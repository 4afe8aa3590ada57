//! The server: `GET /api/v1/stats` (its counters, by name), `POST /api/v1/admin/stop`
//! and `POST /api/v1/admin/reload` (admin sessions only, as over the protocol).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::Session;
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/admin/stop", post(stop))
        .route("/api/v1/admin/reload", post(reload))
}

async fn stats(Session(client): Session) -> Result<Json<BTreeMap<String, u64>>, ApiError> {
    let stats = client.stats().await?;
    Ok(Json(
        stats
            .stats
            .into_iter()
            .map(|stat| (stat.name.to_string(), stat.value))
            .collect(),
    ))
}

/// Answers 202: the server begins shutting down, and this listener with it.
async fn stop(Session(client): Session) -> Result<StatusCode, ApiError> {
    client.stop_server().await?;
    Ok(StatusCode::ACCEPTED)
}

async fn reload(Session(client): Session) -> Result<StatusCode, ApiError> {
    client.reload_server().await?;
    Ok(StatusCode::NO_CONTENT)
}
