//! One module per subcommand; this one holds what they share.

mod cdc;
mod features;
mod generate;
mod health;
mod lake_sink;
mod monitor;
mod produce;
mod registry;
mod run;
mod serve;
mod sql;
mod tail;
mod topics;
mod train;
mod validate;
mod warehouse;

use anyhow::{Context, Result};
use cartflow_sources::GeneratorConfig;
use cartflow_stream::StageControl;

use crate::cli::{Cli, Command, GeneratorArgs, Global, Running};
use crate::config::Config;
use crate::telemetry::{self, Health};
use crate::wiring::listen;

/// What every command gets: the configuration and how to stop.
pub struct Ctx {
    pub cfg: Config,
    pub quiet: bool,
    pub control: StageControl,
    pub health: Health,
    /// Spans are exported while this lives (traces configured).
    pub traces: Option<cartflow_trace::Exporting>,
}

impl Ctx {
    /// The configuration the global flags name, logging (and traces, when
    /// configured) for the process named `service`, and a control that the
    /// first Ctrl-C stops (the second exits at once).
    pub fn new(global: &Global, service: &str) -> Result<Ctx> {
        let mut cfg = Config::load(global.config.as_deref())?;
        if let Some(dir) = &global.data_dir {
            cfg.data_dir = dir.clone();
        }
        let traces = telemetry::init_logging(global.quiet, global.log_format, &cfg.telemetry, service)?;
        let control = StageControl::new(false);
        let on_signal = control.clone();
        let _ = ctrlc::set_handler(move || {
            if on_signal.stopped() {
                std::process::exit(130);
            }
            eprintln!("stopping (Ctrl-C again to force)…");
            on_signal.stop();
        });
        Ok(Ctx { cfg, quiet: global.quiet, control, health: Health::default(), traces })
    }
}

/// Runs the command; `service` names the process in traces.
pub fn run(cli: Cli, service: &str) -> Result<()> {
    // A health probe reads no configuration: it must not depend on the settings of the process it asks.
    let command = match cli.command {
        Command::Health(a) => return health::run(a),
        command => command,
    };
    let ctx = Ctx::new(&cli.global, service)?;
    match command {
        Command::Generate(a) => generate::run(&ctx, a),
        Command::Produce(a) => produce::run(&ctx, a),
        Command::Validate(a) => validate::run(&ctx, a),
        Command::LakeSink(a) => lake_sink::run(&ctx, a),
        Command::Cdc(a) => cdc::run(&ctx, a),
        Command::Warehouse(w) => warehouse::run(&ctx, w),
        Command::Features(f) => features::run(&ctx, f),
        Command::Train(a) => train::run(&ctx, a),
        Command::Monitor(a) => monitor::run(&ctx, a),
        Command::Registry(r) => registry::run(&ctx, r),
        Command::Sql(a) => sql::run(&ctx, a),
        Command::Topics(a) => topics::run(&ctx, a),
        Command::Tail(a) => tail::run(&ctx, a),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Health(_) => unreachable!("answered above"),
    }
}

impl Ctx {
    /// Starts `/metrics`, `/status` and `/health` when asked, behind the tokens every server asks.
    pub fn serve_metrics(&self, running: &Running) -> Result<()> {
        telemetry::metrics_handle();
        if let Some(addr) = &running.metrics_addr {
            let listener = listen::listen(self, addr, "/metrics", &crate::cli::ListenArgs::default())?;
            let app = telemetry::metrics_app(self.health.clone(), listener.tokens.clone());
            tracing::info!("metrics on {}/metrics, health on {}/health", listener.url(), listener.url());
            listen::spawn(listener.server, app, self.control.clone(), "metrics-http")?;
        }
        Ok(())
    }
}

/// The generator the flags describe; `rate` is the producer's `--rate`, which
/// with `--start now` sets the pace of event times (a live clickstream).
pub fn generator_config(a: &GeneratorArgs, events: u64, rate: Option<f64>) -> Result<GeneratorConfig> {
    let live = a.start == "now";
    let start = if live {
        cartflow_core::time::now_micros()
    } else {
        cartflow_core::time::parse_timestamp(&a.start)
            .with_context(|| format!("--start {:?} is not a time (try `2019-10-01 00:00:00 UTC` or `now`)", a.start))?
    };
    let defaults = GeneratorConfig::default();
    let live_pace = rate.filter(|_| live).map(|r| r * 86_400.0);
    let events_per_day = a.per_day.or(live_pace).unwrap_or(defaults.events_per_day);
    if events_per_day.is_nan() || events_per_day < 1.0 {
        anyhow::bail!("--per-day {events_per_day} must be at least 1");
    }
    Ok(GeneratorConfig { seed: a.seed, events, profile: a.profile, start, events_per_day })
}

/// A `--since`/`--until` value: a date alone means its midnight (UTC).
pub fn time_arg<T>(flag: &str, value: Option<String>, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>> {
    value
        .map(|v| {
            let v = if v.len() == 10 { format!("{v} 00:00:00 UTC") } else { v };
            parse(&v)
                .with_context(|| format!("{flag} {v:?} is not a time (try 2019-10-05 or \"2019-10-05 13:00:00 UTC\")"))
        })
        .transpose()
}

pub fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}
