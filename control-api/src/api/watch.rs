//! `/api/v1/ports/{name}/capture` (a pcapng stream of what a port carries) and
//! `/api/v1/ports/{name}/trace` (live trace: the decisions the workers take for the port's
//! next frames). Both arm a watch on the port ([`dataplane::watch`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dataplane::watch::{Armed, Capture, Direction, Filter, Watch};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, Problem, PROBLEM_JSON};
use super::extract::Q;
use super::AppState;
use crate::edit::EditError;
use crate::pcapng;
use crate::topology::MacAddr;
use crate::watch::{Live, Recorded, MAX_COUNT};

/// The media type of a capture.
pub const PCAPNG: &str = "application/x-pcapng";
/// Longest frame kept whole: a GSO super-frame's 64 KiB and its headers.
pub const MAX_SNAPLEN: u32 = 65_600;
/// Memory a capture's buffers may take; their number is this over the snaplen (64-4096).
const CAPTURE_MEMORY: usize = 8 << 20;
/// How often a capture stream looks for new frames.
const CAPTURE_POLL: Duration = Duration::from_millis(10);
/// Longest a live-trace read waits for its frames.
pub const MAX_WAIT_SECS: u64 = 8;

/// Which frames of the port a capture takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureDirection {
    /// Frames the port receives.
    Rx,
    /// Frames the port sends.
    Tx,
    /// Both, as two interfaces of the pcapng stream (`PORT rx` and `PORT tx`).
    #[default]
    Both,
}

/// What `GET /api/v1/ports/{name}/capture` captures.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CaptureQuery {
    /// Stop after this many frames (default: no limit).
    pub count: Option<u64>,
    /// Stop after this many seconds (default: no limit; without either, the capture runs
    /// until the client goes away).
    pub seconds: Option<u64>,
    /// Bytes kept of each frame, 14-65600 (default 65600: whole frames, GSO super-frames too).
    pub snaplen: Option<u32>,
    /// `rx`, `tx` or `both` (default).
    pub direction: Option<CaptureDirection>,
}

/// Capture a port's frames as a pcapng stream.
///
/// The frames the port receives and sends, as the port carries them (with the 802.1Q tag
/// they have on that port; GSO super-frames whole, as one frame). Readable while it streams:
/// `switchctl capture vm1 -c 100 | tcpdump -nr -`. A reader that falls behind loses frames
/// (never slows forwarding); the stream ends with interface statistics blocks whose
/// `isb_ifdrop` counts them. Ends after `count` frames, after `seconds`, when the port is
/// removed, or when the client goes away.
#[utoipa::path(get, path = "/api/v1/ports/{name}/capture", tag = "troubleshooting",
    params(("name" = String, Path, description = "port name"), CaptureQuery),
    responses(
        (status = 200, content_type = "application/x-pcapng", body = String,
            description = "a pcapng stream: section header, one interface per direction, \
                           the frames, then interface statistics"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, a value of the wrong type"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such port"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "count 0, or snaplen out of 14-65600"),
    ))]
pub(super) async fn capture(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Q(q): Q<CaptureQuery>,
) -> ApiResult<Response> {
    let snaplen = q.snaplen.unwrap_or(MAX_SNAPLEN);
    if !(14..=MAX_SNAPLEN).contains(&snaplen) {
        let e = format!("{snaplen}: keep 14-{MAX_SNAPLEN} bytes of each frame");
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e).field("snaplen"));
    }
    if q.count == Some(0) {
        let e = "0 frames: ask for at least one, or leave count out";
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e).field("count"));
    }
    let dir = q.direction.unwrap_or_default();
    let (rx, tx) = (dir != CaptureDirection::Tx, dir != CaptureDirection::Rx);
    let depth = (CAPTURE_MEMORY / snaplen as usize).clamp(64, 4096);
    let cap = Arc::new(Capture::new(rx, tx, snaplen as usize, q.count, depth));
    let watch = Watch::Capture(cap.clone());
    let port = name.clone();
    let armed = st
        .with_ctl(move |ctl| {
            ctl.switch()
                .arm(&port, watch)
                .ok_or_else(|| ApiError::from(EditError::NoSuchPort(port)).field("name"))
        })
        .await?;
    let stream = CaptureStream {
        armed,
        cap,
        port: name,
        dirs: [rx, tx],
        seen: [0; 2],
        deadline: q.seconds.map(|s| Instant::now() + Duration::from_secs(s)),
        snaplen,
        state: Stage::Header,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, CaptureStream::next));
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PCAPNG));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Frames,
    Done,
}

/// A capture being streamed; dropping it (the client went away) disarms it.
struct CaptureStream {
    armed: Armed,
    cap: Arc<Capture>,
    port: String,
    /// Directions captured: rx, tx.
    dirs: [bool; 2],
    /// Frames streamed per direction.
    seen: [u64; 2],
    deadline: Option<Instant>,
    snaplen: u32,
    state: Stage,
}

impl CaptureStream {
    /// The pcapng interface id of direction `d`: rx is 0, tx is 1 (0 when alone).
    fn iface(&self, d: Direction) -> u32 {
        match d {
            Direction::Rx => 0,
            Direction::Tx => u32::from(self.dirs[0]),
        }
    }

    /// Appends the frames captured so far (up to about 256 KiB of them).
    fn drain(&mut self, out: &mut Vec<u8>) {
        while out.len() < 256 << 10 {
            let Some(c) = self.cap.next() else {
                break;
            };
            pcapng::packet(out, self.iface(c.dir), c.at_ns, c.len, &c.data);
            self.seen[c.dir as usize] += 1;
            self.cap.recycle(c.data);
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        let mut out = Vec::new();
        match self.state {
            Stage::Done => return None,
            Stage::Header => {
                pcapng::section_header(&mut out, "vlanswitch");
                for (d, on) in ["rx", "tx"].iter().zip(self.dirs) {
                    if on {
                        pcapng::interface(&mut out, &format!("{} {d}", self.port), self.snaplen);
                    }
                }
                self.state = Stage::Frames;
                return Some((Ok(out.into()), self));
            }
            Stage::Frames => {}
        }
        loop {
            self.drain(&mut out);
            if !out.is_empty() {
                return Some((Ok(out.into()), self));
            }
            let timed_out = self.deadline.is_some_and(|d| Instant::now() >= d);
            if self.cap.is_complete() || timed_out || self.armed.is_gone() {
                // Complete means every captured frame is queued; a timeout or a port gone
                // may leave a worker halfway through one, given a moment here.
                if !self.cap.is_complete() {
                    tokio::time::sleep(CAPTURE_POLL).await;
                }
                self.drain(&mut out);
                self.finish(&mut out);
                return Some((Ok(out.into()), self));
            }
            tokio::time::sleep(CAPTURE_POLL).await;
        }
    }

    /// The statistics blocks that end the stream: frames captured and lost per direction.
    fn finish(&mut self, out: &mut Vec<u8>) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        for d in [Direction::Rx, Direction::Tx] {
            if !self.dirs[d as usize] {
                continue;
            }
            let (seen, lost) = (self.seen[d as usize], self.cap.lost(d));
            let why = if self.armed.is_gone() {
                "; the port was removed"
            } else {
                ""
            };
            let comment =
                format!("{seen} frames captured, {lost} lost because the reader was behind{why}");
            pcapng::statistics(out, self.iface(d), at, seen, lost, &comment);
        }
        self.state = Stage::Done;
    }
}

/// What a live trace records.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ArmQuery {
    /// Frames to record, 1-1000 (default 10).
    pub count: Option<usize>,
    /// Only frames from this source MAC.
    #[param(value_type = Option<String>)]
    pub src: Option<MacAddr>,
    /// Only frames to this destination MAC.
    #[param(value_type = Option<String>)]
    pub dst: Option<MacAddr>,
    /// Only frames in this VLAN.
    pub vlan: Option<u16>,
}

/// How long a live-trace read waits.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Wait up to this many seconds (at most 8) for the trace to complete before answering.
    pub wait_secs: Option<u64>,
}

/// A port's live trace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveTraceView {
    /// The port.
    pub port: String,
    /// Still recording.
    pub armed: bool,
    /// Frames asked for.
    pub count: usize,
    /// Frames still to record.
    pub remaining: u64,
    /// Only frames from this source MAC.
    #[schema(value_type = Option<String>)]
    pub src: Option<MacAddr>,
    /// Only frames to this destination MAC.
    #[schema(value_type = Option<String>)]
    pub dst: Option<MacAddr>,
    /// Only frames in this VLAN.
    pub vlan: Option<u16>,
    /// The frames recorded, oldest first.
    pub records: Vec<Recorded>,
}

impl LiveTraceView {
    fn of(port: &str, l: &Live) -> Self {
        let f = l.filter();
        LiveTraceView {
            port: port.to_string(),
            armed: l.is_armed(),
            count: l.count,
            remaining: l.remaining(),
            src: f.src,
            dst: f.dst,
            vlan: f.vlan,
            records: l.records.clone(),
        }
    }
}

/// Arm a live trace on a port.
///
/// The next `count` frames the port receives that match the filter are recorded with the
/// decision the worker actually took (and what became of each copy), replacing any earlier
/// live trace of the port. Read them with `GET`.
#[utoipa::path(post, path = "/api/v1/ports/{name}/trace", tag = "troubleshooting",
    params(("name" = String, Path, description = "port name"), ArmQuery),
    responses(
        (status = 201, body = LiveTraceView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, a value of the wrong type"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such port"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "count out of 1-1000, or a VLAN out of 1-4094"),
    ))]
pub(super) async fn arm_trace(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Q(q): Q<ArmQuery>,
) -> ApiResult<Response> {
    let count = q.count.unwrap_or(10);
    if !(1..=MAX_COUNT).contains(&count) {
        let e = format!("{count}: record 1-{MAX_COUNT} frames");
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e).field("count"));
    }
    if let Some(v) = q.vlan.filter(|v| !(1..=4094).contains(v)) {
        let e = format!("{v}: a VLAN is 1-4094");
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e).field("vlan"));
    }
    let filter = Filter {
        src: q.src,
        dst: q.dst,
        vlan: q.vlan,
    };
    let view = st
        .with_ctl(move |ctl| {
            let (sw, live) = ctl.live_traces();
            if !live.arm(sw, &name, count, filter) {
                return Err(ApiError::from(EditError::NoSuchPort(name)).field("name"));
            }
            let l = live.read(sw, &name).expect("just armed");
            Ok(LiveTraceView::of(&name, l))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Read a port's live trace.
///
/// The frames recorded so far, each with its decision explained against the running
/// configuration; with `wait_secs`, waits for the trace to complete first (or for that long).
#[utoipa::path(get, path = "/api/v1/ports/{name}/trace", tag = "troubleshooting",
    params(("name" = String, Path, description = "port name"), ReadQuery),
    responses(
        (status = 200, body = LiveTraceView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, a value of the wrong type"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "no live trace on that port"),
    ))]
pub(super) async fn read_trace(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Q(q): Q<ReadQuery>,
) -> ApiResult<Json<LiveTraceView>> {
    let until = Instant::now() + Duration::from_secs(q.wait_secs.unwrap_or(0).min(MAX_WAIT_SECS));
    loop {
        let port = name.clone();
        let view = st
            .with_ctl(move |ctl| {
                let (sw, live) = ctl.live_traces();
                let l = live.read(sw, &port).ok_or_else(|| no_trace(&port))?;
                Ok(LiveTraceView::of(&port, l))
            })
            .await?;
        if !view.armed || Instant::now() >= until {
            return Ok(Json(view));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stop a port's live trace.
///
/// Disarms it and answers what it recorded; the port then has no live trace.
#[utoipa::path(delete, path = "/api/v1/ports/{name}/trace", tag = "troubleshooting",
    params(("name" = String, Path, description = "port name")),
    responses(
        (status = 200, body = LiveTraceView),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "no live trace on that port"),
    ))]
pub(super) async fn delete_trace(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<LiveTraceView>> {
    st.with_ctl(move |ctl| {
        let (sw, live) = ctl.live_traces();
        let l = live.remove(sw, &name).ok_or_else(|| no_trace(&name))?;
        Ok(LiveTraceView::of(&name, &l))
    })
    .await
    .map(Json)
}

fn no_trace(port: &str) -> ApiError {
    ApiError::not_found(format!(
        "no live trace on port {port:?} (arm one with POST)"
    ))
    .field("name")
}
