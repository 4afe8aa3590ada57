//! The query string of a request as a list of pairs, so that a parameter may be given
//! more than once (`?pattern=news.*&pattern=%23rust`), with typed getters whose
//! failures are INVALID_ARGUMENT errors naming the parameter.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use switchboard_client::{ErrorCode, Since};

use crate::error::ApiError;

/// The decoded query parameters of a request, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

impl Params {
    pub(crate) fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The last value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether `name` is present, with or without a value (`?raw`).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| key == name)
    }

    /// `name` as a whole number.
    pub(crate) fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| invalid(format!("{name} takes a whole number, not {value:?}")))
            })
            .transpose()
    }

    /// `name` as a time: microseconds since the Unix epoch, or RFC 3339.
    pub(crate) fn time_us(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|value| parse_time_us(name, value))
            .transpose()
    }

    /// Where a history starts: `since_seq`, `since_time`, or from the oldest held.
    pub(crate) fn since(&self) -> Result<Since, ApiError> {
        match (self.number("since_seq")?, self.time_us("since_time")?) {
            (Some(_), Some(_)) => Err(invalid("give since_seq or since_time, not both")),
            (Some(seq), None) => Ok(Since::Seq(seq)),
            (None, Some(time)) => Ok(Since::Time(time)),
            (None, None) => Ok(Since::All),
        }
    }
}

/// A time given as microseconds since the Unix epoch or as RFC 3339.
pub(crate) fn parse_time_us(name: &str, value: &str) -> Result<u64, ApiError> {
    if let Ok(us) = value.parse() {
        return Ok(us);
    }
    let time = humantime::parse_rfc3339_weak(value).map_err(|_| {
        invalid(format!(
            "{name} takes microseconds since the Unix epoch or an RFC 3339 time, not {value:?}"
        ))
    })?;
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| invalid(format!("{name} is before 1970")))?;
    Ok(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
}

/// A time in microseconds since the Unix epoch, as RFC 3339 with microseconds.
pub(crate) fn rfc3339(time_us: u64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_micros(time_us);
    humantime::format_rfc3339_micros(time).to_string()
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_all_kept_in_order() {
        let params = Params::parse("pattern=news.*&pattern=%23rust&raw");
        assert_eq!(params.all("pattern"), ["news.*", "#rust"]);
        assert!(params.has("raw"));
        assert!(!params.has("limit"));
    }

    #[test]
    fn times_are_micros_or_rfc3339() {
        assert_eq!(parse_time_us("t", "1500").unwrap(), 1500);
        assert_eq!(
            parse_time_us("t", "1970-01-01T00:00:01.000002Z").unwrap(),
            1_000_002
        );
        assert_eq!(rfc3339(1_000_002), "1970-01-01T00:00:01.000002Z");
        assert!(parse_time_us("t", "yesterday").is_err());
    }

    #[test]
    fn since_takes_one_of_seq_and_time() {
        assert_eq!(Params::parse("since_seq=4").since().unwrap(), Since::Seq(4));
        assert_eq!(Params::parse("").since().unwrap(), Since::All);
        assert!(Params::parse("since_seq=4&since_time=5").since().is_err());
        assert!(Params::parse("since_seq=four").since().is_err());
    }
}
