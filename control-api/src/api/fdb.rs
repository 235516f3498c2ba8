//! `/api/v1/fdb`: the MAC table: list, add and remove static entries, flush.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dataplane::fdb::FlushFilter;
use dataplane::wire::MacAddr;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{scoped, ApiError, ApiResult, Problem, PROBLEM_JSON};
use super::extract::{Payload, Q};
use super::views::{FdbEntryView, FdbType, Removed};
use super::vlans::parse_vid;
use super::AppState;
use crate::edit::{self, EditError};
use crate::topology::{PortKind, StaticMac};
use crate::tunnels;

/// Filters of `GET`/`DELETE /api/v1/fdb`, as `bridge fdb` has them.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
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

/// The id of the `port` filter's port, looked up by `id`; 404 naming `port` if there is none.
fn port_filter(
    port: Option<&str>,
    id: impl FnOnce(&str) -> Option<dataplane::PortId>,
) -> ApiResult<Option<dataplane::PortId>> {
    port.map(|name| {
        id(name).ok_or_else(|| ApiError::from(EditError::NoSuchPort(name.into())).field("port"))
    })
    .transpose()
}

/// List MAC table entries. An entry on a VLAN's tunnel port names the remote VTEP the MAC is
/// behind (`remote_vtep`), from the tunnel interface's kernel FDB.
#[utoipa::path(get, path = "/api/v1/fdb", tag = "fdb", params(FdbQuery),
    responses(
        (status = 200, body = [FdbEntryView]),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, a value of the wrong type"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "the `port` filter names no port"),
    ))]
pub(super) async fn list_fdb(
    State(st): State<AppState>,
    Q(q): Q<FdbQuery>,
) -> ApiResult<Json<Vec<FdbEntryView>>> {
    st.with_ctl(move |ctl| {
        let sw = ctl.switch();
        let snap = sw.snapshot();
        let port_id = port_filter(q.port.as_deref(), |n| snap.port_id(n))?;
        let now = sw.now();
        // The remote VTEP behind each MAC of each tunnel: one kernel dump per tunnel.
        let behind: HashMap<(dataplane::PortId, MacAddr), IpAddr> = ctl
            .running()
            .ports
            .iter()
            .filter(|p| p.kind == PortKind::Vxlan)
            .filter_map(|p| Some((snap.port_id(&p.name)?, &p.name)))
            .filter(|(id, _)| port_id.is_none_or(|p| p == *id))
            .flat_map(|(id, name)| {
                tunnels::learned_remotes(name)
                    .into_iter()
                    .map(move |(mac, remote)| ((id, mac), remote))
            })
            .collect();
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
                mac: e.mac,
                port: snap
                    .port(e.port)
                    .map_or_else(|| format!("#{}", e.port), |p| p.name.clone()),
                kind: if e.is_static {
                    FdbType::Static
                } else {
                    FdbType::Dynamic
                },
                age_secs: if e.is_static {
                    0
                } else {
                    now.saturating_sub(e.last_seen)
                },
                remote_vtep: behind.get(&(e.port, e.mac)).copied(),
            })
            .collect();
        Ok(entries)
    })
    .await
    .map(Json)
}

/// Add a static MAC entry (kept in the configuration).
#[utoipa::path(post, path = "/api/v1/fdb", tag = "fdb", request_body = StaticMac,
    responses(
        (status = 201, body = StaticMac),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "not a unicast MAC, no such port, or the port is not in the VLAN"),
    ))]
pub(super) async fn add_static_mac(
    State(st): State<AppState>,
    Payload(m): Payload<StaticMac>,
) -> ApiResult<Response> {
    let m = st
        .with_ctl(move |ctl| {
            let (t, at, m) = edit::add_static_mac(ctl.topology(), m);
            ctl.apply(t, false)
                .map_err(|e| scoped(e.into(), &format!("fdb[{at}]")))?;
            Ok(m)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

/// Flush MAC entries that match the filters (dynamic only unless `type=static`).
#[utoipa::path(delete, path = "/api/v1/fdb", tag = "fdb", params(FdbQuery),
    responses(
        (status = 200, body = Removed),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, a value of the wrong type"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "the `port` filter names no port"),
    ))]
pub(super) async fn flush_fdb(
    State(st): State<AppState>,
    Q(q): Q<FdbQuery>,
) -> ApiResult<Json<Removed>> {
    st.with_ctl(move |ctl| {
        let port_id = port_filter(q.port.as_deref(), |n| ctl.switch().port_id(n))?;
        if q.kind == Some(FdbType::Static) {
            let (t, removed) = edit::flush_static(ctl.topology(), q.vlan, q.port.as_deref());
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
    params(
        ("vlan" = u16, Path, description = "VLAN id"),
        ("mac" = String, Path, description = "MAC address"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "the VLAN id is not a number"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "no such entry"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the VLAN id is 0, 4095 or out of range, or the MAC is not a MAC"),
    ))]
pub(super) async fn delete_mac(
    State(st): State<AppState>,
    Path((vlan, mac)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let vlan = parse_vid(&vlan).map_err(|mut e| {
        e.1.field = Some("vlan".into());
        e
    })?;
    let mac: MacAddr = mac.parse().map_err(EditError::from)?;
    st.with_ctl(move |ctl| {
        if let Some(t) = edit::remove_static_mac(ctl.topology(), vlan, mac) {
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
