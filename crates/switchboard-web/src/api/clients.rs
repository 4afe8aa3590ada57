//! Clients: `GET /api/v1/clients` (the connected clients but the caller's session) and
//! `POST /api/v1/relay?to=ID&to=ID` (the request body relayed to those clients, with
//! its content type; one outcome per receiver).

use axum::body::Body;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::Session;
use super::body::{Upload, content_type, upload};
use super::params::{Params, invalid, rfc3339};
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clients", get(list))
        .route("/api/v1/relay", post(relay))
}

#[derive(Debug, Serialize)]
struct ClientView {
    client_id: u64,
    name: String,
    connected_since_us: u64,
    connected_since: String,
}

#[derive(Debug, Serialize)]
struct OutcomeView {
    client_id: u64,
    /// "delivered", "unknown" or "dropped".
    status: String,
}

async fn list(Session(client): Session) -> Result<Json<Vec<ClientView>>, ApiError> {
    let clients = client.list_clients().await?;
    Ok(Json(
        clients
            .into_iter()
            .map(|info| ClientView {
                client_id: info.client_id,
                name: info.name.to_string(),
                connected_since_us: info.connected_since_us,
                connected_since: rfc3339(info.connected_since_us),
            })
            .collect(),
    ))
}

async fn relay(
    Session(client): Session,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<OutcomeView>>, ApiError> {
    let mut receivers = Vec::new();
    for value in params
        .all("to")
        .into_iter()
        .flat_map(|list| list.split(','))
    {
        let id = value
            .trim()
            .parse()
            .map_err(|_| invalid(format!("to takes client ids, not {value:?}")))?;
        receivers.push(id);
    }
    // A relay is one frame: a body that would be streamed is over its limit.
    let Upload::Buffered(body) = upload(&headers, body, client.session().limits).await? else {
        return Err(ApiError::new(
            switchboard_client::ErrorCode::TooLarge,
            format!(
                "a relayed body fits in one frame ({} bytes)",
                client.session().limits.max_frame
            ),
        ));
    };
    let outcomes = client
        .relay(&receivers, body, &content_type(&headers))
        .await?;
    Ok(Json(
        outcomes
            .into_iter()
            .map(|outcome| OutcomeView {
                client_id: outcome.client_id,
                status: outcome.status.name().to_owned(),
            })
            .collect(),
    ))
}
