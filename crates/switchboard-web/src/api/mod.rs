//! `/api/v1`: the HTTP API, one module per area, each handler serving its request
//! through the caller's gateway session (see `gateway`).

mod identity;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use switchboard_client::Client;

use crate::AppState;
use crate::error::ApiError;
use crate::gateway::Credentials;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().merge(identity::routes())
}

/// The protocol session that serves a request: the caller's, logged in with the
/// request's credentials. Extracting it is what authenticates a request.
pub(crate) struct Session(pub(crate) Client);

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credentials = Credentials::from_headers(&parts.headers)?;
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let client = state.gateway.session(&credentials, addr).await?;
        Ok(Session(client))
    }
}
