//! The API contract: the OpenAPI document says what the router does. Every route is called,
//! with good and bad input, on the real router and controller in-process (netdev ports whose
//! interfaces do not exist, so nothing on the host is touched), and each answer must be one the
//! document declares for that route: its status, its media type, and a body that validates
//! against the declared schema (JSON Schema 2020-12, which OpenAPI 3.1 schemas are). The
//! requests that succeed must be ones the document describes too (query parameters declared
//! `in: query`, bodies valid against the request schema). At the end, every status the
//! document declares for every route must have been seen, but 408 and 500, which no good or
//! bad input can bring about here.
//!
//! The document itself is also checked for what `openapi-spec-validator` (run by CI) cannot
//! know: that it lists exactly the router's routes and methods, that problem answers are
//! `application/problem+json`, and that its security matches what the token middleware does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use control_api::api::{router, ApiDoc, AppState, BEARER, BODY_LIMIT, PROBLEM_JSON};
use control_api::events::EventHub;
use control_api::{Controller, Topology};
use serde_json::{json, Value};
use tower::ServiceExt;
use utoipa::OpenApi;

const TOPO: &str = "vlans: [{ id: 10, name: red }, { id: 20 }]\nports:\n  - { name: nx-a, kind: netdev, mode: access, vlan: 10 }\n  - { name: nx-t, kind: netdev, mode: trunk, vlans: [10, 20], native_vlan: 1 }\n";
const TOKEN: &str = "s3cret";
/// The methods the router may have on a path (HEAD and OPTIONS are axum's own).
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
/// Statuses that no input can bring about in-process (a request slower than 10 s; a failed
/// state-file write or a handler that panicked).
const UNPROVOKED: [&str; 2] = ["408", "500"];
/// Answers that need a VXLAN tunnel, which cannot be made in-process (no interface holds
/// `vxlan.local`, and none is made on the host): a new endpoint that the running tunnels
/// cannot take, and removing the `vxlan` section while a VLAN has a vni (the network-namespace
/// test `vxlan_api` makes a tunnel and sees the second).
const NEEDS_A_TUNNEL: [(&str, &str, &str); 2] = [
    ("PUT", "/api/v1/vxlan", "409"),
    ("DELETE", "/api/v1/vxlan", "422"),
];

fn app_with(token: Option<&str>) -> axum::Router {
    app_and_events(token).0
}

/// The app and its event hub (which closes the event streams, as when switchd stops).
fn app_and_events(token: Option<&str>) -> (axum::Router, EventHub) {
    let ctl = Controller::start(Topology::from_yaml(TOPO).unwrap(), 1, None).unwrap();
    let state = AppState::new(Arc::new(Mutex::new(ctl)), token.map(Arc::from));
    let hub = state.events.clone();
    (router(state), hub)
}

fn doc() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// The media type without parameters, lowercase.
fn essence(ctype: &str) -> String {
    ctype
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

/// The document's operations: (method, path template) -> operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS
                .iter()
                .any(|m| m.as_str().eq_ignore_ascii_case(method))
            {
                ops.insert((method.to_uppercase(), path.clone()), op.clone());
            }
        }
    }
    ops
}

/// Whether a concrete `path` is an instance of `template` (`{x}` is one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// A concrete path for a template, with values that exist in [`TOPO`].
fn sample(template: &str) -> String {
    template
        .replace("{name}", "nx-a")
        .replace("{id}", "10")
        .replace("{vlan}", "10")
        .replace("{mac}", "02:00:00:00:00:01")
        .replace("{address}", "192.0.2.3")
}

/// Validates `instance` against `schema`, a schema of `doc` whose `$ref`s point into
/// `#/components/schemas`: the schema is validated as the root of a document that also holds
/// the components, so that every reference resolves. Returns the errors.
fn schema_errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = schema.as_object().cloned().unwrap_or_default();
    root.insert("components".into(), doc["components"].clone());
    let validator = jsonschema::draft202012::new(&Value::Object(root))
        .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
        .collect()
}

/// The document, and what the calls through it have seen.
struct Contract {
    doc: Value,
    ops: BTreeMap<(String, String), Value>,
    /// (method, path template, status) of every answer seen.
    seen: BTreeSet<(String, String, String)>,
}

/// One answer: its status and its body (JSON, or the text as a JSON string; null if empty).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Contract {
    fn new() -> Self {
        let doc = doc();
        let ops = operations(&doc);
        Contract {
            doc,
            ops,
            seen: BTreeSet::new(),
        }
    }

    /// The documented operation for `method` on the concrete `path`.
    fn operation(&self, method: &Method, path: &str) -> (String, Value) {
        self.ops
            .iter()
            .find(|((m, t), _)| m == method.as_str() && matches(t, path))
            .map(|((_, t), op)| (t.clone(), op.clone()))
            .unwrap_or_else(|| panic!("{method} {path} is not in the OpenAPI document"))
    }

    /// Sends a JSON request (or none) and checks the answer against the document.
    async fn call(
        &mut self,
        app: &axum::Router,
        method: Method,
        uri: &str,
        body: Option<&str>,
    ) -> Answer {
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        self.send(
            app,
            method,
            uri,
            headers,
            body.unwrap_or_default().as_bytes().to_vec(),
        )
        .await
    }

    /// Sends a request and checks that the answer is one the document declares for the route:
    /// its status, its media type, its body against the declared schema. A request that
    /// succeeds must also be one the document describes.
    async fn send(
        &mut self,
        app: &axum::Router,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let (template, op) = self.operation(&method, path);
        let what = format!("{method} {uri}");
        let mut req = Request::builder().method(method.clone()).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.clone())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| essence(v.to_str().unwrap()));
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let code = status.as_str().to_string();
        let Some(declared) = op["responses"].get(&code) else {
            panic!(
                "{what} answered {status} ({}), which the document does not declare for \
                 {method} {template}",
                String::from_utf8_lossy(&bytes)
            );
        };
        if status.is_success() {
            self.check_request(&what, &op, query, headers, &body);
        }
        let answer = match declared.get("content").and_then(Value::as_object) {
            None => {
                assert!(
                    bytes.is_empty(),
                    "{what}: {status} is declared without a body, but it has one: {}",
                    String::from_utf8_lossy(&bytes)
                );
                Value::Null
            }
            Some(content) => {
                let media = ctype
                    .unwrap_or_else(|| panic!("{what}: {status} has a body but no Content-Type"));
                let Some(declared) = content.get(&media) else {
                    panic!(
                        "{what}: {status} answered {media}, the document declares {:?}",
                        content.keys().collect::<Vec<_>>()
                    );
                };
                let instance = if is_json(&media) {
                    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        panic!(
                            "{what}: {media} body is not JSON ({e}): {}",
                            String::from_utf8_lossy(&bytes)
                        )
                    })
                } else {
                    // Text, or bytes (a capture's pcapng) that a string schema stands for.
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                };
                let errors = schema_errors(&self.doc, &declared["schema"], &instance);
                assert!(
                    errors.is_empty(),
                    "{what}: the {status} answer does not match its schema {}:\n{}\nanswer: {instance}",
                    declared["schema"],
                    errors.join("\n")
                );
                if media == PROBLEM_JSON {
                    assert_eq!(instance["status"], status.as_u16(), "{what}: {instance}");
                }
                instance
            }
        };
        self.seen.insert((method.to_string(), template, code));
        Answer {
            status,
            body: answer,
        }
    }

    /// A request that succeeded is one the document describes: its query parameters are
    /// declared `in: query`, and a JSON body is valid against the request body's schema.
    fn check_request(
        &self,
        what: &str,
        op: &Value,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for name in query
            .split('&')
            .filter(|q| !q.is_empty())
            .map(|q| q.split('=').next().unwrap())
        {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "query"),
                "{what}: query parameter {name:?} is not declared `in: query`: {params:?}"
            );
        }
        let ctype = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| essence(v));
        if body.is_empty() || !ctype.as_deref().is_none_or(is_json) {
            return;
        }
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{what} took a JSON body, the document declares none"
        );
        let instance: Value = serde_json::from_slice(body).unwrap();
        let errors = schema_errors(&self.doc, schema, &instance);
        assert!(
            errors.is_empty(),
            "{what}: the server took a body its schema {schema} rejects:\n{}\nbody: {instance}",
            errors.join("\n")
        );
    }

    /// Every status the document declares for every route has been seen, but [`UNPROVOKED`].
    fn assert_every_declared_answer_seen(&self) {
        let mut missing = Vec::new();
        for ((method, path), op) in &self.ops {
            for code in op["responses"].as_object().unwrap().keys() {
                let key = (method.clone(), path.clone(), code.clone());
                let needs_a_tunnel = NEEDS_A_TUNNEL.iter().any(|(m, p, c)| {
                    (*m, *p, *c) == (method.as_str(), path.as_str(), code.as_str())
                });
                if !UNPROVOKED.contains(&code.as_str())
                    && !needs_a_tunnel
                    && !self.seen.contains(&key)
                {
                    missing.push(format!("{method} {path} {code}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "declared answers never seen (call each route so that it answers them):\n{}",
            missing.join("\n")
        );
    }
}

#[tokio::test]
async fn every_route_answers_as_the_document_says() {
    let mut c = Contract::new();
    let (app, hub) = app_and_events(None);
    let huge = format!(
        "{{\"vlans\": [{}]}}",
        "{\"id\": 10},".repeat(BODY_LIMIT / 10)
    );
    let huge_len = huge.len().to_string();
    let too_large = [
        ("content-type", "application/json"),
        ("content-length", huge_len.as_str()),
    ];
    let text = [("content-type", "text/plain")];
    use Method as M;
    use StatusCode as S;

    // /healthz, the page, the document itself, the counters
    assert_eq!(c.call(&app, M::GET, "/healthz", None).await.body, "ok\n");
    let page = c.call(&app, M::GET, "/", None).await.body;
    assert!(
        page.as_str()
            .is_some_and(|p| p.starts_with("<!doctype html>")),
        "{page}"
    );
    let served = c.call(&app, M::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(served.body, c.doc, "the served document is ApiDoc's");
    assert_eq!(
        c.call(&app, M::GET, "/api/v1/stats", None).await.status,
        S::OK
    );
    assert_eq!(c.call(&app, M::GET, "/metrics", None).await.status, S::OK);

    // the event stream: a filter naming an unknown type is a problem; a stream lasts until
    // the client goes or switchd stops (the hub closes, as here), and then no new one opens
    let a = c
        .call(&app, M::GET, "/api/v1/events?types=link,bogus", None)
        .await;
    assert_eq!(
        (a.status, &a.body["field"]),
        (S::BAD_REQUEST, &json!("types"))
    );
    assert!(a.body["detail"].as_str().unwrap().contains("\"bogus\""));
    let closer = hub.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        closer.close();
    });
    let a = c
        .call(&app, M::GET, "/api/v1/events?types=link,mac_moved", None)
        .await;
    assert_eq!(a.status, S::OK);
    assert!(
        a.body.as_str().unwrap().starts_with(": keepalive\n\n"),
        "{}",
        a.body
    );
    let a = c.call(&app, M::GET, "/api/v1/events", None).await;
    assert_eq!(a.status, S::SERVICE_UNAVAILABLE);

    // ports: every port answer (list, show, add, change, enable) matches PortView
    let a = c.call(&app, M::GET, "/api/v1/ports", None).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(2), "{}", a.body);
    let port = r#"{"name":"nx-b","kind":"netdev","mode":"access","vlan":20,"max_macs":4,
        "mac_limit_action":"shutdown","allowed_macs":["02:00:00:00:00:01"],"admin_up":false}"#;
    for (body, status) in [
        (port, S::CREATED),
        (port, S::CONFLICT),
        ("{not json", S::BAD_REQUEST),
        (
            r#"{"name":"nx-c","kind":"netdev","mode":"access","vlan":4095}"#,
            S::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let a = c.call(&app, M::POST, "/api/v1/ports", Some(body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
    }
    let a = c
        .send(&app, M::POST, "/api/v1/ports", &text, port.into())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::POST,
            "/api/v1/ports",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);
    for (uri, status) in [
        ("/api/v1/ports/nx-b", S::OK),
        ("/api/v1/ports/nx-t", S::OK),
        ("/api/v1/ports/ghost", S::NOT_FOUND),
    ] {
        assert_eq!(
            c.call(&app, M::GET, uri, None).await.status,
            status,
            "{uri}"
        );
    }
    for (uri, body, status) in [
        (
            "/api/v1/ports/nx-b",
            r#"{"mode":"trunk","vlans":[10,20]}"#,
            S::OK,
        ),
        (
            "/api/v1/ports/nx-t",
            r#"{"native_vlan":null,"max_macs":null,"mac_limit_action":null,"allowed_macs":null}"#,
            S::OK,
        ),
        ("/api/v1/ports/ghost", r#"{"vlan":20}"#, S::NOT_FOUND),
        ("/api/v1/ports/nx-b", r#"{"colour":"red"}"#, S::BAD_REQUEST),
        (
            "/api/v1/ports/nx-b",
            r#"{"vlans":[4095]}"#,
            S::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let a = c.call(&app, M::PATCH, uri, Some(body)).await;
        assert_eq!(a.status, status, "{uri} {body}: {}", a.body);
    }
    let a = c
        .send(&app, M::PATCH, "/api/v1/ports/nx-b", &text, b"{}".to_vec())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::PATCH,
            "/api/v1/ports/nx-b",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);
    for (uri, status) in [
        ("/api/v1/ports/nx-b/enable", S::OK),
        ("/api/v1/ports/ghost/enable", S::NOT_FOUND),
    ] {
        assert_eq!(
            c.call(&app, M::POST, uri, None).await.status,
            status,
            "{uri}"
        );
    }
    for status in [S::NO_CONTENT, S::NOT_FOUND] {
        let a = c.call(&app, M::DELETE, "/api/v1/ports/nx-b", None).await;
        assert_eq!(a.status, status);
    }

    // vlans
    assert_eq!(
        c.call(&app, M::GET, "/api/v1/vlans", None).await.status,
        S::OK
    );
    for (uri, status) in [
        ("/api/v1/vlans/10", S::OK),
        ("/api/v1/vlans/1", S::OK),
        ("/api/v1/vlans/x", S::BAD_REQUEST),
        ("/api/v1/vlans/4095", S::UNPROCESSABLE_ENTITY),
        ("/api/v1/vlans/30", S::NOT_FOUND),
    ] {
        assert_eq!(
            c.call(&app, M::GET, uri, None).await.status,
            status,
            "{uri}"
        );
    }
    let vlan = r#"{"id":30,"name":"blue","max_macs":100}"#;
    for (body, status) in [
        (vlan, S::CREATED),
        (vlan, S::CONFLICT),
        (r#"{"id":4095}"#, S::UNPROCESSABLE_ENTITY),
        (r#"{"id":"thirty"}"#, S::BAD_REQUEST),
    ] {
        let a = c.call(&app, M::POST, "/api/v1/vlans", Some(body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
    }
    let a = c
        .send(&app, M::POST, "/api/v1/vlans", &text, vlan.into())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::POST,
            "/api/v1/vlans",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);
    for (uri, status) in [
        ("/api/v1/vlans/30", S::NO_CONTENT),
        ("/api/v1/vlans/30", S::NOT_FOUND),
        ("/api/v1/vlans/10", S::CONFLICT),
        ("/api/v1/vlans/x", S::BAD_REQUEST),
        ("/api/v1/vlans/0", S::UNPROCESSABLE_ENTITY),
    ] {
        assert_eq!(
            c.call(&app, M::DELETE, uri, None).await.status,
            status,
            "{uri}"
        );
    }

    // fdb
    let mac = r#"{"vlan":10,"mac":"02:00:00:00:00:AA","port":"nx-a"}"#;
    for (body, status) in [
        (mac, S::CREATED),
        (
            r#"{"vlan":10,"mac":"02:00:00:00:00:cc","port":"nx-t"}"#,
            S::CREATED,
        ),
        (
            r#"{"vlan":10,"mac":"01:00:5e:00:00:01","port":"nx-a"}"#,
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            r#"{"vlan":10,"mac":"nonsense","port":"nx-a"}"#,
            S::BAD_REQUEST,
        ),
    ] {
        let a = c.call(&app, M::POST, "/api/v1/fdb", Some(body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
    }
    let a = c
        .send(&app, M::POST, "/api/v1/fdb", &text, mac.into())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::POST,
            "/api/v1/fdb",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);
    for (uri, status) in [
        ("/api/v1/fdb", S::OK),
        ("/api/v1/fdb?vlan=10&type=static", S::OK),
        ("/api/v1/fdb?port=nx-a&type=dynamic", S::OK),
        ("/api/v1/fdb?type=sometimes", S::BAD_REQUEST),
        ("/api/v1/fdb?colour=red", S::BAD_REQUEST),
        ("/api/v1/fdb?port=ghost", S::NOT_FOUND),
    ] {
        assert_eq!(
            c.call(&app, M::GET, uri, None).await.status,
            status,
            "{uri}"
        );
    }
    let a = c
        .call(&app, M::GET, "/api/v1/fdb?vlan=10&type=static", None)
        .await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(2), "{}", a.body);
    for (uri, status) in [
        ("/api/v1/fdb/10/02:00:00:00:00:cc", S::NO_CONTENT),
        ("/api/v1/fdb/10/02:00:00:00:00:cc", S::NOT_FOUND),
        ("/api/v1/fdb/x/02:00:00:00:00:cc", S::BAD_REQUEST),
        ("/api/v1/fdb/10/zz", S::UNPROCESSABLE_ENTITY),
        ("/api/v1/fdb?vlan=10", S::OK),
        ("/api/v1/fdb?vlan=10&type=static", S::OK),
        ("/api/v1/fdb?vlan=x", S::BAD_REQUEST),
        ("/api/v1/fdb?port=ghost", S::NOT_FOUND),
    ] {
        assert_eq!(
            c.call(&app, M::DELETE, uri, None).await.status,
            status,
            "{uri}"
        );
    }

    // topology
    let exported = c.call(&app, M::GET, "/api/v1/topology", None).await.body;
    let mut desired = exported.clone();
    desired["ports"][0]["vlan"] = json!(20);
    desired["vlans"] = json!([{"id": 10}, {"id": 20}]);
    desired["port_max_macs"] = json!(1000);
    desired["mac_flap"] = json!({"moves": 3, "window_secs": 5, "damp_secs": 10});
    let mut bad = exported.clone();
    bad["ports"][1]["vlans"] = json!([10, 4095]);
    bad["ports"][0]["vlan"] = json!(0);
    let mut bigger = exported.clone();
    bigger["fdb_max_entries"] = json!(1000);
    for (uri, body, status) in [
        ("/api/v1/topology?dry_run=true", &desired, S::OK),
        ("/api/v1/topology", &desired, S::OK),
        ("/api/v1/topology", &exported, S::OK),
        ("/api/v1/topology", &bad, S::UNPROCESSABLE_ENTITY),
        ("/api/v1/topology", &bigger, S::CONFLICT),
        ("/api/v1/topology?dry_run=maybe", &exported, S::BAD_REQUEST),
        ("/api/v1/topology", &json!([]), S::BAD_REQUEST),
    ] {
        let a = c.call(&app, M::PUT, uri, Some(&body.to_string())).await;
        assert_eq!(a.status, status, "{uri} {body}: {}", a.body);
    }
    let yaml = [("content-type", "application/yaml")];
    let a = c
        .send(
            &app,
            M::PUT,
            "/api/v1/topology?dry_run=true",
            &yaml,
            TOPO.into(),
        )
        .await;
    assert_eq!(a.status, S::OK, "{}", a.body);
    let a = c
        .send(&app, M::PUT, "/api/v1/topology", &text, b"{}".to_vec())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::PUT,
            "/api/v1/topology",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);

    // trace: a frame as fields and as hex; a port that is not there; frames that cannot be made
    let tagged = r#"{"port":"nx-t","frame":{"src":"02:00:00:00:00:01","dst":"ff:ff:ff:ff:ff:ff",
        "vlans":[10],"src_ip":"198.18.0.1","dst_ip":"198.18.0.2"}}"#;
    let a = c.call(&app, M::POST, "/api/v1/trace", Some(tagged)).await;
    assert_eq!(a.status, S::OK, "{}", a.body);
    assert_eq!(a.body["verdict"], "forwarded", "{}", a.body);
    assert_eq!(a.body["vlan"], 10, "{}", a.body);
    assert_eq!(a.body["egress"], json!([{"port": "nx-a", "tag": "pop"}]));
    let on_access = r#"{"port":"nx-a","hex":"ffffffffffff 020000000002 8100 0014 88b5 0000"}"#;
    let a = c
        .call(&app, M::POST, "/api/v1/trace", Some(on_access))
        .await;
    assert_eq!(a.status, S::OK, "{}", a.body);
    assert_eq!(a.body["drop_reason"], "tagged_on_access", "{}", a.body);
    for (body, status) in [
        (
            r#"{"port":"ghost","hex":"ffffffffffff020000000001"}"#,
            S::NOT_FOUND,
        ),
        (r#"{"port":"nx-a","hex":"fff"}"#, S::UNPROCESSABLE_ENTITY),
        (r#"{"port":"nx-a"}"#, S::UNPROCESSABLE_ENTITY),
        (r#"{"port":"nx-a","hex":"00","colour":1}"#, S::BAD_REQUEST),
    ] {
        let a = c.call(&app, M::POST, "/api/v1/trace", Some(body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
    }
    let a = c
        .send(&app, M::POST, "/api/v1/trace", &text, b"{}".to_vec())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::POST,
            "/api/v1/trace",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);

    // mirrors: add, list, the mistakes, remove
    let mirror = r#"{"name":"span","output":"nx-t","ports":["nx-a"],"direction":"rx","vlan":99}"#;
    for (method, uri, body, status) in [
        (M::POST, "/api/v1/mirrors", Some(mirror), S::CREATED),
        (M::POST, "/api/v1/mirrors", Some(mirror), S::CONFLICT),
        (M::GET, "/api/v1/mirrors", None, S::OK),
        (
            M::POST,
            "/api/v1/mirrors",
            Some(r#"{"name":"x","output":"ghost","vlans":[10]}"#),
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            M::POST,
            "/api/v1/mirrors",
            Some(r#"{"name":"x"}"#),
            S::BAD_REQUEST,
        ),
        (M::DELETE, "/api/v1/mirrors/span", None, S::NO_CONTENT),
        (M::DELETE, "/api/v1/mirrors/span", None, S::NOT_FOUND),
    ] {
        let a = c.call(&app, method.clone(), uri, body).await;
        assert_eq!(a.status, status, "{method} {uri}: {}", a.body);
    }
    let a = c
        .send(&app, M::POST, "/api/v1/mirrors", &text, mirror.into())
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = c
        .send(
            &app,
            M::POST,
            "/api/v1/mirrors",
            &too_large,
            huge.clone().into(),
        )
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);

    // vxlan: the section, the flood lists, a VLAN's vni. No tunnel can be made here (no
    // interface holds vxlan.local, and none is made on the host), so a vni is refused (409).
    let vtep = r#"{"local":"192.0.2.1","remotes":["192.0.2.2"]}"#;
    let remote = r#"{"address":"192.0.2.3"}"#;
    for (method, uri, body, status, field) in [
        (M::GET, "/api/v1/vxlan", None, S::OK, None),
        (M::DELETE, "/api/v1/vxlan", None, S::NOT_FOUND, None),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(remote),
            S::CONFLICT,
            None,
        ),
        (
            M::DELETE,
            "/api/v1/vxlan/remotes/192.0.2.3",
            None,
            S::NOT_FOUND,
            Some("address"),
        ),
        (M::PUT, "/api/v1/vxlan", Some(vtep), S::OK, None),
        (
            M::PUT,
            "/api/v1/vxlan",
            Some(r#"{"local":"224.0.0.1"}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("local"),
        ),
        (
            M::PUT,
            "/api/v1/vxlan",
            Some(r#"{"local":"192.0.2.1","remotes":["2001:db8::2"]}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("remotes[0]"),
        ),
        (
            M::PUT,
            "/api/v1/vxlan",
            Some(r#"{"local":"nope"}"#),
            S::BAD_REQUEST,
            Some("local"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(remote),
            S::CREATED,
            None,
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(remote),
            S::CONFLICT,
            Some("address"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":"nope"}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("address"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":"224.0.0.5"}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("address"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":"2001:db8::3"}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("address"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":"192.0.2.1"}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("address"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":"192.0.2.4","vlan":10}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("vlan"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":"192.0.2.4","vlan":30}"#),
            S::NOT_FOUND,
            Some("vlan"),
        ),
        (
            M::POST,
            "/api/v1/vxlan/remotes",
            Some(r#"{"address":1}"#),
            S::BAD_REQUEST,
            Some("address"),
        ),
        (M::GET, "/api/v1/vxlan", None, S::OK, None),
        (
            M::DELETE,
            "/api/v1/vxlan/remotes/192.0.2.3",
            None,
            S::NO_CONTENT,
            None,
        ),
        (
            M::DELETE,
            "/api/v1/vxlan/remotes/192.0.2.3",
            None,
            S::NOT_FOUND,
            Some("address"),
        ),
        (
            M::DELETE,
            "/api/v1/vxlan/remotes/nope",
            None,
            S::UNPROCESSABLE_ENTITY,
            Some("address"),
        ),
        (
            M::DELETE,
            "/api/v1/vxlan/remotes/192.0.2.2?vlan=10",
            None,
            S::UNPROCESSABLE_ENTITY,
            Some("vlan"),
        ),
        (
            M::DELETE,
            "/api/v1/vxlan/remotes/192.0.2.2?vlan=x",
            None,
            S::BAD_REQUEST,
            None,
        ),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"name":"crimson","max_macs":50}"#),
            S::OK,
            None,
        ),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"vni":1010}"#),
            S::CONFLICT,
            None,
        ),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"vni":0}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("vni"),
        ),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"remotes":["192.0.2.9"]}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("remotes"),
        ),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"name":null,"max_macs":null,"vni":null,"remotes":null}"#),
            S::OK,
            None,
        ),
        (
            M::PATCH,
            "/api/v1/vlans/30",
            Some("{}"),
            S::NOT_FOUND,
            Some("id"),
        ),
        (
            M::PATCH,
            "/api/v1/vlans/x",
            Some("{}"),
            S::BAD_REQUEST,
            Some("id"),
        ),
        (
            M::PATCH,
            "/api/v1/vlans/4095",
            Some("{}"),
            S::UNPROCESSABLE_ENTITY,
            Some("id"),
        ),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"colour":"red"}"#),
            S::BAD_REQUEST,
            None,
        ),
        (M::DELETE, "/api/v1/vxlan", None, S::NO_CONTENT, None),
        (
            M::PATCH,
            "/api/v1/vlans/10",
            Some(r#"{"vni":1010}"#),
            S::UNPROCESSABLE_ENTITY,
            Some("vni"),
        ),
    ] {
        let a = c.call(&app, method.clone(), uri, body).await;
        assert_eq!(a.status, status, "{method} {uri} {body:?}: {}", a.body);
        if let Some(field) = field {
            assert_eq!(
                a.body["field"], field,
                "{method} {uri} {body:?}: {}",
                a.body
            );
        }
    }
    let a = c.call(&app, M::GET, "/api/v1/vxlan", None).await;
    assert_eq!(a.body, json!({"vxlan": null, "tunnels": []}));
    for (method, uri) in [
        (M::PUT, "/api/v1/vxlan"),
        (M::POST, "/api/v1/vxlan/remotes"),
        (M::PATCH, "/api/v1/vlans/10"),
    ] {
        let a = c
            .send(&app, method.clone(), uri, &text, b"{}".to_vec())
            .await;
        assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE, "{method} {uri}");
        let a = c
            .send(&app, method.clone(), uri, &too_large, huge.clone().into())
            .await;
        assert_eq!(a.status, S::PAYLOAD_TOO_LARGE, "{method} {uri}");
    }

    // capture: a second of a port's frames; bad snaplen and count; no such port
    let a = c
        .call(
            &app,
            M::GET,
            "/api/v1/ports/nx-a/capture?seconds=1&direction=rx",
            None,
        )
        .await;
    assert_eq!(a.status, S::OK);
    let pcapng = a.body.as_str().unwrap().as_bytes().to_vec();
    assert_eq!(
        &pcapng[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "a pcapng section header"
    );
    for (uri, status) in [
        (
            "/api/v1/ports/nx-a/capture?snaplen=13",
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/ports/nx-a/capture?count=0",
            S::UNPROCESSABLE_ENTITY,
        ),
        ("/api/v1/ports/nx-a/capture?direction=up", S::BAD_REQUEST),
        ("/api/v1/ports/ghost/capture?count=1", S::NOT_FOUND),
    ] {
        let a = c.call(&app, M::GET, uri, None).await;
        assert_eq!(a.status, status, "{uri}: {}", a.body);
    }
    // live trace: arm, read (waiting), stop; and the mistakes
    for (method, uri, status) in [
        (
            M::POST,
            "/api/v1/ports/nx-a/trace?count=2&vlan=10",
            S::CREATED,
        ),
        (M::GET, "/api/v1/ports/nx-a/trace?wait_secs=0", S::OK),
        (M::DELETE, "/api/v1/ports/nx-a/trace", S::OK),
        (M::GET, "/api/v1/ports/nx-a/trace", S::NOT_FOUND),
        (M::DELETE, "/api/v1/ports/nx-a/trace", S::NOT_FOUND),
        (M::GET, "/api/v1/ports/nx-a/trace?wait=1", S::BAD_REQUEST),
        (
            M::POST,
            "/api/v1/ports/nx-a/trace?count=0",
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            M::POST,
            "/api/v1/ports/nx-a/trace?vlan=4095",
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            M::POST,
            "/api/v1/ports/nx-a/trace?src=nonsense",
            S::BAD_REQUEST,
        ),
        (M::POST, "/api/v1/ports/ghost/trace", S::NOT_FOUND),
    ] {
        let a = c.call(&app, method.clone(), uri, None).await;
        assert_eq!(a.status, status, "{method} {uri}: {}", a.body);
        if status == S::CREATED {
            assert_eq!(a.body["armed"], true, "{}", a.body);
            assert_eq!(a.body["remaining"], 2, "{}", a.body);
        }
    }

    // The token: every route the document puts behind it answers 401 without it (and says
    // `WWW-Authenticate: Bearer`); the others answer as without a token; with it, 2xx.
    let guarded = app_with(Some(TOKEN));
    let global = c.doc["security"].clone();
    for ((method, template), op) in c.ops.clone() {
        let method: Method = method.parse().unwrap();
        let uri = sample(&template);
        // A route needs the token when its security (or the document's) has requirements and
        // none of them is the empty one (`{}`: nothing needed).
        let security = op.get("security").unwrap_or(&global);
        let needs_token = security.as_array().is_some_and(|reqs| {
            !reqs.is_empty()
                && !reqs
                    .iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
        });
        let a = c.call(&guarded, method.clone(), &uri, None).await;
        if needs_token {
            assert_eq!(
                a.status,
                S::UNAUTHORIZED,
                "{method} {uri} without the token"
            );
        } else {
            assert_ne!(a.status, S::UNAUTHORIZED, "{method} {uri} needs no token");
        }
    }
    let resp = guarded
        .clone()
        .oneshot(Request::get("/api/v1/stats").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let auth = format!("Bearer {TOKEN}");
    let a = c
        .send(
            &guarded,
            M::GET,
            "/api/v1/ports",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, S::OK);

    c.assert_every_declared_answer_seen();
}

#[tokio::test]
async fn what_is_not_in_the_document_is_a_problem() {
    let doc = doc();
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    for token in [None, Some(TOKEN)] {
        let app = app_with(token);
        let mut calls: Vec<(Method, String, StatusCode)> =
            ["/index.html", "/api/v1", "/api/v1/nothing"]
                .iter()
                .map(|p| (Method::GET, p.to_string(), StatusCode::NOT_FOUND))
                .collect();
        // each documented path with each method the document does not give it
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(m.as_str().to_ascii_lowercase()).is_none() {
                    calls.push((m, sample(path), StatusCode::METHOD_NOT_ALLOWED));
                }
            }
        }
        for (method, uri, status) in calls {
            let resp = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.clone())
                        .uri(&uri)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), status, "{method} {uri} (token {token:?})");
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                PROBLEM_JSON,
                "{method} {uri}"
            );
            let body: Value =
                serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap())
                    .unwrap();
            let errors = schema_errors(&doc, &problem, &body);
            assert!(errors.is_empty(), "{method} {uri}: {errors:?}: {body}");
        }
    }
}

/// The string literals that are paths in `router()`: the routes the router has.
fn router_paths() -> BTreeSet<String> {
    let src = include_str!("../src/api/mod.rs");
    let start = src.find("pub fn router(").expect("router() in api/mod.rs");
    let body = &src[start..start + src[start..].find("\n}\n").unwrap()];
    body.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_document_lists_the_routers_routes() {
    let doc = doc();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = router_paths();
    assert!(routed.contains("/healthz") && routed.contains("/api/v1/openapi.json"));
    assert_eq!(documented, routed, "the document's paths are the router's");
}

#[test]
fn parameters_are_where_the_document_says() {
    for ((method, path), op) in operations(&doc()) {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for p in &params {
            let name = p["name"].as_str().unwrap();
            match p["in"].as_str().unwrap() {
                "path" => {
                    assert!(
                        in_path.contains(name),
                        "{method} {path}: {name:?} is declared in: path, but the path has no {{{name}}}"
                    );
                    assert_eq!(
                        p["required"], true,
                        "{method} {path}: path parameter {name}"
                    );
                }
                "query" => assert_ne!(p["required"], true, "{method} {path}: {name} is optional"),
                other => panic!("{method} {path}: {name:?} is in {other}"),
            }
        }
        for name in in_path {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {path}: {{{name}}} has no path parameter"
            );
        }
    }
}

#[test]
fn problems_are_problem_json_and_the_token_is_a_security_scheme() {
    let doc = doc();
    for ((method, path), op) in operations(&doc) {
        for (code, answer) in op["responses"].as_object().unwrap() {
            let content = answer["content"].as_object().cloned().unwrap_or_default();
            let is_error = code.starts_with('4') || code.starts_with('5');
            for (media, c) in &content {
                let problem = c["schema"]["$ref"] == "#/components/schemas/Problem";
                assert_eq!(
                    problem,
                    is_error && media == PROBLEM_JSON,
                    "{method} {path} {code}: {media} {}",
                    c["schema"]
                );
            }
            if is_error {
                assert!(
                    content.contains_key(PROBLEM_JSON),
                    "{method} {path} {code} is not {PROBLEM_JSON}"
                );
            }
            assert!(
                answer["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {code} has no description"
            );
        }
    }
    let scheme = &doc["components"]["securitySchemes"][BEARER];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert!(scheme["description"]
        .as_str()
        .unwrap()
        .contains("--token-file"));
    assert_eq!(doc["security"], json!([{ BEARER: [] }]));
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
}
