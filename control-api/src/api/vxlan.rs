//! `/api/v1/vxlan`: the switch as a VXLAN tunnel endpoint: show its section and tunnels, set
//! or remove the section, add and remove remote VTEPs of the flood lists.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{scoped, ApiError, ApiResult, Problem, PROBLEM_JSON};
use super::extract::{Payload, Q};
use super::link_of;
use super::views::{TunnelView, VxlanView};
use super::AppState;
use crate::controller::Controller;
use crate::edit::{self, EditError};
use crate::topology::{PortKind, Vxlan};

/// The body of `POST /api/v1/vxlan/remotes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteRequest {
    /// The remote VTEP's address: unicast, of `vxlan.local`'s family.
    #[schema(example = "192.0.2.3")]
    pub address: String,
    /// Add it to this VLAN's flood list instead of the switch-wide one. A VLAN without a list
    /// of its own gets one: the switch-wide list plus this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// The query of `DELETE /api/v1/vxlan/remotes/{address}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoteQuery {
    /// Remove it from this VLAN's flood list instead of the switch-wide one. A VLAN without a
    /// list of its own gets one: the switch-wide list less this address.
    pub vlan: Option<u16>,
}

/// The section and one view per tunnel port of what runs.
pub(super) fn vxlan_view(ctl: &Controller) -> VxlanView {
    let running = ctl.running();
    let snap = ctl.switch().snapshot();
    let tunnels = running
        .ports
        .iter()
        .filter(|p| p.kind == PortKind::Vxlan)
        .filter_map(|p| {
            let vlan = p.vlan?;
            let port = snap
                .port_id(&p.name)
                .and_then(|id| snap.port(id))
                .map(|e| e.port.clone());
            let (link, reason) = link_of(port.as_deref());
            Some(TunnelView {
                port: p.name.clone(),
                vlan,
                vni: running.vni_of(vlan)?,
                remotes: running.remotes_of(vlan),
                mtu: dataplane::port::packet::mtu(&p.name).ok(),
                link,
                reason,
            })
        })
        .collect();
    VxlanView {
        vxlan: ctl.topology().vxlan.clone(),
        tunnels,
    }
}

/// An edit error of a body field `vlan`: a VLAN that is not declared is named by that field.
fn vlan_field(e: EditError) -> ApiError {
    let named = matches!(e, EditError::NoSuchVlan(_));
    let e = ApiError::from(e);
    if named {
        e.field("vlan")
    } else {
        e
    }
}

/// Show the VTEP: the `vxlan` section (null when there is none) and each VLAN's tunnel with
/// its flood list, MTU and link.
#[utoipa::path(get, path = "/api/v1/vxlan", tag = "vxlan",
    responses((status = 200, body = VxlanView)))]
pub(super) async fn get_vxlan(State(st): State<AppState>) -> ApiResult<Json<VxlanView>> {
    st.with_ctl(|ctl| Ok(vxlan_view(ctl))).await.map(Json)
}

/// Set the `vxlan` section (the switch becomes a VTEP, or its endpoint changes). A changed
/// `local`, `dstport` or `underlay` makes the tunnels anew; a changed flood list or static
/// remote MAC only updates their kernel FDB.
#[utoipa::path(put, path = "/api/v1/vxlan", tag = "vxlan", request_body = Vxlan,
    responses(
        (status = 200, body = VxlanView),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "a tunnel cannot be made with the new endpoint (no interface holds \
                vxlan.local, no such underlay)"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "an invalid field: an address that is not unicast or not of local's \
                family, dstport 0, a static remote MAC in a VLAN without a vni"),
    ))]
pub(super) async fn put_vxlan(
    State(st): State<AppState>,
    Payload(x): Payload<Vxlan>,
) -> ApiResult<Json<VxlanView>> {
    st.with_ctl(move |ctl| {
        let t = edit::set_vxlan(ctl.topology(), x);
        ctl.apply(t, false).map_err(|e| scoped(e.into(), "vxlan"))?;
        Ok(vxlan_view(ctl))
    })
    .await
    .map(Json)
}

/// Remove the `vxlan` section: the switch is no VTEP any more. Refused while a VLAN has a
/// `vni` (remove it first: `PATCH /api/v1/vlans/{id}` with `"vni": null`).
#[utoipa::path(delete, path = "/api/v1/vxlan", tag = "vxlan",
    responses(
        (status = 204, description = "removed"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "there is no vxlan section"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "VLANs still have a vni (each named by its field, `vlans[i].vni`)"),
    ))]
pub(super) async fn delete_vxlan(State(st): State<AppState>) -> ApiResult<StatusCode> {
    st.with_ctl(|ctl| {
        let t = edit::remove_vxlan(ctl.topology())
            .ok_or_else(|| ApiError::not_found("there is no vxlan section"))?;
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Add a remote VTEP to the switch-wide flood list (`vxlan.remotes`), or with `vlan` to that
/// VLAN's flood list (a VLAN without a list of its own gets one: the switch-wide list plus
/// this address). Broadcast, multicast and unknown unicast frames of the VLANs go to it.
#[utoipa::path(post, path = "/api/v1/vxlan/remotes", tag = "vxlan", request_body = RemoteRequest,
    responses(
        (status = 201, body = VxlanView),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "`vlan` is not declared"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "the address is in the flood list already, or there is no vxlan \
                section"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "`address` is not an IP address, not unicast, not of vxlan.local's \
                family or vxlan.local itself; `vlan` has no vni"),
    ))]
pub(super) async fn add_remote(
    State(st): State<AppState>,
    Payload(r): Payload<RemoteRequest>,
) -> ApiResult<Response> {
    let view = st
        .with_ctl(move |ctl| {
            let (t, _) =
                edit::add_remote(ctl.topology(), &r.address, r.vlan).map_err(vlan_field)?;
            ctl.apply(t, false)?;
            Ok(vxlan_view(ctl))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Remove a remote VTEP from the switch-wide flood list, or with `vlan` from that VLAN's flood
/// list (a VLAN without a list of its own gets one: the switch-wide list less this address).
#[utoipa::path(delete, path = "/api/v1/vxlan/remotes/{address}", tag = "vxlan",
    params(("address" = String, Path, description = "the remote VTEP's address"), RemoteQuery),
    responses(
        (status = 204, description = "removed"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "a bad query string: an unknown parameter, a VLAN that is not a number"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON,
            description = "the address is not in the flood list, or `vlan` is not declared"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the address is not an IP address, or `vlan` has no vni"),
    ))]
pub(super) async fn delete_remote(
    State(st): State<AppState>,
    Path(address): Path<String>,
    Q(q): Q<RemoteQuery>,
) -> ApiResult<StatusCode> {
    st.with_ctl(move |ctl| {
        let t = edit::remove_remote(ctl.topology(), &address, q.vlan).map_err(vlan_field)?;
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
