//! Errors of the HTTP API as JSON, with the protocol's error codes and the HTTP status
//! that says the same thing.
//!
//! A body is `{"error": {"code": "FORBIDDEN", "number": 106, "message": "..."}}`: `code`
//! and `number` are the binary protocol's (docs/PROTOCOL.md), so a client handles a
//! refusal the same way whichever door it came through.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchboard_client::{ClientError, ErrorCode, ErrorKind};

/// A refused or failed HTTP request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Seconds to wait before trying again (sent as Retry-After).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status that says what the code says.
    pub(crate) fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// The HTTP status of a protocol error code.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::AuthFailed | ErrorCode::SessionRequired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::ChannelRequired => StatusCode::NOT_FOUND,
        ErrorCode::AlreadyExists => StatusCode::CONFLICT,
        ErrorCode::TooLarge | ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ServerBusy | ErrorCode::ShuttingDown | ErrorCode::StorageUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::Internal | ErrorCode::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // Refusals of what was asked: invalid names, too many characters or receivers,
        // a hook's veto, a limit reached.
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> ApiError {
        let code = error.code().unwrap_or(match error.kind() {
            ErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
            ErrorKind::TooLarge => ErrorCode::TooLarge,
            ErrorKind::Timeout => ErrorCode::ServerBusy,
            _ => ErrorCode::Internal,
        });
        ApiError::new(code, error.to_string())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: String,
    number: u16,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code.to_string(),
                number: self.code.as_u16(),
                message: &self.message,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"switchboard\", Bearer"),
            );
        }
        response
    }
}
