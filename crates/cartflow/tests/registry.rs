//! The trainer and the registry end to end: `cartflow train` registering
//! champion then challenger, `cartflow registry serve` and its web UI in
//! headless Chromium, and the trainer logging to a real `mlflow server`.
//! (MLflow's Python client against the registry: cartflow-registry's tests.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cartflow_registry::Client;
use common::*;

/// Generated events landed and turned into a training set.
fn training_set(dir: &Path, events: u64) {
    let csv = dir.join("events.csv");
    ok(cartflow(dir)
        .args(["generate", "-n", &events.to_string(), "--per-day", "20000", "--seed", "11", "--out"])
        .arg(&csv));
    ok(cartflow(dir).args(["produce", "--input"]).arg(&csv));
    ok(cartflow(dir).args(["validate", "--drain"]));
    ok(cartflow(dir).args(["lake-sink", "--drain"]));
    ok(cartflow(dir).args(["warehouse", "build"]));
    ok(cartflow(dir).args(["features", "build"]));
}

#[test]
fn train_registers_a_champion_then_a_challenger_and_the_ui_shows_them() {
    if !(command("chromium", "chromium")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    training_set(dir.path(), 150_000);
    let store = format!("sqlite://{}", dir.path().join("data/registry/mlflow.db").display());

    // One trial at a time: TPE then proposes the same sequence, so the same data
    // and seed give the same model (in parallel, the order trials finish in varies).
    let train = ["train", "--trials", "4", "--parallel", "1", "--features", "v1"];
    let first = stdout(&ok(cartflow(dir.path()).args(train)));
    assert!(first.contains("model version 1 (champion)") && first.contains("logistic_regression"), "{first}");
    // The same model cannot beat itself: the second is a challenger.
    let second = stdout(&ok(cartflow(dir.path()).args(train)));
    assert!(second.contains("model version 2 (challenger)"), "{second}");

    let server = {
        let port = free_port();
        let mut cmd = cartflow(dir.path());
        cmd.args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}"), "--store", &store]);
        Server::start(cmd, port, "/health", Duration::from_secs(30), &dir.path().join("registry.log"))
    };
    let admin = std::fs::read_to_string(dir.path().join("data/auth/token")).unwrap().trim().to_owned();
    let client = Client::new(&server.url).with_token(Some(&admin));
    let champion = client.version_by_alias("purchase_prediction_model", "champion").unwrap().expect("a champion");
    let challenger = client.version_by_alias("purchase_prediction_model", "challenger").unwrap().expect("a challenger");
    assert_eq!((champion.version.as_str(), challenger.version.as_str()), ("1", "2"));
    // The record of training as Prometheus gauges, for the training dashboard.
    let started = std::time::Instant::now();
    let metrics = loop {
        let mut r = ureq::get(format!("{}/metrics", server.url))
            .header("authorization", &format!("Bearer {admin}"))
            .call()
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        if text.contains("cartflow_registry_alias_metric") {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no registry gauges: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let gauge = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let alias = "cartflow_registry_alias_version{model=\"purchase_prediction_model\",alias=\"challenger\"}";
    assert_eq!(gauge(alias), 2.0);
    assert_eq!(gauge("cartflow_registry_runs{experiment=\"cart-purchase\",status=\"FINISHED\"}"), 2.0);
    let trials: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("cartflow_registry_trials{experiment=\"cart-purchase\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(trials, 8.0, "two training runs of four trials: {metrics}");
    let best = gauge("cartflow_registry_run_best_metric{experiment=\"cart-purchase\",run=\"train-v1\"}");
    let champion_auc = gauge("cartflow_registry_alias_metric{model=\"purchase_prediction_model\",alias=\"champion\"}");
    assert!(best >= champion_auc - 1e-9 && champion_auc > 0.5, "best {best}, champion {champion_auc}");
    assert_promtool_clean("registry", &metrics);

    // The champion's run: metrics beside the baselines, trials as children, artifacts.
    let run = client.run(&champion.run_id).unwrap();
    let auc = run.metric("valid_roc_auc").unwrap();
    assert!(auc > run.metric("base_rate_roc_auc").unwrap(), "{auc}");
    assert!(run.metric("logistic_regression_roc_auc").is_some());
    assert_eq!(run.tag("cartflow.alias"), Some("champion"));
    assert!(run.tag("cartflow.alias_reason").unwrap().contains("no champion"));
    let model = client.version_file("purchase_prediction_model", &champion.version, "model.json").unwrap();
    cartflow_model::Model::from_json(&model).expect("the registered model loads without the trainer");
    // MLflow 3's logged model: the version names it, and it holds an MLmodel with a pyfunc flavor.
    assert!(champion.source.starts_with("models:/m-") && champion.model_id.starts_with("m-"), "{champion:?}");
    let mlmodel = client.version_file("purchase_prediction_model", &champion.version, "MLmodel").unwrap();
    assert!(String::from_utf8_lossy(&mlmodel).contains("loader_module: cartflow_pyfunc"));
    let reason = client.run(&challenger.run_id).unwrap();
    assert!(
        reason.tag("cartflow.alias_reason").unwrap().contains("does not beat champion v1"),
        "{:?}",
        reason.tag("cartflow.alias_reason")
    );

    // The UI, as a browser shows it: the token once in the URL, then a cookie.
    let experiments = chromium_dom(&format!("{}/ui/?token={admin}", server.url));
    assert!(experiments.contains("cart-purchase"), "{experiments}");
    let experiment = client.experiment_id("cart-purchase").unwrap();
    let runs = chromium_dom(&format!(
        "{}/ui/experiments/{experiment}?sort=metrics.valid_roc_auc&desc=1&token={admin}",
        server.url
    ));
    assert!(runs.contains("train-v1") && runs.contains("trial-00") && runs.contains("valid_roc_auc ▼"), "{runs}");
    let run_page = chromium_dom(&format!("{}/ui/runs/{}?token={admin}", server.url, champion.run_id));
    for expected in ["roc.svg", "pr.svg", "importance.svg", "calibration.svg", "valid_roc_auc", "max_depth", "model"] {
        assert!(run_page.contains(expected), "run page lacks {expected}: {run_page}");
    }
    // The study's trials charted on the run that ran it, as MLflow's UI charts a parent's children.
    let trials = run_page.split("id=\"trials-chart\"").nth(1).unwrap_or_else(|| panic!("no trials chart: {run_page}"));
    assert!(trials.contains("valid_roc_auc by trial") && trials.matches("<circle").count() >= 2, "{trials}");
    assert!(run_page.contains("data-param=\"max_depth\""), "no max_depth against AUC: {run_page}");
    chromium_screenshot(&format!("{}/ui/runs/{}?token={admin}", server.url, champion.run_id), "registry-run");
    // Two runs side by side, rows that differ marked.
    let compare =
        format!("{}/ui/compare?runs={}&runs={}&token={admin}", server.url, champion.run_id, challenger.run_id);
    let side_by_side = chromium_dom(&compare);
    assert!(side_by_side.contains("Comparing 2 runs") && side_by_side.contains("valid_roc_auc"), "{side_by_side}");
    assert!(side_by_side.contains("class=\"diff\""), "{side_by_side}");
    chromium_screenshot(&compare, "registry-compare");
    let models = chromium_dom(&format!("{}/ui/models?token={admin}", server.url));
    assert!(models.contains("@champion") && models.contains("@challenger"), "{models}");
    let plot = ureq::get(format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/roc.svg",
        server.url, experiment, champion.run_id
    ))
    .header("authorization", &format!("Bearer {admin}"))
    .call()
    .unwrap();
    assert_eq!(plot.headers().get("content-type").unwrap(), "image/svg+xml");
    assert_eq!(plot.headers().get("content-security-policy").unwrap(), "sandbox");
}

#[test]
fn the_trainer_logs_to_a_real_mlflow_server() {
    if !(python_modules("python3", &["mlflow"])) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    training_set(dir.path(), 100_000);
    let port = free_port();
    let mut cmd = Command::new("mlflow");
    cmd.current_dir(dir.path())
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1", "--backend-store-uri"])
        .arg(format!("sqlite:///{}", dir.path().join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.path().join("mlartifacts"))
        // Its job workers start sessions of their own, out of reach of the group kill.
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false");
    let mlflow = Server::start(cmd, port, "/health", Duration::from_secs(120), &dir.path().join("mlflow.log"));

    let out = stdout(&ok(cartflow(dir.path()).args(["train", "--trials", "3", "--registry", &mlflow.url])));
    assert!(out.contains("model version 1 (champion)"), "{out}");
    let client = Client::new(&mlflow.url);
    let champion =
        client.version_by_alias("purchase_prediction_model", "champion").unwrap().expect("a champion in MLflow");
    let model = client.version_file("purchase_prediction_model", &champion.version, "model.json").unwrap();
    cartflow_model::Model::from_json(&model).expect("the model round-trips through MLflow's artifact store");
    let run = client.run(&champion.run_id).unwrap();
    assert!(run.metric("valid_roc_auc").is_some() && run.param("max_depth").is_some());

    // The fluent-API script that runs against cartflow's registry passes against MLflow's own server too.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cartflow-registry/tests/mlflow_fluent.py");
    let work = dir.path().join("fluent");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("python3").arg(script).arg(&mlflow.url).arg(&work).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "mlflow_fluent.py against mlflow server: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cartflow train --study`: three workers share one study through the
/// registry's PostgreSQL database; one is killed with `kill -9` mid-trial.
#[test]
fn tuning_workers_share_one_study_in_postgresql_and_its_best_registers_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    training_set(d, 150_000);
    let db = TestDatabase::create();
    let server = {
        let port = free_port();
        let mut cmd = cartflow(d);
        cmd.args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}"), "--store", &db.url()]);
        Server::start(cmd, port, "/health", Duration::from_secs(30), &d.join("registry.log"))
    };
    let admin = std::fs::read_to_string(d.join("data/auth/token")).unwrap().trim().to_owned();
    let worker = |name: &str| {
        let out = std::fs::File::create(d.join(format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(d.join(format!("{name}.err"))).unwrap();
        cartflow(d)
            .args(["train", "--study", "nightly", "--trials", "9", "--parallel", "1", "--features", "v1"])
            .args(["--registry", &server.url, "--study-stale-secs", "8"])
            .env("CARTFLOW_REGISTRY__STORE", db.url())
            .env("MLFLOW_TRACKING_TOKEN", &admin)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap()
    };
    let mut doomed = worker("doomed");
    let trial_of = |pid: u32| {
        db.query(&format!(
            "SELECT COUNT(*) FROM cartflow_study_trials WHERE worker LIKE '%:{pid}' AND state = 'running'"
        ))
    };
    let started = std::time::Instant::now();
    // Killed with a trial running (once the worker made the study's tables).
    while db.query("SELECT to_regclass('cartflow_study_trials') IS NOT NULL") != "t" || trial_of(doomed.id()) != "1" {
        assert!(started.elapsed() < Duration::from_secs(60), "the first worker never began a trial");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut a, mut b) = (worker("a"), worker("b"));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let out = |name: &str| std::fs::read_to_string(d.join(format!("{name}.out"))).unwrap();
    let err = |name: &str| std::fs::read_to_string(d.join(format!("{name}.err"))).unwrap();
    for (name, w) in [("a", &mut a), ("b", &mut b)] {
        assert!(w.wait().unwrap().success(), "worker {name} failed:\n{}\n{}", out(name), err(name));
    }
    let (a_out, b_out) = (out("a"), out("b"));

    // Every trial number once (the key), the killed worker's trial failed.
    let q = |sql: &str| db.query(sql);
    assert_eq!(q("SELECT COUNT(*), MIN(number), MAX(number) FROM cartflow_study_trials"), "9|0|8");
    assert_eq!(
        q(&format!(
            "SELECT COUNT(*) FROM cartflow_study_trials WHERE state = 'failed' AND worker LIKE '%:{}'",
            doomed.id()
        )),
        "1"
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM cartflow_study_trials WHERE state NOT IN ('complete', 'pruned', 'failed')"),
        "0"
    );
    let survivors = q(&format!(
        "SELECT COUNT(DISTINCT worker) FROM cartflow_study_trials \
         WHERE state IN ('complete', 'pruned') AND worker NOT LIKE '%:{}'",
        doomed.id()
    ));
    assert_eq!(survivors, "2", "both workers ran trials:\n{a_out}\n{b_out}");
    // TPE proposed from the other worker's trials; ASHA ranked both workers' losses at a rung.
    let crossed = q("SELECT COUNT(*) FROM cartflow_study_trials t, cartflow_study_trials o \
         WHERE t.study = o.study AND t.worker <> o.worker AND o.state IN ('complete', 'pruned') \
         AND t.proposed_from LIKE '%' || o.number || '%'");
    assert_ne!(crossed, "0", "no proposal saw another worker's trial");
    assert_eq!(
        q(&format!(
            "SELECT COUNT(DISTINCT t.worker) FROM cartflow_study_rungs r JOIN cartflow_study_trials t \
             ON r.study = t.study AND r.number = t.number WHERE r.rung = 0 AND t.worker NOT LIKE '%:{}'",
            doomed.id()
        )),
        "2"
    );
    // Registered once, by the worker that holds the best trial.
    let registered: Vec<&str> =
        [&a_out, &b_out].into_iter().filter(|o| o.contains("model version 1")).map(String::as_str).collect();
    assert_eq!(registered.len(), 1, "registered by {} workers:\n{a_out}\n{b_out}", registered.len());
    assert!(a_out.contains("registers it") || b_out.contains("registers it"), "{a_out}\n{b_out}");
    let client = Client::new(&server.url).with_token(Some(&admin));
    let champion = client.version_by_alias("purchase_prediction_model", "champion").unwrap().expect("a champion");
    assert_eq!(champion.version, "1");
    let by = q("SELECT registered_by FROM cartflow_studies WHERE name = 'nightly'");
    // The best trial of a live worker: the killed one's models died with it.
    let best = q(&format!(
        "SELECT worker FROM cartflow_study_trials WHERE state = 'complete' AND worker NOT LIKE '%:{}' \
         ORDER BY loss LIMIT 1",
        doomed.id()
    ));
    assert_eq!(by, best);
}
