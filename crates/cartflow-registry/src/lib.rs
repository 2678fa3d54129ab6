//! A model registry that speaks MLflow: experiments, runs, params, metrics,
//! tags, artifacts, registered models, versions and aliases, over MLflow's
//! REST API so that MLflow's own client works against it, and a client
//! (the trainer's) that works against it and against a real MLflow server.
//!
//! - [`store`]: the tables, on SQLite (default) or PostgreSQL through one SQL code path;
//! - [`filter`]: MLflow's search filter and order-by language;
//! - [`api`]: `/api/2.0/mlflow/…` (MLflow 3's logged models included) and
//!   `/api/2.0/mlflow-artifacts/…`, each endpoint with its method and scope;
//! - [`ui`]: the web pages;
//! - [`client`]: the REST client.

pub mod api;
mod charts;
pub mod client;
pub mod filter;
pub mod gauges;
mod location;
pub mod proto;
pub mod store;
pub mod study;
pub mod ui;

pub use client::Client;
pub use location::RegistryLocation;
pub use store::Store;
pub use study::{SharedStudy, StudyTrial};

/// MLflow's error codes that this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ResourceDoesNotExist,
    ResourceAlreadyExists,
    InvalidParameterValue,
    /// A body or an artifact over its limit (413).
    RequestLimitExceeded,
    /// The store's database did not answer (down, restarting): 503, which
    /// MLflow's client retries with backoff.
    TemporarilyUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            Self::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            Self::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    pub code: ErrorCode,
    pub message: String,
}

impl RegistryError {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::ResourceDoesNotExist, message: message.into() }
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::ResourceAlreadyExists, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::InvalidParameterValue, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::InternalError, message: message.into() }
    }
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL away or restarting (connection exceptions, 08xxx; shutting
        // down or starting up, 57P01-57P03), or no connection within the pool's wait.
        let away = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(d) => {
                d.code().is_some_and(|c| c.starts_with("08") || ["57P01", "57P02", "57P03"].contains(&c.as_ref()))
            }
            _ => false,
        };
        let code = if away { ErrorCode::TemporarilyUnavailable } else { ErrorCode::InternalError };
        Self { code, message: format!("registry store: {e}") }
    }
}

impl From<object_store::Error> for RegistryError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Self::not_found(format!("no artifact at {path}")),
            e => Self::internal(format!("artifact store: {e}")),
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Whether a lookup found what it looked for: not found is `false`, and
/// any other error stays an error (a store that is away is not "free to take").
pub(crate) fn found<T>(lookup: Result<T>) -> Result<bool> {
    match lookup {
        Ok(_) => Ok(true),
        Err(e) if e.code == ErrorCode::ResourceDoesNotExist => Ok(false),
        Err(e) => Err(e),
    }
}

pub use api::{Registry, RegistryLimits};
pub use store::STAGES;

/// Opens the registry: its tables at `store_url` (`sqlite://PATH`,
/// `postgres://…`) and its artifacts at `artifacts` (a directory or `s3://bucket/prefix`).
pub async fn open(store_url: &str, artifacts: &str) -> Result<Registry> {
    let store = Store::open(store_url).await?;
    let (objects, prefix) =
        cartflow_lake::store::open_store_root(artifacts).map_err(|e| RegistryError::internal(e.to_string()))?;
    Ok(Registry { store, artifacts: objects, artifact_prefix: prefix, limits: RegistryLimits::default() })
}

/// The API and the UI, to mount beside other routes behind
/// [`cartflow_http::auth::authenticate`] (every route has its scope).
pub fn routes(registry: Registry) -> axum::Router {
    api::router(registry.clone()).merge(ui::router(registry))
}

/// The API and the UI as the registry's own server: `/` leads to the UI.
pub fn app(registry: Registry) -> axum::Router {
    routes(registry).route("/", axum::routing::get(|| async { axum::response::Redirect::to("/ui/") }))
}
