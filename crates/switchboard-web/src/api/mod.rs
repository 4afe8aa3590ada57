//! `/api/v1`: the HTTP API, one module per area, each handler serving its request
//! through the caller's gateway session (see `gateway`).
//!
//! * `identity`: who the caller is;
//! * `messages`: publishing to a channel, the latest message, one by id, history;
//! * `channels`: the channel list, creating and deleting channels;
//! * `tags`: the latest messages carrying a hashtag;
//! * `groups`: the group directory, membership, posts and history;
//! * `clients`: the connected clients and relaying a body to some of them;
//! * `admin`: the server's counters, stopping it and reloading its configuration;
//! * `events`: Server-Sent Events, a subscription as an HTTP response;
//! * `openapi`: the API's description, embedded;
//! * `params`: the query string, with repeatable parameters;
//! * `view`: messages as JSON, text as text and binary as base64;
//! * `body`: request bodies, buffered or streamed into a publish.

mod admin;
mod body;
mod channels;
mod clients;
mod events;
mod groups;
mod identity;
mod messages;
mod openapi;
mod params;
mod tags;
mod view;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use switchboard_client::{Client, ErrorCode};

use crate::AppState;
use crate::error::ApiError;
use crate::gateway::Credentials;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .merge(identity::routes())
        .merge(messages::routes())
        .merge(channels::routes())
        .merge(tags::routes())
        .merge(groups::routes())
        .merge(clients::routes())
        .merge(admin::routes())
        .merge(events::routes())
        .merge(openapi::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// A known path asked with a method it does not take: a JSON 405.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!("{} does not take {method}", uri.path()),
    )
    .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}

/// Every path not routed: a JSON 404 in the API's error format.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such path: {}", uri.path()))
}

/// The protocol session that serves a request: the caller's, logged in with the
/// request's credentials. Extracting it is what authenticates a request.
pub(crate) struct Session(pub(crate) Client);

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials = Credentials::from_parts(parts)?;
        let client = state
            .gateway
            .session(&credentials, peer_addr(parts))
            .await?;
        Ok(Session(client))
    }
}

/// The address of the client that sent the request.
pub(crate) fn peer_addr(parts: &Parts) -> SocketAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
}
