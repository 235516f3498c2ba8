//! `/api/v1/ports`: list, show, add, change, enable and remove ports.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{scoped, ApiResult, Problem, PROBLEM_JSON};
use super::extract::Payload;
use super::views::{Link, PortState, PortView, SecurityState};
use super::AppState;
use crate::controller::Controller;
use crate::edit::{self, PortPatch};
use crate::topology::Port;

/// MAC table entries per port id, from one walk of the table.
fn macs_per_port(ctl: &Controller) -> BTreeMap<dataplane::PortId, usize> {
    let sw = ctl.switch();
    let mut m = BTreeMap::new();
    for e in sw.fdb().entries(sw.now(), sw.snapshot().aging_secs) {
        *m.entry(e.port).or_insert(0) += 1;
    }
    m
}

/// A port's link as the API shows it, and why it is down: down while it has no interface
/// (or no frontend), or while port security has shut it down. One rule for the port views and
/// `/metrics`' `port_up`.
pub(crate) fn link_of(port: Option<&dataplane::Port>) -> (Link, Option<String>) {
    match port {
        None => (Link::Down, Some("not attached".to_string())),
        Some(p) if p.is_disabled() => (
            Link::Down,
            Some("shut down by port security (MAC limit reached, action shutdown)".to_string()),
        ),
        Some(p) => match p.down_reason() {
            None => (Link::Up, None),
            Some(reason) => (Link::Down, Some(reason)),
        },
    }
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
    let (link, reason) = link_of(port.as_deref());
    let learned_macs = id.and_then(|id| macs.get(&id).copied()).unwrap_or(0);
    let security = SecurityState {
        max_macs: ctl.topology().port_max_macs(p),
        dynamic_macs: id.map_or(0, |id| sw.fdb().port_macs(id)),
        mac_limit_action: p.mac_limit_action.unwrap_or_default(),
        shutdown: port.as_ref().is_some_and(|p| p.is_disabled()),
    };
    PortView {
        config: p.clone(),
        state: PortState {
            link,
            reason,
            learned_macs,
            security,
            counters: port.map(|p| p.counter_values()).unwrap_or_default().into(),
        },
    }
}

/// List ports.
#[utoipa::path(get, path = "/api/v1/ports", tag = "ports",
    responses((status = 200, body = [PortView])))]
pub(super) async fn list_ports(State(st): State<AppState>) -> ApiResult<Json<Vec<PortView>>> {
    st.with_ctl(|ctl| {
        let macs = macs_per_port(ctl);
        Ok(ctl
            .running()
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
    responses(
        (status = 200, body = PortView),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such port"),
    ))]
pub(super) async fn get_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PortView>> {
    st.with_ctl(move |ctl| {
        let i = edit::port_index(ctl.running(), &name)?;
        Ok(port_view(ctl, &ctl.running().ports[i]))
    })
    .await
    .map(Json)
}

/// Add a port (a tap is created; a netdev attaches its interface, or waits for it).
#[utoipa::path(post, path = "/api/v1/ports", tag = "ports", request_body = Port,
    responses(
        (status = 201, body = PortView),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "name in use, or the interface cannot be attached"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "invalid field"),
    ))]
pub(super) async fn add_port(
    State(st): State<AppState>,
    Payload(p): Payload<Port>,
) -> ApiResult<Response> {
    let view = st
        .with_ctl(move |ctl| {
            let (t, at) = edit::add_port(ctl.topology(), p.clone())?;
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
    responses(
        (status = 200, body = PortView),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such port"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "invalid field"),
    ))]
pub(super) async fn patch_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Payload(patch): Payload<PortPatch>,
) -> ApiResult<Json<PortView>> {
    st.with_ctl(move |ctl| {
        let (t, i) = edit::patch_port(ctl.topology(), &name, patch)?;
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
    responses(
        (status = 200, body = PortView),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such port"),
    ))]
pub(super) async fn enable_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PortView>> {
    st.with_ctl(move |ctl| {
        let i = edit::port_index(ctl.running(), &name)?;
        ctl.enable_port(&name);
        let p = ctl.running().ports[i].clone();
        Ok(port_view(ctl, &p))
    })
    .await
    .map(Json)
}

/// Remove a port (and its static MAC entries). A tap the switch created disappears.
#[utoipa::path(delete, path = "/api/v1/ports/{name}", tag = "ports",
    params(("name" = String, Path, description = "port name")),
    responses(
        (status = 204, description = "removed"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such port"),
    ))]
pub(super) async fn delete_port(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    st.with_ctl(move |ctl| {
        let t = edit::delete_port(ctl.topology(), &name)?;
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
