//! `cartflow monitor`: the served models scored against what shoppers did
//! next, until Ctrl-C or, with `--drain`, caught up.

use std::time::Instant;

use anyhow::Result;
use cartflow_monitor::Monitor;
use cartflow_stream::monitor::{MonitorConfig, run_monitor};

use super::Ctx;
use crate::backends::Backends;
use crate::cli::MonitorArgs;
use crate::telemetry::{progress, thousands};

pub fn run(ctx: &Ctx, a: MonitorArgs) -> Result<()> {
    ctx.serve_metrics(&a.running)?;
    let log = ctx.open_when_up("the event log", a.drain, || ctx.cfg.open_log())?;
    let cfg = MonitorConfig {
        group: "cartflow-monitor".into(),
        state: ctx.cfg.data_dir.join("monitor").join("state.json"),
        session_ttl: ctx.cfg.features.session_ttl(),
        snapshot_every: a.snapshot_every,
    };
    let control = ctx.control.with_drain(a.drain);
    let bar = progress(ctx.quiet, None, "monitor");
    let started = Instant::now();
    let mut last = String::new();
    let stats = run_monitor(log.as_ref(), &cfg, &control, &mut |m| last = table(m), &mut |s| {
        bar.set_position(s.predictions + s.events);
        bar.set_message(format!("{} labelled, {} waiting, lag {}", thousands(s.labelled), thousands(s.waiting), s.lag));
        ctx.health.set("monitor", serde_json::to_value(s).unwrap_or_default());
    })?;
    bar.finish_and_clear();
    println!(
        "monitored {} predictions and {} events in {:.2} s: {} labelled, {} waiting for their outcome, {} without one (no session, or read after it ended)",
        thousands(stats.predictions),
        thousands(stats.events),
        started.elapsed().as_secs_f64(),
        thousands(stats.labelled),
        thousands(stats.waiting),
        thousands(stats.unlabelable),
    );
    print!("{last}");
    println!("  state in {}", cfg.state.display());
    Ok(())
}

/// Each model version's figures per window, one line each.
fn table(m: &mut Monitor) -> String {
    let mut out = String::new();
    let f = |v: f64| if v.is_nan() { "-".to_owned() } else { format!("{v:.4}") };
    for r in m.reports() {
        let x = &r.figures;
        out += &format!(
            "  {} v{} {:<5} labelled {} bought {} roc_auc {} pr_auc {} log_loss {} brier {} precision {} recall {}\n",
            r.model.name,
            r.model.version,
            r.window,
            x.labelled,
            x.positives,
            f(x.roc_auc),
            f(x.pr_auc),
            f(x.log_loss),
            f(x.brier),
            f(x.precision),
            f(x.recall),
        );
    }
    out
}
