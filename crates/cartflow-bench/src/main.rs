//! `cartflow-bench`: throughput and latency figures a person can compare,
//! outside the product binary (which neither starts `python3` nor carries a
//! load generator). The stages it measures are the product's own: the
//! validator's rules, the pipeline topology, the feature streamer, the
//! booster, the prediction server; `benches/*.sh` run it and
//! `docs/benchmarks.md` records what it printed.

mod paced;
mod serve;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Measured like the product runs: the same allocator, tuned the same way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cartflow-bench", version, about = "Measure cartflow's throughput and latency.")]
struct Cli {
    #[command(flatten)]
    global: cartflow::cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Parse + validate + normalize throughput on one core
    Validate {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// One JSON object with *_per_sec fields
        #[arg(long)]
        json: bool,
    },
    /// CSV file → log → validator (→ lake with --lake), end to end, in a temporary data directory
    Pipeline {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Land the validated events in a lake too (on the local disk)
        #[arg(long)]
        lake: bool,
        #[arg(long)]
        json: bool,
    },
    /// Boosters at equal work: generated events → point-in-time training set →
    /// forust with fixed parameters (time, validation AUC) and batch inference;
    /// with --out, the encoded windows as CSV for benches/boosters.py
    Boosters {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Trees, depth 6, learning rate 0.1, no early stopping
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Directory for train.csv and valid.csv (encoded inputs, label last)
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// POST /predict under load (one cart and 100 carts per request) on this
    /// data directory's champion (`cartflow run --once` first), features from
    /// the embedded store and with --redis from Redis; --python adds the
    /// reference design's serving path on the same features
    Serve {
        /// Seconds of load per figure
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent keep-alive connections
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long)]
        redis: Option<String>,
        /// Also FastAPI + redis-py + XGBoost (pip: fastapi uvicorn redis xgboost)
        #[arg(long)]
        python: bool,
        #[arg(long, default_value = "benches/serve_peer.py")]
        peer_script: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// POST /predict under load against a server that runs elsewhere (replicas
    /// behind a load balancer, say), with this data directory's sample carts;
    /// the token from $CARTFLOW_TOKEN or the data directory's admin token
    Load {
        /// The server's base URL, e.g. http://127.0.0.1:8080
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Requests per second, sent on schedule whatever the answers take (default: as fast as answered)
        #[arg(long)]
        rate: Option<f64>,
        /// With --rate: a CSV line per this many seconds (unix time, requests, errors, p50, p99, max ms)
        #[arg(long, requires = "rate")]
        report_every: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// The feature streamer: validated events from the embedded log into the
    /// online store, in memory and (with --redis) in Redis
    Features {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Also into Redis at this URL (keys under a prefix of their own, removed after).
        #[arg(long)]
        redis: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    cartflow::allocator::tune();
    let cli = Cli::parse();
    cartflow::exit(
        cartflow::commands::Ctx::new(&cli.global, "cartflow-bench").and_then(|ctx| throughput::run(&ctx, cli.command)),
    )
}
