//! `cartflow serve` end to end: predictions with the registry's champion,
//! the swap when the alias moves (with requests in flight), API tokens and
//! scopes, errors as JSON, TLS, and the dashboard in headless Chromium.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SHOP: &str = "shop-token-0123456789";
const ANALYST: &str = "analyst-token-0123456789";
const TOKENS: &str = r#"[{name="shop", token="shop-token-0123456789", scopes=["predict"]},
    {name="analyst", token="analyst-token-0123456789", scopes=["features:read"]}]"#;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().new_agent()
}

/// Status and JSON body of a request with `token`.
fn call(url: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match body {
        Some(b) => {
            let mut r = agent.post(url).header("content-type", "application/json");
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.send(b.to_owned())
        }
        None => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
    };
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn carts(n: usize) -> String {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({ "user_id": 500 + i, "product_id": 1000 + i, "user_session": format!("s-{i}"),
                    "event_time": "2019-10-03 12:00:00 UTC", "price": 20.0 + i as f64 })
        })
        .collect();
    Value::Array(items).to_string()
}

fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data/auth/token")).expect("the admin token file").trim().to_owned()
}

/// `cartflow serve` on a free port, following the alias every second.
fn serve(dir: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let mut cmd = cartflow(dir);
    // A small body limit, so the oversized body below still fits the socket's buffers.
    cmd.env("CARTFLOW_SERVE__POLL_SECS", "1")
        .env("CARTFLOW_SERVE__MAX_BODY_KB", "64")
        .env("CARTFLOW_AUTH__TOKENS", TOKENS);
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")]).args(extra);
    Server::start(cmd, port, "/health", Duration::from_secs(60), &dir.join("serve.log"))
}

#[test]
fn serve_scores_with_the_champion_follows_the_alias_and_checks_tokens() {
    if !(python_modules("python3", &["mlflow"]) && command("chromium", "chromium") && command("promtool", "prometheus"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&ok(cartflow(dir.path()).args(["run", "--once", "--events", "60000"])));
    assert!(out.contains("purchase_prediction_model v1 is champion"), "{out}");
    // Same data, same seed: the second model cannot beat the first and waits as challenger.
    let second = stdout(&ok(cartflow(dir.path()).args(["train", "--trials", "2", "--parallel", "1"])));
    assert!(second.contains("model version 2 (challenger)"), "{second}");

    let server = serve(dir.path(), &[]);
    let admin = admin_token(dir.path());
    let predict = format!("{}/predict", server.url);

    // /health is open and says only that the server lives; /status says which version serves.
    let (status, health) = call(&format!("{}/health", server.url), None, None);
    assert_eq!((status, health), (200, json!({ "status": "ok" })));
    let (status, details) = call(&format!("{}/status", server.url), Some(&admin), None);
    assert_eq!((status, details["model"]["serving"]["version"].as_str()), (200, Some("1")), "{details}");
    assert_eq!(call(&format!("{}/status", server.url), Some(SHOP), None).0, 403);

    // No token and an unknown token: 401; a token without the scope: 403.
    let (status, body) = call(&predict, None, Some(&carts(1)));
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    assert_eq!(call(&predict, Some("not-a-token-at-all-000"), Some(&carts(1))).0, 401);
    let (status, body) = call(&predict, Some(ANALYST), Some(&carts(1)));
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("lacks scope predict"), "{body}");
    assert_eq!(call(&format!("{}/features", server.url), Some(SHOP), Some(&carts(1)[1..carts(1).len() - 1])).0, 403);
    let (status, features) =
        call(&format!("{}/features", server.url), Some(ANALYST), Some(&carts(1)[1..carts(1).len() - 1]));
    assert_eq!(status, 200, "{features}");
    let registry = format!("{}/api/2.0/mlflow/registered-models/get?name=purchase_prediction_model", server.url);
    assert_eq!(call(&registry, Some(SHOP), None).0, 403);
    assert_eq!(call(&registry, Some(&admin), None).0, 200);

    // Predictions: one per cart, with the model that made them.
    let (status, body) = call(&predict, Some(SHOP), Some(&carts(3)));
    assert_eq!(status, 200, "{body}");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for p in predictions {
        let probability = p["probability"].as_f64().unwrap();
        assert!(probability > 0.0 && probability < 1.0, "{p}");
        assert!(p["will_purchase"].is_boolean());
    }
    assert_eq!(body["model"], json!({ "name": "purchase_prediction_model", "version": "1", "alias": "champion" }));

    // The champion is a real MLflow model: MLflow's pyfunc scores as /predict does.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyfunc_champion.py");
    let out =
        Command::new("python3").arg(script).arg(&server.url).env("MLFLOW_TRACKING_TOKEN", &admin).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "pyfunc: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Its exposition passes Prometheus' own linter.
    let (status, metrics) = call(&format!("{}/metrics", server.url), Some(&admin), None);
    assert_eq!(status, 200);
    assert_promtool_clean("serve", metrics.as_str().unwrap());

    // Bad requests are 4xx with a JSON error naming what is wrong, never 200.
    let (status, body) = call(&predict, Some(SHOP), Some("[]"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(&predict, Some(SHOP), Some(r#"[{"user_id": 1, "product_id": "x"}]"#));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("product_id"), "{body}");
    let (status, body) = call(&predict, Some(SHOP), Some(r#"[{"user_id": 1, "product_id": 2, "event_time": "soon"}]"#));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("[0].event_time"), "{body}");
    let huge = format!("[{}]", vec![r#"{"user_id": 1, "product_id": 2}"#; 3_000].join(","));
    assert!(huge.len() > 64 << 10);
    assert_eq!(call(&predict, Some(SHOP), Some(&huge)).0, 413);

    // Move the alias while requests flow: every one is answered, by v1 then by v2.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (running, predict) = (running.clone(), predict.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while running.load(Ordering::Relaxed) {
                let (status, body) = call(&predict, Some(SHOP), Some(&carts(2)));
                assert_eq!(status, 200, "a request failed during the swap: {body}");
                seen.push(body["model"]["version"].as_str().unwrap().to_owned());
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let alias = json!({ "name": "purchase_prediction_model", "alias": "champion", "version": "2" }).to_string();
    let moved = call(&format!("{}/api/2.0/mlflow/registered-models/alias", server.url), Some(&admin), Some(&alias));
    assert_eq!(moved.0, 200, "{}", moved.1);
    let started = Instant::now();
    loop {
        let (_, ready) = call(&format!("{}/ready", server.url), Some(SHOP), None);
        if ready["serving"]["version"] == "2" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the server did not follow the alias: {ready}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, Ordering::Relaxed);
    let seen = load.join().expect("no request failed");
    let switch = seen.iter().position(|v| v == "2").expect("v2 answered after the swap");
    assert!(
        switch > 0 && seen[..switch].iter().all(|v| v == "1") && seen[switch..].iter().all(|v| v == "2"),
        "{seen:?}"
    );

    // The alias moved back to v1 whose model file was cut short on disk: v2
    // keeps serving, and /ready says why v1 did not load.
    let (_, v1) = call(
        &format!("{}/api/2.0/mlflow/model-versions/get?name=purchase_prediction_model&version=1", server.url),
        Some(&admin),
        None,
    );
    // Under its logged model (MLflow 3) or, without one, its run.
    let owner = ["model_id", "run_id"]
        .iter()
        .filter_map(|k| v1["model_version"][k].as_str().filter(|id| !id.is_empty()))
        .next()
        .unwrap_or_else(|| panic!("v1 names no model or run: {v1}"))
        .to_owned();
    let file = files_under(&dir.path().join("data/registry"))
        .into_iter()
        .find(|p| p.ends_with("model.json") && p.to_string_lossy().contains(&owner))
        .unwrap_or_else(|| panic!("v1's model.json ({owner}) under {}", dir.path().display()));
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    let back = json!({ "name": "purchase_prediction_model", "alias": "champion", "version": "1" }).to_string();
    let moved = call(&format!("{}/api/2.0/mlflow/registered-models/alias", server.url), Some(&admin), Some(&back));
    assert_eq!(moved.0, 200, "{}", moved.1);
    let started = Instant::now();
    let ready = loop {
        let (status, ready) = call(&format!("{}/ready", server.url), Some(SHOP), None);
        if ready["last_error"].as_str().is_some_and(|e| e.contains("(v1)")) {
            assert_eq!(status, 200, "{ready}");
            break ready;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the server never tried v1: {ready}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready["serving"]["version"], "2", "{ready}");
    let (status, body) = call(&predict, Some(SHOP), Some(&carts(1)));
    assert_eq!((status, body["model"]["version"].as_str()), (200, Some("2")), "{body}");
    let alias = json!({ "name": "purchase_prediction_model", "alias": "champion", "version": "2" }).to_string();
    assert_eq!(
        call(&format!("{}/api/2.0/mlflow/registered-models/alias", server.url), Some(&admin), Some(&alias)).0,
        200
    );

    // The dashboard as a browser shows it, with a screenshot kept for people:
    // its charts have points once two readings of the metrics are five seconds apart.
    let page = format!("{}/dashboard?token={admin}", server.url);
    let started = Instant::now();
    let dom = loop {
        let _ = call(&predict, Some(SHOP), Some(&carts(2)));
        let dom = chromium_dom(&page);
        let chart = |id: &str| {
            dom.split(&format!("id=\"{id}\"")).nth(1).map(|rest| rest[..rest.find("</figure>").unwrap_or(0)].to_owned())
        };
        if chart("chart-predictions").is_some_and(|c| c.contains("<polyline"))
            && chart("chart-latency").is_some_and(|c| c.contains("p99"))
        {
            break dom;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the dashboard's charts stayed empty: {dom}");
        std::thread::sleep(Duration::from_secs(1));
    };
    for expected in ["purchase_prediction_model", "<b>v2</b>", "Validation metrics", "valid_roc_auc", "roc.svg"] {
        assert!(dom.contains(expected), "the dashboard lacks {expected}: {dom}");
    }
    for expected in
        ["Predictions", "Conversion funnel", "Top categories by purchases", "Stages", "features", "Last ten minutes"]
    {
        assert!(dom.contains(expected), "the dashboard lacks {expected}: {dom}");
    }
    chromium_screenshot(&page, "dashboard");
    // Without a token the dashboard is refused, with the reason.
    assert_eq!(call(&format!("{}/dashboard", server.url), None, None).0, 401);
}

#[test]
fn serve_speaks_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut child = cartflow(dir.path())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let curl = |scheme: &str, path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/stderr", "-w", "%{http_code}", "--cacert"])
            .arg(&cert)
            .arg(format!("{scheme}://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let started = Instant::now();
    let health = loop {
        let (code, body) = curl("https", "/health");
        if code == "200" {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no HTTPS: {code} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    // No model registered: /ready says so over TLS too (with a token), and plain HTTP gets nowhere.
    let admin = admin_token(dir.path());
    let ready = Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "--cacert"])
        .arg(&cert)
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .arg(format!("https://127.0.0.1:{port}/ready"))
        .output()
        .unwrap();
    let ready = String::from_utf8_lossy(&ready.stdout);
    assert!(ready.ends_with("503") && ready.contains("waiting_for"), "{ready}");
    assert_ne!(curl("http", "/health").0, "200");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn predictions_are_the_same_from_redis_as_from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["run", "--once", "--events", "40000"]));
    let keys = RedisPrefix::new("serve");
    let (redis, prefix) = (keys.url.as_str(), &keys.prefix);
    ok(cartflow(dir.path())
        .env("CARTFLOW_FEATURES__REDIS_PREFIX", prefix)
        .args(["features", "stream", "--online", redis, "--drain"]));
    let body = carts(5);
    let mut answers = Vec::new();
    for online in [redis, "embedded"] {
        let port = free_port();
        let mut cmd = cartflow(dir.path());
        cmd.env("CARTFLOW_FEATURES__REDIS_PREFIX", prefix).args(["serve", "--addr", &format!("127.0.0.1:{port}")]);
        cmd.args(["--online", online]);
        let server = Server::start(cmd, port, "/health", Duration::from_secs(60), &dir.path().join("serve.log"));
        let admin = admin_token(dir.path());
        // The embedded store catches up from the log in the server: wait for it.
        let started = Instant::now();
        if online == "embedded" {
            loop {
                let (_, health) = call(&format!("{}/status", server.url), Some(&admin), None);
                if health["stages"]["features"]["lag"] == 0 && health["stages"]["features"]["read"].as_u64() > Some(0) {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "the embedded store did not catch up: {health}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let (status, answer) = call(&format!("{}/predict", server.url), Some(&admin), Some(&body));
        assert_eq!(status, 200, "{online}: {answer}");
        answers.push(answer["predictions"].clone());
    }
    assert_eq!(answers[0], answers[1], "Redis and the embedded store disagree");
}

/// Every answered cart lands on `tracking.predictions` once, with the
/// request's id, the model, the inputs it scored and the answer given.
#[test]
fn every_answer_goes_to_the_prediction_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&ok(cartflow(dir.path()).args(["run", "--once", "--events", "60000"])));
    assert!(out.contains("purchase_prediction_model v1 is champion"), "{out}");
    let server = serve(dir.path(), &[]);
    let predict = format!("{}/predict", server.url);
    let mut answers = Vec::new();
    for i in 0..20 {
        let mut response = agent()
            .post(&predict)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {SHOP}"))
            .header("x-request-id", format!("req-{i}"))
            .send(carts(3))
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        answers.push(body);
    }
    // Batched off the request path: written within the writer's linger.
    let started = Instant::now();
    let logged = loop {
        let logged = read_topic(dir.path(), "tracking.predictions");
        if logged.len() >= 60 || started.elapsed() > Duration::from_secs(10) {
            break logged;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(logged.len(), 60, "one record per cart answered");
    let (_, ready) = call(&format!("{}/ready", server.url), Some(SHOP), None);
    let trees = ready["serving"]["trees"].as_u64().unwrap();
    assert!(trees > 0);
    for (i, answer) in answers.iter().enumerate() {
        let mine: Vec<Value> = logged
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.value).unwrap())
            .filter(|p| p["request_id"] == format!("req-{i}"))
            .collect();
        assert_eq!(mine.len(), 3, "request {i}'s carts");
        // Keyed by session, a request's carts may sit in different partitions.
        for (cart, answered) in answer["predictions"].as_array().unwrap().iter().enumerate() {
            let logged = mine.iter().find(|p| p["user_session"] == format!("s-{cart}")).expect("the cart logged");
            assert_eq!(logged["probability"], answered["probability"], "{logged}");
            assert_eq!(logged["will_purchase"], answered["will_purchase"]);
            assert_eq!(logged["model"], answer["model"]);
            assert_eq!(logged["product_id"], 1000 + cart);
            let at = cartflow_core::time::parse_timestamp("2019-10-03 12:00:00 UTC").unwrap();
            assert_eq!(logged["event_time"], at);
            let inputs = logged["inputs"].as_object().unwrap();
            assert!(inputs.contains_key("price") && inputs.len() >= 6, "{logged}");
            assert_eq!(inputs["price"], 20.0 + cart as f64);
        }
    }
    let keys: Vec<_> = logged.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect();
    assert!(keys.iter().all(|k| k.starts_with("s-")), "keyed by session: {keys:?}");
    let (_, metrics) = call(&format!("{}/metrics", server.url), Some(&admin_token(dir.path())), None);
    assert!(metrics.as_str().unwrap().contains("cartflow_prediction_log_records_total 60"), "{metrics}");
}
