//! The warehouse: silver and gold from the lake, checked against a reference
//! computed here from the validated events; incremental builds; the export
//! to the PostgreSQL running on this machine; DuckDB running the same SQL.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use cartflow_core::{Event, EventType};
use common::*;

/// Sends CSV files through validate and the lake sink.
fn land_files(dir: &Path, files: &[&Path]) {
    for f in files {
        ok(cartflow(dir).args(["produce", "--input"]).arg(f));
    }
    ok(cartflow(dir).args(["validate", "--drain"]));
    ok(cartflow(dir).args(["lake-sink", "--drain"]));
}

fn generate(dir: &Path, name: &str, events: u64, start: &str, seed: u64) -> std::path::PathBuf {
    let out = dir.join(name);
    ok(cartflow(dir)
        .args(["generate", "-n", &events.to_string(), "--per-day", "20000", "--start", start])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(&out));
    out
}

fn sql_json(dir: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = stdout(&ok(cartflow(dir).args(["sql", query, "--format", "json"])));
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sql_count(dir: &Path, query: &str) -> u64 {
    let rows = sql_json(dir, &format!("SELECT COUNT(*) AS n FROM ({query}) q"));
    rows[0]["n"].as_u64().unwrap()
}

fn build(dir: &Path, args: &[&str]) -> String {
    let out = stdout(&ok(cartflow(dir).args(["warehouse", "build"]).args(args)));
    eprintln!("{out}");
    out
}

/// The number in `… <n> <label>…` of a build's output.
fn number_before(out: &str, label: &str) -> usize {
    let at = out.find(label).unwrap_or_else(|| panic!("{label:?} not in {out}"));
    out[..at].split_whitespace().last().unwrap().replace(',', "").parse().unwrap()
}

fn silver_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let root = dir.join("data/lake/silver");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(p.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    files
}

/// The validated events, each exact duplicate once.
fn distinct_events(dir: &Path) -> Vec<Event> {
    let mut seen = HashSet::new();
    let landed = read_topic(dir, VALIDATED).into_iter().map(|r| Event::from_json(&r.value).unwrap());
    landed.filter(|e| seen.insert(e.to_json())).collect()
}

/// DESIGN.md's label, computed the plain way: (session, product) of each
/// first cart → bought at or after it.
fn reference_outcomes(events: &[Event]) -> HashMap<(String, i64), bool> {
    let mut first_cart: HashMap<(String, i64), i64> = HashMap::new();
    for e in events.iter().filter(|e| e.event_type == EventType::Cart) {
        if let Some(s) = &e.user_session {
            let t = first_cart.entry((s.clone(), e.product_id)).or_insert(e.event_time);
            *t = (*t).min(e.event_time);
        }
    }
    let mut outcomes: HashMap<(String, i64), bool> = first_cart.keys().map(|k| (k.clone(), false)).collect();
    for e in events.iter().filter(|e| e.event_type == EventType::Purchase) {
        if let Some(s) = &e.user_session {
            let key = (s.clone(), e.product_id);
            if first_cart.get(&key).is_some_and(|&t| e.event_time >= t) {
                outcomes.insert(key, true);
            }
        }
    }
    outcomes
}

#[test]
fn silver_and_gold_match_a_reference_and_builds_are_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Every event twice: the tracking bug silver removes.
    let first = generate(d, "first.csv", 40_000, "2019-10-01 00:00:00 UTC", 7);
    land_files(d, &[&first, &first]);
    let out = build(d, &[]);
    let first_hours = number_before(&out, "event hours");

    let events = distinct_events(d);
    // The generator repeats a few events within the same second, as the real data does.
    assert!(events.len() < 40_000 && events.len() > 39_000, "{}", events.len());
    assert_eq!(sql_count(d, "SELECT * FROM bronze.events"), 80_000);
    assert_eq!(sql_count(d, "SELECT * FROM silver.events") as usize, events.len());
    assert_eq!(sql_count(d, "SELECT * FROM gold.fact_events") as usize, events.len());

    // Category levels, price tiers, session order.
    let tiers = sql_json(d, "SELECT price_tier, MIN(price) AS lo, MAX(price) AS hi FROM silver.events GROUP BY 1");
    for t in &tiers {
        let (lo, hi) = (t["lo"].as_f64().unwrap(), t["hi"].as_f64().unwrap());
        let (min, max) = match t["price_tier"].as_str().unwrap() {
            "low" => (0.0, 50.0),
            "medium" => (50.0, 250.0),
            "high" => (250.0, 1000.0),
            "luxury" => (1000.0, f64::INFINITY),
            other => panic!("price tier {other}"),
        };
        assert!(lo >= min && hi < max, "{t}");
    }
    assert_eq!(
        sql_count(
            d,
            "SELECT * FROM silver.events WHERE category_code IS NOT NULL AND \
             category_l1 || '.' || category_l2 || COALESCE('.' || category_l3, '') <> category_code"
        ),
        0
    );
    assert_eq!(
        sql_count(
            d,
            "SELECT user_session FROM silver.events WHERE user_session IS NOT NULL GROUP BY user_session \
             HAVING MAX(session_seq) <> COUNT(*) OR COUNT(DISTINCT session_seq) <> COUNT(*) OR MIN(session_seq) <> 1"
        ),
        0,
        "session_seq numbers each session 1..n"
    );

    // Gold against the reference.
    let users: HashSet<i64> = events.iter().map(|e| e.user_id).collect();
    let products: HashSet<i64> = events.iter().map(|e| e.product_id).collect();
    let categories: HashSet<i64> = events.iter().map(|e| e.category_id).collect();
    assert_eq!(sql_count(d, "SELECT * FROM gold.dim_user") as usize, users.len());
    assert_eq!(sql_count(d, "SELECT * FROM gold.dim_product") as usize, products.len());
    assert_eq!(sql_count(d, "SELECT * FROM gold.dim_category") as usize, categories.len());
    assert_eq!(sql_count(d, "SELECT * FROM gold.dim_date"), first_hours as u64);
    let want = reference_outcomes(&events);
    assert_eq!(sql_count(d, "SELECT * FROM gold.fact_cart_outcomes") as usize, want.len());
    let bought: HashSet<(String, i64)> =
        sql_json(d, "SELECT user_session, product_id FROM gold.fact_cart_outcomes WHERE is_purchased")
            .iter()
            .map(|r| (r["user_session"].as_str().unwrap().to_owned(), r["product_id"].as_i64().unwrap()))
            .collect();
    let want_bought: HashSet<(String, i64)> = want.iter().filter(|(_, b)| **b).map(|(k, _)| k.clone()).collect();
    assert!(!want_bought.is_empty() && want_bought.len() < want.len());
    assert_eq!(bought, want_bought);
    let views = events.iter().filter(|e| e.event_type == EventType::View).count() as u64;
    let perf = sql_json(d, "SELECT SUM(views) AS views FROM gold.vw_category_performance");
    assert_eq!(perf[0]["views"].as_u64().unwrap(), views);
    let sessions: HashSet<&str> = events.iter().filter_map(|e| e.user_session.as_deref()).collect();
    assert_eq!(sql_count(d, "SELECT * FROM gold.vw_user_session_summary") as usize, sessions.len());
    let user_sessions = sql_json(d, "SELECT SUM(sessions) AS n FROM gold.dim_user");
    assert_eq!(user_sessions[0]["n"].as_u64().unwrap() as usize, sessions.len());
    let top = stdout(&ok(cartflow(d).args(["sql", "SELECT * FROM gold.dim_product ORDER BY purchases DESC LIMIT 3"])));
    assert!(top.contains("| product_id") && top.contains("3 rows"), "{top}");

    // Nothing new: nothing done.
    assert!(build(d, &[]).contains("is up to date"));

    // Later days: only their hours are built; the first days' files stay as they were.
    let before = silver_files(d);
    let later = generate(d, "later.csv", 10_000, "2019-10-05 00:00:00 UTC", 8);
    land_files(d, &[&later]);
    let out = build(d, &[]);
    let built = number_before(&out, "event hours");
    assert!((10..=24).contains(&built), "{out}");
    assert_eq!(number_before(&out, "unchanged"), first_hours);
    let after = silver_files(d);
    assert!(before.is_subset(&after), "old hours' files were rewritten");
    assert_eq!(after.len(), before.len() + built);
    assert_eq!(sql_count(d, "SELECT * FROM silver.events") as usize, distinct_events(d).len());

    // A late cart in an old hour: --until before it leaves it for later; then
    // it redoes its hour and the hours whose session order it may move.
    let late = d.join("late.csv");
    std::fs::write(
        &late,
        format!(
            "{}\n2019-10-01 03:30:00 UTC,cart,1000001,2053013555631882655,electronics.smartphone,apple,499.99,1,late-session\n",
            cartflow_core::CSV_HEADER
        ),
    )
    .unwrap();
    land_files(d, &[&late]);
    let out = build(d, &["--until", "2019-10-01 03:00:00 UTC"]);
    assert!(out.contains("nothing to rebuild in that range") && out.contains("changed event hours outside"), "{out}");
    let out = build(d, &[]);
    let redone = number_before(&out, "event hours");
    let window = sql_count(
        d,
        "SELECT DISTINCT date_key FROM gold.fact_events WHERE date_key >= 2019100103 AND date_key < 2019100300",
    );
    assert_eq!(redone as u64, window, "{out}");
    assert_eq!(sql_count(d, "SELECT * FROM gold.fact_cart_outcomes WHERE user_session = 'late-session'"), 1);
    // Replaced files stay one build for readers that opened the previous
    // state, then go: the lake holds what the state names and nothing else.
    let out = build(d, &[]);
    assert!(out.contains("is up to date"), "{out}");
    assert!(number_before(&out, "files no build names") >= 2 * redone, "{out}");
    let hours = sql_count(d, "SELECT DISTINCT date_key FROM gold.fact_events");
    assert_eq!(silver_files(d).len() as u64, hours);
}

/// A bronze file damaged on disk: the build names it and stops, silver and
/// gold as they were; with --skip-damaged it builds from the rest and says
/// which file it left out.
#[test]
fn a_damaged_lake_file_is_named_and_skipped_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let events = generate(d, "events.csv", 20_000, "2019-10-01 00:00:00 UTC", 11);
    land_files(d, &[&events]);
    let mut bronze: Vec<_> = files_under(&d.join("data/lake/events"));
    bronze.sort();
    assert!(bronze.len() > 1, "{bronze:?}");
    let victim = &bronze[bronze.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xA5);
    std::fs::write(victim, &bytes).unwrap();
    let name = victim.strip_prefix(d.join("data/lake")).unwrap().display().to_string();

    let out = cartflow(d).args(["warehouse", "build"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&name) && stderr.contains("--skip-damaged"), "{name} not named: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = build(d, &["--skip-damaged"]);
    assert!(out.contains(&format!("skipped the damaged lake file {name}")), "{out}");
    let rows = sql_count(d, "SELECT * FROM silver.events");
    assert!(rows > 0 && rows < 20_000, "silver holds the other files' rows: {rows}");
}

#[test]
fn export_loads_gold_into_postgres_with_keys_and_views_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = generate(d, "events.csv", 20_000, "2019-10-01 00:00:00 UTC", 11);
    land_files(d, &[&csv]);
    let no_gold = cartflow(d)
        .args(["warehouse", "export", "--postgres", "postgres://postgres@127.0.0.1/postgres"])
        .output()
        .unwrap();
    assert!(!no_gold.status.success());
    assert!(String::from_utf8_lossy(&no_gold.stderr).contains("warehouse build"));
    build(d, &[]);
    let db = TestDatabase::create();
    for round in 0..2 {
        let exported = ok(cartflow(d).args(["warehouse", "export", "--postgres", &db.url()]));
        let (out, err) = (stdout(&exported), String::from_utf8_lossy(&exported.stderr).into_owned());
        assert!(out.contains("exported gold to schema dwh"), "{out}");
        assert!(!out.contains("NOTICE") && !err.contains("NOTICE"), "{out}{err}");
        if round == 0 {
            // What a BI user builds on the export, which the next export must leave alone.
            db.query("CREATE VIEW dwh.my_carts AS SELECT count(*) AS n FROM dwh.fact_cart_outcomes");
            db.query("CREATE VIEW dwh.my_sessions AS SELECT user_id, events FROM dwh.vw_user_session_summary");
        }
        for table in ["fact_events", "fact_cart_outcomes", "dim_user", "dim_product", "dim_category", "dim_date"] {
            let want = sql_count(d, &format!("SELECT * FROM gold.{table}"));
            assert_eq!(db.query(&format!("SELECT count(*) FROM dwh.{table}")), want.to_string(), "{table}");
        }
    }
    assert_eq!(
        db.query("SELECT n FROM dwh.my_carts"),
        sql_count(d, "SELECT * FROM gold.fact_cart_outcomes").to_string()
    );
    assert_eq!(
        db.query("SELECT count(*) FROM dwh.my_sessions"),
        db.query("SELECT count(*) FROM dwh.vw_user_session_summary")
    );
    let counts = db.query(
        "SELECT string_agg(DISTINCT data_type, ',') FROM information_schema.columns WHERE table_schema = 'dwh' \
         AND table_name LIKE 'vw_%' AND column_name IN ('events', 'views', 'carts', 'purchases', 'products', 'first_carts')",
    );
    assert_eq!(counts, "bigint", "the views' counts");
    let keys = db.query(
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.table_constraints \
         WHERE table_schema = 'dwh' AND constraint_type = 'PRIMARY KEY'",
    );
    assert_eq!(keys, "dim_category,dim_date,dim_product,dim_user,fact_cart_outcomes");
    let indexes: u64 = db.query("SELECT count(*) FROM pg_indexes WHERE schemaname = 'dwh'").parse().unwrap();
    assert!(indexes >= 15, "{indexes} indexes");
    assert_eq!(
        db.query(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'dwh' AND table_name LIKE '\\_load%'"
        ),
        "0"
    );
    // The views answer in PostgreSQL what they answer in cartflow.
    let pg = db.query("SELECT sum(views) || ',' || sum(purchases) FROM dwh.vw_category_performance");
    let ours = sql_json(d, "SELECT SUM(views) AS v, SUM(purchases) AS p FROM gold.vw_category_performance");
    assert_eq!(pg, format!("{},{}", ours[0]["v"], ours[0]["p"]));
    let pg = db.query("SELECT count(*) || ',' || sum(events) || ',' || sum(duration_seconds)::bigint FROM dwh.vw_user_session_summary");
    let ours = sql_json(
        d,
        "SELECT COUNT(*) AS n, SUM(events) AS e, CAST(SUM(duration_seconds) AS BIGINT) AS s FROM gold.vw_user_session_summary",
    );
    assert_eq!(pg, format!("{},{},{}", ours[0]["n"], ours[0]["e"], ours[0]["s"]));
    // Types a BI tool can use.
    let types = db.query(
        "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) FROM information_schema.columns \
         WHERE table_schema = 'dwh' AND table_name = 'fact_cart_outcomes'",
    );
    for col in
        ["cart_time:timestamp with time zone", "is_purchased:boolean", "price:double precision", "product_id:bigint"]
    {
        assert!(types.contains(col), "{col} in {types}");
    }
    let bad = cartflow(d)
        .args(["warehouse", "export", "--postgres", "postgres://postgres@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("127.0.0.1:1"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn duckdb_running_the_same_sql_on_the_same_lake_agrees_with_gold() {
    if !(python_modules("python3", &["duckdb"])) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = generate(d, "events.csv", 30_000, "2019-10-01 00:00:00 UTC", 13);
    land_files(d, &[&csv, &csv]);
    build(d, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/warehouse_duckdb.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.join("data/lake"))
        .args(["--check", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["silver_rows"].as_u64().unwrap() as usize, distinct_events(d).len());
    assert_eq!(got["differences"], serde_json::json!([]));
}

#[test]
fn duckdb_pyarrow_and_polars_read_the_lakes_hour_folders_as_numbers() {
    if !(python_modules("python3", &["duckdb", "pyarrow", "polars"])) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = generate(d, "events.csv", 20_000, "2019-10-01 00:00:00 UTC", 19);
    land_files(d, &[&csv]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lake_readers.py");
    let out = std::process::Command::new("python3").arg(script).arg(d.join("data/lake")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("ok"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_warehouse_builds_and_answers_over_a_real_s3_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s3 = needs!(S3Server::start(d, "warehouse-test"));
    let lake = "s3://warehouse-test/lake";
    let csv = generate(d, "events.csv", 20_000, "2019-10-01 00:00:00 UTC", 17);
    ok(cartflow(d).args(["produce", "--input"]).arg(&csv));
    ok(cartflow(d).args(["validate", "--drain"]));
    ok(s3.configure(&mut cartflow(d)).args(["lake-sink", "--drain", "--lake", lake]));
    let out = stdout(&ok(s3.configure(&mut cartflow(d)).args(["warehouse", "build", "--lake", lake])));
    assert!(out.contains(lake), "{out}");
    assert!(s3.root.join("warehouse-test/lake/_warehouse/state.json").exists());
    let count = stdout(&ok(s3.configure(&mut cartflow(d)).args([
        "sql",
        "SELECT COUNT(*) AS n FROM silver.events",
        "--lake",
        lake,
        "--format",
        "csv",
    ])));
    assert_eq!(count.lines().nth(1).unwrap(), distinct_events(d).len().to_string());
    let again = stdout(&ok(s3.configure(&mut cartflow(d)).args(["warehouse", "build", "--lake", lake])));
    assert!(again.contains("is up to date"), "{again}");
}

/// `warehouse build --every`: a run that fails (the lake is a file, not a
/// folder) is counted and tried again at the next tick, which builds once
/// the events have landed; a run by hand while another holds the job is
/// refused; Ctrl-C stops the scheduler between runs.
#[test]
fn a_scheduled_build_retries_a_failed_run_and_refuses_to_overlap_another() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(d.join("data/lake"), "not a lake").unwrap();
    let port = free_port();
    let mut cmd = cartflow(d);
    cmd.args(["warehouse", "build", "--every", "1s", "--metrics-addr", &format!("127.0.0.1:{port}")]);
    let mut scheduler = Server::start(cmd, port, "/health", Duration::from_secs(60), &d.join("scheduler.log"));
    let token = std::fs::read_to_string(d.join("data/auth/token")).unwrap();
    let runs = |outcome: &str| -> u64 {
        let mut r = ureq::get(format!("{}/metrics", scheduler.url))
            .header("authorization", format!("Bearer {}", token.trim()))
            .call()
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        let series = format!("cartflow_job_runs_total{{job=\"warehouse build\",outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or(0)
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("no failed run counted", &|| runs("failed") >= 1);
    assert_eq!(runs("ok"), 0);

    std::fs::remove_file(d.join("data/lake")).unwrap();
    let csv = generate(d, "events.csv", 5_000, "2019-10-01 00:00:00 UTC", 3);
    land_files(d, &[&csv]);
    // A tick may have been building while the events landed, and may end after this count: runs
    // never overlap, so the second run to end from here began after the events had landed.
    let built = runs("ok");
    wait_for("the next ticks did not build", &|| runs("ok") > built + 1);
    assert!(sql_count(d, "SELECT * FROM silver.events") > 4_000);

    // The job's lock held elsewhere: a run by hand is refused, naming the lock, and so are ticks.
    let lock = std::fs::File::create(d.join("data/locks/warehouse-build.lock")).unwrap();
    wait_for("the lock was never free", &|| lock.try_lock().is_ok());
    let refused = cartflow(d).args(["warehouse", "build"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("another warehouse build is running"), "{stderr}");
    let before = runs("refused");
    wait_for("no tick was refused", &|| runs("refused") > before);
    drop(lock);

    std::process::Command::new("kill").args(["-INT", &scheduler.child.id().to_string()]).status().unwrap();
    let status = scheduler.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(d.join("scheduler.log")).unwrap());
}
