//! `cartflow-bench serve`: `POST /predict` under load from this process
//! (one event loop, keep-alive connections) — one cart per request and
//! batches of 100, features from the embedded store and (with `--redis`)
//! from Redis — and, with `--python`, the same requests against the
//! reference design's serving path (FastAPI, redis-py, XGBoost;
//! `benches/serve_peer.py`) on the same features. Needs a data directory
//! with a champion (`cartflow run --once`).

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use cartflow_stream::StageControl;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use hyper::header::{self, HeaderValue};
use serde_json::{Value, json};

use cartflow::backends::Backends;
use cartflow::commands::Ctx;
use cartflow::telemetry::{Health, thousands};
use cartflow::wiring::registry::champion;
use cartflow::wiring::server::{ServeOptions, start};
use cartflow::wiring::streamer::open_warehouse;

/// Carts the requests cycle over: the newest first carts of the training set.
const SAMPLE: usize = 5000;

pub struct ServeBench {
    pub seconds: u64,
    pub connections: usize,
    pub redis: Option<String>,
    pub python: bool,
    pub peer_script: std::path::PathBuf,
    pub json: bool,
}

/// One load run's figures (as fast as answered, or paced).
pub(crate) struct Load {
    pub requests: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Sends `bodies` round-robin from `connections` keep-alive connections for
/// `seconds`, all from one thread's event loop, as wrk does: the server shares
/// this machine's two cores with the load, and a thread per connection (ureq)
/// spent a good share of them switching between threads.
fn load(url: &str, token: &str, bodies: &[String], connections: usize, seconds: u64) -> Load {
    let uri: hyper::Uri = url.parse().expect("the server's own URL");
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is header-safe");
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies.iter().map(|b| Bytes::from(b.clone())).collect());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let per_connection = rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|c| tokio::spawn(connection(uri.clone(), auth.clone(), bodies.clone(), (c, connections), until)))
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.expect("load task"));
        }
        done
    });
    let secs = started.elapsed().as_secs_f64();
    let (mut micros, mut errors) = (Vec::new(), 0);
    for (m, e) in per_connection {
        micros.extend(m);
        errors += e;
    }
    micros.sort_unstable();
    let quantile = |q: f64| micros.get(((micros.len() as f64 * q) as usize).min(micros.len().saturating_sub(1)));
    Load {
        requests: micros.len() as u64,
        errors,
        per_sec: micros.len() as f64 / secs,
        p50_ms: quantile(0.5).map_or(0.0, |&m| m as f64 / 1000.0),
        p99_ms: quantile(0.99).map_or(0.0, |&m| m as f64 / 1000.0),
    }
}

/// One connection's requests until `until`: each one's latency in µs, and
/// how many failed (a failed connection is opened again).
async fn connection(
    uri: hyper::Uri,
    auth: HeaderValue,
    bodies: Arc<Vec<Bytes>>,
    (first, step): (usize, usize),
    until: Instant,
) -> (Vec<u32>, u64) {
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let (mut micros, mut errors, mut i) = (Vec::new(), 0u64, first);
    let mut sender = None;
    while Instant::now() < until {
        let t = Instant::now();
        if sender.is_none() {
            sender = open(&host).await;
        }
        let Some(s) = sender.as_mut() else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let ok = post(s, &uri, &host, &auth, bodies[i % bodies.len()].clone()).await;
        micros.push(t.elapsed().as_micros() as u32);
        errors += u64::from(!ok);
        if !ok {
            sender = None;
        }
        i += step;
    }
    (micros, errors)
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

/// POSTs JSON `body` to `uri` on `sender`: whether it was answered 200.
pub(crate) async fn post(sender: &mut Sender, uri: &hyper::Uri, host: &str, auth: &HeaderValue, body: Bytes) -> bool {
    use http_body_util::BodyExt;
    let request = hyper::Request::post(uri.path())
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, auth.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(body))
        .expect("a valid request");
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status();
            response.into_body().collect().await.is_ok() && status == hyper::StatusCode::OK
        }
        Err(_) => false,
    }
}

pub(crate) async fn open(host: &str) -> Option<Sender> {
    let stream = tokio::net::TcpStream::connect(host).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// The sample carts as request items, and their encoded inputs (the same
/// features the online store computes at the cart's time: zero skew).
struct Sample {
    items: Vec<Value>,
    /// Row after row, the champion's inputs.
    rows: Vec<f64>,
    inputs: Vec<String>,
}

fn sample(ctx: &Ctx, model: &cartflow_model::Model) -> Result<(Sample, cartflow_train::encode::Encoded)> {
    let warehouse = open_warehouse(ctx, None)?;
    let all = warehouse.sql("SELECT * FROM features.cart_features ORDER BY event_time, user_session, product_id")?;
    let frame = cartflow_train::Frame::from_batches(&all)?;
    let every: Vec<usize> = (0..frame.rows()).collect();
    let encoded = cartflow_train::encode::Encoded::new(&frame, &model.inputs, &every)?;
    let rows = encoded.row_major();
    let mut items = Vec::new();
    for batch in &all {
        let users = batch.column_by_name("user_id").context("user_id")?.as_primitive::<Int64Type>().clone();
        let products = batch.column_by_name("product_id").context("product_id")?.as_primitive::<Int64Type>().clone();
        // DataFusion may hand strings over as views: read them as plain UTF-8.
        let sessions = cast(batch.column_by_name("user_session").context("user_session")?, &DataType::Utf8)?;
        let sessions = sessions.as_string::<i32>();
        let times = batch
            .column_by_name("event_time")
            .context("event_time")?
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let prices = batch.column_by_name("price").context("price")?.as_primitive::<Float64Type>().clone();
        for r in 0..batch.num_rows() {
            items.push(json!({
                "user_id": users.value(r), "product_id": products.value(r), "user_session": sessions.value(r),
                "event_time": cartflow_core::time::rfc3339(times.value(r)),
                "price": (!prices.is_null(r)).then(|| prices.value(r)),
            }));
        }
    }
    let skip = items.len().saturating_sub(SAMPLE);
    let cols = model.inputs.len();
    let sample = Sample {
        items: items.split_off(skip),
        rows: rows[skip * cols..].to_vec(),
        inputs: model.inputs.iter().map(|i| i.name.clone()).collect(),
    };
    Ok((sample, encoded))
}

/// Request bodies: one cart each, and 100 each.
fn bodies(items: &[Value]) -> (Vec<String>, Vec<String>) {
    let single = items.iter().map(|i| Value::Array(vec![i.clone()]).to_string()).collect();
    let hundreds = (0..50)
        .map(|k| Value::Array(items.iter().cycle().skip(k * 100).take(100).cloned().collect()).to_string())
        .collect();
    (single, hundreds)
}

/// A context of its own: its server stops when this one's control does.
fn scenario_ctx(ctx: &Ctx, online_prefix: Option<&str>) -> Ctx {
    let mut cfg = ctx.cfg.clone();
    if let Some(prefix) = online_prefix {
        cfg.features.redis_prefix = prefix.to_owned();
    }
    Ctx { cfg, quiet: true, control: StageControl::new(false), health: Health::default(), traces: None }
}

/// Serves with `online`, waits until the store has caught up, loads it
/// with both body sizes, stops. Returns (one cart, 100 carts).
fn bench_cartflow(
    ctx: &Ctx,
    online: &str,
    b: &ServeBench,
    single: &[String],
    hundreds: &[String],
) -> Result<(Load, Load)> {
    let online: cartflow_online::OnlineBackend = online.parse().map_err(anyhow::Error::msg)?;
    let embedded = online.is_embedded();
    let started =
        start(ctx, ServeOptions { addr: Some("127.0.0.1:0".into()), online: Some(online), ..Default::default() })?;
    if embedded {
        let waiting = Instant::now();
        while ctx.health.snapshot()["features"]["lag"].as_u64() != Some(0) {
            if waiting.elapsed() > Duration::from_secs(300) {
                bail!("the embedded store did not catch up with the validated topic in 5 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let url = format!("{}/predict", started.url());
    let token = started.admin.as_ref().map(|a| a.token.clone()).unwrap_or_default();
    let one = load(&url, &token, single, b.connections, b.seconds);
    let hundred = load(&url, &token, hundreds, b.connections, b.seconds);
    ctx.control.stop();
    started.wait()?;
    Ok((one, hundred))
}

/// Fills Redis under a prefix of its own from the validated topic.
fn fill_redis(ctx: &Ctx, url: &str) -> Result<std::sync::Arc<dyn cartflow_online::OnlineStore>> {
    let store = ctx.cfg.open_online(Some(&url.parse().map_err(anyhow::Error::msg)?))?;
    let log = ctx.cfg.open_log()?;
    let streamer = cartflow_stream::feature_streamer::StreamerConfig {
        group: format!("bench-serve-{}", std::process::id()),
        ..ctx.cfg.features.streamer.clone()
    };
    cartflow_stream::feature_streamer::run_feature_streamer(
        log.as_ref(),
        store.as_ref(),
        &streamer,
        &StageControl::new(true),
        &mut |_| {},
    )?;
    Ok(store)
}

/// The Python peer on a free port, killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-P", &self.0.id().to_string()]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_peer_inputs(dir: &Path, s: &Sample, train: &cartflow_train::encode::Encoded) -> Result<()> {
    use std::io::Write;
    let cell = |v: f64| if v.is_nan() { String::new() } else { v.to_string() };
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("train.csv"))?);
    writeln!(w, "{},label", s.inputs.join(","))?;
    let rows = train.row_major();
    for (r, row) in rows.chunks(train.cols).enumerate() {
        let cells: Vec<String> = row.iter().map(|&v| cell(v)).collect();
        writeln!(w, "{},{}", cells.join(","), train.labels[r])?;
    }
    w.flush()?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("sample.csv"))?);
    writeln!(w, "user_id,product_id,user_session,{}", s.inputs.join(","))?;
    for (item, row) in s.items.iter().zip(s.rows.chunks(s.inputs.len())) {
        let cells: Vec<String> = row.iter().map(|&v| cell(v)).collect();
        writeln!(
            w,
            "{},{},{},{}",
            item["user_id"],
            item["product_id"],
            item["user_session"].as_str().unwrap_or(""),
            cells.join(",")
        )?;
    }
    Ok(w.flush()?)
}

fn start_peer(b: &ServeBench, dir: &Path, redis: &str, token: &str) -> Result<(Peer, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("python3")
        .arg(&b.peer_script)
        .args(["--redis", redis, "--dir"])
        .arg(dir)
        .args(["--port", &port.to_string(), "--token", token])
        .stdout(std::fs::File::create(dir.join("peer.log"))?)
        .stderr(std::fs::File::create(dir.join("peer.err"))?)
        .spawn()
        .with_context(|| format!("starting {}", b.peer_script.display()))?;
    let peer = Peer(child);
    let url = format!("http://127.0.0.1:{port}");
    let waiting = Instant::now();
    while ureq::get(format!("{url}/health")).call().is_err() {
        if waiting.elapsed() > Duration::from_secs(300) {
            bail!(
                "the Python peer did not start: {}",
                std::fs::read_to_string(dir.join("peer.err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok((peer, url))
}

pub fn run(ctx: &Ctx, b: ServeBench) -> Result<()> {
    let model = champion(ctx)?.context(
        "no champion to serve: run `cartflow run --once` (or `cartflow train`) on this data directory first",
    )?;
    let (sample, encoded) = sample(ctx, &model.model)?;
    let (single, hundreds) = bodies(&sample.items);
    let mut results: Vec<(String, Load, Load)> = Vec::new();

    let (one, hundred) = bench_cartflow(&scenario_ctx(ctx, None), "embedded", &b, &single, &hundreds)?;
    results.push(("cartflow, embedded store".into(), one, hundred));
    if let Some(redis) = &b.redis {
        let prefix = format!("cartflow-bench-serve-{}", std::process::id());
        let rctx = scenario_ctx(ctx, Some(&prefix));
        let store = fill_redis(&rctx, redis)?;
        let outcome = bench_cartflow(&rctx, redis, &b, &single, &hundreds);
        store.delete()?;
        let (one, hundred) = outcome?;
        results.push(("cartflow, Redis store".into(), one, hundred));
        if b.python {
            let dir = tempfile::Builder::new().prefix("cartflow-peer-").tempdir()?;
            write_peer_inputs(dir.path(), &sample, &encoded)?;
            let token = "peer-token-0123456789";
            let (_peer, url) = start_peer(&b, dir.path(), redis, token)?;
            let url = format!("{url}/predict");
            let one = load(&url, token, &single, b.connections, b.seconds);
            let hundred = load(&url, token, &hundreds, b.connections, b.seconds);
            results.push(("Python peer (FastAPI, redis-py, XGBoost)".into(), one, hundred));
        }
    } else if b.python {
        bail!("--python compares on Redis features: give --redis redis://127.0.0.1:6379/0 too");
    }

    if b.json {
        let out: Vec<Value> = results
            .iter()
            .map(|(name, one, hundred)| {
                json!({ "server": name, "trees": model.scorer.trees(),
                        "one": { "requests_per_sec": one.per_sec, "p50_ms": one.p50_ms, "p99_ms": one.p99_ms, "errors": one.errors },
                        "hundred": { "requests_per_sec": hundred.per_sec, "p50_ms": hundred.p50_ms, "p99_ms": hundred.p99_ms, "errors": hundred.errors } })
            })
            .collect();
        println!("{}", Value::Array(out));
        return Ok(());
    }
    println!(
        "POST /predict, {} connections, {} s each, {} v{} ({} trees), {} sample carts",
        b.connections,
        b.seconds,
        model.name,
        model.version,
        model.scorer.trees(),
        thousands(sample.items.len() as u64)
    );
    println!("{:<42} {:>22} {:>22}", "server", "1 cart: req/s p50 p99", "100 carts: req/s p50 p99");
    for (name, one, hundred) in &results {
        let cell = |l: &Load| format!("{} {:.2} {:.2}", thousands(l.per_sec as u64), l.p50_ms, l.p99_ms);
        let errors = one.errors + hundred.errors;
        println!(
            "{name:<42} {:>22} {:>22}{}",
            cell(one),
            cell(hundred),
            if errors > 0 {
                format!("  ({errors} errors of {})", one.requests + hundred.requests)
            } else {
                String::new()
            }
        );
    }
    if let (Some(ours), Some(peer)) =
        (results.iter().find(|r| r.0.contains("Redis")), results.iter().find(|r| r.0.contains("Python")))
    {
        println!(
            "cartflow / Python on Redis features: {:.1}× requests/s with one cart, {:.1}× with 100",
            ours.1.per_sec / peer.1.per_sec.max(f64::MIN_POSITIVE),
            ours.2.per_sec / peer.2.per_sec.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// `cartflow-bench load`: the sample carts, one per request, against `url`:
/// as fast as it answers, or at `rate` (see [`crate::paced`]).
pub fn load_url(ctx: &Ctx, url: &str, l: &LoadArgs) -> Result<()> {
    let model = champion(ctx)?.context("no champion: the sample carts are encoded for it (`cartflow run --once`)")?;
    let (sample, _) = sample(ctx, &model.model)?;
    let (single, _) = bodies(&sample.items);
    let token = match std::env::var("CARTFLOW_TOKEN") {
        Ok(t) => t,
        Err(_) => std::fs::read_to_string(ctx.cfg.data_dir.join("auth/token"))
            .context("no $CARTFLOW_TOKEN and no admin token in the data directory")?
            .trim()
            .to_owned(),
    };
    let url = format!("{}/predict", url.trim_end_matches('/'));
    let t = match l.rate {
        Some(rate) => {
            let paced = crate::paced::Paced {
                rate,
                seconds: l.seconds,
                connections: l.connections,
                report_every: l.report_every.map(Duration::from_secs),
            };
            crate::paced::run(&url, &token, &single, &paced)
        }
        None => load(&url, &token, &single, l.connections, l.seconds),
    };
    if l.json {
        println!(
            "{}",
            json!({ "url": url, "requests_per_sec": t.per_sec, "p50_ms": t.p50_ms, "p99_ms": t.p99_ms, "errors": t.errors })
        );
    } else {
        let pace = l.rate.map_or(String::new(), |r| format!(" at {} req/s", thousands(r as u64)));
        // With --report-every, stdout is the intervals' CSV: the summary goes beside it.
        let say = |line: String| if l.report_every.is_some() { eprintln!("{line}") } else { println!("{line}") };
        say(format!(
            "POST {url}, one cart{pace}, {} connections, {} s: {} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors of {}",
            l.connections,
            l.seconds,
            thousands(t.per_sec as u64),
            t.p50_ms,
            t.p99_ms,
            t.errors,
            t.requests,
        ));
    }
    Ok(())
}

/// `cartflow-bench load`'s options.
pub struct LoadArgs {
    pub seconds: u64,
    pub connections: usize,
    pub rate: Option<f64>,
    pub report_every: Option<u64>,
    pub json: bool,
}
