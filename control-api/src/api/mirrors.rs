//! `/api/v1/mirrors`: port mirrors (SPAN): list, add, remove.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{scoped, ApiResult, Problem, PROBLEM_JSON};
use super::extract::Payload;
use super::AppState;
use crate::edit;
use crate::topology::Mirror;

/// List port mirrors.
#[utoipa::path(get, path = "/api/v1/mirrors", tag = "troubleshooting",
    responses((status = 200, body = [Mirror])))]
pub(super) async fn list_mirrors(State(st): State<AppState>) -> ApiResult<Json<Vec<Mirror>>> {
    st.with_ctl(|ctl| Ok(ctl.topology().mirrors.clone()))
        .await
        .map(Json)
}

/// Add a port mirror (kept in the configuration).
///
/// Copies of the frames of its source ports (received, sent or both) and of its source VLANs
/// go to its output port, which meanwhile is in no VLAN and drops what it receives.
#[utoipa::path(post, path = "/api/v1/mirrors", tag = "troubleshooting", request_body = Mirror,
    responses(
        (status = 201, body = Mirror),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "a mirror of that name exists"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "an invalid field: no such port, an output that is a source or \
                another mirror's output, no source, a VLAN out of 1-4094"),
    ))]
pub(super) async fn add_mirror(
    State(st): State<AppState>,
    Payload(m): Payload<Mirror>,
) -> ApiResult<Response> {
    let m = st
        .with_ctl(move |ctl| {
            let (t, at) = edit::add_mirror(ctl.topology(), m.clone())?;
            ctl.apply(t, false)
                .map_err(|e| scoped(e.into(), &format!("mirrors[{at}]")))?;
            Ok(m)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

/// Remove a port mirror; its output port goes back to its VLANs.
#[utoipa::path(delete, path = "/api/v1/mirrors/{name}", tag = "troubleshooting",
    params(("name" = String, Path, description = "mirror name")),
    responses(
        (status = 204, description = "removed"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "no such mirror"),
    ))]
pub(super) async fn delete_mirror(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    st.with_ctl(move |ctl| {
        let t = edit::remove_mirror(ctl.topology(), &name)?;
        ctl.apply(t, false)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
