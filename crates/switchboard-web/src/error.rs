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
    /// A status other than the code's own (411 for a body that needs its length).
    pub(crate) status: Option<StatusCode>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    /// The same error answered with `status`.
    pub(crate) fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = Some(status);
        self
    }

    /// The HTTP status that says what the code says.
    pub(crate) fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| status_of(self.code))
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
        ErrorCode::ServerBusy
        | ErrorCode::ShuttingDown
        | ErrorCode::StorageUnavailable
        | ErrorCode::BackplaneUnavailable
        | ErrorCode::BodyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
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
        // The server's own words, without the client's "server error CODE: " before them
        // (the code is a field of its own here).
        let message = error.to_string();
        let message = message
            .strip_prefix(&format!("server error {code}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        let retry_after = (code == ErrorCode::RateLimited)
            .then(|| retry_after_seconds(&message))
            .flatten();
        ApiError {
            retry_after,
            ..ApiError::new(code, message)
        }
    }
}

/// The wait a RATE_LIMITED refusal names, in whole seconds rounded up (at least 1).
///
/// The server ends every such message with "retry in N ms" (one function writes them
/// all); without it, no Retry-After is sent rather than a guess.
fn retry_after_seconds(message: &str) -> Option<u64> {
    let (_, rest) = message.rsplit_once("retry in ")?;
    let ms: u64 = rest.strip_suffix(" ms")?.trim().parse().ok()?;
    Some(ms.div_ceil(1000).max(1))
}

#[cfg(test)]
mod tests {
    use super::retry_after_seconds;

    #[test]
    fn the_wait_of_a_rate_limit_rounds_up_to_seconds() {
        let message = "publish rate of 1 per second (burst 1) reached; retry in 120 ms";
        assert_eq!(retry_after_seconds(message), Some(1));
        assert_eq!(retry_after_seconds("...; retry in 2001 ms"), Some(3));
        assert_eq!(retry_after_seconds("slow down"), None);
    }
}

/// The JSON body of an error.
#[derive(Serialize)]
pub(crate) struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: String,
    number: u16,
    message: &'a str,
}

impl ApiError {
    /// What the error says as JSON (also the data of an event stream's `error` event).
    pub(crate) fn body(&self) -> Body<'_> {
        Body {
            error: Detail {
                code: self.code.to_string(),
                number: self.code.as_u16(),
                message: &self.message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
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
