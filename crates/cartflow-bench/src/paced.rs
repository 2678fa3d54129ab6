//! `cartflow-bench load --rate`: requests at a fixed rate, as shoppers send
//! them, not as fast as the server answers (wrk2's way). A request behind its
//! schedule is timed from when it was due, so a server that falls behind shows
//! it in the latency instead of slowing the load down; one sent on time is
//! timed from when it went (the client's own timer slack is not the server's).
//! With `--report-every`, a CSV line per interval, for the soak's samples.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;

use crate::serve::Load;

pub struct Paced {
    /// Requests per second, over all connections.
    pub rate: f64,
    pub seconds: u64,
    pub connections: usize,
    /// A line per interval on stdout: unix_secs,requests,errors,p50_ms,p99_ms,max_ms.
    pub report_every: Option<Duration>,
}

/// What one interval (or the whole run) saw: latency in µs, and errors.
struct Window {
    micros: Histogram<u64>,
    errors: u64,
}

impl Window {
    fn new() -> Self {
        // 1 µs to 60 s at three significant digits.
        Window { micros: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"), errors: 0 }
    }

    fn record(&mut self, micros: u64, ok: bool) {
        self.micros.saturating_record(micros.max(1));
        self.errors += u64::from(!ok);
    }

    fn ms(&self, q: f64) -> f64 {
        self.micros.value_at_quantile(q) as f64 / 1000.0
    }
}

pub const REPORT_HEADER: &str = "unix_secs,requests,errors,p50_ms,p99_ms,max_ms";

/// Sends `bodies` round-robin at `p.rate` for `p.seconds`.
pub fn run(url: &str, token: &str, bodies: &[String], p: &Paced) -> Load {
    let uri: hyper::Uri = url.parse().expect("the server's URL");
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is header-safe");
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies.iter().map(|b| Bytes::from(b.clone())).collect());
    let windows = Arc::new(Mutex::new((Window::new(), Window::new())));
    let started = Instant::now();
    let until = started + Duration::from_secs(p.seconds);
    // One thread's event loop, as `load` (serve.rs): the server shares the cores.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let reporter = p.report_every.map(|every| {
            let windows = windows.clone();
            tokio::spawn(async move {
                println!("{REPORT_HEADER}");
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    let line = {
                        let mut w = windows.lock().expect("not poisoned");
                        let interval = std::mem::replace(&mut w.0, Window::new());
                        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                        format!(
                            "{now},{},{},{:.3},{:.3},{:.3}",
                            interval.micros.len(),
                            interval.errors,
                            interval.ms(0.5),
                            interval.ms(0.99),
                            interval.micros.max() as f64 / 1000.0
                        )
                    };
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
            })
        });
        let gap = Duration::from_secs_f64(p.connections as f64 / p.rate);
        let tasks: Vec<_> = (0..p.connections)
            .map(|c| {
                let first = started + Duration::from_secs_f64(c as f64 / p.rate);
                let schedule = Schedule { first, gap, until };
                tokio::spawn(connection(
                    uri.clone(),
                    auth.clone(),
                    bodies.clone(),
                    (c, p.connections),
                    schedule,
                    windows.clone(),
                ))
            })
            .collect();
        for task in tasks {
            task.await.expect("load task");
        }
        if let Some(r) = reporter {
            r.abort();
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let w = windows.lock().expect("not poisoned");
    let all = &w.1;
    Load {
        requests: all.micros.len(),
        errors: all.errors,
        per_sec: all.micros.len() as f64 / secs,
        p50_ms: all.ms(0.5),
        p99_ms: all.ms(0.99),
    }
}

#[derive(Clone, Copy)]
struct Schedule {
    first: Instant,
    gap: Duration,
    until: Instant,
}

/// One connection's requests, each at its time; a failed connection is
/// opened again.
async fn connection(
    uri: hyper::Uri,
    auth: HeaderValue,
    bodies: Arc<Vec<Bytes>>,
    (first_body, step): (usize, usize),
    s: Schedule,
    windows: Arc<Mutex<(Window, Window)>>,
) {
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let mut sender = None;
    let mut due = s.first;
    let mut i = first_body;
    while due < s.until {
        let now = Instant::now();
        let from = if now < due {
            tokio::time::sleep_until(due.into()).await;
            Instant::now()
        } else {
            due
        };
        if sender.is_none() {
            sender = crate::serve::open(&host).await;
        }
        let ok = match sender.as_mut() {
            Some(conn) => crate::serve::post(conn, &uri, &host, &auth, bodies[i % bodies.len()].clone()).await,
            None => false,
        };
        if !ok {
            sender = None;
        }
        let micros = from.elapsed().as_micros() as u64;
        {
            let mut w = windows.lock().expect("not poisoned");
            w.0.record(micros, ok);
            w.1.record(micros, ok);
        }
        due += s.gap;
        i += step;
    }
}
