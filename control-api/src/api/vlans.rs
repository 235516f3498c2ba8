//! `/api/v1/vlans`: list, show, declare, change and remove VLANs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{scoped, ApiError, ApiResult, Problem, PROBLEM_JSON};
use super::extract::Payload;
use super::views::VlanView;
use super::AppState;
use crate::edit::{self, EditError, VlanPatch};
use crate::topology::{Topology, Vlan};

fn vlan_view(topo: &Topology, id: u16) -> VlanView {
    let declared = topo.vlans.iter().find(|v| v.id == id);
    let vni = declared.and_then(|v| v.vni);
    VlanView {
        id,
        name: declared.and_then(|v| v.name.clone()),
        ports: edit::vlan_users(topo, id),
        vni,
        remotes: vni.map(|_| topo.remotes_of(id)),
    }
}

/// List VLANs (VLAN 1 always exists).
#[utoipa::path(get, path = "/api/v1/vlans", tag = "vlans",
    responses((status = 200, body = [VlanView])))]
pub(super) async fn list_vlans(State(st): State<AppState>) -> ApiResult<Json<Vec<VlanView>>> {
    st.with_ctl(|ctl| {
        let t = ctl.running();
        Ok(t.vlan_ids()
            .into_iter()
            .map(|id| vlan_view(t, id))
            .collect())
    })
    .await
    .map(Json)
}

pub(super) fn parse_vid(raw: &str) -> ApiResult<u16> {
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
    responses(
        (status = 200, body = VlanView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "the id is not a number"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the id is 0, 4095 or out of range"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such VLAN"),
    ))]
pub(super) async fn get_vlan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<VlanView>> {
    let id = parse_vid(&id)?;
    st.with_ctl(move |ctl| {
        if !ctl.topology().vlan_ids().contains(&id) {
            return Err(EditError::NoSuchVlan(id).into());
        }
        Ok(vlan_view(ctl.running(), id))
    })
    .await
    .map(Json)
}

/// Declare a VLAN.
#[utoipa::path(post, path = "/api/v1/vlans", tag = "vlans", request_body = Vlan,
    responses(
        (status = 201, body = VlanView),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "already declared"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON, description = "invalid field"),
    ))]
pub(super) async fn add_vlan(
    State(st): State<AppState>,
    Payload(v): Payload<Vlan>,
) -> ApiResult<Response> {
    let view = st
        .with_ctl(move |ctl| {
            let id = v.id;
            let (t, at) = edit::add_vlan(ctl.topology(), v)?;
            ctl.apply(t, false)
                .map_err(|e| scoped(e.into(), &format!("vlans[{at}]")))?;
            Ok(vlan_view(ctl.running(), id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Change a VLAN in place: its name, MAC limit, VNI and flood list. Giving it a `vni` makes
/// its tunnel port (`vxlan<vni>`); `"vni": null` removes the tunnel, with the VLAN's own
/// `remotes` and its static remote MACs. VLAN 1, when not declared, is declared by a patch.
#[utoipa::path(patch, path = "/api/v1/vlans/{id}", tag = "vlans", request_body = VlanPatch,
    params(("id" = u16, Path, description = "VLAN id")),
    responses(
        (status = 200, body = VlanView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "the id is not a number, or the body is not a VlanPatch"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such VLAN"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "the VLAN's tunnel cannot be made (no interface holds vxlan.local, \
                no such underlay)"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the id is 0, 4095 or out of range, or an invalid field: a vni \
                without the vxlan section, out of 1-16777215 or another VLAN's; a remote that \
                is not a unicast address of vxlan.local's family"),
    ))]
pub(super) async fn patch_vlan(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Payload(patch): Payload<VlanPatch>,
) -> ApiResult<Json<VlanView>> {
    let id = parse_vid(&id)?;
    st.with_ctl(move |ctl| {
        let (t, i) = edit::patch_vlan(ctl.topology(), id, patch)?;
        ctl.apply(t, false)
            .map_err(|e| scoped(e.into(), &format!("vlans[{i}]")))?;
        Ok(vlan_view(ctl.running(), id))
    })
    .await
    .map(Json)
}

/// Remove a VLAN declaration; 409 while ports use it. VLAN 1 always exists: removing its
/// declaration (a name) is allowed and leaves its ports and static MACs; when it is not
/// declared, the answer is 409.
#[utoipa::path(delete, path = "/api/v1/vlans/{id}", tag = "vlans",
    params(("id" = u16, Path, description = "VLAN id")),
    responses(
        (status = 204, description = "removed"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "the id is not a number"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the id is 0, 4095 or out of range"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such VLAN"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "ports still use the VLAN, or it is VLAN 1 (the default VLAN) and not \
                declared"),
    ))]
pub(super) async fn delete_vlan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_vid(&id)?;
    st.with_ctl(move |ctl| {
        let t = edit::delete_vlan(ctl.topology(), id)?;
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
