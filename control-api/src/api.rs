//! The REST API under `/api/v1` (axum), its OpenAPI document, `/healthz` and `/metrics`.
//!
//! Every change goes through [`Controller::apply`] with a whole desired topology, so the API,
//! topology files and the state file share one set of rules and one error format. Client
//! mistakes are 4xx `application/problem+json` naming the field and the reason; handlers never
//! panic on input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use dataplane::counters::{DropReason, MacEvent};
use dataplane::fdb::FlushFilter;
use dataplane::port::PortIo;
use dataplane::wire::MacAddr;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::controller::{ControlError, Controller, ErrorChain};
use crate::diff::Change;
use crate::strict::Strict;
use crate::topology::{
    FieldError, LimitAction, Port, PortKind, PortMode, StaticMac, Topology, Vlan, DEFAULT_VLAN,
};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The controller; a control-plane lock, never taken by the dataplane.
    pub ctl: Arc<Mutex<Controller>>,
    /// When set, every request but `/healthz` needs `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
}

impl AppState {
    /// Runs `f` with the controller locked, on tokio's blocking pool. A long change (say, a
    /// topology that removes 1000 taps), or a wait for the lock behind one, then never stalls
    /// the API thread: `/healthz`, the request timeout and other connections are served
    /// meanwhile. A change that has started is finished even if the request times out. A panic
    /// in `f` is a 500 (and is logged).
    async fn with_ctl<T: Send + 'static>(
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
        .route("/api/v1/ports", get(list_ports).post(add_port))
        .route(
            "/api/v1/ports/{name}",
            get(get_port).patch(patch_port).delete(delete_port),
        )
        .route("/api/v1/ports/{name}/enable", post(enable_port))
        .route("/api/v1/vlans", get(list_vlans).post(add_vlan))
        .route("/api/v1/vlans/{id}", get(get_vlan).delete(delete_vlan))
        .route(
            "/api/v1/fdb",
            get(list_fdb).post(add_static_mac).delete(flush_fdb),
        )
        .route("/api/v1/fdb/{vlan}/{mac}", delete(delete_mac))
        .route("/api/v1/topology", get(get_topology).put(put_topology))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
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

// ---------------------------------------------------------------------------------------------
// Errors

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The request field at fault, like `vlan` or `ports[2].vlans[0]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field problem, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error response: status plus problem document.
#[derive(Debug)]
pub struct ApiError(StatusCode, Box<Problem>);

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError(
            status,
            Box::new(Problem {
                kind: "about:blank".into(),
                title: status.canonical_reason().unwrap_or("error").into(),
                status: status.as_u16(),
                detail: detail.into(),
                field: None,
                errors: Vec::new(),
            }),
        )
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.1.field = Some(field.into());
        self
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(*self.1)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(crate::TopologyError::Invalid(errors)) => {
                let detail = errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut a = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail);
                a.1.field = errors.first().map(|e| e.path.clone());
                a.1.errors = errors;
                a
            }
            ControlError::Invalid(other) => {
                ApiError::new(StatusCode::BAD_REQUEST, other.to_string())
            }
            ControlError::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, msg),
            ControlError::Port { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorChain(&e).to_string())
            }
            ControlError::Persist { .. } | ControlError::Switch(_) => {
                tracing::error!(error = %ErrorChain(&e), "change failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorChain(&e).to_string(),
                )
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------------------------------
// Request bodies: JSON (or YAML, by Content-Type), with the failing field named.

/// The media types a request body may have, for the 415 problem.
pub const ACCEPTED_BODY_TYPES: &str = "application/json (or any type ending in +json), \
    application/yaml, application/x-yaml, text/yaml, text/x-yaml (or any type ending in +yaml)";

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Json,
    Yaml,
}

/// The body's format from its Content-Type: the media type before any parameters
/// (`; charset=utf-8`), compared case-insensitively. No Content-Type is JSON (what `switchctl`
/// sends and the examples use); a type that is neither JSON nor YAML is 415.
fn body_format(ctype: Option<&HeaderValue>) -> ApiResult<BodyFormat> {
    let Some(ctype) = ctype else {
        return Ok(BodyFormat::Json);
    };
    let essence = ctype
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let suffix = |s: &str| {
        essence
            .split_once('/')
            .is_some_and(|(t, sub)| !t.is_empty() && sub.len() > s.len() && sub.ends_with(s))
    };
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Ok(BodyFormat::Yaml)
        }
        _ if suffix("+json") => Ok(BodyFormat::Json),
        _ if suffix("+yaml") => Ok(BodyFormat::Yaml),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {:?} is not supported: a body must be {ACCEPTED_BODY_TYPES}",
                String::from_utf8_lossy(ctype.as_bytes())
            ),
        )),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {BODY_LIMIT} bytes"),
    )
}

/// A request body of type `T`: JSON, or YAML when the Content-Type says so (see
/// [`ACCEPTED_BODY_TYPES`]). Its structs, at any depth, must be objects (maps), never arrays
/// (see [`Strict`]). A `Content-Length` over [`BODY_LIMIT`] is refused before the body is read,
/// so a client that sent `Expect: 100-continue` gets the 413 instead of `100 Continue`.
pub struct Payload<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Payload<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = body_format(req.headers().get(header::CONTENT_TYPE))?;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
            }
        })?;
        if format == BodyFormat::Yaml {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "body is not UTF-8"))?;
            return T::deserialize(Strict(serde_yaml_ng::Deserializer::from_str(text)))
                .map(Payload)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid YAML: {e}")));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let invalid = |e: &dyn std::fmt::Display| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"))
        };
        match serde_path_to_error::deserialize(Strict(&mut *de)) {
            Ok(v) => {
                // Nothing but whitespace may follow the value.
                de.end().map_err(|e| invalid(&e))?;
                Ok(Payload(v))
            }
            Err(e) => {
                let path = e.path().to_string();
                let mut err = invalid(e.inner());
                if path != "." && path != "?" {
                    err = err.field(path);
                }
                Err(err)
            }
        }
    }
}

/// `Some(None)` for an explicit `null`, `None` when absent.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Deserialize::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Middleware

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

// ---------------------------------------------------------------------------------------------
// Views

/// Live state of a port.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortState {
    /// `up` when attached to its interface, `down` otherwise.
    pub link: String,
    /// Why the port is down, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// MAC addresses learned (or configured) on the port.
    pub learned_macs: usize,
    /// Port security as it applies now.
    pub security: SecurityState,
    /// Traffic and drops.
    pub counters: Counters,
}

/// Port security of a port as it applies now: the limits in force (the port's own or the
/// switch's default) and whether it has shut the port down.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityState {
    /// The MAC limit in force.
    pub max_macs: u32,
    /// Learned (dynamic) MACs that count against it.
    pub dynamic_macs: u32,
    /// What a frame from a new source beyond a limit gets.
    pub mac_limit_action: LimitAction,
    /// True while port security has shut the port down (`POST .../enable` ends it).
    pub shutdown: bool,
}

/// A port: its configuration (the topology-file fields) and its live state.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortView {
    /// Configuration.
    #[serde(flatten)]
    pub config: Port,
    /// Live state (read-only).
    pub state: PortState,
}

/// Port counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops by reason: bad_frame, vlan_not_allowed, tagged_on_access, fdb_no_room (source not
    /// learned; frame still flooded), tx_error, no_such_port, link_down, rx_overrun, mac_limit
    /// (source not learned: a MAC limit; the frame is dropped unless the action is flood),
    /// mac_not_allowed, port_disabled.
    pub drops: BTreeMap<String, u64>,
    /// Learning events on this port: mac_moves (MACs that moved here), mac_flaps (of those,
    /// moves that made the MAC flap), mac_damped (moves here refused by damping).
    pub mac_events: BTreeMap<String, u64>,
}

impl From<dataplane::counters::CounterValues> for Counters {
    fn from(v: dataplane::counters::CounterValues) -> Self {
        Counters {
            rx_packets: v.rx_packets,
            rx_bytes: v.rx_bytes,
            tx_packets: v.tx_packets,
            tx_bytes: v.tx_bytes,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), v.drop_count(*r)))
                .collect(),
            mac_events: MacEvent::ALL
                .iter()
                .map(|e| (e.name().to_string(), v.event_count(*e)))
                .collect(),
        }
    }
}

/// A VLAN with its member ports.
#[derive(Debug, Serialize, ToSchema)]
pub struct VlanView {
    /// VLAN id.
    pub id: u16,
    /// Label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ports that carry it.
    pub ports: Vec<String>,
}

/// One MAC table entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct FdbEntryView {
    /// VLAN id.
    pub vlan: u16,
    /// MAC address.
    pub mac: String,
    /// Port name.
    pub port: String,
    /// `dynamic` (learned) or `static` (configured).
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds since last seen (0 for static entries).
    pub age_secs: u32,
}

/// Per-VLAN traffic.
#[derive(Debug, Serialize, ToSchema)]
pub struct VlanStats {
    /// VLAN id.
    pub id: u16,
    /// Frames classified into the VLAN.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames flooded (unknown unicast, broadcast, multicast).
    pub flooded: u64,
    /// MAC addresses in the table for this VLAN.
    pub learned_macs: usize,
}

/// MAC table totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct FdbStats {
    /// Entries now.
    pub entries: usize,
    /// Capacity.
    pub max_entries: usize,
    /// New entries learned since start.
    pub learned: u64,
    /// MAC moves between ports.
    pub moves: u64,
    /// Source MACs not learned because the table was full.
    pub no_room: u64,
    /// Entries removed by aging.
    pub aged: u64,
    /// Source MACs not learned (or not moved) because of a port or VLAN MAC limit.
    pub limited: u64,
    /// Moves that made a MAC count as flapping.
    pub flaps: u64,
    /// Moves refused because the MAC was flapping and damped.
    pub damped: u64,
}

/// All counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Per port, by name.
    pub ports: BTreeMap<String, Counters>,
    /// Per VLAN (every VLAN that exists).
    pub vlans: Vec<VlanStats>,
    /// The MAC table.
    pub fdb: FdbStats,
}

/// What a topology apply did (or would do, on a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyResult {
    /// True if nothing was changed because `dry_run` was set.
    pub dry_run: bool,
    /// The changes, in the order applied.
    pub changes: Vec<Change>,
}

/// How many MAC entries a flush or delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// Entries removed.
    pub removed: usize,
}

/// Fields a PATCH may change; absent fields stay as they are, `null` clears. Changing `mode`
/// clears the fields of the old mode that are not given.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortPatch {
    /// New mode.
    #[serde(default)]
    pub mode: Option<PortMode>,
    /// Access VLAN.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u16>)]
    pub vlan: Option<Option<u16>>,
    /// Trunk VLANs (tagged).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<u16>>)]
    pub vlans: Option<Option<Vec<u16>>>,
    /// Trunk native VLAN (untagged).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u16>)]
    pub native_vlan: Option<Option<u16>>,
    /// Set the interface up when attaching.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub admin_up: Option<Option<bool>>,
    /// The port's MAC limit (`null`: the switch's default).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_macs: Option<Option<u32>>,
    /// What a frame from a new source beyond a limit gets (`null`: flood).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<LimitAction>)]
    pub mac_limit_action: Option<Option<LimitAction>>,
    /// The only source MACs accepted (`null`: any).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_macs: Option<Option<Vec<String>>>,
}

/// Filters of `GET`/`DELETE /api/v1/fdb`, as `bridge fdb` has them.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FdbQuery {
    /// Only this VLAN.
    pub vlan: Option<u16>,
    /// Only this port.
    pub port: Option<String>,
    /// `dynamic` or `static`. A flush without it removes dynamic entries only.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<FdbType>,
}

/// Entry type filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FdbType {
    /// Learned.
    Dynamic,
    /// Configured.
    Static,
}

/// `?dry_run=true`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Only compute the changes.
    #[serde(default)]
    pub dry_run: bool,
}

/// Query strings with the failing parameter named.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// MAC table entries per port id, from one walk of the table.
fn macs_per_port(ctl: &Controller) -> BTreeMap<dataplane::PortId, usize> {
    let sw = ctl.switch();
    let mut m = BTreeMap::new();
    for e in sw.fdb().entries(sw.now(), sw.snapshot().aging_secs) {
        *m.entry(e.port).or_insert(0) += 1;
    }
    m
}

fn port_view(ctl: &Controller, p: &Port) -> PortView {
    port_view_with(ctl, p, &macs_per_port(ctl))
}

fn port_view_with(
    ctl: &Controller,
    p: &Port,
    macs: &BTreeMap<dataplane::PortId, usize>,
) -> PortView {
    let sw = ctl.switch();
    let snap = sw.snapshot();
    let id = snap.port_id(&p.name);
    let port = id.and_then(|id| snap.port(id)).map(|e| e.port.clone());
    let (link, reason) = match port.as_ref().map(|p| p.io()) {
        Some(PortIo::Detached { reason }) => ("down", Some(reason.clone())),
        Some(_) => match port.as_ref().and_then(|p| p.rx_failure()) {
            Some(e) => (
                "down",
                Some(format!(
                    "receive failed ({e}); the interface was probably deleted"
                )),
            ),
            None => ("up", None),
        },
        None => ("down", Some("not attached".to_string())),
    };
    let learned_macs = id.and_then(|id| macs.get(&id).copied()).unwrap_or(0);
    let security = SecurityState {
        max_macs: ctl.topology().port_max_macs(p),
        dynamic_macs: id.map_or(0, |id| sw.fdb().port_macs(id)),
        mac_limit_action: p.mac_limit_action.unwrap_or_default(),
        shutdown: port.as_ref().is_some_and(|p| p.is_disabled()),
    };
    let link = if security.shutdown { "down" } else { link };
    let reason = if security.shutdown {
        Some("shut down by port security (MAC limit reached, action shutdown)".to_string())
    } else {
        reason
    };
    PortView {
        config: p.clone(),
        state: PortState {
            link: link.into(),
            reason,
            learned_macs,
            security,
            counters: port.map(|p| p.counter_values()).unwrap_or_default().into(),
        },
    }
}

fn find_port(topo: &Topology, name: &str) -> ApiResult<usize> {
    topo.ports
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no port named {name:?}")).field("name"))
}

/// List ports.
#[utoipa::path(get, path = "/api/v1/ports", tag = "ports",
    responses((status = 200, body = [PortView]), (status = 401, body = Problem)))]
async fn list_ports(State(st): State<AppState>) -> ApiResult<Json<Vec<PortView>>> {
    st.with_ctl(|ctl| {
        let macs = macs_per_port(ctl);
        Ok(ctl
            .topology()
            .ports
            .iter()
            .map(|p| port_view_with(ctl, p, &macs))
            .collect())
    })
    .await
    .map(Json)
}

/// Show one port.
#[utoipa::path(get, path = "/api/v1/ports/{name}", tag = "ports",
    params(("name" = String, Path, description = "port name")),
    responses((status = 200, body = PortView), (status = 404, body = Problem)))]
async fn get_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PortView>> {
    st.with_ctl(move |ctl| {
        let i = find_port(ctl.topology(), &name)?;
        Ok(port_view(ctl, &ctl.topology().ports[i]))
    })
    .await
    .map(Json)
}

/// Add a port (a tap is created; a netdev attaches its interface, or waits for it).
#[utoipa::path(post, path = "/api/v1/ports", tag = "ports", request_body = Port,
    responses((status = 201, body = PortView), (status = 400, body = Problem),
        (status = 409, body = Problem, description = "name in use, or the interface cannot be attached"),
        (status = 422, body = Problem, description = "invalid field")))]
async fn add_port(State(st): State<AppState>, Payload(p): Payload<Port>) -> ApiResult<Response> {
    let view = st
        .with_ctl(move |ctl| {
            if ctl.topology().port(&p.name).is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("port name {:?} is already in use", p.name),
                )
                .field("name"));
            }
            let mut t = ctl.topology().clone();
            t.ports.push(p.clone());
            let at = t.ports.len() - 1;
            ctl.apply(t, false)
                .map_err(|e| scoped(e.into(), &format!("ports[{at}]")))?;
            Ok(port_view(ctl, &p))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Change a port's mode or VLANs in place.
#[utoipa::path(patch, path = "/api/v1/ports/{name}", tag = "ports", request_body = PortPatch,
    params(("name" = String, Path, description = "port name")),
    responses((status = 200, body = PortView), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn patch_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Payload(patch): Payload<PortPatch>,
) -> ApiResult<Json<PortView>> {
    st.with_ctl(move |ctl| {
        let i = find_port(ctl.topology(), &name)?;
        let mut t = ctl.topology().clone();
        let p = &mut t.ports[i];
        if let Some(mode) = patch.mode {
            if mode != p.mode {
                p.mode = mode;
                p.vlan = None;
                p.vlans = None;
                p.native_vlan = None;
            }
        }
        if let Some(v) = patch.vlan {
            p.vlan = v;
        }
        if let Some(v) = patch.vlans {
            p.vlans = v;
        }
        if let Some(v) = patch.native_vlan {
            p.native_vlan = v;
        }
        if let Some(v) = patch.admin_up {
            p.admin_up = v;
        }
        if let Some(v) = patch.max_macs {
            p.max_macs = v;
        }
        if let Some(v) = patch.mac_limit_action {
            p.mac_limit_action = v;
        }
        if let Some(v) = patch.allowed_macs {
            p.allowed_macs = v;
        }
        // Static entries of this port in VLANs it leaves go with them.
        let members = p.member_vlans();
        t.fdb
            .retain(|m| m.port != name || members.contains(&m.vlan));
        ctl.apply(t, false)
            .map_err(|e| scoped(e.into(), &format!("ports[{i}]")))?;
        let p = ctl.topology().ports[i].clone();
        Ok(port_view(ctl, &p))
    })
    .await
    .map(Json)
}

/// Enable a port again after port security shut it down (`mac_limit_action: shutdown`).
/// The port's learned MACs are flushed, so it starts afresh under its limit. Answers the
/// port; enabling a port that is not shut down changes nothing.
#[utoipa::path(post, path = "/api/v1/ports/{name}/enable", tag = "ports",
    params(("name" = String, Path, description = "port name")),
    responses((status = 200, body = PortView), (status = 404, body = Problem)))]
async fn enable_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PortView>> {
    st.with_ctl(move |ctl| {
        let i = find_port(ctl.topology(), &name)?;
        ctl.enable_port(&name);
        let p = ctl.topology().ports[i].clone();
        Ok(port_view(ctl, &p))
    })
    .await
    .map(Json)
}

/// Remove a port (and its static MAC entries). A tap the switch created disappears.
#[utoipa::path(delete, path = "/api/v1/ports/{name}", tag = "ports",
    params(("name" = String, Path, description = "port name")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    st.with_ctl(move |ctl| {
        let i = find_port(ctl.topology(), &name)?;
        let mut t = ctl.topology().clone();
        t.ports.remove(i);
        t.fdb.retain(|m| m.port != name);
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

fn vlan_view(topo: &Topology, id: u16) -> VlanView {
    VlanView {
        id,
        name: topo
            .vlans
            .iter()
            .find(|v| v.id == id)
            .and_then(|v| v.name.clone()),
        ports: topo
            .ports
            .iter()
            .filter(|p| p.member_vlans().contains(&id))
            .map(|p| p.name.clone())
            .collect(),
    }
}

/// List VLANs (VLAN 1 always exists).
#[utoipa::path(get, path = "/api/v1/vlans", tag = "vlans", responses((status = 200, body = [VlanView])))]
async fn list_vlans(State(st): State<AppState>) -> ApiResult<Json<Vec<VlanView>>> {
    st.with_ctl(|ctl| {
        let t = ctl.topology();
        Ok(t.vlan_ids()
            .into_iter()
            .map(|id| vlan_view(t, id))
            .collect())
    })
    .await
    .map(Json)
}

fn parse_vid(raw: &str) -> ApiResult<u16> {
    let n: u32 = raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not a VLAN id (1-4094)"),
        )
        .field("id")
    })?;
    dataplane::config::check_vid(n)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).field("id"))
}

/// Show one VLAN.
#[utoipa::path(get, path = "/api/v1/vlans/{id}", tag = "vlans",
    params(("id" = u16, Path, description = "VLAN id")),
    responses((status = 200, body = VlanView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn get_vlan(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<VlanView>> {
    let id = parse_vid(&id)?;
    st.with_ctl(move |ctl| {
        if !ctl.topology().vlan_ids().contains(&id) {
            return Err(ApiError::not_found(format!("VLAN {id} is not declared")).field("id"));
        }
        Ok(vlan_view(ctl.topology(), id))
    })
    .await
    .map(Json)
}

/// Declare a VLAN.
#[utoipa::path(post, path = "/api/v1/vlans", tag = "vlans", request_body = Vlan,
    responses((status = 201, body = VlanView), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_vlan(State(st): State<AppState>, Payload(v): Payload<Vlan>) -> ApiResult<Response> {
    let view = st
        .with_ctl(move |ctl| {
            if ctl.topology().vlans.iter().any(|x| x.id == v.id) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("VLAN {} is already declared", v.id),
                )
                .field("id"));
            }
            let mut t = ctl.topology().clone();
            t.vlans.push(v.clone());
            t.vlans.sort_by_key(|v| v.id);
            let at = t.vlans.iter().position(|x| x.id == v.id).unwrap_or(0);
            ctl.apply(t, false)
                .map_err(|e| scoped(e.into(), &format!("vlans[{at}]")))?;
            Ok(vlan_view(ctl.topology(), v.id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Errors about the whole topology name fields like `ports[3].vlan`; for a request about one
/// object, name the object's own fields (`vlan`) instead.
fn scoped(mut e: ApiError, prefix: &str) -> ApiError {
    if e.1.errors.is_empty() {
        return e;
    }
    for fe in &mut e.1.errors {
        if let Some(rest) = fe.path.strip_prefix(prefix) {
            fe.path = rest.trim_start_matches('.').to_string();
        }
    }
    e.1.field =
        e.1.errors
            .first()
            .map(|f| f.path.clone())
            .filter(|p| !p.is_empty());
    e.1.detail =
        e.1.errors
            .iter()
            .map(|f| {
                if f.path.is_empty() {
                    f.reason.clone()
                } else {
                    f.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    e
}

/// Remove a VLAN declaration; 409 while ports use it. VLAN 1 always exists: removing its
/// declaration (a name) is allowed and leaves its ports and static MACs; when it is not
/// declared, the answer is 409.
#[utoipa::path(delete, path = "/api/v1/vlans/{id}", tag = "vlans",
    params(("id" = u16, Path, description = "VLAN id")),
    responses((status = 204), (status = 404, body = Problem),
        (status = 409, body = Problem,
            description = "ports still use the VLAN, or it is VLAN 1 (the default VLAN) and not declared")))]
async fn delete_vlan(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = parse_vid(&id)?;
    st.with_ctl(move |ctl| {
        let mut t = ctl.topology().clone();
        let before = t.vlans.len();
        t.vlans.retain(|v| v.id != id);
        let declared = t.vlans.len() != before;
        if id == DEFAULT_VLAN {
            if !declared {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "VLAN {id} is the default VLAN and always exists; \
                         only a declaration of it (with a name) can be removed"
                    ),
                )
                .field("id"));
            }
            // It still exists without the declaration: its ports and static MACs stay.
            ctl.apply(t, false)?;
            return Ok(StatusCode::NO_CONTENT);
        }
        let users = vlan_view(ctl.topology(), id).ports;
        if !users.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("VLAN {id} is used by ports {}", users.join(", ")),
            )
            .field("id"));
        }
        if !declared {
            return Err(ApiError::not_found(format!("VLAN {id} is not declared")).field("id"));
        }
        t.fdb.retain(|m| m.vlan != id);
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// List MAC table entries.
#[utoipa::path(get, path = "/api/v1/fdb", tag = "fdb", params(FdbQuery),
    responses((status = 200, body = [FdbEntryView]), (status = 400, body = Problem)))]
async fn list_fdb(
    State(st): State<AppState>,
    Q(q): Q<FdbQuery>,
) -> ApiResult<Json<Vec<FdbEntryView>>> {
    st.with_ctl(move |ctl| {
        let sw = ctl.switch();
        let snap = sw.snapshot();
        let port_id = match &q.port {
            Some(name) => Some(snap.port_id(name).ok_or_else(|| {
                ApiError::not_found(format!("no port named {name:?}")).field("port")
            })?),
            None => None,
        };
        let now = sw.now();
        let entries = sw
            .fdb()
            .entries(now, snap.aging_secs)
            .into_iter()
            .filter(|e| q.vlan.is_none_or(|v| v == e.vlan))
            .filter(|e| port_id.is_none_or(|p| p == e.port))
            .filter(|e| match q.kind {
                Some(FdbType::Static) => e.is_static,
                Some(FdbType::Dynamic) => !e.is_static,
                None => true,
            })
            .map(|e| FdbEntryView {
                vlan: e.vlan,
                mac: e.mac.to_string(),
                port: snap
                    .port(e.port)
                    .map_or_else(|| format!("#{}", e.port), |p| p.name.clone()),
                kind: if e.is_static { "static" } else { "dynamic" }.into(),
                age_secs: if e.is_static {
                    0
                } else {
                    now.saturating_sub(e.last_seen)
                },
            })
            .collect();
        Ok(entries)
    })
    .await
    .map(Json)
}

/// Add a static MAC entry (kept in the configuration).
#[utoipa::path(post, path = "/api/v1/fdb", tag = "fdb", request_body = StaticMac,
    responses((status = 201, body = StaticMac), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_static_mac(
    State(st): State<AppState>,
    Payload(mut m): Payload<StaticMac>,
) -> ApiResult<Response> {
    let mac: MacAddr = m.mac.parse().map_err(|e: dataplane::wire::MacParseError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).field("mac")
    })?;
    m.mac = mac.to_string();
    let m = st
        .with_ctl(move |ctl| {
            let mut t = ctl.topology().clone();
            t.fdb
                .retain(|x| !(x.vlan == m.vlan && x.mac.parse::<MacAddr>().ok() == Some(mac)));
            t.fdb.push(m.clone());
            let at = t.fdb.len() - 1;
            ctl.apply(t, false)
                .map_err(|e| scoped(e.into(), &format!("fdb[{at}]")))?;
            Ok(m)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

/// Flush MAC entries that match the filters (dynamic only unless `type=static`).
#[utoipa::path(delete, path = "/api/v1/fdb", tag = "fdb", params(FdbQuery),
    responses((status = 200, body = Removed), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn flush_fdb(State(st): State<AppState>, Q(q): Q<FdbQuery>) -> ApiResult<Json<Removed>> {
    st.with_ctl(move |ctl| {
        let port_id = match &q.port {
            Some(name) => Some(ctl.switch().port_id(name).ok_or_else(|| {
                ApiError::not_found(format!("no port named {name:?}")).field("port")
            })?),
            None => None,
        };
        if q.kind == Some(FdbType::Static) {
            let mut t = ctl.topology().clone();
            let before = t.fdb.len();
            t.fdb.retain(|m| {
                !(q.vlan.is_none_or(|v| v == m.vlan)
                    && q.port.as_ref().is_none_or(|p| *p == m.port))
            });
            let removed = before - t.fdb.len();
            ctl.apply(t, false)?;
            return Ok(Removed { removed });
        }
        let removed = ctl.switch().fdb().flush(FlushFilter {
            vlan: q.vlan,
            port: port_id,
            include_static: false,
        });
        Ok(Removed { removed })
    })
    .await
    .map(Json)
}

/// Remove one entry (a static one also leaves the configuration).
#[utoipa::path(delete, path = "/api/v1/fdb/{vlan}/{mac}", tag = "fdb",
    params(("vlan" = u16, Path, description = "VLAN id"), ("mac" = String, Path, description = "MAC address")),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn delete_mac(
    State(st): State<AppState>,
    Path((vlan, mac)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let vlan = parse_vid(&vlan).map_err(|mut e| {
        e.1.field = Some("vlan".into());
        e
    })?;
    let mac: MacAddr = mac.parse().map_err(|e: dataplane::wire::MacParseError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).field("mac")
    })?;
    st.with_ctl(move |ctl| {
        let is_static =
            |m: &StaticMac| m.vlan == vlan && m.mac.parse::<MacAddr>().ok() == Some(mac);
        if ctl.topology().fdb.iter().any(is_static) {
            let mut t = ctl.topology().clone();
            t.fdb.retain(|m| !is_static(m));
            ctl.apply(t, false)?;
            return Ok(StatusCode::NO_CONTENT);
        }
        if ctl.switch().fdb().remove(vlan, mac) {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found(format!(
                "no entry for {mac} in VLAN {vlan}"
            )))
        }
    })
    .await
}

/// Export the whole configuration in the topology-file schema.
#[utoipa::path(get, path = "/api/v1/topology", tag = "topology", responses((status = 200, body = Topology)))]
async fn get_topology(State(st): State<AppState>) -> ApiResult<Json<Topology>> {
    st.with_ctl(|ctl| Ok(ctl.topology().clone()))
        .await
        .map(Json)
}

/// Apply a whole desired configuration (JSON or YAML); only what differs is touched.
#[utoipa::path(put, path = "/api/v1/topology", tag = "topology", params(ApplyQuery),
    request_body(content = Topology, content_type = "application/json", description = "or the same as application/yaml"),
    responses((status = 200, body = ApplyResult), (status = 400, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn put_topology(
    State(st): State<AppState>,
    Q(q): Q<ApplyQuery>,
    Payload(t): Payload<Topology>,
) -> ApiResult<Json<ApplyResult>> {
    let changes = st.with_ctl(move |ctl| Ok(ctl.apply(t, q.dry_run)?)).await?;
    Ok(Json(ApplyResult {
        dry_run: q.dry_run,
        changes,
    }))
}

fn collect_stats(ctl: &Controller) -> Stats {
    let sw = ctl.switch();
    let snap = sw.snapshot();
    let entries = sw.fdb().entries(sw.now(), snap.aging_secs);
    let c = &sw.fdb().counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Stats {
        ports: ctl
            .port_counters()
            .into_iter()
            .map(|(n, v)| (n, v.into()))
            .collect(),
        vlans: ctl
            .topology()
            .vlan_ids()
            .into_iter()
            .map(|id| {
                let v = sw.vlan_counters(id);
                VlanStats {
                    id,
                    packets: v.packets,
                    bytes: v.bytes,
                    flooded: v.flooded,
                    learned_macs: entries.iter().filter(|e| e.vlan == id).count(),
                }
            })
            .collect(),
        fdb: FdbStats {
            entries: sw.fdb().len(),
            max_entries: sw.fdb().max_entries(),
            learned: load(&c.learned),
            moves: load(&c.moves),
            no_room: load(&c.no_room),
            aged: load(&c.aged),
            limited: load(&c.limited),
            flaps: load(&c.flaps),
            damped: load(&c.damped),
        },
    }
}

/// Per-port and per-VLAN counters, with drops by reason.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", responses((status = 200, body = Stats)))]
async fn stats(State(st): State<AppState>) -> ApiResult<Json<Stats>> {
    st.with_ctl(|ctl| Ok(collect_stats(ctl))).await.map(Json)
}

/// The same counters in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "stats",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let s = st.with_ctl(|ctl| Ok(collect_stats(ctl))).await?;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(
            out,
            "# HELP vlanswitch_{name} {help}\n# TYPE vlanswitch_{name} {kind}"
        );
        for (labels, v) in rows {
            let _ = writeln!(out, "vlanswitch_{name}{labels} {v}");
        }
    };
    let per_port = |f: &dyn Fn(&Counters) -> u64| {
        s.ports
            .iter()
            .map(|(n, c)| (format!("{{port=\"{}\"}}", label(n)), f(c)))
            .collect::<Vec<_>>()
    };
    metric(
        "port_rx_packets_total",
        "Frames received.",
        "counter",
        per_port(&|c| c.rx_packets),
    );
    metric(
        "port_rx_bytes_total",
        "Bytes received.",
        "counter",
        per_port(&|c| c.rx_bytes),
    );
    metric(
        "port_tx_packets_total",
        "Frames sent.",
        "counter",
        per_port(&|c| c.tx_packets),
    );
    metric(
        "port_tx_bytes_total",
        "Bytes sent.",
        "counter",
        per_port(&|c| c.tx_bytes),
    );
    let drops = s
        .ports
        .iter()
        .flat_map(|(n, c)| {
            c.drops
                .iter()
                .map(move |(r, v)| (format!("{{port=\"{}\",reason=\"{r}\"}}", label(n)), *v))
        })
        .collect();
    metric(
        "port_drops_total",
        "Frames dropped, by reason.",
        "counter",
        drops,
    );
    let per_vlan = |f: &dyn Fn(&VlanStats) -> u64| {
        s.vlans
            .iter()
            .map(|v| (format!("{{vlan=\"{}\"}}", v.id), f(v)))
            .collect::<Vec<_>>()
    };
    metric(
        "vlan_packets_total",
        "Frames classified into the VLAN.",
        "counter",
        per_vlan(&|v| v.packets),
    );
    metric(
        "vlan_flooded_total",
        "Frames flooded in the VLAN.",
        "counter",
        per_vlan(&|v| v.flooded),
    );
    metric(
        "vlan_bytes_total",
        "Bytes of the frames classified into the VLAN.",
        "counter",
        per_vlan(&|v| v.bytes),
    );
    metric(
        "vlan_learned_macs",
        "MAC table entries in the VLAN.",
        "gauge",
        per_vlan(&|v| v.learned_macs as u64),
    );
    let events = s
        .ports
        .iter()
        .flat_map(|(n, c)| {
            c.mac_events
                .iter()
                .map(move |(e, v)| (format!("{{port=\"{}\",event=\"{e}\"}}", label(n)), *v))
        })
        .collect();
    metric(
        "port_mac_events_total",
        "Learning events on the port: mac_moves, mac_flaps, mac_damped.",
        "counter",
        events,
    );
    let f = &s.fdb;
    for (name, help, kind, v) in [
        (
            "fdb_entries",
            "MAC table entries.",
            "gauge",
            f.entries as u64,
        ),
        (
            "fdb_max_entries",
            "MAC table capacity.",
            "gauge",
            f.max_entries as u64,
        ),
        (
            "fdb_learned_total",
            "MAC table entries learned.",
            "counter",
            f.learned,
        ),
        (
            "fdb_aged_total",
            "MAC table entries aged out.",
            "counter",
            f.aged,
        ),
        (
            "fdb_moves_total",
            "MAC moves between ports.",
            "counter",
            f.moves,
        ),
        (
            "fdb_no_room_total",
            "Source MACs not learned: table full.",
            "counter",
            f.no_room,
        ),
        (
            "fdb_limited_total",
            "Source MACs not learned: a port or VLAN MAC limit.",
            "counter",
            f.limited,
        ),
        (
            "fdb_flaps_total",
            "Moves that made a MAC flap.",
            "counter",
            f.flaps,
        ),
        (
            "fdb_damped_total",
            "Moves refused by flap damping.",
            "counter",
            f.damped,
        ),
    ] {
        metric(name, help, kind, vec![(String::new(), v)]);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "vlanswitch", description = "REST control plane of the vlanswitch 802.1Q switch."),
    paths(
        list_ports, get_port, add_port, patch_port, enable_port, delete_port,
        list_vlans, get_vlan, add_vlan, delete_vlan,
        list_fdb, add_static_mac, flush_fdb, delete_mac,
        get_topology, put_topology, stats, metrics
    ),
    components(schemas(Problem, FieldError, PortKind, FdbType)),
    tags(
        (name = "ports", description = "Switch ports"),
        (name = "vlans", description = "VLAN declarations"),
        (name = "fdb", description = "The MAC table"),
        (name = "topology", description = "The whole configuration"),
        (name = "stats", description = "Counters"),
    )
)]
pub struct ApiDoc;

/// Serve the OpenAPI document.
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
