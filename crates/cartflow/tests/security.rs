//! Tried as an attacker would, on real processes: every server asks a token
//! (and `/health` says nothing but "ok"), a read-only token cannot write,
//! pages encode what users stored and forbid scripts, uploaded files cannot
//! run in the server's origin, slow clients are cut off, the work of one
//! request is bounded, and no password reaches any output.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const READER: &str = "reader-token-0123456789";
const TOKENS: &str = r#"[{name="reader", token="reader-token-0123456789", scopes=["registry:read"]}]"#;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().new_agent()
}

fn with_token<B>(r: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => r.header("authorization", &format!("Bearer {t}")),
        None => r,
    }
}

/// Status, headers and body of one request (a GET sends no body).
fn send(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, ureq::http::HeaderMap, String) {
    let a = agent();
    let json = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
        with_token(r, token).header("content-type", "application/json").send(body.unwrap_or(""))
    };
    let response = match method {
        "GET" => with_token(a.get(url), token).call(),
        "DELETE" if body.is_none() => with_token(a.delete(url), token).call(),
        "DELETE" => json(a.delete(url).force_send_body()),
        "POST" => json(a.post(url)),
        "PUT" => json(a.put(url)),
        "PATCH" => json(a.patch(url)),
        other => panic!("no such method in these tests: {other}"),
    };
    let mut response = response.expect("the server answers");
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), response.headers().clone(), text)
}

fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data/auth/token")).unwrap().trim().to_owned()
}

fn start(dir: &Path, args: &[&str], env: &[(&str, &str)], log: &str) -> (Server, u16) {
    let port = free_port();
    let mut cmd = cartflow(dir);
    cmd.envs(env.iter().copied()).args(args).args(["--addr", &format!("127.0.0.1:{port}")]);
    (Server::start(cmd, port, "/health", Duration::from_secs(60), &dir.join(log)), port)
}

/// A server's base URL, its admin token, and routes to ask without one (method, path).
type Asked<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

#[test]
fn every_server_asks_a_token_and_health_says_only_ok() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (serve, _) = start(d, &["serve"], &[], "serve.log");
    let first = std::fs::read_to_string(d.join("serve.log")).unwrap();
    let admin = admin_token(d);
    assert!(first.contains(&admin), "the new admin token is printed once: {first}");
    let (registry, _) = start(d, &["registry", "serve"], &[], "registry.log");
    // The embedded online store has one streamer per data directory: the feature API gets its own.
    let other = tempfile::tempdir().unwrap();
    let (features, _) = start(other.path(), &["features", "serve"], &[], "features.log");
    let other_admin = admin_token(other.path());
    let metrics_port = free_port();
    let mut validate =
        cartflow(d).args(["validate", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")]).spawn().unwrap();
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "validate --metrics-addr did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Later starts say where the token is, never the token.
    let text = std::fs::read_to_string(d.join("registry.log")).unwrap();
    assert!(!text.contains(&admin) && text.contains("auth/token"), "{text}");

    let routes: [Asked; 4] = [
        (
            &serve.url,
            &admin,
            &[
                ("POST", "/predict"),
                ("POST", "/features"),
                ("GET", "/dashboard"),
                ("GET", "/ui/"),
                ("GET", "/metrics"),
                ("GET", "/status"),
                ("GET", "/ready"),
                ("POST", "/api/2.0/mlflow/experiments/search"),
                ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
            ],
        ),
        (
            &registry.url,
            &admin,
            &[
                ("POST", "/api/2.0/mlflow/runs/search"),
                ("GET", "/api/2.0/mlflow/registered-models/search"),
                ("GET", "/ui/models"),
                ("GET", "/metrics"),
                ("GET", "/status"),
            ],
        ),
        (
            &features.url,
            &other_admin,
            &[("POST", "/features"), ("POST", "/get-online-features"), ("GET", "/metrics"), ("GET", "/status")],
        ),
        (&metrics, &admin, &[("GET", "/metrics"), ("GET", "/status")]),
    ];
    for (base, admin, paths) in routes {
        let (status, _, body) = send("GET", &format!("{base}/health"), None, None);
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#), "{base}/health");
        for (method, path) in paths {
            let (status, headers, body) = send(method, &format!("{base}{path}"), None, Some("{}"));
            assert_eq!(status, 401, "{method} {base}{path} without a token: {body}");
            assert!(headers.contains_key("www-authenticate"), "{base}{path}");
            let (status, _, _) = send(method, &format!("{base}{path}"), Some("unknown-token-0123456789"), Some("{}"));
            assert_eq!(status, 401, "{method} {base}{path} with an unknown token");
        }
        let (status, _, metrics) = send("GET", &format!("{base}/metrics"), Some(admin), None);
        assert_eq!(status, 200, "{base}/metrics with the admin token");
        assert_promtool_clean(base, &metrics);
    }
    let _ = validate.kill();
    let _ = validate.wait();

    // No tokens only when asked for, on loopback only, and said loudly.
    let out = cartflow(d).args(["features", "serve", "--no-auth", "--addr", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("loopback"), "{out:?}");
    let (open, _) = start(d, &["registry", "serve", "--no-auth"], &[], "open.log");
    let (status, _, _) = send("GET", &format!("{}/api/2.0/mlflow/registered-models/search", open.url), None, None);
    assert_eq!(status, 200);
    assert!(std::fs::read_to_string(d.join("open.log")).unwrap().contains("WARNING"));

    // A token in the URL becomes a cookie and leaves the URL; an unknown one sets nothing.
    let (status, headers, _) = send("GET", &format!("{}/dashboard?token={admin}", serve.url), None, None);
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/dashboard");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let (status, headers, _) =
        send("GET", &format!("{}/dashboard?token=x%3B%20Domain%3Devil.example", serve.url), None, None);
    assert_eq!(status, 401);
    assert!(!headers.contains_key("set-cookie"));
}

/// Every write endpoint of the registry with its documented method, and a body or query it needs.
const WRITES: &[(&str, &str)] = &[
    ("POST", "experiments/create"),
    ("POST", "experiments/delete"),
    ("POST", "experiments/restore"),
    ("POST", "experiments/update"),
    ("POST", "experiments/set-experiment-tag"),
    ("POST", "experiments/delete-experiment-tag"),
    ("POST", "runs/create"),
    ("POST", "runs/update"),
    ("POST", "runs/delete"),
    ("POST", "runs/restore"),
    ("POST", "runs/log-metric"),
    ("POST", "runs/log-parameter"),
    ("POST", "runs/set-tag"),
    ("POST", "runs/delete-tag"),
    ("POST", "runs/log-batch"),
    ("POST", "runs/log-model"),
    ("POST", "runs/log-inputs"),
    ("POST", "runs/outputs"),
    ("POST", "logged-models"),
    ("POST", "registered-models/create"),
    ("PATCH", "registered-models/update"),
    ("POST", "registered-models/rename"),
    ("DELETE", "registered-models/delete"),
    ("POST", "registered-models/set-tag"),
    ("DELETE", "registered-models/delete-tag"),
    ("POST", "model-versions/create"),
    ("PATCH", "model-versions/update"),
    ("DELETE", "model-versions/delete"),
    ("POST", "model-versions/set-tag"),
    ("DELETE", "model-versions/delete-tag"),
    ("POST", "model-versions/transition-stage"),
];

#[test]
fn a_read_token_cannot_write_the_registry_and_pages_encode_what_users_stored() {
    if !(command("chromium", "chromium")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, _) = start(
        d,
        &["registry", "serve"],
        &[("CARTFLOW_AUTH__TOKENS", TOKENS), ("CARTFLOW_REGISTRY__MAX_ARTIFACT_MB", "1")],
        "registry.log",
    );
    let admin = admin_token(d);
    let api = |method: &str, endpoint: &str, token: &str, body: Value| {
        let (status, _, text) =
            send(method, &format!("{}/api/2.0/mlflow/{endpoint}", server.url), Some(token), Some(&body.to_string()));
        (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
    };
    // What a reader must not be able to change: a run with a hostile parent tag, a model
    // whose version names a hostile run id, an alias.
    let hostile = "x autofocus onfocus=alert(1)";
    let (_, run) = api(
        "POST",
        "runs/create",
        &admin,
        json!({ "experiment_id": "0", "run_name": "victim",
        "tags": [{ "key": "mlflow.parentRunId", "value": hostile }] }),
    );
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(api("POST", "registered-models/create", &admin, json!({ "name": "keep" })).0, 200);
    let (status, v) = api(
        "POST",
        "model-versions/create",
        &admin,
        json!({ "name": "keep", "source": "mlflow-artifacts:/0/x", "run_id": hostile }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        api("POST", "registered-models/alias", &admin, json!({ "name": "keep", "alias": "champion", "version": "1" }))
            .0,
        200
    );

    for (method, endpoint) in WRITES {
        let url = format!("{}/api/2.0/mlflow/{endpoint}?name=keep&run_id={run_id}&key=k&value=v&version=1", server.url);
        let (status, _, body) = send("GET", &url, Some(READER), None);
        assert_eq!(status, 405, "GET {endpoint} with a read token: {body}");
        let (status, body) = api(method, endpoint, READER, json!({ "name": "keep", "run_id": run_id, "key": "k" }));
        assert_eq!(status, 403, "{method} {endpoint} with a read token: {body}");
        assert_eq!(body["error_code"], "PERMISSION_DENIED", "{endpoint}: {body}");
    }
    for (method, endpoint) in [("POST", "registered-models/alias"), ("DELETE", "registered-models/alias")] {
        assert_eq!(
            api(method, endpoint, READER, json!({ "name": "keep", "alias": "champion", "version": "1" })).0,
            403
        );
    }
    // Nothing changed.
    let (status, model) = api("GET", "registered-models/get?name=keep", READER, json!({}));
    assert_eq!(
        (status, &model["registered_model"]["aliases"]),
        (200, &json!([{ "alias": "champion", "version": "1" }]))
    );
    let (_, run) = api("GET", &format!("runs/get?run_id={run_id}"), READER, json!({}));
    assert_eq!(run["run"]["data"]["tags"].as_array().unwrap().len(), 2, "{run}");

    // The pages: stored values stay inside quoted attributes, and scripts may not run anyway.
    for page in [format!("/ui/runs/{run_id}"), "/ui/models".into()] {
        let (status, headers, html) = send("GET", &format!("{}{page}", server.url), Some(READER), None);
        assert_eq!(status, 200, "{page}");
        assert!(!html.contains("onfocus=alert(1)>"), "{page} injects a handler: {html}");
        assert!(html.contains("href=\"/ui/runs/x%20autofocus%20onfocus%3Dalert%281%29\""), "{page}: {html}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }

    // As a browser parses them: no element got a handler.
    for page in [format!("/ui/runs/{run_id}"), "/ui/models".into()] {
        let dom = chromium_dom(&format!("{}{page}?token={READER}", server.url));
        assert!(dom.contains("x autofocus onfocus=alert"), "{page}: {dom}");
        assert!(!dom.contains("onfocus=\"") && !dom.contains("autofocus=\""), "{page}: {dom}");
    }

    // Uploaded files: sandboxed, a download unless an image.
    let artifacts = format!("{}/api/2.0/mlflow-artifacts/artifacts", server.url);
    for (name, body) in
        [("page.html", "<script>alert(1)</script>"), ("plot.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>")]
    {
        let (status, _, _) = send("PUT", &format!("{artifacts}/0/{run_id}/artifacts/{name}"), Some(&admin), Some(body));
        assert_eq!(status, 200, "{name}");
        let (_, headers, _) = send("GET", &format!("{artifacts}/0/{run_id}/artifacts/{name}"), Some(READER), None);
        assert_eq!(headers["content-security-policy"], "sandbox", "{name}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        let attachment =
            headers.get("content-disposition").is_some_and(|v| v.to_str().unwrap().starts_with("attachment"));
        assert_eq!(attachment, name.ends_with(".html"), "{name}: {headers:?}");
        assert!(!headers["content-type"].to_str().unwrap().contains("text/html"), "{name}");
    }
    // The empty path is not "everything".
    for path in ["%2F", "", "/"] {
        let (status, _, body) = send("DELETE", &format!("{artifacts}/{path}"), Some(&admin), None);
        assert!([400, 404, 405].contains(&status), "DELETE artifacts/{path}: {status} {body}");
    }
    assert_eq!(send("GET", &format!("{artifacts}/0/{run_id}/artifacts/plot.svg"), Some(READER), None).0, 200);
    // Names a file system cannot hold, and uploads over registry.max_artifact_mb.
    let (status, _, body) =
        send("PUT", &format!("{artifacts}/0/{run_id}/artifacts/{}", "a".repeat(300)), Some(&admin), Some("x"));
    assert_eq!(status, 400, "{body}");
    let big = "x".repeat(3 << 19);
    let (status, _, body) = send("PUT", &format!("{artifacts}/0/{run_id}/artifacts/big.bin"), Some(&admin), Some(&big));
    assert_eq!(status, 413, "{body}");
    // A rename onto a taken name is the client's mistake, not the server's.
    let (_, created) = api("POST", "experiments/create", &admin, json!({ "name": "taken" }));
    let id = created["experiment_id"].as_str().unwrap();
    let (_, other) = api("POST", "experiments/create", &admin, json!({ "name": "mine" }));
    let (status, body) = api(
        "POST",
        "experiments/update",
        &admin,
        json!({ "experiment_id": other["experiment_id"], "new_name": "taken" }),
    );
    assert_eq!((status, body["error_code"].as_str()), (400, Some("RESOURCE_ALREADY_EXISTS")), "{body} ({id})");

    // Searches are bounded: an endless filter is refused, a nasty pattern answers at once.
    let endless = format!("tags.x LIKE '{}'", "%a".repeat(38_000));
    let (status, body) = api("POST", "runs/search", READER, json!({ "experiment_ids": ["0"], "filter": endless }));
    assert_eq!((status, body["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{body}");
    let nasty = format!("tags.mlflow.parentRunId LIKE '{}b'", "%x".repeat(900));
    let started = Instant::now();
    let (status, body) = api("POST", "runs/search", READER, json!({ "experiment_ids": ["0"], "filter": nasty }));
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(send("GET", &format!("{}/health", server.url), None, None).0, 200);
    let (status, body) = api("POST", "runs/search", READER, json!({ "experiment_ids": ["0"], "max_results": 50_001 }));
    assert_eq!(status, 400, "{body}");
}

/// Reads until the peer closes (or `within` passes); returns how long that took.
fn closed_within(mut s: TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(started.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn slow_clients_are_cut_off_and_a_flood_cannot_starve_health() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [("CARTFLOW_SERVE__HEADER_TIMEOUT_MS", "700"), ("CARTFLOW_SERVE__MAX_CONNECTIONS", "8")];
    let (server, port) = start(d, &["features", "serve"], &env, "features.log");
    // One that sends nothing, and one that sends its head a byte at a time.
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(closed_within(silent, Duration::from_secs(5)).is_some(), "a silent connection stayed open");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let mut cut = false;
    for b in b"GET /health HTTP/1.1\r\nhost: x\r\nx-padding: ".iter().chain(&[b'a'; 200]) {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(cut || closed_within(slow, Duration::from_secs(2)).is_some(), "a slow sender kept its connection");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Eight idle connections take every slot; the ninth is closed at once, and once the
    // idle ones time out /health answers again.
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let ninth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let shed = closed_within(ninth, Duration::from_millis(500)).expect("the ninth connection was served");
    assert!(shed < Duration::from_millis(500), "{shed:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(send("GET", &format!("{}/health", server.url), None, None).0, 200);
    drop(idle);
}

/// A Redis of the test's own that asks a password.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_with_password(password: &str) -> Redis {
    redis_with_password_on(password, free_port())
}

fn redis_with_password_on(password: &str, port: u16) -> Redis {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--requirepass", password, "--save", ""])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (Debian's, installed on this machine)");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Redis { child, port }
}

/// `features serve` on a Redis of the test's own that asks `secret`, and the admin token.
fn features_on_redis(d: &Path, secret: &str) -> (Redis, Server, String) {
    let redis = redis_with_password(secret);
    let url = format!("redis://:{secret}@127.0.0.1:{}/0", redis.port);
    let (server, _) = start(d, &["features", "serve", "--online", &url], &[], "features.log");
    (redis, server, admin_token(d))
}

#[test]
fn no_password_reaches_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "s3cret-redis-pass-7731";
    let (redis, server, admin) = features_on_redis(d, secret);
    let (_, _, health) = send("GET", &format!("{}/health", server.url), None, None);
    let (status, _, details) = send("GET", &format!("{}/status", server.url), Some(&admin), None);
    assert_eq!(status, 200);
    assert!(details.contains(":***@127.0.0.1"), "{details}");
    // Redis goes away: the 503 says why, without the password.
    drop(redis);
    let cart = json!({ "user_id": 1, "product_id": 2, "event_time": "2019-10-03 12:00:00 UTC" }).to_string();
    let (status, _, failed) = send("POST", &format!("{}/features", server.url), Some(&admin), Some(&cart));
    assert_eq!(status, 503, "{failed}");
    drop(server);
    let log = std::fs::read_to_string(d.join("features.log")).unwrap();
    // A store that is not there at start fails with the URL in the message, redacted.
    let out = cartflow(d)
        .args(["features", "stream", "--drain", "--online", &format!("redis://:{secret}@127.0.0.1:1/0")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redis://:***@127.0.0.1:1/0"), "{stderr}");
    for (what, text) in
        [("/health", health), ("/status", details), ("503", failed), ("log", log), ("stderr", stderr.into_owned())]
    {
        assert!(!text.contains(secret), "the password is in {what}: {text}");
    }
}

/// A Redis restart (or a dropped connection) costs the requests made while it is away, not
/// every request after: serving connects again by itself.
#[test]
fn serving_answers_again_once_redis_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "s3cret-redis-pass-4410";
    let (redis, server, admin) = features_on_redis(d, secret);
    let port = redis.port;
    let cart = json!({ "user_id": 1, "product_id": 2, "event_time": "2019-10-03 12:00:00 UTC" }).to_string();
    let features = || send("POST", &format!("{}/features", server.url), Some(&admin), Some(&cart));
    let (status, _, body) = features();
    assert_eq!(status, 200, "{body}");
    drop(redis);
    let asked = Instant::now();
    assert_eq!(features().0, 503);
    assert!(asked.elapsed() < Duration::from_secs(3), "the 503 took {:?}", asked.elapsed());
    let _back = redis_with_password_on(secret, port);
    let started = Instant::now();
    loop {
        let (status, _, body) = features();
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still {status} 10 s after Redis came back: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_model_without_inputs_is_refused_at_load_and_predict_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server, _) = start(d, &["serve"], &[("CARTFLOW_SERVE__POLL_SECS", "1")], "serve.log");
    let admin = admin_token(d);
    let api = |endpoint: &str, body: Value| {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", server.url);
        let (status, _, text) = send("POST", &url, Some(&admin), Some(&body.to_string()));
        assert_eq!(status, 200, "{endpoint}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    // A well-formed file whose model reads nothing: it would score every cart the same, or panic.
    let blind = json!({ "format": 1, "feature_set": "v1", "inputs": [], "threshold": 0.5,
        "ensemble": { "base_score": 0.0, "roots": [0], "nodes": [{ "f": 4294967295u32, "v": 0.1, "l": 0, "r": 0, "m": 0 }] } });
    let run = api("runs/create", json!({ "experiment_id": "0" }));
    let uri = run["run"]["info"]["artifact_uri"].as_str().unwrap().trim_start_matches("mlflow-artifacts:").to_owned();
    let put = format!("{}/api/2.0/mlflow-artifacts/artifacts{uri}/model/model.json", server.url);
    assert_eq!(send("PUT", &put, Some(&admin), Some(&blind.to_string())).0, 200);
    api("registered-models/create", json!({ "name": "purchase_prediction_model" }));
    let source = format!("mlflow-artifacts:{uri}/model");
    api(
        "model-versions/create",
        json!({ "name": "purchase_prediction_model", "source": source, "run_id": run["run"]["info"]["run_id"] }),
    );
    api("registered-models/alias", json!({ "name": "purchase_prediction_model", "alias": "champion", "version": "1" }));
    let started = Instant::now();
    let status = loop {
        let (_, _, text) = send("GET", &format!("{}/status", server.url), Some(&admin), None);
        let status: Value = serde_json::from_str(&text).unwrap();
        if status["model"]["last_error"].is_string() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the server never tried the model: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status["model"]["last_error"].as_str().unwrap().contains("no inputs"), "{status}");
    let cart = json!([{ "user_id": 1, "product_id": 2 }]).to_string();
    let (code, _, body) = send("POST", &format!("{}/predict", server.url), Some(&admin), Some(&cart));
    assert_eq!(code, 503, "{body}");
    assert_eq!(send("GET", &format!("{}/health", server.url), None, None).0, 200, "the server lives on");
}
