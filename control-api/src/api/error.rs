//! The error format: RFC 9457 problem documents, and how controller errors map to statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::controller::{ControlError, ErrorChain};
use crate::edit::EditError;
use crate::topology::FieldError;

/// The media type of every error answer (RFC 9457), and of every error response in the OpenAPI
/// document.
pub const PROBLEM_JSON: &str = "application/problem+json";

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
pub struct ApiError(pub(super) StatusCode, pub(super) Box<Problem>);

impl ApiError {
    pub(super) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
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

    pub(super) fn field(mut self, field: impl Into<String>) -> Self {
        self.1.field = Some(field.into());
        self
    }

    pub(super) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(*self.1)).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
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

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        let (status, field) = match &e {
            EditError::PortExists(_) => (StatusCode::CONFLICT, "name"),
            EditError::NoSuchPort(_) => (StatusCode::NOT_FOUND, "name"),
            EditError::TunnelPort(..) => (StatusCode::CONFLICT, "name"),
            EditError::VlanExists(_) | EditError::DefaultVlan(_) | EditError::VlanInUse { .. } => {
                (StatusCode::CONFLICT, "id")
            }
            EditError::NoSuchVlan(_) => (StatusCode::NOT_FOUND, "id"),
            EditError::BadMac(_) => (StatusCode::UNPROCESSABLE_ENTITY, "mac"),
            EditError::MirrorExists(_) => (StatusCode::CONFLICT, "name"),
            EditError::NoSuchMirror(_) => (StatusCode::NOT_FOUND, "name"),
            EditError::NotVtep => {
                return ApiError::new(StatusCode::CONFLICT, e.to_string());
            }
            EditError::NoVni(_) => (StatusCode::UNPROCESSABLE_ENTITY, "vlan"),
            EditError::BadAddress(_) => (StatusCode::UNPROCESSABLE_ENTITY, "address"),
            EditError::RemoteExists { .. } => (StatusCode::CONFLICT, "address"),
            EditError::NoSuchRemote { .. } => (StatusCode::NOT_FOUND, "address"),
        };
        ApiError::new(status, e.to_string()).field(field)
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Errors about the whole topology name fields like `ports[3].vlan`; for a request about one
/// object, name the object's own fields (`vlan`) instead.
pub(super) fn scoped(mut e: ApiError, prefix: &str) -> ApiError {
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
