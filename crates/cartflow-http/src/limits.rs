//! What one request and one client may cost a server: the body it sends,
//! the time its answer takes, the time its headers take to arrive, and the
//! connections open at once. The defaults are `[serve]`'s.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body read into memory (artifact uploads stream and have their own cap).
    pub max_body_bytes: usize,
    /// A request answered later than this gets a 503.
    pub timeout: Duration,
    /// A connection that has not sent a whole request head within this long
    /// is closed: slow senders, silent ones, and idle keep-alive connections.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed as they arrive, so a flood
    /// cannot use up the process's file descriptors and starve `/health`.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// `router` with the body and time limits.
    pub fn apply(&self, router: Router) -> Router {
        let timeout = self.timeout;
        router
            .layer(DefaultBodyLimit::max(self.max_body_bytes))
            .layer(axum::middleware::from_fn(move |req, next| within(timeout, req, next)))
    }
}

/// A request that takes longer than `limit` gets a JSON 503 (tower-http's
/// timeout answers an empty 408, and errors here always say what happened).
async fn within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}
