//! The command line as a user meets it: help, generate, produce from real
//! files, topics, tail, configuration layers.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        vec![],
        vec!["generate"],
        vec!["produce"],
        vec!["validate"],
        vec!["topics"],
        vec!["tail"],
        vec!["lake-sink"],
        vec!["warehouse"],
        vec!["warehouse", "build"],
        vec!["warehouse", "export"],
        vec!["features"],
        vec!["features", "list"],
        vec!["features", "stream"],
        vec!["features", "build"],
        vec!["features", "materialize"],
        vec!["features", "serve"],
        vec!["sql"],
        vec!["run"],
        vec!["health"],
    ] {
        let out = ok(cartflow(dir.path()).args(&cmd).arg("--help"));
        assert!(stdout(&out).contains("Usage: cartflow"), "{cmd:?}");
    }
}

#[test]
fn generate_is_deterministic_and_writes_the_dataset_format() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["generate", "--events", "20000", "--seed", "9", "--out", "a.csv"]));
    ok(cartflow(dir.path()).args(["generate", "--events", "20000", "--seed", "9", "--out", "b.csv.gz"]));
    let out = ok(cartflow(dir.path()).args(["generate", "--events", "20000", "--seed", "10", "--out", "c.csv"]));
    assert!(stdout(&out).contains("wrote 20,000 events"), "{}", stdout(&out));
    let a = std::fs::read(dir.path().join("a.csv")).unwrap();
    let c = std::fs::read(dir.path().join("c.csv")).unwrap();
    let mut b = Vec::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("b.csv.gz")).unwrap())
        .read_to_end(&mut b)
        .unwrap();
    assert_eq!(a, b, "same seed, same bytes, compressed or not");
    assert_ne!(a, c);
    let text = String::from_utf8(a).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(cartflow_core::CSV_HEADER));
    assert_eq!(lines.count(), 20_000);
}

#[test]
fn real_files_flow_through_and_the_cut_line_lands_in_invalid_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(cartflow(dir.path())
        .args(["produce", "--input"])
        .arg(real_data("2019-Oct-head.csv"))
        .arg(real_data("2019-Nov-head.csv")));
    assert!(stdout(&out).contains("produced 18,118 events"), "{}", stdout(&out));
    ok(cartflow(dir.path()).args(["validate", "--drain"]));
    let (valid, invalid) = assert_exactly_once(dir.path());
    assert_eq!(valid + invalid, 17_434 + 683 + 1);
    let invalid = read_topic(dir.path(), INVALID);
    let cut: Vec<_> = invalid.iter().filter(|r| r.header_str("cartflow.error.reason") == Some("field_count")).collect();
    assert_eq!(cut.len(), 1);
    assert!(cut[0].header_str("cartflow.source").unwrap().ends_with("2019-Oct-head.csv:17436"));
    assert_eq!(cut[0].header_str("cartflow.error.field"), Some("user_session"));
    // The rest of the real rows that fail are the zero prices the files hold.
    assert!(
        invalid
            .iter()
            .all(|r| matches!(r.header_str("cartflow.error.reason"), Some("field_count" | "non_positive_price")))
    );
}

#[test]
fn topics_and_tail_print_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "5000", "--inject-invalid", "0.2"]));
    ok(cartflow(dir.path()).args(["validate", "--drain"]));
    let out = ok(cartflow(dir.path()).args(["topics", "--json"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = |name: &str| -> u64 {
        let t = v["topics"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap();
        t["partitions"].as_array().unwrap().iter().map(|p| p["end"].as_u64().unwrap()).sum()
    };
    assert_eq!(total(RAW), 5000);
    assert_eq!(total(VALIDATED) + total(INVALID), 5000);
    let group = &v["groups"][0];
    assert_eq!(group["group"], "cartflow-validator");
    let table = stdout(&ok(cartflow(dir.path()).arg("topics")));
    assert!(table.contains("LAG") && table.contains(VALIDATED), "{table}");

    let tail = stdout(&ok(cartflow(dir.path()).args(["tail", VALIDATED, "-n", "3"])));
    let lines: Vec<Value> = tail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["topic"], VALIDATED);
    assert!(lines[0]["value"]["event_time"].as_str().unwrap().ends_with('Z'));
    let all = stdout(&ok(cartflow(dir.path()).args(["tail", RAW, "--from-beginning"])));
    assert_eq!(all.lines().count(), 5000);
    let first = stdout(&ok(cartflow(dir.path()).args(["tail", INVALID, "--from-beginning", "-n", "2"])));
    for l in first.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["headers"]["cartflow.error.reason"].is_string());
    }
    let err = cartflow(dir.path()).args(["tail", "no.such.topic"]).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no topic \"no.such.topic\""));
}

#[test]
fn configuration_layers_and_typos() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cartflow.toml"), "data_dir = \"from-file\"\n[embedded_log]\npartitions = 2\n")
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cartflow"));
    cmd.current_dir(dir.path()).env_remove("CARTFLOW_DATA_DIR").args(["-q", "produce", "--generate", "100"]);
    ok(&mut cmd);
    assert!(dir.path().join("from-file/log/topics").join(RAW).exists(), "cartflow.toml's data_dir");
    let meta = std::fs::read_to_string(dir.path().join("from-file/log/topics").join(RAW).join("topic.json")).unwrap();
    assert!(meta.contains("\"partitions\":2"), "{meta}");

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cartflow"));
    cmd.current_dir(dir.path()).env("CARTFLOW_DATA_DIR", "from-env").args(["-q", "produce", "--generate", "10"]);
    ok(&mut cmd);
    assert!(dir.path().join("from-env/log").exists(), "the environment beats the file");

    std::fs::write(dir.path().join("typo.toml"), "[embeded_log]\npartitions = 2\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartflow"))
        .current_dir(dir.path())
        .args(["--config", "typo.toml", "topics"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("embeded_log"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_takes_generated_events_to_a_served_model_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = cartflow(dir.path())
        .args(["run", "--events", "30000", "--inject-invalid", "0.02", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails before it stops the run itself.
    let mut child = Server { child, url: format!("http://127.0.0.1:{port}") };
    // Read the summary up to the line that says it is serving.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.child.stdout.take().unwrap()));
    let mut out = String::new();
    for line in &mut lines {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.contains("serving until Ctrl-C") {
            break;
        }
    }
    assert!(out.contains("lake") && out.contains("warehouse"), "{out}");
    assert!(out.contains("validation ROC AUC") && out.contains("purchase_prediction_model v1 is champion"), "{out}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}")) && out.contains("model purchase_prediction_model v1"),
        "{out}"
    );
    let silver: u64 = out
        .split("warehouse ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap();
    // Silver holds each exact duplicate once; validated records are normalized JSON.
    let distinct: std::collections::HashSet<_> =
        read_topic(dir.path(), VALIDATED).into_iter().map(|r| r.value).collect();
    let valid = distinct.len() as u64;
    assert!(silver == valid && valid > 28_000, "{silver} silver rows for {valid} distinct validated events: {out}");

    // One address serves predictions, the registry and the dashboard, with the printed token.
    // Keep reading, so what it prints while stopping finds its pipe open.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let token = out.split("token     ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().to_owned();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let auth = format!("Bearer {token}");
    let mut r = agent
        .post(format!("http://127.0.0.1:{port}/predict"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .send(r#"[{"user_id": 1, "product_id": 2, "user_session": "s", "price": 35.5}]"#)
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    assert!(r.status() == 200 && body.contains(r#""version":"1""#), "{body}");
    for path in ["/dashboard", "/ui/models", "/metrics"] {
        let mut r = agent.get(format!("http://127.0.0.1:{port}{path}")).header("authorization", &auth).call().unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.body_mut().read_to_string().unwrap_or_default());
    }

    // Ctrl-C stops it cleanly.
    Command::new("kill").args(["-INT", &child.child.id().to_string()]).status().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "run did not stop on Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let rest = rest.join().unwrap();
    assert!(status.success() && rest.contains("while serving"), "{status}: {rest}");
}

/// `cartflow health`, the image's HEALTHCHECK: 0 when the process answers /health, an error naming
/// the address when it does not; it reads no configuration, so a service's settings never trip it.
#[test]
fn health_asks_a_running_process_and_secrets_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The admin token from a file, as compose's secrets give it: the stage must start with it.
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "[{ name = \"ops\", token = \"a-token-from-a-file-0123\", scopes = [\"metrics\"] }]\n")
        .unwrap();
    let mut stage = cartflow(dir.path());
    stage.args(["validate", "--metrics-addr", &format!("127.0.0.1:{port}")]).env("CARTFLOW_AUTH__TOKENS_FILE", &tokens);
    let server = Server::start(stage, port, "/health", Duration::from_secs(30), &dir.path().join("validate.log"));
    let metrics = ureq::get(format!("{}/metrics", server.url))
        .header("Authorization", "Bearer a-token-from-a-file-0123")
        .call()
        .expect("the token from the file is accepted");
    assert_eq!(metrics.status(), 200);

    let out = ok(cartflow(dir.path()).arg("health").env("CARTFLOW_HEALTH_URL", format!("127.0.0.1:{port}")));
    assert!(stdout(&out).contains("ok"), "{}", stdout(&out));
    // A setting the configuration would refuse does not matter to the probe.
    ok(cartflow(dir.path())
        .args(["health", &format!("http://127.0.0.1:{port}/health")])
        .env("CARTFLOW_SERVE__ADR", "x"));
    drop(server);

    let out =
        cartflow(dir.path()).args(["health", &format!("127.0.0.1:{port}"), "--timeout-ms", "500"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("http://127.0.0.1:{port}/health did not answer")), "{err}");

    let out = cartflow(dir.path())
        .arg("topics")
        .env("CARTFLOW_AUTH__TOKENS_FILE", dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CARTFLOW_AUTH__TOKENS_FILE") && err.contains("missing"), "{err}");
}
