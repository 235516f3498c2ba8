//! `/api/v1/events`: the switch's events as server-sent events (see [`crate::events`] for the
//! types, the hub and the rate bound; this is the stream's I/O around them).

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, Problem, PROBLEM_JSON};
use super::extract::Q;
use super::AppState;
use crate::events::{
    sse, Event, Limiter, Message, Subscription, TypeFilter, KEEPALIVE, MAX_STREAMS, SSE_KEEPALIVE,
};

/// The query of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only these types, comma-separated (`mac_moved,link`); all when absent. A `summary` is
    /// sent whenever one is due, whatever the filter.
    pub types: Option<String>,
}

/// Follow the switch's events (server-sent events).
///
/// `text/event-stream`, one message per event: `id: N` (the message's number on this
/// stream, from 1), `event: TYPE`, `data: JSON` (one line), then a blank line. Types and their
/// fields: `mac_learned`, `mac_aged`, `mac_limit`, `mac_not_allowed`, `port_shutdown`
/// `{vlan, mac, port}`; `mac_moved` `{vlan, mac, from, to, flapping}`; `link` `{port, up}`;
/// `config_applied` `{changes: [{what, name, field, old, new}]}`; `port_error`
/// `{port, reason}`; `drops` `{port, reason, frames}` every 5 s for the counts that grew;
/// `summary` `{suppressed: {TYPE: N}, lost: N}`.
///
/// A stream sends at most 100 events a second; the rest of that second are counted by type
/// and sent as one `summary` when the second ends, with the events lost on the way (the
/// workers' rings overflowed, or this stream fell behind by more than the hub holds). A
/// comment `: keepalive` comes every 15 s (the first at once). The stream lasts until the
/// client closes it or switchd stops; the request timeout bounds only the time to its head.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "the event stream",
            example = "id: 1\nevent: mac_moved\ndata: {\"vlan\":10,\"mac\":\"02:00:00:00:00:01\",\"from\":\"vm1\",\"to\":\"vm2\",\"flapping\":false}\n\n"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, or an unknown event type in `types`"),
        (status = 503, body = Problem, content_type = PROBLEM_JSON,
            description = "too many event streams are open (16), or switchd is stopping"),
    ))]
pub(super) async fn events(
    State(st): State<AppState>,
    Q(q): Q<EventsQuery>,
) -> ApiResult<Response> {
    let filter = TypeFilter::parse(q.types.as_deref().unwrap_or_default()).map_err(|name| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown event type {name:?}; the types are {}",
                crate::events::EventType::ALL.map(|t| t.name()).join(", ")
            ),
        )
        .field("types")
    })?;
    if st.events.streams() >= MAX_STREAMS {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already; close one and retry"),
        ));
    }
    let Some(sub) = st.events.subscribe() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "switchd is stopping",
        ));
    };
    let stream = Stream::new(sub, filter);
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|chunk| (Ok::<_, Infallible>(chunk), s))
    });
    let mut r = Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and the like: pass each message on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// One open stream.
struct Stream {
    sub: Subscription,
    filter: TypeFilter,
    limiter: Limiter,
    keepalive: tokio::time::Interval,
    /// The last message's number.
    id: u64,
}

/// Now, by tokio's clock (which tests can stop and move), as the limiter takes it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Stream {
    fn new(sub: Subscription, filter: TypeFilter) -> Stream {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Stream {
            sub,
            filter,
            limiter: Limiter::new(now()),
            keepalive,
            id: 0,
        }
    }

    fn message(&mut self, out: &mut String, kind: crate::events::EventType, data: &str) {
        self.id += 1;
        out.push_str(&sse(self.id, kind, data));
    }

    fn summary(&mut self, out: &mut String, s: Option<Event>) {
        if let Some(s) = s {
            self.message(out, s.kind(), &s.data());
        }
    }

    /// The next bytes to send; `None` when the stream ends (the hub closed).
    async fn next(&mut self) -> Option<String> {
        enum Woke {
            Closed,
            Received(Result<Message, RecvError>),
            SummaryDue,
            Keepalive,
        }
        loop {
            let due = self.limiter.due().map(tokio::time::Instant::from_std);
            let woke = tokio::select! {
                // Closing ends the stream at once, whatever is still queued (switchd stops).
                biased;
                _ = self.sub.closed.wait_for(|closed| *closed) => Woke::Closed,
                r = self.sub.events.recv() => Woke::Received(r),
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)),
                    if due.is_some() => Woke::SummaryDue,
                _ = self.keepalive.tick() => Woke::Keepalive,
            };
            let mut out = String::new();
            match woke {
                Woke::Closed | Woke::Received(Err(RecvError::Closed)) => return None,
                Woke::Received(Ok(Message::Event(p))) => {
                    if !self.filter.allows(p.kind) {
                        continue;
                    }
                    let (s, send) = self.limiter.offer(p.kind, now());
                    self.summary(&mut out, s);
                    if send {
                        self.message(&mut out, p.kind, &p.data);
                    }
                }
                Woke::Received(Ok(Message::Lost(n)) | Err(RecvError::Lagged(n))) => {
                    let s = self.limiter.lose(n, now());
                    self.summary(&mut out, s);
                }
                Woke::SummaryDue => {
                    let s = self.limiter.poll(now());
                    self.summary(&mut out, s);
                }
                Woke::Keepalive => out.push_str(SSE_KEEPALIVE),
            }
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}
