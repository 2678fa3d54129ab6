//! The command line. Every subcommand has `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cartflow",
    version,
    about = "Predict, when a shopper adds an item to the cart, whether they will buy it.",
    long_about = "cartflow runs the whole cart-to-purchase pipeline: events in, validated, landed, \
                  turned into features, a model trained and served. Everything runs in one process on \
                  embedded backends by default, or stage by stage over Kafka, S3, PostgreSQL and Redis."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The process's `service.name` in traces: `cartflow-` and the command's
/// words, e.g. `cartflow-features-stream`.
pub fn service_name(matches: &clap::ArgMatches) -> String {
    let mut name = String::from("cartflow");
    let mut at = matches;
    while let Some((word, next)) = at.subcommand() {
        name.push('-');
        name.push_str(word);
        at = next;
    }
    name
}

#[derive(Args, Clone)]
pub struct Global {
    /// Configuration file [default: ./cartflow.toml when present]
    #[arg(long, global = true, env = "CARTFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for all embedded state (overrides `data_dir` and CARTFLOW_DATA_DIR)
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Only warnings and errors; no progress bars
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log lines as text for people or JSON for log shippers
    #[arg(long, global = true, value_enum, default_value_t, env = "CARTFLOW_LOG_FORMAT")]
    pub log_format: crate::telemetry::LogFormat,
}

/// Options of commands that keep running.
#[derive(Args, Clone, Default)]
pub struct Running {
    /// Serve Prometheus /metrics (scope `metrics`), /status and /health on this address, e.g. 127.0.0.1:9464
    #[arg(long)]
    pub metrics_addr: Option<String>,
}

/// A batch job once, or on a schedule.
#[derive(Args, Clone, Default)]
pub struct Schedule {
    /// Run again every DURATION (30s, 15m, 1h, 1d) until Ctrl-C; a failed run is tried again at the next tick
    #[arg(long, value_parser = humantime::parse_duration)]
    pub every: Option<std::time::Duration>,
    #[command(flatten)]
    pub running: Running,
}

/// Where the lake is, for every command that reads or writes it.
#[derive(Args, Clone, Default)]
pub struct LakeArg {
    /// The lake: a directory or s3://bucket/prefix [default: lake.location, else <data-dir>/lake]
    #[arg(long = "lake")]
    pub location: Option<cartflow_lake::LakeLocation>,
}

/// How a server listens: over TLS or not, with API tokens or (on loopback only) without.
#[derive(Args, Clone, Default)]
pub struct ListenArgs {
    /// PEM certificate chain: with --tls-key, serve HTTPS only [default: serve.tls_cert]
    #[arg(long)]
    pub tls_cert: Option<String>,
    /// PEM private key [default: serve.tls_key]
    #[arg(long)]
    pub tls_key: Option<String>,
    /// Ask no API token of anyone: allowed on a loopback address only, and said at start
    #[arg(long)]
    pub no_auth: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Write synthetic events in the dataset's exact CSV format
    Generate(GenerateArgs),
    /// Send events from CSV files or the generator to tracking.raw_user_behavior
    Produce(ProduceArgs),
    /// Validate raw and CDC events into tracking.user_behavior.validated / .invalid
    Validate(ValidateArgs),
    /// Land validated and invalid events in the lake as Parquet, exactly once
    LakeSink(LakeSinkArgs),
    /// Capture a PostgreSQL table's rows and changes into tracking_postgres_cdc.<schema>.<table>, as Debezium does
    Cdc(CdcArgs),
    /// Build silver and gold from the lake, or export gold to PostgreSQL
    #[command(subcommand)]
    Warehouse(WarehouseCommand),
    /// Features: list them, stream them online, build the training set, serve them.
    #[command(subcommand)]
    Features(FeaturesCommand),
    /// Train, tune and register a purchase model from the training set
    Train(TrainArgs),
    /// Score the served models against what shoppers did: the prediction log joined with the validated events
    Monitor(MonitorArgs),
    /// The model registry: an MLflow-compatible tracking server with a web UI
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Run SQL over the lake and the warehouse (bronze.*, silver.events, gold.*) and print the result
    Sql(SqlArgs),
    /// List topics with partitions, end offsets and each consumer group's lag; `topics delete` deletes one
    Topics(TopicsArgs),
    /// Print a topic's records, one JSON object per line
    Tail(TailArgs),
    /// Serve predictions (POST /predict) with the registry's champion, the feature API and the dashboard
    Serve(ServeArgs),
    /// Run the pipeline end to end on the embedded backends and print a summary
    Run(RunArgs),
    /// Ask a running cartflow process's /health; exit 0 when it is healthy (a container's HEALTHCHECK)
    Health(HealthArgs),
}

#[derive(Args)]
pub struct HealthArgs {
    /// The process's health address (`host:port`, its --metrics-addr or server address) or URL
    #[arg(env = "CARTFLOW_HEALTH_URL", default_value = "127.0.0.1:9464")]
    pub url: String,
    /// Give up after this many milliseconds
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

#[derive(Args, Clone)]
pub struct GeneratorArgs {
    /// Random seed: the same seed gives the same events
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Store profile: `electronics` (the multi-category store) or `cosmetics` (with remove_from_cart)
    #[arg(long, default_value = "electronics", value_parser = profile())]
    pub profile: cartflow_sources::Profile,
    /// Time of the first event (UTC), or `now`: with `produce --rate`, event times then keep pace with the clock
    #[arg(long, default_value = "2019-10-01 00:00:00 UTC")]
    pub start: String,
    /// Events per simulated day: with --events, how many days the data spans [default: 1,370,000, as the real store]
    #[arg(long)]
    pub per_day: Option<f64>,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Number of events
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    pub events: u64,
    /// Output file: .csv or .csv.gz
    #[arg(long, short)]
    pub out: PathBuf,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

#[derive(Args)]
pub struct ProduceArgs {
    /// Dataset CSV files (plain or .gz), sent in order
    #[arg(long, num_args = 1.., required_unless_present = "generate", conflicts_with = "generate")]
    pub input: Vec<PathBuf>,
    /// Generate this many events instead of reading files
    #[arg(long)]
    pub generate: Option<u64>,
    /// Events per second (default: as fast as possible)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Share (0–1) of events to damage on purpose, to exercise the invalid path
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub inject_invalid: f64,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    #[command(flatten)]
    pub running: Running,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Stop once caught up with the inputs instead of running until Ctrl-C
    #[arg(long)]
    pub drain: bool,
    /// Consumer group (overrides validator.group)
    #[arg(long)]
    pub group: Option<String>,
    #[command(flatten)]
    pub running: Running,
}

#[derive(Args)]
pub struct MonitorArgs {
    /// Stop once caught up with the prediction log and the events instead of running until Ctrl-C
    #[arg(long)]
    pub drain: bool,
    /// How often the state is written with the input positions it reflects (what a crash replays)
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub snapshot_every: std::time::Duration,
    #[command(flatten)]
    pub running: Running,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CdcArgs {
    #[command(subcommand)]
    pub command: Option<CdcCommand>,
    #[command(flatten)]
    pub source: CdcSource,
    /// Replication slot (overrides cdc.slot)
    #[arg(long)]
    pub slot: Option<String>,
    /// Stop once the slot has nothing more instead of running until Ctrl-C
    #[arg(long)]
    pub drain: bool,
    #[command(flatten)]
    pub running: Running,
}

/// The table captured or seeded.
#[derive(Args)]
pub struct CdcSource {
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/shop (overrides cdc.postgres)
    #[arg(long)]
    pub postgres: Option<String>,
    /// schema.table (overrides cdc.table, default public.events)
    #[arg(long)]
    pub table: Option<String>,
}

#[derive(Subcommand)]
pub enum CdcCommand {
    /// Create the events table (primary key, REPLICA IDENTITY FULL) and insert generated events
    Seed(CdcSeedArgs),
}

#[derive(Args)]
pub struct CdcSeedArgs {
    #[command(flatten)]
    pub source: CdcSource,
    /// Events to insert
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub events: u64,
    /// Events per second; 0 inserts as fast as PostgreSQL takes them
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

#[derive(Args)]
pub struct LakeSinkArgs {
    /// Stop once caught up with the inputs instead of running until Ctrl-C
    #[arg(long)]
    pub drain: bool,
    #[command(flatten)]
    pub lake: LakeArg,
    #[command(flatten)]
    pub running: Running,
}

#[derive(Subcommand)]
pub enum WarehouseCommand {
    /// Bring silver and gold up to date with the lake, redoing only the event hours that changed
    Build(WarehouseBuildArgs),
    /// Load gold (tables, keys, indexes, views) into a PostgreSQL schema, replacing what is there
    Export(WarehouseExportArgs),
}

#[derive(Args)]
pub struct WarehouseBuildArgs {
    /// Only event hours at or after this time, e.g. 2019-10-05 or "2019-10-05 13:00:00 UTC"
    #[arg(long)]
    pub since: Option<String>,
    /// Only event hours before this time
    #[arg(long)]
    pub until: Option<String>,
    /// Build without lake files that cannot be read (each is named), instead of stopping at the first
    #[arg(long)]
    pub skip_damaged: bool,
    #[command(flatten)]
    pub lake: LakeArg,
    #[command(flatten)]
    pub schedule: Schedule,
}

#[derive(Args)]
pub struct WarehouseExportArgs {
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/analytics (overrides warehouse.postgres)
    #[arg(long)]
    pub postgres: Option<String>,
    /// Schema to load into (overrides warehouse.schema)
    #[arg(long)]
    pub schema: Option<String>,
    #[command(flatten)]
    pub lake: LakeArg,
}

#[derive(Subcommand)]
pub enum FeaturesCommand {
    /// Prints every feature: name, type, set (v1, v2), view and meaning.
    List {
        /// As JSON, one object per feature.
        #[arg(long)]
        json: bool,
    },
    /// Keeps the online store current from `tracking.user_behavior.validated`.
    Stream(FeaturesStreamArgs),
    /// Writes the point-in-time training set `features.cart_features` from silver.
    Build(FeaturesBuildArgs),
    /// Loads the entity state at the end of silver into the online store, so a
    /// fresh store starts warm (Feast's `materialize`).
    Materialize(FeaturesMaterializeArgs),
    /// Serves the feature API (`POST /features`, Feast's `POST /get-online-features`).
    /// With the embedded store it also runs the streamer, which holds the state.
    Serve(FeaturesServeArgs),
    /// Writes a Feast feature repository (feature_store.yaml and the views and
    /// services of the catalogue) whose remote online store is this feature API,
    /// so Feast's SDK reads cartflow's features.
    FeastRepo(FeastRepoArgs),
}

#[derive(Args)]
pub struct FeastRepoArgs {
    /// Directory to write into (created)
    #[arg(long)]
    pub out: PathBuf,
    /// The feature API's URL [default: http://<features.addr>]
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub lake: LakeArg,
}

#[derive(Args)]
pub struct OnlineArgs {
    /// The online store: `embedded` or `redis://host:port/db` (default: features.online).
    #[arg(long, value_parser = str::parse::<cartflow_online::OnlineBackend>)]
    pub online: Option<cartflow_online::OnlineBackend>,
}

#[derive(Args)]
pub struct FeaturesStreamArgs {
    /// Stop once caught up with the validated topic.
    #[arg(long)]
    pub drain: bool,
    #[command(flatten)]
    pub online: OnlineArgs,
    #[command(flatten)]
    pub running: Running,
}

#[derive(Args)]
pub struct FeaturesBuildArgs {
    /// Only events before this time: carts, and the purchases that label them.
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub lake: LakeArg,
    /// Also load the rows into `feature_store.cart_features` of this PostgreSQL
    /// database (default: features.postgres; empty: the lake only).
    #[arg(long)]
    pub postgres: Option<String>,
    #[command(flatten)]
    pub schedule: Schedule,
}

#[derive(Args)]
pub struct FeaturesMaterializeArgs {
    /// Only what the lake holds beyond the online store's position: apply the
    /// landed events after it (also those the log no longer keeps).
    #[arg(long)]
    pub incremental: bool,
    #[command(flatten)]
    pub lake: LakeArg,
    #[command(flatten)]
    pub online: OnlineArgs,
}

#[derive(Args)]
pub struct FeaturesServeArgs {
    /// Address to listen on (default: features.addr, 127.0.0.1:6566 as Feast's).
    #[arg(long)]
    pub addr: Option<String>,
    #[command(flatten)]
    pub online: OnlineArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Args)]
pub struct SqlArgs {
    /// The statement, e.g. "SELECT event_type, count(*) FROM silver.events GROUP BY 1"
    pub query: String,
    /// Output: an aligned table, CSV with a header, or JSON lines
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub lake: LakeArg,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TopicsArgs {
    #[command(subcommand)]
    pub command: Option<TopicsCommand>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Delete topics with their records and the groups' offsets of them (kafka-topics --delete)
    Delete {
        /// Topics to delete
        #[arg(required = true)]
        topics: Vec<String>,
        /// Delete topics that hold records too (they are lost)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
pub struct TailArgs {
    /// Topic to print
    pub topic: String,
    /// Number of records: the last N, or the first N with --from-beginning [default: 10, all with --from-beginning]
    #[arg(short = 'n', long = "lines")]
    pub lines: Option<u64>,
    /// Start at the beginning of the topic
    #[arg(long)]
    pub from_beginning: bool,
    /// Keep printing new records until Ctrl-C
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: serve.addr, 127.0.0.1:8000]
    #[arg(long)]
    pub addr: Option<String>,
    #[command(flatten)]
    pub online: OnlineArgs,
    /// Registry to follow: `embedded` (served here too) or http://host:port [default: registry.url]
    #[arg(long, value_parser = str::parse::<cartflow_registry::RegistryLocation>)]
    pub registry: Option<cartflow_registry::RegistryLocation>,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Args)]
pub struct RunArgs {
    /// Dataset CSV files to use instead of generated events
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Events to generate when no --input is given
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per second into the pipeline, a steady clickstream (default: as fast as possible)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Share (0–1) of events to damage on purpose
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub inject_invalid: f64,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// Address to serve on [default: serve.addr, 127.0.0.1:8000]
    #[arg(long)]
    pub addr: Option<String>,
    /// Print the summary and exit instead of serving until Ctrl-C
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub running: Running,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table with a row count
    Table,
    /// CSV with a header line
    Csv,
    /// One JSON object per line
    Json,
}

fn feature_set(s: &str) -> Result<cartflow_features::FeatureSet, String> {
    cartflow_features::FeatureSet::parse(s).ok_or_else(|| format!("{s:?}: expected v1 or v2"))
}

/// A share between 0 and 1, for `--inject-invalid`.
/// The generator's profiles, listed in `--help` and checked by clap.
fn profile() -> impl clap::builder::TypedValueParser<Value = cartflow_sources::Profile> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["electronics", "cosmetics"])
        .map(|s| s.parse().expect("a listed profile parses"))
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Feature set: v1 (the reference design's six) or v2 (all) [default: train.features]
    #[arg(long, value_parser = feature_set)]
    pub features: Option<cartflow_features::FeatureSet>,
    /// Tuning trials [default: train.trials, 20]
    #[arg(long)]
    pub trials: Option<usize>,
    /// Trials at once [default: one per core]
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Seconds after which no new trial starts [default: no limit]
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Tracking server to log to: `embedded` or http://host:port (cartflow's or MLflow's) [default: registry.url]
    #[arg(long, value_parser = str::parse::<cartflow_registry::RegistryLocation>)]
    pub registry: Option<cartflow_registry::RegistryLocation>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Join the tuning study of this name, shared by every worker that names it (on any machine)
    /// through the registry's database; the study's best trial is registered once
    #[arg(long)]
    pub study: Option<String>,
    /// The shared study's database [default: registry.store, e.g. postgres://…]
    #[arg(long, requires = "study")]
    pub study_storage: Option<String>,
    /// A running trial whose worker is silent this long is failed [default: 60]
    #[arg(long, requires = "study", default_value_t = 60)]
    pub study_stale_secs: u64,
    #[command(flatten)]
    pub schedule: Schedule,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve MLflow's REST API, the artifact API and the web UI
    Serve(RegistryServeArgs),
}

#[derive(Args)]
pub struct RegistryServeArgs {
    /// Address to listen on [default: registry.addr, 127.0.0.1:5001]
    #[arg(long)]
    pub addr: Option<String>,
    /// Store URL: sqlite://PATH or postgres://… [default: registry.store]
    #[arg(long)]
    pub store: Option<String>,
    /// Artifact location: a directory or s3://bucket/prefix [default: registry.artifacts]
    #[arg(long)]
    pub artifacts: Option<String>,
    #[command(flatten)]
    pub listen: ListenArgs,
}
