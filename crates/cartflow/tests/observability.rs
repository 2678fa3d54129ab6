//! What an operator sees: alerts to a webhook, /metrics and /health, and a
//! clean stop on Ctrl-C.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A one-purpose HTTP receiver: answers 200 and hands each request body over.
fn webhook_receiver() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            let _ = tx.send(serde_json::from_slice(&body).unwrap());
        }
    });
    (url, rx)
}

#[test]
fn a_high_invalid_rate_posts_an_alertmanager_notification() {
    let dir = tempfile::tempdir().unwrap();
    let (url, received) = webhook_receiver();
    ok(cartflow(dir.path()).args(["produce", "--generate", "20000", "--inject-invalid", "0.3"]));
    let out = ok(cartflow(dir.path())
        .env("CARTFLOW_ALERTS__WEBHOOK_URL", &url)
        .env("CARTFLOW_ALERTS__INVALID_RATE_THRESHOLD", "0.1")
        .env("CARTFLOW_VALIDATOR__BATCH_SIZE", "1000")
        .args(["validate", "--drain"]));
    let body = received.recv_timeout(Duration::from_secs(10)).expect("a webhook POST");
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    let alert = &body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "CartflowInvalidEventRateHigh");
    assert!(alert["annotations"]["summary"].as_str().unwrap().contains("% of events are invalid"));
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    let _ = out;
}

#[test]
fn metrics_health_and_a_clean_stop_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "30000", "--inject-invalid", "0.1"]));
    let port = free_port();
    let mut child = cartflow(dir.path())
        .args(["validate", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let token = || std::fs::read_to_string(dir.path().join("data/auth/token")).unwrap_or_default();
    let get = |path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let token = token();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            token.trim()
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    // Wait until the validator has caught up (it keeps running: no --drain).
    let started = Instant::now();
    let metrics = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "validator did not catch up");
        let caught_up = |m: &String| {
            m.contains("cartflow_events_out_total") && m.contains("cartflow_consumer_lag_records") && !lagging(m)
        };
        if let Some(m) = get("/metrics").filter(caught_up) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("cartflow_events_in_total{stage=\"validate\",topic=\"tracking.raw_user_behavior\"} 30000"),
        "{metrics}"
    );
    assert!(metrics.contains("cartflow_invalid_events_total{reason="), "{metrics}");
    assert!(metrics.contains("cartflow_batch_duration_seconds_bucket"), "{metrics}");
    // Freshness: produce → validated and durable, in its own buckets up to minutes.
    assert!(metrics.contains("cartflow_freshness_seconds_bucket{stage=\"validate\",le=\"300\"}"), "{metrics}");
    let health = get("/health").unwrap();
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("{\"status\":\"ok\"}"), "{health}");
    let status = get("/status").unwrap();
    assert!(status.starts_with("HTTP/1.1 200") && status.contains("\"validate\""), "{status}");

    // Ctrl-C: the validator finishes its batch, commits and exits 0.
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.contains("validated 30,000 records"), "{out}");
}

fn lagging(metrics: &str) -> bool {
    metrics.lines().filter(|l| l.starts_with("cartflow_consumer_lag_records{")).any(|l| !l.ends_with(" 0"))
}

#[test]
fn a_producer_killed_mid_write_leaves_a_log_that_reopens_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "1000"]));
    let mut child = cartflow(dir.path()).args(["produce", "--generate", "3000000"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    // Appending again cuts any torn tail; every record that is there reads as an event.
    ok(cartflow(dir.path()).args(["produce", "--generate", "1000", "--seed", "2"]));
    ok(cartflow(dir.path()).args(["validate", "--drain"]));
    let (valid, invalid) = assert_exactly_once(dir.path());
    assert_eq!(invalid, 0, "no torn or garbage record was read");
    assert!(valid >= 2000);
    let raw = read_topic(dir.path(), RAW);
    assert_eq!(raw.len(), valid);
}

/// The shipped Prometheus rules load and behave (`promtool test rules`), a glob
/// over the folder loads rules only, and the example scrape config is valid.
#[test]
fn prometheus_rules_pass_their_unit_tests_and_the_config_loads() {
    if !(command("promtool", "prometheus")) {
        return;
    }
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    promtool(&["test", "rules", "tests/cartflow-alerts.test.yml", "tests/cartflow-recording.test.yml"], &shipped, None);
    let dir = tempfile::tempdir().unwrap();
    for f in ["prometheus.yml", "cartflow-alerts.yml", "cartflow-recording.yml"] {
        std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("cartflow-token"), "prometheus-token-0123456789").unwrap();
    let text = promtool(&["check", "config", "prometheus.yml"], dir.path(), None);
    assert!(text.contains("SUCCESS"), "{text}");
    let rules: Vec<String> = std::fs::read_dir(&shipped)
        .unwrap()
        .filter_map(|e| e.ok()?.path().to_str().map(str::to_owned))
        .filter(|p| p.ends_with(".yml") && !p.ends_with("prometheus.yml"))
        .collect();
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    promtool(&args, &shipped, None);
}

/// Every shipped dashboard reads back through Grafana's own SDK (its models
/// are generated from Grafana's dashboard schema and plugins) unchanged: no
/// key the schema lacks, no value of another shape.
#[test]
fn the_grafana_dashboards_follow_grafanas_schema() {
    if !python_modules("python3", &["grafana_foundation_sdk"]) {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dashboards: Vec<_> = std::fs::read_dir(root.join("../../deploy/grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    dashboards.sort();
    assert_eq!(dashboards.len(), 4, "{dashboards:?}");
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/grafana_schema.py"))
        .args(&dashboards)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim() == "ok", "{text}{}", String::from_utf8_lossy(&out.stderr));
}

/// What every long-running stage exposes passes `promtool check metrics`:
/// every metric has HELP, counters end in _total, units are base units.
#[test]
fn every_stage_exposition_passes_promtool() {
    if !(command("promtool", "prometheus")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(cartflow(d).args(["produce", "--generate", "5000", "--inject-invalid", "0.1"]));
    // The capture reads a table of its own, in a database and slot of its own.
    let source = CaptureSource::create();
    let url = source.db.url();
    ok(cartflow(d).args(["cdc", "seed", "--postgres", &url, "--events", "500"]));
    let cdc = ["cdc", "--postgres", &url, "--slot", &source.slot];
    let mut expositions = Vec::new();
    for stage in [&["validate"][..], &["lake-sink"], &["features", "stream"], &cdc] {
        let port = free_port();
        // The lake sink commits (and times a batch) by age while it runs: make that a second.
        let cmd = cartflow(d)
            .env("CARTFLOW_LAKE_SINK__MAX_AGE_SECS", "1")
            .args(stage)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Server { child: cmd, url: String::new() };
        let token = || std::fs::read_to_string(d.join("data/auth/token")).unwrap_or_default();
        let started = Instant::now();
        let metrics = loop {
            assert!(started.elapsed() < Duration::from_secs(60), "{stage:?} did not serve /metrics");
            let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
            if let Ok(mut r) = agent
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .header("authorization", &format!("Bearer {}", token().trim()))
                .call()
            {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                // Wait for a batch, so the stage's own counters are there.
                if r.status() == 200 && text.contains("cartflow_batch_duration_seconds") {
                    break text;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        std::process::Command::new("kill").args(["-INT", &child.child.id().to_string()]).status().unwrap();
        child.child.wait().unwrap();
        expositions.push((stage.join(" "), metrics));
    }
    for (stage, metrics) in &expositions {
        assert_promtool_clean(stage, metrics);
    }
    assert!(expositions.iter().any(|(_, m)| m.contains("# HELP cartflow_feature_duplicates_total")));
    assert!(expositions.iter().any(|(_, m)| m.contains("# HELP cartflow_cdc_slot_retained_wal_bytes")));
}

/// The shipped rules on Debian's real Prometheus and Alertmanager: Prometheus
/// scrapes a running validator while damaged events keep arriving, the
/// invalid-rate rule fires, and Alertmanager delivers it to a webhook. The
/// rules are the shipped file with each `for:` shortened to seconds (the
/// promtool unit tests in deploy/prometheus/tests check the durations).
/// Prometheus also scrapes a CDC capture and a whole `cartflow run` answering
/// predictions, and every query of every shipped dashboard returns series.
#[test]
fn the_shipped_rules_and_dashboards_work_on_a_real_prometheus_and_alertmanager() {
    if !(command("prometheus", "prometheus") && command("prometheus-alertmanager", "prometheus-alertmanager")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (webhook, received) = webhook_receiver();
    let quiet = |mut c: std::process::Command| {
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c
    };
    // The whole system in one process (it trains, then serves), beside the stages below.
    let whole = d.join("whole");
    std::fs::create_dir(&whole).unwrap();
    let run_port = free_port();
    let run = quiet(cartflow(&whole))
        .args(["run", "--events", "30000", "--addr", &format!("127.0.0.1:{run_port}")])
        .spawn()
        .unwrap();
    let run = Server { child: run, url: format!("http://127.0.0.1:{run_port}") };
    let metrics = free_port();
    let mut validator =
        quiet(cartflow(d)).args(["validate", "--metrics-addr", &format!("127.0.0.1:{metrics}")]).spawn().unwrap();
    let token = d.join("data/auth/token");
    let started = Instant::now();
    while !token.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the validator made no token");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut producer = quiet(cartflow(d))
        .args(["produce", "--generate", "5000000", "--rate", "5000", "--inject-invalid", "0.3"])
        .spawn()
        .unwrap();
    // A CDC capture into the validator's log, for the slot's panel.
    let source = CaptureSource::create();
    ok(cartflow(d).args(["cdc", "seed", "--postgres", &source.db.url(), "--events", "500"]));
    let cdc_metrics = free_port();
    let mut capture = quiet(cartflow(d))
        .args(["cdc", "--postgres", &source.db.url(), "--slot", &source.slot])
        .args(["--metrics-addr", &format!("127.0.0.1:{cdc_metrics}")])
        .spawn()
        .unwrap();

    let am_port = free_port();
    std::fs::write(
        d.join("alertmanager.yml"),
        format!(
            "route: {{ receiver: test, group_wait: 1s, group_interval: 1s, repeat_interval: 1h }}\n\
             receivers:\n  - name: test\n    webhook_configs: [{{ url: \"{webhook}\" }}]\n"
        ),
    )
    .unwrap();
    let mut am = std::process::Command::new("prometheus-alertmanager");
    am.arg(format!("--config.file={}", d.join("alertmanager.yml").display()))
        .arg(format!("--storage.path={}", d.join("alertmanager").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=");
    let _am = Server::start(am, am_port, "/-/ready", Duration::from_secs(30), &d.join("alertmanager.log"));

    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/cartflow-alerts.yml");
    let shipped = std::fs::read_to_string(shipped).unwrap();
    let rules: String = shipped
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 5s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(d.join("cartflow-alerts.yml"), rules).unwrap();
    let recording =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/cartflow-recording.yml");
    std::fs::copy(recording, d.join("cartflow-recording.yml")).unwrap();
    let prom_port = free_port();
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [cartflow-alerts.yml, cartflow-recording.yml]\n\
             alerting: {{ alertmanagers: [{{ static_configs: [{{ targets: [\"127.0.0.1:{am_port}\"] }}] }}] }}\n\
             scrape_configs:\n  - job_name: a-name-no-rule-depends-on\n    \
             authorization: {{ type: Bearer, credentials_file: {} }}\n    \
             static_configs: [{{ targets: [\"127.0.0.1:{metrics}\", \"127.0.0.1:{cdc_metrics}\"] }}]\n  \
             - job_name: another\n    \
             authorization: {{ type: Bearer, credentials_file: {} }}\n    \
             static_configs: [{{ targets: [\"127.0.0.1:{run_port}\"] }}]\n",
            token.display(),
            whole.join("data/auth/token").display(),
        ),
    )
    .unwrap();
    let mut prom = std::process::Command::new("prometheus");
    prom.arg(format!("--config.file={}", d.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", d.join("prometheus").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let prometheus = Server::start(prom, prom_port, "/-/ready", Duration::from_secs(30), &d.join("prometheus.log"));

    let deadline = Instant::now() + Duration::from_secs(120);
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let body = received.recv_timeout(left).expect("Alertmanager delivered no invalid-rate alert");
        let found = body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == "CartflowInvalidEventRateHigh" && a["status"] == "firing");
        if let Some(a) = found {
            break a.clone();
        }
    };
    assert_eq!(alert["labels"]["severity"], "warning");
    assert!(alert["annotations"]["summary"].as_str().unwrap().contains("fail validation"), "{alert}");
    // The shipped recording rules evaluate on the real server: about 30 % of the events are invalid.
    let query = format!("{}/api/v1/query?query=cartflow:invalid_ratio:rate5m", prometheus.url);
    let answer: Value =
        serde_json::from_str(&ureq::get(query).call().unwrap().body_mut().read_to_string().unwrap()).unwrap();
    let ratio: f64 = answer["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((0.2..0.4).contains(&ratio), "the recorded invalid ratio is {ratio}: {answer}");
    let asking = Asking::start(&run.url, &whole);
    assert_dashboards_evaluate(&prometheus.url);
    asking.stop();
    for child in [&mut producer, &mut validator, &mut capture] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Traffic for the serving and feature panels: once `cartflow run` serves a
/// model, its carts are scored over and over, with a malformed request and a
/// feature lookup each round, until stopped.
struct Asking {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Asking {
    fn start(url: &str, data: &std::path::Path) -> Asking {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, data, stopped) = (url.to_owned(), data.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
            let token = std::fs::read_to_string(data.join("data/auth/token")).unwrap();
            let auth = format!("Bearer {}", token.trim());
            let post = |path: &str, body: &str| {
                let answer = agent
                    .post(format!("{url}{path}"))
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .send(body);
                answer.map(|r| r.status().as_u16()).unwrap_or(0)
            };
            let mut carts = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if carts.is_empty() {
                    // The run has validated its events once a model serves.
                    if post("/predict", r#"[{"user_id": 1, "product_id": 2, "user_session": "s"}]"#) == 200 {
                        carts = read_topic(&data, VALIDATED)
                            .into_iter()
                            .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok())
                            .filter(|e| e["event_type"] == "cart")
                            .take(20)
                            .collect();
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                for cart in &carts {
                    let one = serde_json::json!([{ "user_id": cart["user_id"], "product_id": cart["product_id"],
                        "user_session": cart["user_session"], "price": cart["price"] }]);
                    post("/predict", &one.to_string());
                }
                post("/predict", "[{");
                let lookup =
                    serde_json::json!({ "user_id": carts[0]["user_id"], "product_id": carts[0]["product_id"] });
                post("/features", &lookup.to_string());
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Asking { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

/// Every query of every shipped Grafana dashboard evaluates on a real
/// Prometheus (`$__rate_interval` as Grafana sets it for a 1 s scrape) and,
/// within three minutes, returns series: the stages, the capture and the
/// whole system it scrapes feed every panel.
fn assert_dashboards_evaluate(prometheus: &str) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/dashboards");
    let mut queries = Vec::new();
    for file in std::fs::read_dir(&shipped).unwrap() {
        let path = file.unwrap().path();
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(dashboard["uid"].as_str().is_some_and(|u| u.starts_with("cartflow-")), "{name}: uid");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource"), "{name}");
        for panel in dashboard["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}: {title}");
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
                queries.push((format!("{name}: {title}"), expr));
            }
        }
    }
    assert!(queries.len() >= 30, "{} dashboard queries", queries.len());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut empty = Vec::new();
        for (panel, expr) in &queries {
            let mut response = ureq::get(format!("{prometheus}/api/v1/query"))
                .query("query", expr)
                .call()
                .unwrap_or_else(|e| panic!("{panel}: {expr}: {e}"));
            let answer: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
            assert_eq!(answer["status"], "success", "{panel}: {expr}: {answer}");
            if answer["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
                empty.push(format!("{panel}: {expr}"));
            }
        }
        if empty.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "dashboard queries without series:\n{}", empty.join("\n"));
        std::thread::sleep(Duration::from_secs(2));
    }
}
