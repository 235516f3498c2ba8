//! The REST API under `/api/v1` (axum), its OpenAPI document, `/healthz`, `/metrics` and the
//! status page at `/`.
//!
//! Every change goes through [`Controller::apply`] with a whole desired topology, so the API,
//! topology files and the state file share one set of rules and one error format. Client
//! mistakes are 4xx `application/problem+json` naming the field and the reason; handlers never
//! panic on input.
//!
//! One module per resource, each with the handlers of its routes: `ports.rs`, `vlans.rs`,
//! `fdb.rs`, `mirrors.rs`, `vxlan.rs` (the VTEP and its flood lists), `topology.rs`,
//! `stats.rs` (with `/metrics`), `trace.rs`, `watch.rs` (capture and live trace), `events.rs`
//! (the event stream), and `page.rs` the page at `/` (which reads only the public routes, as any
//! client); [`router`] lists every route. `doc.rs`
//! holds the OpenAPI document ([`ApiDoc`]) and what it says of every route at once (the bearer
//! token, the middleware's and extractors' problems), `error.rs` the problem document and how
//! controller errors map to statuses, `extract.rs` the body and query extractors, [`views`] the
//! response types (shared with `switchctl`). What a change
//! does to the desired topology is in [`crate::edit`], pure; the handlers call it and then
//! [`Controller::apply`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::controller::Controller;

mod doc;
mod error;
mod events;
mod extract;
mod fdb;
mod mirrors;
mod page;
mod ports;
mod stats;
mod topology;
mod trace;
pub mod views;
mod vlans;
mod vxlan;
mod watch;

pub use crate::edit::{PortPatch, VlanPatch};
pub use doc::{ApiDoc, BEARER};
pub use error::{ApiError, Problem, PROBLEM_JSON};
pub use events::EventsQuery;
pub use extract::{Payload, ACCEPTED_BODY_TYPES, Q};
pub use fdb::FdbQuery;
pub(crate) use ports::link_of;
pub use topology::ApplyQuery;
pub use trace::{FrameFields, TraceRequest};
pub use views::*;
pub use vxlan::{RemoteQuery, RemoteRequest};
pub use watch::{CaptureDirection, LiveTraceView, MAX_WAIT_SECS, PCAPNG};

use error::ApiResult;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The controller; a control-plane lock, never taken by the dataplane.
    pub ctl: Arc<Mutex<Controller>>,
    /// When set, every request but `/healthz` and `/` (the page, whose own API calls need
    /// it) needs `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// The controller's event hub, which `GET /api/v1/events` subscribes to without taking
    /// the controller's lock.
    pub events: crate::events::EventHub,
}

impl AppState {
    /// The state for `ctl`, with its event hub.
    pub fn new(ctl: Arc<Mutex<Controller>>, token: Option<Arc<str>>) -> AppState {
        let events = ctl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events()
            .clone();
        AppState { ctl, token, events }
    }

    /// Runs `f` with the controller locked, on tokio's blocking pool. A long change (say, a
    /// topology that removes 1000 taps), or a wait for the lock behind one, then never stalls
    /// the API thread: `/healthz`, the request timeout and other connections are served
    /// meanwhile. A change that has started is finished even if the request times out. A panic
    /// in `f` is a 500 (and is logged).
    pub(crate) async fn with_ctl<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Controller) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let ctl = self.ctl.clone();
        tokio::task::spawn_blocking(move || f(&mut ctl.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "request handler failed");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the request failed: {e}"),
                ))
            })
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/ports",
            get(ports::list_ports).post(ports::add_port),
        )
        .route(
            "/api/v1/ports/{name}",
            get(ports::get_port)
                .patch(ports::patch_port)
                .delete(ports::delete_port),
        )
        .route("/api/v1/ports/{name}/enable", post(ports::enable_port))
        .route("/api/v1/ports/{name}/capture", get(watch::capture))
        .route(
            "/api/v1/ports/{name}/trace",
            get(watch::read_trace)
                .post(watch::arm_trace)
                .delete(watch::delete_trace),
        )
        .route(
            "/api/v1/vlans",
            get(vlans::list_vlans).post(vlans::add_vlan),
        )
        .route(
            "/api/v1/vlans/{id}",
            get(vlans::get_vlan)
                .patch(vlans::patch_vlan)
                .delete(vlans::delete_vlan),
        )
        .route(
            "/api/v1/fdb",
            get(fdb::list_fdb)
                .post(fdb::add_static_mac)
                .delete(fdb::flush_fdb),
        )
        .route("/api/v1/fdb/{vlan}/{mac}", delete(fdb::delete_mac))
        .route(
            "/api/v1/mirrors",
            get(mirrors::list_mirrors).post(mirrors::add_mirror),
        )
        .route("/api/v1/mirrors/{name}", delete(mirrors::delete_mirror))
        .route(
            "/api/v1/vxlan",
            get(vxlan::get_vxlan)
                .put(vxlan::put_vxlan)
                .delete(vxlan::delete_vxlan),
        )
        .route("/api/v1/vxlan/remotes", post(vxlan::add_remote))
        .route(
            "/api/v1/vxlan/remotes/{address}",
            delete(vxlan::delete_remote),
        )
        .route(
            "/api/v1/topology",
            get(topology::get_topology).put(topology::put_topology),
        )
        .route("/api/v1/stats", get(stats::stats))
        .route("/api/v1/trace", post(trace::trace))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/openapi.json", get(doc::openapi))
        .route("/metrics", get(stats::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/", get(page::page))
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn(timeout))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Liveness: `ok` whenever the API is serving. It never needs the token, so that a supervisor
/// or load balancer can ask without one.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "the API is serving", content_type = "text/plain",
        body = String, example = "ok\n")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if !ok {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

/// The token of `Bearer TOKEN`. The scheme is case-insensitive (RFC 9110, section 11.1),
/// the token is not.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers 408 when the handler has not answered in [`REQUEST_TIMEOUT`]. It bounds the time to
/// the answer's head: a streamed body (`/api/v1/events`) goes on after it, for as long as the
/// client reads.
async fn timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request took longer than {REQUEST_TIMEOUT:?}"),
        )
        .into_response(),
    }
}
