//! Route tests: the real router and controller in-process (no server, no sockets for HTTP),
//! with netdev ports whose interfaces do not exist, so nothing on the host is touched.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use control_api::api::{router, AppState};
use control_api::{Controller, Topology};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOPO: &str = "vlans: [{ id: 10, name: red }, { id: 20 }]\nports:\n  - { name: nx-a, kind: netdev, mode: access, vlan: 10 }\n  - { name: nx-t, kind: netdev, mode: trunk, vlans: [10, 20], native_vlan: 1 }\n";

fn app_with(token: Option<&str>) -> axum::Router {
    let ctl = Controller::start(Topology::from_yaml(TOPO).unwrap(), 1, None).unwrap();
    router(AppState::new(
        Arc::new(Mutex::new(ctl)),
        token.map(Arc::from),
    ))
}

fn app() -> axum::Router {
    app_with(None)
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, ctype, v)
}

/// Asserts a problem+json error with `status`, naming `field`, whose detail contains `text`.
async fn problem(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
    status: StatusCode,
    field: Option<&str>,
    text: &str,
) {
    let (s, ctype, v) = call(app, method.clone(), uri, body).await;
    assert_eq!(s, status, "{method} {uri} {body:?}: {v}");
    assert_eq!(ctype, "application/problem+json", "{method} {uri}");
    assert_eq!(v["status"], status.as_u16());
    if let Some(f) = field {
        assert_eq!(v["field"], f, "{method} {uri}: {v}");
    }
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(text),
        "{method} {uri}: {detail:?} lacks {text:?}"
    );
}

#[tokio::test]
async fn ports_crud() {
    let app = app();
    let (s, _, v) = call(&app, Method::GET, "/api/v1/ports", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["state"]["link"], "down");
    assert_eq!(v[0]["state"]["reason"], "interface nx-a does not exist");
    assert_eq!(v[0]["state"]["counters"]["drops"]["tagged_on_access"], 0);

    let (s, _, v) = call(
        &app,
        Method::POST,
        "/api/v1/ports",
        Some(r#"{"name":"nx-b","kind":"netdev","mode":"access","vlan":20}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["vlan"], 20);
    let (s, _, v) = call(&app, Method::GET, "/api/v1/ports/nx-b", None).await;
    assert_eq!((s, v["name"].clone()), (StatusCode::OK, json!("nx-b")));

    let (s, _, v) = call(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-b",
        Some(r#"{"mode":"trunk","vlans":[10,20]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["mode"], "trunk");
    assert!(
        v.get("vlan").is_none(),
        "access VLAN cleared by the mode change: {v}"
    );
    let (_, _, v) = call(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-t",
        Some(r#"{"native_vlan":null}"#),
    )
    .await;
    assert!(v.get("native_vlan").is_none(), "{v}");

    let (s, _, _) = call(&app, Method::DELETE, "/api/v1/ports/nx-b", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = call(&app, Method::GET, "/api/v1/ports/nx-b", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_port_requests_are_4xx_naming_the_field() {
    let app = app();
    let post = |b: &'static str| Some(b);
    for (body, status, field, text) in [
        (
            post("{not json"),
            StatusCode::BAD_REQUEST,
            None,
            "invalid JSON",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"access","vlan":10,"colour":"red"}"#),
            StatusCode::BAD_REQUEST,
            Some("colour"),
            "unknown field `colour`",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"access","vlan":0}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("vlan"),
            "0 is the priority tag",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"access","vlan":4095}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("vlan"),
            "4095 is reserved (valid 1-4094)",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"access","vlan":5000}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("vlan"),
            "5000 is out of range",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"access","vlan":70000}"#),
            StatusCode::BAD_REQUEST,
            Some("vlan"),
            "invalid value",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"access","vlan":30}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("vlan"),
            "VLAN 30 is not declared",
        ),
        (
            post(r#"{"name":"a-name-longer-than-15","kind":"tap","mode":"access","vlan":10}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("name"),
            "at most 15 bytes",
        ),
        (
            post(r#"{"name":"nx-a","kind":"tap","mode":"access","vlan":10}"#),
            StatusCode::CONFLICT,
            Some("name"),
            "already in use",
        ),
        (
            post(r#"{"name":"p","kind":"bridge","mode":"access","vlan":10}"#),
            StatusCode::BAD_REQUEST,
            Some("kind"),
            "unknown variant",
        ),
        (
            post(r#"{"name":"p","kind":"tap","mode":"trunk"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "a trunk needs vlans or native_vlan",
        ),
    ] {
        problem(
            &app,
            Method::POST,
            "/api/v1/ports",
            body,
            status,
            field,
            text,
        )
        .await;
    }
    // A problem with the port as a whole names no field and has no stray prefix.
    let (_, _, v) = call(
        &app,
        Method::POST,
        "/api/v1/ports",
        Some(r#"{"name":"p","kind":"tap","mode":"trunk"}"#),
    )
    .await;
    assert!(v.get("field").is_none(), "{v}");
    assert_eq!(v["detail"], "a trunk needs vlans or native_vlan");
    problem(
        &app,
        Method::PATCH,
        "/api/v1/ports/nope",
        Some("{}"),
        StatusCode::NOT_FOUND,
        Some("name"),
        "no port named",
    )
    .await;
    problem(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-a",
        Some(r#"{"kind":"tap"}"#),
        StatusCode::BAD_REQUEST,
        Some("kind"),
        "unknown field",
    )
    .await;
    problem(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-a",
        Some(r#"{"vlan":4095}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("vlan"),
        "4095 is reserved",
    )
    .await;
    problem(
        &app,
        Method::DELETE,
        "/api/v1/ports/nope",
        None,
        StatusCode::NOT_FOUND,
        Some("name"),
        "no port named",
    )
    .await;
    // nothing changed by any of the above
    let (_, _, v) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert_eq!(
        serde_json::from_value::<Topology>(v).unwrap(),
        Topology::from_yaml(TOPO).unwrap()
    );
}

#[tokio::test]
async fn vlans() {
    let app = app();
    let (_, _, v) = call(&app, Method::GET, "/api/v1/vlans", None).await;
    assert_eq!(
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 10, 20]
    );
    let (s, _, v) = call(
        &app,
        Method::POST,
        "/api/v1/vlans",
        Some(r#"{"id":30,"name":"blue"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, v) = call(&app, Method::GET, "/api/v1/vlans/10", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ports"], json!(["nx-a", "nx-t"]));
    problem(
        &app,
        Method::DELETE,
        "/api/v1/vlans/10",
        None,
        StatusCode::CONFLICT,
        Some("id"),
        "VLAN 10 is used by ports nx-a, nx-t",
    )
    .await;
    problem(
        &app,
        Method::POST,
        "/api/v1/vlans",
        Some(r#"{"id":30}"#),
        StatusCode::CONFLICT,
        Some("id"),
        "already declared",
    )
    .await;
    problem(
        &app,
        Method::POST,
        "/api/v1/vlans",
        Some(r#"{"id":4095}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("id"),
        "4095 is reserved",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/vlans/0",
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("id"),
        "priority tag",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/vlans/5000",
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("id"),
        "out of range",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/vlans/ten",
        None,
        StatusCode::BAD_REQUEST,
        Some("id"),
        "not a VLAN id",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/vlans/40",
        None,
        StatusCode::NOT_FOUND,
        Some("id"),
        "not declared",
    )
    .await;
    let (s, _, _) = call(&app, Method::DELETE, "/api/v1/vlans/30", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn fdb() {
    let app = app();
    let (s, _, v) = call(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":10,"mac":"02:00:00:00:00:AA","port":"nx-a"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["mac"], "02:00:00:00:00:aa");
    let (_, _, v) = call(&app, Method::GET, "/api/v1/fdb?vlan=10&type=static", None).await;
    assert_eq!(
        v,
        json!([{"vlan":10,"mac":"02:00:00:00:00:aa","port":"nx-a","type":"static","age_secs":0}])
    );
    let (_, _, v) = call(&app, Method::GET, "/api/v1/fdb?port=nx-t", None).await;
    assert_eq!(v, json!([]));
    // the static entry is configuration: it is exported
    let (_, _, t) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert_eq!(t["fdb"][0]["port"], "nx-a");
    problem(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":10,"mac":"nonsense","port":"nx-a"}"#),
        // text that cannot be read as a MAC is a body of the wrong shape, like a VLAN id of
        // 70000; a MAC that reads but breaks a rule (below) is 422
        StatusCode::BAD_REQUEST,
        Some("mac"),
        "is not a MAC address",
    )
    .await;
    problem(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":10,"mac":"01:00:5e:00:00:01","port":"nx-a"}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("mac"),
        "not a unicast",
    )
    .await;
    problem(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":20,"mac":"02:00:00:00:00:01","port":"nx-a"}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("vlan"),
        "not a member of VLAN 20",
    )
    .await;
    problem(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":10,"mac":"02:00:00:00:00:01","port":"ghost"}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("port"),
        "no port named",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/fdb?type=sometimes",
        None,
        StatusCode::BAD_REQUEST,
        None,
        "unknown variant",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/fdb?vlan=x",
        None,
        StatusCode::BAD_REQUEST,
        None,
        "vlan",
    )
    .await;
    problem(
        &app,
        Method::GET,
        "/api/v1/fdb?port=ghost",
        None,
        StatusCode::NOT_FOUND,
        Some("port"),
        "no port named",
    )
    .await;
    problem(
        &app,
        Method::DELETE,
        "/api/v1/fdb/10/zz",
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("mac"),
        "not a MAC",
    )
    .await;
    problem(
        &app,
        Method::DELETE,
        "/api/v1/fdb/4095/02:00:00:00:00:aa",
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("vlan"),
        "reserved",
    )
    .await;
    problem(
        &app,
        Method::DELETE,
        "/api/v1/fdb/10/02:00:00:00:00:bb",
        None,
        StatusCode::NOT_FOUND,
        None,
        "no entry",
    )
    .await;
    // dynamic flush leaves static entries; static flush removes them from the configuration
    let (_, _, v) = call(&app, Method::DELETE, "/api/v1/fdb?vlan=10", None).await;
    assert_eq!(v["removed"], 0);
    let (_, _, v) = call(
        &app,
        Method::DELETE,
        "/api/v1/fdb?vlan=10&type=static",
        None,
    )
    .await;
    assert_eq!(v["removed"], 1);
    let (_, _, t) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert!(t.get("fdb").is_none(), "{t}");
    call(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":10,"mac":"02:00:00:00:00:cc","port":"nx-t"}"#),
    )
    .await;
    let (s, _, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/fdb/10/02:00:00:00:00:cc",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn topology_export_apply_and_dry_run() {
    let app = app();
    let (_, _, exported) = call(&app, Method::GET, "/api/v1/topology", None).await;
    let (s, _, v) = call(
        &app,
        Method::PUT,
        "/api/v1/topology",
        Some(&exported.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["changes"], json!([]), "round trip changes nothing");

    let mut desired = exported.clone();
    desired["ports"][0]["vlan"] = json!(20);
    desired["vlans"] = json!([{"id": 10}, {"id": 20}]);
    let (s, _, v) = call(
        &app,
        Method::PUT,
        "/api/v1/topology?dry_run=true",
        Some(&desired.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["changes"],
        json!([{"op":"rename_vlan","id":10},{"op":"update_port","name":"nx-a","fields":["vlan"]}])
    );
    let (_, _, now) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert_eq!(now, exported, "dry run changed nothing");
    let (_, _, v) = call(
        &app,
        Method::PUT,
        "/api/v1/topology",
        Some(&desired.to_string()),
    )
    .await;
    assert_eq!(v["changes"].as_array().unwrap().len(), 2);
    let (_, _, now) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert_eq!(now["ports"][0]["vlan"], 20);

    // YAML bodies
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/api/v1/topology?dry_run=true")
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(TOPO))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let mut bad = exported.clone();
    bad["ports"][1]["vlans"] = json!([10, 4095]);
    problem(
        &app,
        Method::PUT,
        "/api/v1/topology",
        Some(&bad.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("ports[1].vlans[1]"),
        "4095 is reserved",
    )
    .await;
    let mut bigger = exported.clone();
    bigger["fdb_max_entries"] = json!(1000);
    problem(
        &app,
        Method::PUT,
        "/api/v1/topology",
        Some(&bigger.to_string()),
        StatusCode::CONFLICT,
        None,
        "restart",
    )
    .await;
    problem(
        &app,
        Method::PUT,
        "/api/v1/topology?dry_run=maybe",
        Some("{}"),
        StatusCode::BAD_REQUEST,
        None,
        "dry_run",
    )
    .await;
    let huge = format!("{{\"vlans\": [{}]}}", "{\"id\": 10},".repeat(200_000));
    problem(
        &app,
        Method::PUT,
        "/api/v1/topology",
        Some(&huge),
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
        "larger than",
    )
    .await;
}

#[tokio::test]
async fn stats_metrics_health_openapi() {
    let app = app();
    let (s, _, v) = call(&app, Method::GET, "/api/v1/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ports"]["nx-a"]["drops"]["vlan_not_allowed"], 0);
    assert_eq!(v["vlans"].as_array().unwrap().len(), 3);
    assert_eq!(v["fdb"]["max_entries"], 65536);

    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("vlanswitch_port_drops_total{port=\"nx-a\",reason=\"tagged_on_access\"} 0"),
        "{text}"
    );
    let resp = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    problem(
        &app,
        Method::GET,
        "/api/v1/nothing",
        None,
        StatusCode::NOT_FOUND,
        None,
        "no such route",
    )
    .await;

    let (s, _, doc) = call(&app, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, methods) in [
        ("/api/v1/ports", &["get", "post"][..]),
        ("/api/v1/ports/{name}", &["get", "patch", "delete"]),
        ("/api/v1/vlans", &["get", "post"]),
        ("/api/v1/vlans/{id}", &["get", "delete"]),
        ("/api/v1/fdb", &["get", "post", "delete"]),
        ("/api/v1/fdb/{vlan}/{mac}", &["delete"]),
        ("/api/v1/topology", &["get", "put"]),
        ("/api/v1/stats", &["get"]),
    ] {
        for m in methods {
            let op = &doc["paths"][path][m];
            assert!(op.is_object(), "OpenAPI lacks {m} {path}");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path}"
            );
        }
    }
    for schema in [
        "Problem",
        "Port",
        "PortView",
        "Topology",
        "Change",
        "Stats",
        "FdbEntryView",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

#[tokio::test]
async fn the_page_is_served_without_the_token_under_a_strict_policy() {
    for token in [None, Some("s3cret")] {
        let resp = app_with(token)
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "token {token:?}");
        let h = resp.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'sha256-",
            "style-src 'sha256-",
            "connect-src 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive:?} not in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let page = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            page.contains("id=\"token-form\""),
            "the page asks for the token"
        );
    }
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let app = app_with(Some("s3cret"));
    problem(
        &app,
        Method::GET,
        "/api/v1/ports",
        None,
        StatusCode::UNAUTHORIZED,
        None,
        "bearer token",
    )
    .await;
    let req = |auth: &str| {
        Request::get("/api/v1/ports")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone()
            .oneshot(req("Bearer wrong"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.clone()
            .oneshot(req("Bearer s3cret"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let health = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(health).await.unwrap().status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------------
// Hardening (issue 9): body shapes, media types, early 413, the auth scheme, VLAN 1, and an
// API thread that never blocks on the controller.

fn app_from(yaml: &str) -> (axum::Router, Arc<Mutex<Controller>>) {
    let ctl = Arc::new(Mutex::new(
        Controller::start(Topology::from_yaml(yaml).unwrap(), 1, None).unwrap(),
    ));
    let app = router(AppState::new(ctl.clone(), None));
    (app, ctl)
}

/// Sends a request with the given headers; returns status, Content-Type and JSON body.
async fn call_with(
    app: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (
        status,
        ctype,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bodies_that_are_not_objects_are_400_and_change_nothing() {
    let app = app();
    let (_, _, before) = call(&app, Method::GET, "/api/v1/topology", None).await;
    for (method, uri, body, field, text) in [
        (
            Method::PUT,
            "/api/v1/topology",
            "[]",
            None,
            "invalid type: sequence, expected struct Topology",
        ),
        (
            Method::PUT,
            "/api/v1/topology?dry_run=true",
            "[]",
            None,
            "expected struct Topology",
        ),
        (
            Method::PATCH,
            "/api/v1/ports/nx-t",
            r#"["trunk",null,[10]]"#,
            None,
            "invalid type: sequence, expected struct PortPatch",
        ),
        (
            Method::POST,
            "/api/v1/ports",
            r#"["nx-b","netdev","access",10]"#,
            None,
            "invalid type: sequence, expected struct Port",
        ),
        (
            Method::POST,
            "/api/v1/vlans",
            "[30]",
            None,
            "expected struct Vlan",
        ),
        (
            Method::POST,
            "/api/v1/fdb",
            r#"[10,"02:00:00:00:00:aa","nx-a"]"#,
            None,
            "expected struct StaticMac",
        ),
        // Nested: a port given as an array inside `ports`, a VLAN inside `vlans`.
        (
            Method::PUT,
            "/api/v1/topology",
            r#"{"ports":[["nx-a","netdev","access",10]]}"#,
            Some("ports[0]"),
            "invalid type: sequence, expected struct Port",
        ),
        (
            Method::PUT,
            "/api/v1/topology",
            r#"{"vlans":[{"id":10},[20]]}"#,
            Some("vlans[1]"),
            "expected struct Vlan",
        ),
        (
            Method::PUT,
            "/api/v1/topology",
            "null",
            None,
            "invalid type: null",
        ),
        (
            Method::PUT,
            "/api/v1/topology",
            "7",
            None,
            "invalid type: integer",
        ),
        // One object, and nothing after it.
        (
            Method::PUT,
            "/api/v1/topology",
            "{} {}",
            None,
            "trailing characters",
        ),
    ] {
        problem(
            &app,
            method,
            uri,
            Some(body),
            StatusCode::BAD_REQUEST,
            field,
            text,
        )
        .await;
    }
    // The same in YAML.
    for (body, text) in [
        ("[]", "invalid type: sequence, expected struct Topology"),
        (
            "ports:\n  - [nx-a, netdev, access, 10]\n",
            "ports[0]: invalid type: sequence, expected struct Port at line 2 column 5",
        ),
    ] {
        let (s, ctype, v) = call_with(
            &app,
            Method::PUT,
            "/api/v1/topology",
            &[("content-type", "application/yaml")],
            body,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(ctype, "application/problem+json");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(text), "{detail}");
    }
    let (_, _, after) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert_eq!(after, before, "a refused body changed the configuration");
    assert_eq!(after["ports"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_body_must_be_json_or_yaml() {
    let app = app();
    let vlan = |id: u16| format!(r#"{{"id":{id}}}"#);
    for ctype in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "+json",
        "",
    ] {
        let (s, rtype, v) = call_with(
            &app,
            Method::POST,
            "/api/v1/vlans",
            &[("content-type", ctype)],
            &vlan(30),
        )
        .await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ctype:?}: {v}");
        assert_eq!(rtype, "application/problem+json");
        assert_eq!(v["status"], 415);
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.contains("application/json") && detail.contains("application/yaml"),
            "{detail}"
        );
    }
    let (_, _, v) = call(&app, Method::GET, "/api/v1/vlans/30", None).await;
    assert_eq!(v["status"], 404, "a 415 body was applied: {v}");

    // JSON and YAML, with parameters, in any case; no Content-Type at all is JSON.
    let accepted: [(&[(&str, &str)], String); 9] = [
        (&[("content-type", "application/json")], vlan(30)),
        (
            &[("content-type", "Application/JSON; charset=UTF-8")],
            vlan(31),
        ),
        (
            &[("content-type", "application/merge-patch+json")],
            vlan(32),
        ),
        (&[("content-type", "application/yaml")], "id: 33".into()),
        (&[("content-type", "application/x-yaml")], "id: 34".into()),
        (
            &[("content-type", "text/yaml; charset=utf-8")],
            "id: 35".into(),
        ),
        (&[("content-type", "TEXT/X-YAML")], "id: 36".into()),
        (
            &[("content-type", "application/vnd.vlanswitch+yaml")],
            "id: 37".into(),
        ),
        (&[], vlan(38)),
    ];
    for (headers, body) in accepted {
        let (s, _, v) = call_with(&app, Method::POST, "/api/v1/vlans", headers, &body).await;
        assert_eq!(s, StatusCode::CREATED, "{headers:?} {body}: {v}");
    }
    // A YAML type really is read as YAML, a JSON type as JSON.
    let (s, _, v) = call_with(
        &app,
        Method::POST,
        "/api/v1/vlans",
        &[("content-type", "application/json")],
        "id: 39",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().starts_with("invalid JSON"));
}

#[tokio::test]
async fn an_oversized_content_length_is_413_before_the_body_is_read() {
    // In-process: the declared length alone is refused (the body here is tiny).
    let app = app();
    let (s, _, v) = call_with(
        &app,
        Method::PUT,
        "/api/v1/topology",
        &[
            ("content-type", "application/json"),
            ("content-length", "2097152"),
        ],
        "{}",
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("larger than 1048576"));

    // Over a socket, as a client that waits for `100 Continue` sees it: the first line of
    // the answer is the 413, sent without the body ever being sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let first_line = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.write_all(
            b"PUT /api/v1/topology HTTP/1.1\r\nHost: switchd\r\n\
              Content-Type: application/json\r\nContent-Length: 2097152\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(
        first_line.starts_with("HTTP/1.1 413"),
        "first response line: {first_line:?}"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
    let app = app_with(Some("s3cret"));
    let status = |auth: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::get("/api/v1/vlans")
                .header(header::AUTHORIZATION, auth)
                .body(Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    for auth in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "bEaReR  s3cret",
    ] {
        assert_eq!(status(auth).await, StatusCode::OK, "{auth:?}");
    }
    for auth in [
        "Bearer S3CRET",
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearers3cret",
        "Basic s3cret",
        "s3cret",
        "Bearer",
    ] {
        assert_eq!(status(auth).await, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
}

#[tokio::test]
async fn vlan_1_always_exists() {
    // Not declared, and used by no port: GET finds it, DELETE says why it cannot go.
    let (app, _) = app_from(
        "ports: [{ name: nx-a, kind: netdev, mode: access, vlan: 10 }]\nvlans: [{ id: 10 }]\n",
    );
    let (s, _, v) = call(&app, Method::GET, "/api/v1/vlans/1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    problem(
        &app,
        Method::DELETE,
        "/api/v1/vlans/1",
        None,
        StatusCode::CONFLICT,
        Some("id"),
        "VLAN 1 is the default VLAN and always exists",
    )
    .await;
    // Used by a port (nx-t's native VLAN): the same answer.
    let app = self::app();
    problem(
        &app,
        Method::DELETE,
        "/api/v1/vlans/1",
        None,
        StatusCode::CONFLICT,
        Some("id"),
        "default VLAN",
    )
    .await;
    // Declared with a name: the declaration can be removed, VLAN 1 stays with its port and
    // its static MAC.
    let (s, _, v) = call(
        &app,
        Method::POST,
        "/api/v1/vlans",
        Some(r#"{"id":1,"name":"default"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _, v) = call(
        &app,
        Method::POST,
        "/api/v1/fdb",
        Some(r#"{"vlan":1,"mac":"02:00:00:00:00:01","port":"nx-t"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, _, v) = call(&app, Method::GET, "/api/v1/vlans/1", None).await;
    assert_eq!(v["name"], "default");
    let (s, _, v) = call(&app, Method::DELETE, "/api/v1/vlans/1", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _, v) = call(&app, Method::GET, "/api/v1/vlans/1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("name").is_none(), "{v}");
    assert_eq!(v["ports"], json!(["nx-t"]));
    let (_, _, t) = call(&app, Method::GET, "/api/v1/topology", None).await;
    assert_eq!(t["fdb"][0]["vlan"], 1, "{t}");
    assert!(t["vlans"].as_array().unwrap().iter().all(|v| v["id"] != 1));
    // And now it is not declared any more.
    problem(
        &app,
        Method::DELETE,
        "/api/v1/vlans/1",
        None,
        StatusCode::CONFLICT,
        Some("id"),
        "default VLAN",
    )
    .await;
}

#[tokio::test]
async fn a_request_waiting_for_the_controller_does_not_stall_the_api_thread() {
    // A long change is simulated by holding the controller's lock, as Controller::apply
    // does while it runs. The route tests run on a current-thread runtime, like the API.
    let (app, ctl) = app_from(TOPO);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _guard = ctl.lock().unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
    });
    locked_rx.recv().unwrap();
    let start = std::time::Instant::now();
    let waiting: Vec<_> = ["/api/v1/ports", "/api/v1/topology", "/metrics"]
        .into_iter()
        .map(|uri| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, Method::GET, uri, None).await.0 })
        })
        .collect();
    // Let them start and wait for the lock.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let resp = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        took < std::time::Duration::from_millis(700),
        "/healthz took {took:?} while other requests waited for the controller"
    );
    assert!(waiting.iter().all(|t| !t.is_finished()));
    holder.join().unwrap();
    for t in waiting {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn method_not_allowed_is_a_problem_document() {
    let app = app();
    problem(
        &app,
        Method::PUT,
        "/api/v1/ports",
        Some("{}"),
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "method not allowed",
    )
    .await;
}

#[tokio::test]
async fn port_security_is_configured_shown_and_enabled() {
    let app = app();
    // defaults: an eighth of the table per port, action flood, not shut down
    let (s, _, v) = call(&app, Method::GET, "/api/v1/ports/nx-a", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["state"]["security"],
        json!({"max_macs": 8192, "dynamic_macs": 0, "mac_limit_action": "flood", "shutdown": false})
    );
    assert_eq!(v["state"]["counters"]["drops"]["mac_limit"], 0);
    assert_eq!(v["state"]["counters"]["mac_events"]["mac_moves"], 0);
    let (s, _, v) = call(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-a",
        Some(r#"{"max_macs": 2, "mac_limit_action": "shutdown", "allowed_macs": ["02:00:00:00:00:0A"]}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["max_macs"], 2);
    // MACs are answered in their canonical form, lowercase with colons
    assert_eq!(v["allowed_macs"], json!(["02:00:00:00:00:0a"]));
    assert_eq!(v["state"]["security"]["max_macs"], 2);
    assert_eq!(v["state"]["security"]["mac_limit_action"], "shutdown");
    problem(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-a",
        Some(r#"{"allowed_macs": ["01:00:5e:00:00:01"]}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("allowed_macs[0]"),
        "not a unicast address",
    )
    .await;
    problem(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-a",
        Some(r#"{"mac_limit_action": "block"}"#),
        StatusCode::BAD_REQUEST,
        Some("mac_limit_action"),
        "unknown variant",
    )
    .await;
    // null goes back to the defaults
    let (_, _, v) = call(
        &app,
        Method::PATCH,
        "/api/v1/ports/nx-a",
        Some(r#"{"max_macs": null, "mac_limit_action": null, "allowed_macs": null}"#),
    )
    .await;
    assert_eq!(v["state"]["security"]["max_macs"], 8192);
    assert!(v.get("allowed_macs").is_none(), "{v}");
    // enable: a port that is not shut down stays as it is; no such port is 404
    let (s, _, v) = call(&app, Method::POST, "/api/v1/ports/nx-a/enable", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"]["security"]["shutdown"], false);
    problem(
        &app,
        Method::POST,
        "/api/v1/ports/nope/enable",
        None,
        StatusCode::NOT_FOUND,
        Some("name"),
        "no port named",
    )
    .await;
    let (_, _, v) = call(&app, Method::GET, "/api/v1/stats", None).await;
    assert_eq!(v["fdb"]["limited"], 0);
    let (_, _, m) = call(&app, Method::GET, "/api/v1/openapi.json", None).await;
    assert!(m["paths"]["/api/v1/ports/{name}/enable"]["post"].is_object());
}

/// The event stream outlives the request timeout (it bounds only the time to the answer's
/// head), carries a change applied meanwhile, and says `: keepalive` every 15 s. Time is
/// tokio's, stopped and moved by the runtime when it has nothing else to do.
#[tokio::test(start_paused = true)]
async fn the_event_stream_outlives_the_request_timeout() {
    let (app, ctl) = app_from(TOPO);
    let resp = app
        .oneshot(
            Request::get("/api/v1/events?types=config_applied")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let start = tokio::time::Instant::now();
    let mut body = resp.into_body().into_data_stream();
    async fn chunk(body: &mut axum::body::BodyDataStream) -> String {
        use futures_util::StreamExt;
        let chunk = body.next().await.unwrap().unwrap();
        String::from_utf8(chunk.to_vec()).unwrap()
    }
    assert_eq!(chunk(&mut body).await, ": keepalive\n\n");
    {
        let mut ctl = ctl.lock().unwrap();
        let mut desired = ctl.topology().clone();
        desired.mac_aging_secs = 120;
        ctl.apply(desired, false).unwrap();
    }
    assert_eq!(
        chunk(&mut body).await,
        "id: 1\nevent: config_applied\ndata: {\"changes\":[{\"what\":\"switch\",\"name\":\"\",\
         \"field\":\"mac_aging_secs\",\"old\":\"300\",\"new\":\"120\"}]}\n\n"
    );
    // past the 10 s timeout: no 408, the stream goes on
    assert_eq!(chunk(&mut body).await, ": keepalive\n\n");
    assert!(start.elapsed() >= std::time::Duration::from_secs(15));
    assert_eq!(chunk(&mut body).await, ": keepalive\n\n");
    assert!(start.elapsed() >= std::time::Duration::from_secs(30));
}

/// What the controller publishes on its own (no worker involved): on its first look, each
/// port's link and why it is down; a change, as the values it touched; a port added or
/// removed, as its link. Netdev ports whose interfaces do not exist, so nothing is touched.
#[test]
fn the_controller_publishes_links_port_errors_and_changes() {
    use control_api::events::{EventType, Message};
    let (_, ctl) = app_from(TOPO);
    let mut ctl = ctl.lock().unwrap();
    let mut sub = ctl.events().subscribe().unwrap();
    let mut drain = || {
        let mut got = Vec::new();
        while let Ok(m) = sub.events.try_recv() {
            if let Message::Event(p) = m {
                got.push((p.kind, serde_json::from_str::<Value>(&p.data).unwrap()));
            }
        }
        got
    };
    ctl.observe(std::time::Instant::now());
    let first = drain();
    assert!(
        first.contains(&(EventType::Link, json!({"port": "nx-a", "up": false}))),
        "{first:?}"
    );
    assert!(
        first.contains(&(
            EventType::PortError,
            json!({"port": "nx-a", "reason": "interface nx-a does not exist"})
        )),
        "{first:?}"
    );
    // nothing changed: nothing to tell
    ctl.observe(std::time::Instant::now());
    assert_eq!(drain(), []);
    let mut desired = ctl.topology().clone();
    desired.ports.retain(|p| p.name != "nx-t");
    desired.vlans[0].name = Some("blue".into());
    ctl.apply(desired, false).unwrap();
    let got = drain();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, EventType::ConfigApplied);
    let changes = got[0].1["changes"].as_array().unwrap();
    assert!(
        changes.contains(
            &json!({"what": "vlan", "name": "10", "field": "name", "old": "red", "new": "blue"})
        ),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["what"] == "port" && c["name"] == "nx-t" && c["field"] == "removed"),
        "{changes:?}"
    );
    // nx-t was down already: its removal changes no link
    ctl.observe(std::time::Instant::now());
    assert_eq!(drain(), []);
}

/// A stream that does not read while more events than the hub holds go by is told how many
/// it missed (`lost`), and what it then reads is bounded to 100 a second, the rest summed up:
/// nobody waits for it, and nothing is left out silently.
#[tokio::test(start_paused = true)]
async fn a_stream_that_falls_behind_is_told_how_many_it_missed() {
    use control_api::events::{Event, HUB_CAPACITY, MAX_PER_SECOND};
    use futures_util::StreamExt;
    let (app, ctl) = app_from(TOPO);
    let resp = app
        .oneshot(Request::get("/api/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body().into_data_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert_eq!(text, ": keepalive\n\n");
    let hub = ctl.lock().unwrap().events().clone();
    for _ in 0..HUB_CAPACITY + 10 {
        hub.publish(&Event::Link {
            port: "nx-a".into(),
            up: true,
        });
    }
    while !text.contains("event: summary") {
        let chunk = body.next().await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let links = text.matches("event: link\n").count();
    assert_eq!(links, MAX_PER_SECOND as usize);
    let summary = text
        .split("event: summary\ndata: ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap();
    let v: Value = serde_json::from_str(summary).unwrap();
    assert_eq!(
        v,
        json!({"suppressed": {"link": HUB_CAPACITY - links}, "lost": 10})
    );
}
