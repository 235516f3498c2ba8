//! The OpenAPI document: [`ApiDoc`], built by utoipa from the handlers' `#[utoipa::path]`
//! annotations, and what [`Shared`] adds to it: what every route has in common because of the
//! router's middleware and extractors (the bearer token, the timeout, the body extractor's
//! problems), so that no route has to repeat it and none can forget it.

use axum::http::StatusCode;
use axum::Json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{Problem, PROBLEM_JSON};
use super::views::FdbType;
use super::{
    events, fdb, mirrors, page, ports, stats, topology, trace, vlans, vxlan, watch, BODY_LIMIT,
    REQUEST_TIMEOUT,
};
use crate::topology::{FieldError, PortKind};

/// The name of the bearer-token security scheme (as `ApiDoc`'s `security(...)` spells it).
pub const BEARER: &str = "bearer";

/// The OpenAPI document (3.1), served at `/api/v1/openapi.json`; `cargo run -p control-api
/// --example openapi` prints it.
#[derive(OpenApi)]
#[openapi(
    info(title = "vlanswitch", description = "REST control plane of the vlanswitch 802.1Q switch."),
    paths(
        super::healthz, openapi, page::page,
        ports::list_ports, ports::get_port, ports::add_port, ports::patch_port,
        ports::enable_port, ports::delete_port,
        vlans::list_vlans, vlans::get_vlan, vlans::add_vlan, vlans::patch_vlan,
        vlans::delete_vlan,
        fdb::list_fdb, fdb::add_static_mac, fdb::flush_fdb, fdb::delete_mac,
        topology::get_topology, topology::put_topology, stats::stats, stats::metrics,
        mirrors::list_mirrors, mirrors::add_mirror, mirrors::delete_mirror,
        vxlan::get_vxlan, vxlan::put_vxlan, vxlan::delete_vxlan, vxlan::add_remote,
        vxlan::delete_remote,
        trace::trace, watch::capture, watch::arm_trace, watch::read_trace, watch::delete_trace,
        events::events
    ),
    components(schemas(Problem, FieldError, PortKind, FdbType, watch::CaptureDirection)),
    modifiers(&Shared),
    security(("bearer" = [])),
    tags(
        (name = "service", description = "Liveness and this document"),
        (name = "page", description = "The status page"),
        (name = "ports", description = "Switch ports"),
        (name = "vlans", description = "VLAN declarations"),
        (name = "fdb", description = "The MAC table"),
        (name = "vxlan", description = "The switch as a VXLAN tunnel endpoint: its tunnels and \
            remote VTEPs"),
        (name = "topology", description = "The whole configuration"),
        (name = "stats", description = "Counters"),
        (name = "troubleshooting", description = "Why a frame goes where it goes, what a port sees"),
        (name = "events", description = "What the switch does, as it happens"),
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "this OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// What the router gives every route, written into each operation:
/// - the bearer scheme (the document's `security` requires it on every operation that does not
///   say otherwise; only `/healthz` does);
/// - on each operation behind the token: 401 (`auth`), 408 (`timeout`) and 500 (a handler that
///   failed, see `AppState::with_ctl`);
/// - on each operation with a request body: the `Payload` extractor's 400, 413 and 415;
/// - a description for every response that has none: its status phrase.
///
/// A route's own annotation of one of these statuses (with its own description) is kept.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "`Authorization: Bearer TOKEN`. Enforced only when switchd runs with \
                             `--token-file FILE`: then every route but `/healthz` and `/` (the \
                             page, whose own API calls send it) answers 401 without it (the \
                             scheme in any case, the token exactly as in the file). Without \
                             `--token-file`, no route needs it.",
                        ))
                        .build(),
                ),
            );
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let answers = &mut op.responses.responses;
                if op.security.is_none() {
                    answers.entry("401".into()).or_insert_with(|| {
                        let mut r = problem(
                            "a token is configured (`--token-file`) and the request does not \
                             carry it",
                        );
                        r.headers.insert(
                            "WWW-Authenticate".into(),
                            HeaderBuilder::new().description(Some("`Bearer`")).build(),
                        );
                        r.into()
                    });
                    answers.entry("408".into()).or_insert_with(|| {
                        problem(&format!(
                            "the request took longer than {REQUEST_TIMEOUT:?} (a change that \
                             had started is still completed)"
                        ))
                        .into()
                    });
                    answers.entry("500".into()).or_insert_with(|| {
                        problem(
                            "the state file could not be written, or the switch could not \
                             take the change",
                        )
                        .into()
                    });
                }
                if op.request_body.is_some() {
                    for (status, why) in [
                        (
                            "400",
                            "the body is not JSON (or YAML) of the right shape".to_string(),
                        ),
                        ("413", format!("the body is larger than {BODY_LIMIT} bytes")),
                        (
                            "415",
                            "the body's Content-Type is neither JSON nor YAML".to_string(),
                        ),
                    ] {
                        answers
                            .entry(status.into())
                            .or_insert_with(|| problem(&why).into());
                    }
                }
                for (status, answer) in answers.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = answer {
                        if r.description.is_empty() {
                            r.description = status
                                .parse::<u16>()
                                .ok()
                                .and_then(|s| StatusCode::from_u16(s).ok())
                                .and_then(|s| s.canonical_reason())
                                .unwrap_or("answer")
                                .to_string();
                        }
                    }
                }
            }
        }
    }
}

/// A problem answer (`application/problem+json`) described by `why`.
fn problem(why: &str) -> Response {
    ResponseBuilder::new()
        .description(why)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
