//! `/api/v1/topology`: export and apply the whole configuration.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiResult, Problem, PROBLEM_JSON};
use super::extract::{Payload, Q};
use super::views::ApplyResult;
use super::AppState;
use crate::topology::Topology;

/// `?dry_run=true`
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Only compute the changes.
    #[serde(default)]
    pub dry_run: bool,
}

/// Export the whole configuration in the topology-file schema.
#[utoipa::path(get, path = "/api/v1/topology", tag = "topology",
    responses((status = 200, body = Topology)))]
pub(super) async fn get_topology(State(st): State<AppState>) -> ApiResult<Json<Topology>> {
    st.with_ctl(|ctl| Ok(ctl.topology().clone()))
        .await
        .map(Json)
}

/// Apply a whole desired configuration (JSON or YAML); only what differs is touched.
#[utoipa::path(put, path = "/api/v1/topology", tag = "topology", params(ApplyQuery),
    request_body(content = Topology, content_type = "application/json",
        description = "or the same as application/yaml"),
    responses(
        (status = 200, body = ApplyResult),
        (status = 400, body = Problem, content_type = PROBLEM_JSON,
            description = "the body is not a topology, or a bad query string"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON,
            description = "a change that needs a restart (`fdb_max_entries`), or an interface that \
                cannot be attached"),
        (status = 422, body = Problem, content_type = PROBLEM_JSON,
            description = "the topology breaks rules; `errors` lists them all"),
    ))]
pub(super) async fn put_topology(
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
