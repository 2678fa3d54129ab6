//! Helpers for the end-to-end tests: they run the real `cartflow` binary as
//! child processes on a data directory of their own, and read the embedded
//! log back with `cartflow-log` to check what landed. The services they
//! start (S3, Kafka, PostgreSQL, Redis) come from `cartflow-testkit`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use cartflow_log::{EmbeddedLog, EmbeddedOptions, EventLog, Record};
pub use cartflow_testkit::*;

pub const RAW: &str = "tracking.raw_user_behavior";
pub const VALIDATED: &str = "tracking.user_behavior.validated";
pub const INVALID: &str = "tracking.user_behavior.invalid";

/// `cartflow` with a clean environment and `--data-dir dir`.
pub fn cartflow(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cartflow"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CARTFLOW_") {
            c.env_remove(k);
        }
    }
    c.current_dir(dir).arg("--data-dir").arg(dir.join("data")).arg("--quiet");
    c
}

/// Runs to completion and fails the test, showing what it printed, when it fails.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn open_log(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(dir.join("data/log"), EmbeddedOptions::default()).unwrap()
}

/// Every record of a topic.
pub fn read_topic(dir: &Path, topic: &str) -> Vec<Record> {
    read_all(&open_log(dir), topic)
}

/// Checks that every raw record has exactly one output across validated and
/// invalid, and returns (valid, invalid) counts.
pub fn assert_exactly_once(dir: &Path) -> (usize, usize) {
    assert_exactly_once_on(&open_log(dir))
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

pub fn real_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real").join(name)
}

/// Rows of every Parquet file under `dir/<table>`, as (`_partition`, `_offset`, row as JSON-ish text).
pub fn read_lake_table(lake_dir: &Path, table: &str) -> Vec<(i32, i64, String)> {
    use arrow_array::{Array, Int32Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = Vec::new();
    let mut files = Vec::new();
    collect_files(&lake_dir.join(table), &mut files);
    for f in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
            let partition = col("_partition");
            let partition = partition.as_any().downcast_ref::<Int32Array>().unwrap();
            let offset = col("_offset");
            let offset = offset.as_any().downcast_ref::<Int64Array>().unwrap();
            let text = arrow_array::cast::AsArray::as_string::<i32>(
                col(if table == "events" { "user_session" } else { "reason" }).as_ref(),
            )
            .clone();
            for i in 0..batch.num_rows() {
                let t = if text.is_null(i) { String::new() } else { text.value(i).to_owned() };
                rows.push((partition.value(i), offset.value(i), t));
            }
        }
    }
    rows
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

/// Checks that the lake under `lake_dir` holds each record of the validated
/// and invalid topics exactly once; returns (events, invalid).
pub fn assert_lake_exactly_once(dir: &Path, lake_dir: &Path) -> (usize, usize) {
    assert_lake_exactly_once_on(&open_log(dir), lake_dir)
}

/// Every validated and invalid record is in the lake exactly once, on any log.
pub fn assert_lake_exactly_once_on(log: &dyn EventLog, lake_dir: &Path) -> (usize, usize) {
    let mut counts = (0, 0);
    for (topic, table) in [(VALIDATED, "events"), (INVALID, "invalid")] {
        let records = read_all(log, topic);
        let rows = read_lake_table(lake_dir, table);
        let mut seen: HashMap<(i32, i64), u32> = HashMap::new();
        for (p, o, _) in &rows {
            *seen.entry((*p, *o)).or_default() += 1;
        }
        let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(dup.is_empty(), "{table}: records landed twice: {dup:?}");
        let missing: Vec<_> = records
            .iter()
            .filter(|r| !seen.contains_key(&(r.partition as i32, r.offset as i64)))
            .take(5)
            .map(|r| (r.partition, r.offset))
            .collect();
        assert!(missing.is_empty(), "{table}: records missing from the lake: {missing:?}");
        assert_eq!(rows.len(), records.len(), "{table}: rows that are not records");
        if table == "events" {
            counts.0 = rows.len();
        } else {
            counts.1 = rows.len();
        }
    }
    counts
}

/// A server binary `.ci/run` installs under ~/.cache/cartflow/tools, or the one `env` names.
/// A server process, killed at the end of the test.
pub struct Server {
    pub child: Child,
    pub url: String,
}

/// Every process below `root`, from /proc (parent ids are field 4 of `stat`).
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command name may hold spaces: fields start after its closing parenthesis.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.split_off(1)
}

impl Drop for Server {
    fn drop(&mut self) {
        // `mlflow server` runs uvicorn in a session of its own: kill the whole tree.
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `cmd` and waits until `path` answers 200. Its output goes to
    /// `log`: a pipe shared with the test would keep the test run open for
    /// as long as any of its children lives.
    pub fn start(mut cmd: Command, port: u16, path: &str, within: Duration, log: &Path) -> Server {
        let out = std::fs::File::create(log).expect("a log file");
        let child = cmd.stdout(out.try_clone().unwrap()).stderr(out).spawn().expect("server starts");
        let mut server = Server { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        loop {
            if let Ok(r) = ureq::get(format!("{}{path}", server.url)).call()
                && r.status() == 200
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{cmd:?} exited with {status} before serving: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < within, "{cmd:?} did not serve {path} within {within:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The page as Chromium renders it.
pub fn chromium_dom(url: &str) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--dump-dom", url])
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of the page as headless Chromium renders it, kept as test
/// output (`<target>/tmp/<name>.png`) for people to look at; its path.
pub fn chromium_screenshot(url: &str, name: &str) -> std::path::PathBuf {
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1800"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "no screenshot at {}", shot.display());
    shot
}

/// Runs Debian's `promtool` (installed by .ci/run) in `dir`, with `stdin`; fails the test when it fails.
pub fn promtool(args: &[&str], dir: &Path, stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

/// `promtool check metrics` finds nothing to say about an exposition.
pub fn assert_promtool_clean(what: &str, metrics: &str) {
    assert!(metrics.contains("# HELP"), "{what}: no exposition: {metrics}");
    let text = promtool(&["check", "metrics"], Path::new("."), Some(metrics));
    assert!(text.trim().is_empty(), "{what}: promtool check metrics: {text}");
}

/// A self-signed certificate for 127.0.0.1 (and its key), made by openssl in `dir`.
pub fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// What `wrk --latency` reported: requests sent, those that failed (non-2xx answers and socket
/// errors, which wrk prints only when there were any), and the 99th percentile latency.
pub struct WrkReport {
    pub text: String,
    pub requests: u64,
    pub failed: u64,
    pub p99_ms: f64,
}

/// A wrk script that POSTs `body` as JSON with `token`.
pub fn wrk_post_script(path: &Path, body: &str, token: &str) {
    std::fs::write(
        path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        ),
    )
    .unwrap();
}

impl WrkReport {
    pub fn parse(text: &str) -> WrkReport {
        let line = |start: &str| text.lines().map(str::trim).find(|l| l.starts_with(start)).map(str::to_owned);
        let requests = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no request count: {text}"));
        let non_2xx: u64 = line("Non-2xx").and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0);
        // "Socket errors: connect 0, read 2, write 0, timeout 0"
        let socket: u64 = line("Socket errors")
            .map_or(0, |l| l.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum());
        let p99_ms = line("99%")
            .and_then(|l| {
                let v = l.split_whitespace().nth(1)?;
                let (number, scale) = [("ms", 1.0), ("us", 0.001), ("s", 1000.0)]
                    .iter()
                    .find_map(|(unit, scale)| Some((v.strip_suffix(unit)?, *scale)))?;
                Some(number.parse::<f64>().ok()? * scale)
            })
            .unwrap_or_else(|| panic!("no 99th percentile (run wrk with --latency): {text}"));
        WrkReport { text: text.to_owned(), requests, failed: non_2xx + socket, p99_ms }
    }
}
