//! A channel's messages: `POST /api/v1/channels/{name}/messages` publishes the request
//! body as a message, `GET .../messages` reads the history, `GET .../messages/latest`
//! and `GET .../messages/{id}` one message.
//!
//! One message comes as JSON metadata with its body inlined (see `view`), or, with
//! `?raw`, as the body itself with the message's content type (the message's seq, id and
//! time in `Switchboard-*` headers). `?raw` rather than content negotiation because
//! browsers and `curl` send `Accept: */*`, which says nothing either way.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use switchboard_client::{Client, ErrorCode, Payload, PublishAck, PublishBuilder, ReceivedMessage};
use uuid::Uuid;

use super::Session;
use super::body::{Upload, content_type, upload};
use super::params::{Params, invalid};
use super::view::{AckView, MessageView};
use crate::AppState;
use crate::error::ApiError;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/channels/{name}/messages",
            get(history).post(publish),
        )
        .route("/api/v1/channels/{name}/messages/latest", get(latest))
        .route("/api/v1/channels/{name}/messages/{id}", get(by_id))
}

async fn publish(
    Session(client): Session,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AckView>), ApiError> {
    let ack = send(&client, &headers, body, |payload| {
        client.publish(&channel, payload)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(AckView::of(&channel, &ack))))
}

/// Sends the request body through the builder `to` makes (a publish or a group post),
/// buffered or streamed, with the request's content type.
pub(super) async fn send<'a>(
    client: &Client,
    headers: &HeaderMap,
    body: Body,
    to: impl FnOnce(Payload) -> PublishBuilder<'a>,
) -> Result<PublishAck, ApiError> {
    let content_type = content_type(headers);
    let with_headers = |mut builder: PublishBuilder<'a>| {
        for (name, value) in message_headers(headers) {
            builder = builder.header(name, value);
        }
        builder
    };
    let ack = match upload(headers, body, client.session().limits).await? {
        Upload::Buffered(bytes) => {
            with_headers(to(Payload::with_content_type(content_type.as_str(), bytes))).await?
        }
        Upload::Streamed { reader, len } => {
            with_headers(to(Payload::default()))
                .content_type(content_type.as_str())
                .stream_from(reader, len)
                .await?
        }
    };
    Ok(ack)
}

/// Request headers that become the message's own: `Switchboard-Header-NAME: VALUE` gives
/// the header NAME (lower case, as HTTP header names are case-insensitive).
fn message_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix(HEADER_PREFIX)?;
            Some((name.to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// The prefix of the HTTP headers that carry a message's headers, both ways.
const HEADER_PREFIX: &str = "switchboard-header-";

async fn history(
    Session(client): Session,
    Path(channel): Path<String>,
    params: Params,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let messages = client
        .get_messages(&channel, params.since()?, params.number("limit")?)
        .await?;
    Ok(Json(messages.iter().map(MessageView::of).collect()))
}

async fn latest(
    Session(client): Session,
    Path(channel): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let message = client.get_message(&channel, None).await?;
    one(message, &params, || {
        format!("channel {channel} has no message")
    })
}

async fn by_id(
    Session(client): Session,
    Path((channel, id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| invalid(format!("{id:?} is not a message id (a UUID)")))?;
    let message = client.get_message(&channel, Some(id)).await?;
    one(message, &params, || {
        format!("channel {channel} holds no message {id}")
    })
}

/// One message as JSON, or raw with `?raw`.
fn one(
    message: Option<ReceivedMessage>,
    params: &Params,
    missing: impl FnOnce() -> String,
) -> Result<Response, ApiError> {
    let message = message.ok_or_else(|| ApiError::new(ErrorCode::NotFound, missing()))?;
    if params.has("raw") {
        Ok(raw(message))
    } else {
        Ok(Json(MessageView::of(&message)).into_response())
    }
}

/// The body itself, with the message's content type; a streamed body is passed on as
/// it arrives.
fn raw(message: ReceivedMessage) -> Response {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("switchboard-channel", message.channel().to_owned());
    put("switchboard-seq", message.seq().to_string());
    put("switchboard-id", message.id().to_string());
    put("switchboard-time-us", message.time_us().to_string());
    put("content-type", message.content_type().to_owned());
    for (name, value) in message.headers() {
        let name = HeaderName::try_from(format!("{HEADER_PREFIX}{name}"));
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(message.body_len()),
    );
    let body = if message.is_streamed() {
        let reader = message.body_reader();
        Body::from_stream(tokio_util::io::ReaderStream::new(reader))
    } else {
        Body::from(message.body().clone())
    };
    (headers, body).into_response()
}
