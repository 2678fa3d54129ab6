//! The lake: every validated event lands in Parquet exactly once, on a local
//! directory and on a real S3-compatible server, whatever moment the sink dies.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

fn kill_at_random(mut spawn: impl FnMut() -> Child, rounds: usize, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0;
    for _ in 0..rounds {
        let mut child = spawn();
        let wait = Duration::from_millis(rng.random_range(100..700));
        let started = Instant::now();
        while started.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    kills
}

fn seed() -> u64 {
    let seed = std::env::var("KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("kill schedule seed {seed} (set KILL_SEED to replay)");
    seed
}

#[test]
fn killing_the_lake_sink_at_random_lands_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "400000", "--inject-invalid", "0.03", "--seed", "3"]));
    ok(cartflow(dir.path()).args(["validate", "--drain"]));
    let sink = || {
        cartflow(dir.path())
            .args(["lake-sink", "--drain"])
            .env("CARTFLOW_LAKE_SINK__MAX_RECORDS", "15000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let kills = kill_at_random(sink, 8, seed());
    assert!(kills >= 3, "the sink should have died mid-run several times, died {kills} times");
    let out = stdout(&ok(cartflow(dir.path()).args(["lake-sink", "--drain"])));
    eprintln!("{out}");
    let (events, invalid) = assert_lake_exactly_once(dir.path(), &dir.path().join("data/lake"));
    assert_eq!(events + invalid, 400_000);
    // Hive layout by event hour; every file named by a manifest.
    let lake = dir.path().join("data/lake");
    assert!(lake.join("events/year=2019/month=10/day=01/hour=00").is_dir());
    // Every file named by a manifest: no staging file (`<name>#<n>`) a kill
    // left behind survives the last run.
    let manifests = files_under(&lake.join("_manifests/lake-sink"));
    let named: Vec<String> = manifests
        .into_iter()
        .inspect(|p| assert!(p.extension().is_some_and(|e| e == "json"), "{} is not a manifest", p.display()))
        .flat_map(|m| {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
            m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        })
        .collect();
    let on_disk: Vec<_> = ["events", "invalid"].iter().flat_map(|t| files_under(&lake.join(t))).collect();
    for f in &on_disk {
        let rel = f.strip_prefix(&lake).unwrap().to_string_lossy().into_owned();
        assert!(named.contains(&rel), "{rel} is in no manifest");
    }
}

#[test]
fn a_commit_whose_files_a_crash_left_out_is_repaired_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    ok(cartflow(dir.path()).args(["produce", "--generate", "50000", "--inject-invalid", "0.05"]));
    ok(cartflow(dir.path()).args(["validate", "--drain"]));
    ok(cartflow(dir.path()).args(["lake-sink", "--drain"]).env("CARTFLOW_LAKE_SINK__MAX_RECORDS", "20000"));
    // As if the sink had died after its last manifest, before all its files.
    let lake = dir.path().join("data/lake");
    // The last commit of some partition, one with several files.
    let last = std::fs::read_dir(lake.join("_manifests/lake-sink"))
        .unwrap()
        .map(|dir| {
            let newest = files_under(&dir.unwrap().path()).into_iter().max().unwrap();
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(newest).unwrap()).unwrap()
        })
        .max_by_key(|m| m["files"].as_array().unwrap().len())
        .unwrap();
    let files = last["files"].as_array().unwrap();
    assert!(files.len() >= 2);
    for f in files.iter().take(2) {
        std::fs::remove_file(lake.join(f["path"].as_str().unwrap())).unwrap();
    }
    let out = stdout(&ok(cartflow(dir.path()).args(["lake-sink", "--drain"])));
    assert!(out.contains("repaired 2 files"), "{out}");
    let (events, invalid) = assert_lake_exactly_once(dir.path(), &lake);
    assert_eq!(events + invalid, 50_000);
}

#[test]
fn the_lake_sink_writes_to_a_real_s3_server_and_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = needs!(S3Server::start(dir.path(), "cartflow-test"));
    ok(cartflow(dir.path()).args(["produce", "--generate", "150000", "--inject-invalid", "0.02"]));
    ok(cartflow(dir.path()).args(["validate", "--drain"]));
    let sink = |drain: bool| {
        let mut c = cartflow(dir.path());
        s3.configure(c.args(["lake-sink", "--lake", "s3://cartflow-test/lake"]))
            .env("CARTFLOW_LAKE_SINK__MAX_RECORDS", "10000");
        if drain {
            c.arg("--drain");
        }
        c
    };
    let kills = kill_at_random(|| sink(true).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(), 3, seed());
    eprintln!("killed {kills} times");
    let out = stdout(&ok(&mut sink(true)));
    assert!(out.contains("s3://cartflow-test/lake"), "{out}");
    // s3s-fs keeps objects as files: read them back as Parquet.
    let (events, invalid) = assert_lake_exactly_once(dir.path(), &s3.root.join("cartflow-test/lake"));
    assert_eq!(events + invalid, 150_000);
}

/// Another engine reads the lake: DuckDB (installed by .ci/run from PyPI)
/// finds the same rows, values and types.
#[test]
fn duckdb_reads_the_lake_with_the_same_rows_and_types() {
    if !(python_modules("python3", &["duckdb", "pyarrow", "polars"])) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = land(dir.path(), 30000, 0.05);
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
src = "read_parquet('" + sys.argv[1] + "/events/**/*.parquet', hive_partitioning=true)"
row = con.sql(f"""select count(*), sum(product_id), sum(price), count(brand), count(category_code),
                  epoch_us(min(event_time)), epoch_us(max(event_time)), count(distinct user_session),
                  sum(case when event_type = 'cart' then 1 else 0 end) from {src}""").fetchall()[0]
types = {d[0]: str(d[1]) for d in con.execute(f"select * from {src} limit 0").description}
inv = con.sql("select count(*), count(distinct reason) from read_parquet('" + sys.argv[1] + "/invalid/**/*.parquet', hive_partitioning=true)").fetchall()[0]
print(json.dumps({"row": [float(x) for x in row], "types": types, "invalid": list(inv)}))
"#;
    let out =
        std::process::Command::new("python3").arg("-c").arg(script).arg(dir.path().join("data/lake")).output().unwrap();
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row: Vec<f64> = got["row"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let sessions: std::collections::HashSet<_> = events.iter().filter_map(|e| e.user_session.clone()).collect();
    let want = [
        events.len() as f64,
        events.iter().map(|e| e.product_id as f64).sum(),
        events.iter().map(|e| e.price).sum(),
        events.iter().filter(|e| e.brand.is_some()).count() as f64,
        events.iter().filter(|e| e.category_code.is_some()).count() as f64,
        events.iter().map(|e| e.event_time).min().unwrap() as f64,
        events.iter().map(|e| e.event_time).max().unwrap() as f64,
        sessions.len() as f64,
        events.iter().filter(|e| e.event_type == cartflow_core::EventType::Cart).count() as f64,
    ];
    for (i, (g, w)) in row.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "column {i}: duckdb {g}, cartflow {w}");
    }
    let types = &got["types"];
    for (col, t) in [
        ("event_time", "TIMESTAMP WITH TIME ZONE"),
        ("product_id", "BIGINT"),
        ("category_id", "BIGINT"),
        ("price", "DOUBLE"),
        ("user_id", "BIGINT"),
        ("event_type", "VARCHAR"),
        ("brand", "VARCHAR"),
    ] {
        assert_eq!(types[col], t, "{col}: {types}");
    }
    assert_eq!(got["invalid"][0].as_u64().unwrap() as usize, read_topic(dir.path(), INVALID).len());
}

#[test]
fn cartflow_sql_queries_the_lake_as_bronze() {
    let dir = tempfile::tempdir().unwrap();
    let events = land(dir.path(), 20000, 0.1);
    let q = "SELECT event_type, count(*) AS n FROM bronze.events GROUP BY event_type ORDER BY event_type";
    let json = stdout(&ok(cartflow(dir.path()).args(["sql", q, "--format", "json"])));
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = v["event_type"].as_str().unwrap();
        let want = events.iter().filter(|e| e.event_type.as_str() == kind).count();
        assert_eq!(v["n"].as_u64().unwrap() as usize, want, "{kind}");
    }
    assert!(json.lines().count() >= 3);
    // Hive columns come from the path; a filter on them reads only those hours.
    let first_hour = events.iter().filter(|e| e.event_time < 1_569_888_000_000_000 + 3_600_000_000).count();
    let csv = stdout(&ok(cartflow(dir.path()).args([
        "sql",
        "SELECT count(*) AS n FROM bronze.events WHERE year = 2019 AND month = 10 AND day = 1 AND hour = 0",
        "--format",
        "csv",
    ])));
    assert_eq!(csv.lines().collect::<Vec<_>>(), ["n", &first_hour.to_string()]);
    let table =
        stdout(&ok(cartflow(dir.path()).args(["sql", "SELECT reason, count(*) FROM bronze.invalid GROUP BY reason"])));
    assert!(table.contains("| reason") && table.contains(" rows"), "{table}");
    let bad = cartflow(dir.path()).args(["sql", "SELECT nope FROM bronze.events"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// Generates, validates and lands `n` events; returns the validated ones.
fn land(dir: &Path, n: u64, invalid_share: f64) -> Vec<cartflow_core::Event> {
    ok(cartflow(dir).args(["produce", "--generate", &n.to_string(), "--inject-invalid", &invalid_share.to_string()]));
    ok(cartflow(dir).args(["validate", "--drain"]));
    ok(cartflow(dir).args(["lake-sink", "--drain"]));
    read_topic(dir, VALIDATED).iter().map(|r| cartflow_core::Event::from_json(&r.value).unwrap()).collect()
}
