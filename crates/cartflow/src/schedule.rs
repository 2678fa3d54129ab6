//! Batch jobs (`warehouse build`, `features build`, `train`) once, or again
//! every `--every DURATION` until Ctrl-C, as a compose service runs them.
//!
//! Each run holds the job's lock file in the data directory, so a second run
//! of the same job (another scheduler, or one started by hand) is refused
//! instead of overlapping it. A failed run is logged and counted, and the
//! next tick tries again; what the last good run wrote stays, since each job
//! replaces its outputs only once they are whole. A run that outlasts its
//! tick makes the scheduler skip the ticks it overlapped.

use std::fs::{File, TryLockError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::Schedule;
use crate::commands::Ctx;

pub const RUNS: &str = "cartflow_job_runs_total";
pub const SECONDS: &str = "cartflow_job_duration_seconds";
pub const LAST_SUCCESS: &str = "cartflow_job_last_success_timestamp_seconds";
pub const RUNNING: &str = "cartflow_job_running";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RUNS, "Runs of a batch job, by job and outcome (ok, failed, refused: another run held the job).");
    describe_histogram!(SECONDS, metrics::Unit::Seconds, "How long a batch job's run took, by job.");
    describe_gauge!(LAST_SUCCESS, "When a batch job last succeeded (Unix seconds), by job.");
    describe_gauge!(RUNNING, "1 while a batch job runs in this process, by job.");
}

/// Runs `job` once, or every `schedule.every` until stopped. Once, its
/// error is the command's; scheduled, a failure waits for the next tick.
/// `shared` jobs skip the lock: the workers of one tuning study run together
/// by design, coordinated by the study's database.
pub fn run(
    ctx: &Ctx,
    name: &'static str,
    shared: bool,
    schedule: &Schedule,
    mut job: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut job =
        move || -> Result<Ran> { if shared { Ok(Ran::Finished(job())) } else { locked(ctx, name, &mut job) } };
    let Some(every) = schedule.every else {
        return match job()? {
            Ran::Finished(outcome) => outcome,
            Ran::Refused(why) => bail!(why),
        };
    };
    if every < Duration::from_secs(1) {
        bail!("--every {} is too short: give at least 1s", humantime::format_duration(every));
    }
    describe();
    ctx.serve_metrics(&schedule.running)?;
    for outcome in ["ok", "failed", "refused"] {
        metrics::counter!(RUNS, "job" => name, "outcome" => outcome).increment(0);
    }
    tracing::info!("{name}: every {}, from now until Ctrl-C", humantime::format_duration(every));
    let mut tick = Instant::now();
    while !ctx.control.stopped() {
        let started = Instant::now();
        metrics::gauge!(RUNNING, "job" => name).set(1.0);
        let outcome = job().unwrap_or_else(|e| Ran::Finished(Err(e)));
        metrics::gauge!(RUNNING, "job" => name).set(0.0);
        let took = started.elapsed();
        let label = match &outcome {
            Ran::Finished(Ok(())) => {
                metrics::histogram!(SECONDS, "job" => name).record(took.as_secs_f64());
                metrics::gauge!(LAST_SUCCESS, "job" => name).set(cartflow_core::time::now_micros() as f64 / 1e6);
                tracing::info!("{name}: done in {:.1} s", took.as_secs_f64());
                "ok"
            }
            Ran::Refused(why) => {
                tracing::warn!("{why}; trying at the next tick");
                "refused"
            }
            Ran::Finished(Err(e)) => {
                metrics::histogram!(SECONDS, "job" => name).record(took.as_secs_f64());
                tracing::error!(
                    "{name} failed after {:.1} s: {e:#}; trying again at the next tick",
                    took.as_secs_f64()
                );
                "failed"
            }
        };
        metrics::counter!(RUNS, "job" => name, "outcome" => label).increment(1);
        ctx.health.set(name, serde_json::json!({ "last_run": label, "seconds": took.as_secs_f64() }));
        tick += every;
        let mut skipped = 0;
        while tick <= Instant::now() {
            tick += every;
            skipped += 1;
        }
        if skipped > 0 {
            tracing::warn!("{name}: the run outlasted {skipped} ticks, which were skipped");
        }
        while !ctx.control.stopped() && Instant::now() < tick {
            std::thread::sleep((tick - Instant::now()).min(Duration::from_millis(200)));
        }
    }
    Ok(())
}

/// What became of a run: the job's own outcome, or refused (why) because
/// another run of the job holds its lock.
enum Ran {
    Finished(Result<()>),
    Refused(String),
}

/// Runs `job` holding its lock file, `<data dir>/locks/<name>.lock`; the
/// operating system lets go of it when the process ends, however it ends.
fn locked(ctx: &Ctx, name: &'static str, job: &mut impl FnMut() -> Result<()>) -> Result<Ran> {
    let dir = ctx.cfg.data_dir.join("locks");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.lock", name.replace(' ', "-")));
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Ran::Finished(job())),
        Err(TryLockError::WouldBlock) => Ok(Ran::Refused(format!(
            "another {name} is running (it holds {}), so this one does not start",
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}
