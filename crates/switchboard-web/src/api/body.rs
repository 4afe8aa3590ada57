//! Request bodies that become messages. A body up to the server's frame limit is
//! buffered and sent in one frame; a larger one is streamed into the publish as it
//! arrives, which needs its length up front: without a Content-Length, a body over one
//! frame is refused with 411 Length Required.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use switchboard_client::{ErrorCode, OCTET_STREAM, ServerLimits};
use tokio_util::io::StreamReader;

use crate::error::ApiError;

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A request body on its way to the hub.
pub(crate) enum Upload {
    /// Read whole: it fits in one frame.
    Buffered(Bytes),
    /// Read while it is sent, `len` bytes as the request announced.
    Streamed {
        reader: StreamReader<ByteStream, Bytes>,
        len: u64,
    },
}

/// The message's content type: the request's, or `application/octet-stream`.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| OCTET_STREAM.to_owned())
}

/// Takes a request's body as a buffered or a streamed upload within `limits`.
pub(crate) async fn upload(
    headers: &HeaderMap,
    body: Body,
    limits: ServerLimits,
) -> Result<Upload, ApiError> {
    let length = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| super::params::invalid("Content-Length is not a number"))?,
        ),
    };
    if let Some(len) = length {
        if len > limits.max_body {
            return Err(too_large(len, limits.max_body));
        }
        if len > u64::from(limits.max_frame) {
            let stream: ByteStream =
                Box::pin(body.into_data_stream().map_err(std::io::Error::other));
            return Ok(Upload::Streamed {
                reader: StreamReader::new(stream),
                len,
            });
        }
    }
    let max = limits.max_frame as usize;
    let mut buffered = BytesMut::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| {
            super::params::invalid(format!("the request body could not be read: {error}"))
        })?;
        if buffered.len() + chunk.len() > max {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "a body over {max} bytes is streamed to the hub and needs a Content-Length"
                ),
            )
            .with_status(StatusCode::LENGTH_REQUIRED));
        }
        buffered.extend_from_slice(&chunk);
    }
    Ok(Upload::Buffered(buffered.freeze()))
}

fn too_large(len: u64, max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("a body of {len} bytes is over the server's limit of {max} bytes"),
    )
}

/// A JSON request body; one that cannot be read is a 400 in the API's error format.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(super::params::invalid(rejection.body_text())),
        }
    }
}
