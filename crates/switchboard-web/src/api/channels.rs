//! Channels: `GET /api/v1/channels` (the list), `POST /api/v1/channels` (create, with
//! options), `GET /api/v1/channels/{name}` (one) and `DELETE /api/v1/channels/{name}`.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchboard_client::{ChannelInfo, ChannelOptions, Durability, ErrorCode, SlowConsumerPolicy};

use super::Session;
use super::body::JsonBody;
use super::params::invalid;
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/channels", get(list).post(create))
        .route("/api/v1/channels/{name}", get(one).delete(delete))
}

/// A channel as the API returns it.
#[derive(Debug, Serialize)]
struct ChannelView {
    name: String,
    message_count: u64,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
    options: OptionsView,
}

/// A channel's options, as given to create one and as returned (defaults filled in).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_chars: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_total_bytes: Option<u64>,
    /// "disconnect" or "drop_oldest".
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_consumer: Option<String>,
    /// "memory", "never", "interval" or "always".
    #[serde(skip_serializing_if = "Option::is_none")]
    durability: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateChannel {
    name: String,
    #[serde(default)]
    options: OptionsView,
}

impl ChannelView {
    fn of(info: &ChannelInfo) -> ChannelView {
        let options = &info.options;
        ChannelView {
            name: info.name.to_string(),
            message_count: info.message_count,
            first_seq: info.first_seq,
            last_seq: info.last_seq,
            bytes: info.bytes,
            options: OptionsView {
                history: options.history,
                max_bytes: options.max_bytes,
                max_chars: options.max_chars,
                max_age_ms: options.max_age_ms,
                max_total_bytes: options.max_total_bytes,
                slow_consumer: options.slow_consumer.map(|policy| {
                    match policy {
                        SlowConsumerPolicy::DropOldest => "drop_oldest",
                        _ => "disconnect",
                    }
                    .to_owned()
                }),
                durability: options.durability.map(|durability| {
                    match durability {
                        Durability::Memory => "memory",
                        Durability::Never => "never",
                        Durability::Always => "always",
                        _ => "interval",
                    }
                    .to_owned()
                }),
            },
        }
    }
}

impl OptionsView {
    fn options(&self) -> Result<ChannelOptions, ApiError> {
        let slow_consumer = match self.slow_consumer.as_deref() {
            None => None,
            Some("disconnect") => Some(SlowConsumerPolicy::Disconnect),
            Some("drop_oldest") => Some(SlowConsumerPolicy::DropOldest),
            Some(other) => {
                return Err(invalid(format!(
                    "slow_consumer is \"disconnect\" or \"drop_oldest\", not {other:?}"
                )));
            }
        };
        let durability = match self.durability.as_deref() {
            None => None,
            Some("memory") => Some(Durability::Memory),
            Some("never") => Some(Durability::Never),
            Some("interval") => Some(Durability::Interval),
            Some("always") => Some(Durability::Always),
            Some(other) => {
                return Err(invalid(format!(
                    "durability is \"memory\", \"never\", \"interval\" or \"always\", not {other:?}"
                )));
            }
        };
        Ok(ChannelOptions {
            history: self.history,
            max_bytes: self.max_bytes,
            max_chars: self.max_chars,
            max_age_ms: self.max_age_ms,
            max_total_bytes: self.max_total_bytes,
            slow_consumer,
            durability,
        })
    }
}

async fn list(Session(client): Session) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let channels = client.list_channels().await?;
    Ok(Json(channels.iter().map(ChannelView::of).collect()))
}

async fn create(
    Session(client): Session,
    JsonBody(request): JsonBody<CreateChannel>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let info = client
        .create_channel(&request.name, request.options.options()?)
        .await?;
    Ok((StatusCode::CREATED, Json(ChannelView::of(&info))))
}

async fn one(
    Session(client): Session,
    Path(name): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    let channels = client.list_channels().await?;
    channels
        .iter()
        .find(|info| info.name == name.as_str())
        .map(|info| Json(ChannelView::of(info)))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no channel {name}")))
}

async fn delete(
    Session(client): Session,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    client.delete_channel(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
