//! `GET /api/v1/events?pattern=...`: a subscription as Server-Sent Events, one `message`
//! event per message, resumable with `Last-Event-ID`.
//!
//! A stream may cover many channels, whose sequence numbers are each their own, and the
//! hub has no order across channels to number events with. So an event's id is where
//! the stream stands: the newest seq delivered of each channel, plus the point from
//! which a new subscription replays ("t<µs>" once the stream is live: every message
//! stamped at or after it was delivered live; "s<seq>" or "l<n>" while the replay a
//! stream asked for is still arriving). Resuming subscribes again from that point and
//! skips, channel by channel, what is at or below the seq already delivered: no gap and
//! no duplicate, at the cost of an id that grows with the number of channels seen.
//!
//! Each stream has a session of its own (see `Gateway::dedicated_session`): a reader
//! that falls behind holds up its own session only, and closing the response ends the
//! subscription with it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use serde::Serialize;
use switchboard_client::{Client, ErrorCode, Replay, Subscription};

use super::params::{Params, invalid, now_us};
use super::peer_addr;
use super::view::MessageView;
use crate::AppState;
use crate::error::ApiError;
use crate::gateway::Credentials;

/// How often an idle stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Most patterns one stream takes.
const MAX_PATTERNS: usize = 64;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/events", get(events))
}

/// Where a stream stands, as carried by each event's id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    from: Replay,
    /// The newest seq delivered, per channel.
    delivered: BTreeMap<String, u64>,
}

impl Position {
    fn id(&self) -> String {
        let mut id = match self.from {
            Replay::SinceSeq(seq) => format!("s{seq}"),
            Replay::Last(count) => format!("l{count}"),
            Replay::SinceTime(time) => format!("t{time}"),
            _ => "t0".to_owned(),
        };
        for (channel, seq) in &self.delivered {
            id.push(' ');
            id.push_str(channel);
            id.push(':');
            id.push_str(&seq.to_string());
        }
        id
    }

    fn parse(id: &str) -> Result<Position, ApiError> {
        let bad = || invalid(format!("Last-Event-ID {id:?} is not an id of this stream"));
        let mut parts = id.split(' ');
        let from = parts.next().unwrap_or_default();
        let number = |text: &str| text.parse::<u64>().map_err(|_| bad());
        let from = match from.split_at_checked(1) {
            Some(("s", seq)) => Replay::SinceSeq(number(seq)?),
            Some(("l", count)) => Replay::Last(number(count)?),
            Some(("t", time)) => Replay::SinceTime(number(time)?),
            _ => return Err(bad()),
        };
        let mut delivered = BTreeMap::new();
        for entry in parts {
            let (channel, seq) = entry.rsplit_once(':').ok_or_else(bad)?;
            delivered.insert(channel.to_owned(), number(seq)?);
        }
        Ok(Position { from, delivered })
    }
}

/// The caller's credentials and address, for a session of the stream's own.
struct Caller(Credentials, std::net::SocketAddr, Option<String>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let last_event_id = parts
            .headers
            .get("last-event-id")
            .map(|value| {
                value
                    .to_str()
                    .map(str::to_owned)
                    .map_err(|_| invalid("Last-Event-ID is not text"))
            })
            .transpose()?;
        Ok(Caller(
            Credentials::from_parts(parts)?,
            peer_addr(parts),
            last_event_id,
        ))
    }
}

#[derive(Serialize)]
struct Subscribed<'a> {
    patterns: &'a [String],
    replay_count: u64,
}

async fn events(
    State(state): State<AppState>,
    Caller(credentials, addr, last_event_id): Caller,
    params: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patterns = params.all("pattern");
    if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
        return Err(invalid(format!(
            "an event stream takes 1 to {MAX_PATTERNS} pattern parameters, not {}",
            patterns.len()
        )));
    }
    let last_event_id = last_event_id.or_else(|| params.get("last_event_id").map(str::to_owned));
    let resumed = match last_event_id {
        Some(id) => Position::parse(&id)?,
        None => Position {
            from: asked_replay(&params)?,
            delivered: BTreeMap::new(),
        },
    };
    let client = state.gateway.dedicated_session(&credentials, addr).await?;
    // Taken before subscribing: every message stamped from now on reaches the
    // subscription live.
    let live_from = now_us();
    let mut builder = client.subscribe(patterns[0], resumed.from);
    for pattern in &patterns[1..] {
        builder = builder.pattern(pattern);
    }
    let subscription = builder.await?;
    let subscribed = Event::default().event("subscribed").json_data(Subscribed {
        patterns: subscription.patterns(),
        replay_count: subscription.replay_count(),
    });
    let subscribed =
        subscribed.map_err(|error| ApiError::new(ErrorCode::Internal, error.to_string()))?;
    let replay_left = subscription.replay_count();
    let stream = Streaming {
        client,
        subscription,
        skip: resumed.delivered.clone(),
        position: Position {
            // A stream that asked for no replay, or whose replay is empty, is live
            // from the time it subscribed.
            from: if replay_left == 0 {
                Replay::SinceTime(live_from)
            } else {
                resumed.from
            },
            delivered: resumed.delivered,
        },
        replay_left,
        live_from,
    };
    let stopping = state.hub.clone();
    let events = futures::stream::once(async move { Ok(subscribed) })
        .chain(futures::stream::unfold(Some(stream), next_event))
        .take_until(async move { stopping.shutting_down().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The replay a new stream asked for: `since_seq`, `since_time` or `last`.
fn asked_replay(params: &Params) -> Result<Replay, ApiError> {
    let asked = [
        params.number("since_seq")?.map(Replay::SinceSeq),
        params.time_us("since_time")?.map(Replay::SinceTime),
        params.number("last")?.map(Replay::Last),
    ];
    let mut asked = asked.into_iter().flatten();
    let replay = asked.next().unwrap_or(Replay::None);
    if asked.next().is_some() {
        return Err(invalid("give one of since_seq, since_time and last"));
    }
    Ok(replay)
}

/// A stream in progress.
struct Streaming {
    /// Kept so that the stream's session lives as long as the response.
    #[allow(dead_code)]
    client: Client,
    subscription: Subscription,
    /// What the stream resumed from had delivered already.
    skip: BTreeMap<String, u64>,
    position: Position,
    /// Replayed messages still to come; the stream is live when none are.
    replay_left: u64,
    live_from: u64,
}

async fn next_event(
    streaming: Option<Streaming>,
) -> Option<(Result<Event, Infallible>, Option<Streaming>)> {
    let mut streaming = streaming?;
    loop {
        let message = match streaming.subscription.next().await? {
            Ok(message) => message,
            Err(error) => {
                let error = ApiError::from(error);
                let event = Event::default()
                    .event("error")
                    .json_data(error.body())
                    .unwrap_or_else(|_| Event::default().event("error"));
                return Some((Ok(event), None));
            }
        };
        if message.is_replay() {
            streaming.replay_left = streaming.replay_left.saturating_sub(1);
            if streaming.replay_left == 0 {
                streaming.position.from = Replay::SinceTime(streaming.live_from);
            }
        }
        let channel = message.channel();
        if streaming
            .skip
            .get(channel)
            .is_some_and(|&seq| message.seq() <= seq)
        {
            continue;
        }
        let newest = streaming
            .position
            .delivered
            .entry(channel.to_owned())
            .or_default();
        *newest = (*newest).max(message.seq());
        let event = Event::default()
            .event("message")
            .id(streaming.position.id())
            .json_data(MessageView::of(&message))
            .unwrap_or_else(|_| Event::default().event("message"));
        return Some((Ok(event), Some(streaming)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_back_as_the_position_it_was_made_from() {
        let position = Position {
            from: Replay::SinceTime(1_700_000_000_000_000),
            delivered: [("news".to_owned(), 5), ("a:b,c".to_owned(), 12)]
                .into_iter()
                .collect(),
        };
        assert_eq!(Position::parse(&position.id()).unwrap(), position);
        assert_eq!(Position::parse("s4").unwrap().from, Replay::SinceSeq(4));
        assert!(Position::parse("x4").is_err());
        assert!(Position::parse("t4 news").is_err());
    }
}
