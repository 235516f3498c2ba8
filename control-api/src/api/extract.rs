//! Request extractors: bodies (JSON, or YAML by Content-Type) and query strings, each
//! failure a problem naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiResult};
use super::BODY_LIMIT;
use crate::strict::Strict;

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
