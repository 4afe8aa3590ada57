//! Parsing `--since`: a sequence number, or a time given as RFC 3339, as HH:MM:SS (today,
//! UTC), or as an age such as `10m`.

use anyhow::{Result, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What `--since` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SincePoint {
    Seq(u64),
    /// Microseconds since the Unix epoch.
    Time(u64),
}

fn micros(time: OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1000).unwrap_or(0)
}

pub fn parse(text: &str) -> Result<SincePoint> {
    let text = text.trim();
    if let Ok(seq) = text.parse::<u64>() {
        return Ok(SincePoint::Seq(seq));
    }
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(SincePoint::Time(micros(time)));
    }
    if let Some(time) = parse_clock(text) {
        return Ok(SincePoint::Time(time));
    }
    if let Ok(age) = humantime::parse_duration(text) {
        let now = OffsetDateTime::now_utc();
        return Ok(SincePoint::Time(micros(now).saturating_sub(
            u64::try_from(age.as_micros()).unwrap_or(u64::MAX),
        )));
    }
    bail!(
        "cannot read --since {text:?}: give a sequence number, an RFC 3339 time, HH:MM:SS (today, UTC) or an age such as 10m"
    )
}

/// HH:MM or HH:MM:SS today, UTC.
fn parse_clock(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let hour: u8 = parts[0].parse().ok()?;
    let minute: u8 = parts[1].parse().ok()?;
    let second: u8 = match parts.get(2) {
        Some(second) => second.parse().ok()?,
        None => 0,
    };
    let today = OffsetDateTime::now_utc().date();
    let time = time::Time::from_hms(hour, minute, second).ok()?;
    Some(micros(today.with_time(time).assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_sequence_numbers() {
        assert_eq!(parse("42").unwrap(), SincePoint::Seq(42));
    }

    #[test]
    fn times_in_every_form() {
        assert_eq!(
            parse("2026-01-02T03:04:05Z").unwrap(),
            SincePoint::Time(1_767_323_045_000_000)
        );
        assert!(matches!(parse("12:30:00").unwrap(), SincePoint::Time(_)));
        let SincePoint::Time(ago) = parse("10m").unwrap() else {
            panic!("an age is a time");
        };
        let now = micros(OffsetDateTime::now_utc());
        assert!(now - ago >= 600_000_000 && now - ago < 660_000_000);
        assert!(parse("yesterday-ish").is_err());
    }
}
