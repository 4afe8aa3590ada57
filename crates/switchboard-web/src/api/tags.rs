//! `GET /api/v1/tags/{tag}/messages`: the latest messages carrying a hashtag, on every
//! channel the caller may read, oldest first.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use switchboard_client::Since;

use super::Session;
use super::params::Params;
use super::view::MessageView;
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/tags/{tag}/messages", get(tagged))
}

async fn tagged(
    Session(client): Session,
    Path(tag): Path<String>,
    params: Params,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let messages = client
        .tag_messages(&tag, Since::All, params.number("limit")?)
        .await?;
    Ok(Json(messages.iter().map(MessageView::of).collect()))
}
