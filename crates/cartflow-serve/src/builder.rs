//! The prediction server put together: the online store, the model that
//! follows the registry's alias, the dashboard, any extra routes (the
//! embedded registry), behind tokens, over TLS when given, bound and served
//! from a thread of its own. `cartflow serve` and `cartflow run` build it the
//! same way:
//!
//! ```ignore
//! let running = ServerBuilder::new(store, source, "purchase_prediction_model", "champion")
//!     .tokens(tokens)
//!     .tls(tls)
//!     .bind("127.0.0.1:8000")?
//!     .spawn(runtime.handle().clone(), move || control.stopped())?;
//! ```

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use cartflow_http::{BindError, Limits, Tls, Tokens};
use cartflow_online::OnlineReader;

use crate::dashboard::{Insights, InsightsError, ModelReport, Table};
use crate::model::{ModelError, ModelSlot, ModelSource, ServedModel};
use crate::prediction_log::PredictionLog;
use crate::{Server, Telemetry, app};

/// How often the alias is asked about unless told otherwise.
pub const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// What a server is made of before it binds.
pub struct ServerBuilder {
    store: Arc<dyn OnlineReader>,
    source: Arc<dyn ModelSource>,
    slot: Arc<ModelSlot>,
    poll: Duration,
    tokens: Tokens,
    tls: Option<Tls>,
    limits: Limits,
    insights: Arc<dyn Insights>,
    telemetry: Telemetry,
    extra: Option<Router>,
    predictions: Option<Arc<PredictionLog>>,
    name: String,
}

/// A server that has bound its address and loaded what model there is.
pub struct BoundServer {
    listener: cartflow_http::Server,
    app: Router,
    source: Arc<dyn ModelSource>,
    slot: Arc<ModelSlot>,
    poll: Duration,
    name: String,
}

/// A server answering requests on its own thread.
pub struct RunningServer {
    pub url: String,
    pub slot: Arc<ModelSlot>,
    source: Arc<dyn ModelSource>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl ServerBuilder {
    /// Serves features from `store` and predictions with `model@alias` from
    /// `source`. Until told otherwise: no token lets anyone in (set
    /// [`tokens`](Self::tokens)), plain HTTP, default limits, an empty
    /// dashboard, `/metrics` empty.
    pub fn new(store: Arc<dyn OnlineReader>, source: Arc<dyn ModelSource>, model: &str, alias: &str) -> Self {
        ServerBuilder {
            store,
            source,
            slot: Arc::new(ModelSlot::new(model, alias)),
            poll: DEFAULT_POLL,
            tokens: Tokens::new(&[]).expect("no tokens is a valid set"),
            tls: None,
            limits: Limits::default(),
            insights: Arc::new(NoInsights),
            telemetry: Telemetry { metrics: Arc::new(String::new), status: Arc::new(|| serde_json::json!({})) },
            extra: None,
            predictions: None,
            name: "the prediction server".to_owned(),
        }
    }

    /// Who may call which route ([`Tokens::open`] only binds on loopback).
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    pub fn tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How often the watcher asks the source where the alias points.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(100));
        self
    }

    pub fn insights(mut self, insights: Arc<dyn Insights>) -> Self {
        self.insights = insights;
        self
    }

    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Routes mounted beside the APIs, behind the same tokens, with their own limits.
    pub fn routes(mut self, extra: Router) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Logs every prediction answered (see [`crate::prediction_log`]).
    pub fn prediction_log(mut self, log: PredictionLog) -> Self {
        self.predictions = Some(Arc::new(log));
        self
    }

    /// What messages call this server.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Binds `addr` and loads the alias's model once (a failure is logged and
    /// shown on `/ready`; the watcher retries).
    pub fn bind(self, addr: &str) -> Result<BoundServer, BindError> {
        let listener = cartflow_http::Server::bind_for(addr, self.limits, self.tls, &self.tokens, &self.name)?;
        if let Err(e) = self.slot.refresh(self.source.as_ref()) {
            tracing::warn!("no model yet: {e}");
        }
        let app = app(Server {
            store: self.store,
            model: self.slot.clone(),
            insights: self.insights,
            tokens: Arc::new(self.tokens.with_secure_cookies(listener.is_tls())),
            telemetry: self.telemetry,
            extra: self.extra,
            limits: self.limits,
            predictions: self.predictions,
        });
        Ok(BoundServer { listener, app, source: self.source, slot: self.slot, poll: self.poll, name: self.name })
    }
}

impl BoundServer {
    /// `http://addr` or `https://addr`, with the port bound.
    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// Serves on `runtime` from a thread of its own, with the model watcher
    /// beside it, until `stopped` says so; requests in flight then finish.
    pub fn spawn(
        self,
        runtime: tokio::runtime::Handle,
        stopped: impl Fn() -> bool + Clone + Send + Sync + 'static,
    ) -> std::io::Result<RunningServer> {
        self.slot.watch(self.source.clone(), self.poll, stopped.clone());
        let url = self.listener.url();
        let (listener, app) = (self.listener, self.app);
        let thread = std::thread::Builder::new().name("serve".into()).spawn(move || {
            runtime.block_on(listener.serve(app, async move {
                while !stopped() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }))
        })?;
        tracing::info!("{} on {url}", self.name);
        Ok(RunningServer { url, slot: self.slot, source: self.source, thread })
    }
}

impl RunningServer {
    /// Follows the alias now rather than at the next poll (after training).
    pub fn refresh_model(&self) -> Result<Option<String>, ModelError> {
        self.slot.refresh(self.source.as_ref())
    }

    /// Where the model comes from, for messages.
    pub fn model_source(&self) -> String {
        self.source.describe()
    }

    /// Blocks until the server has stopped.
    pub fn wait(self) -> std::io::Result<()> {
        self.thread.join().map_err(|_| std::io::Error::other("the server thread panicked"))?
    }
}

/// A dashboard without the lake behind it.
struct NoInsights;

impl Insights for NoInsights {
    fn gold(&self) -> Result<Vec<Table>, InsightsError> {
        Err("no lake configured for this server".into())
    }

    fn model_report(&self, _: &ServedModel) -> Result<ModelReport, InsightsError> {
        Err("no lake configured for this server".into())
    }
}
