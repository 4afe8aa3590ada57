//! `GET /api/v1/openapi.json`: the API's description (OpenAPI 3.1), a file of this
//! crate embedded at build time; a test keeps it and the router in step.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

/// The OpenAPI document.
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
