//! The browser console, served from assets embedded in the binary at build time (nothing
//! is fetched from elsewhere, and building the server needs no JavaScript tooling).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../console/index.html"),
    )
}
