//! The server side that every cartflow HTTP server shares, so that each one
//! (`serve`, `registry serve`, `features serve`, a stage's `--metrics-addr`)
//! is secured the same way:
//!
//! - [`auth`]: API tokens with scopes, checked per route;
//! - [`limits`]: body size and request time limits;
//! - [`headers`]: the security headers of HTML pages and of downloads;
//! - [`html`]: escaping for server-rendered pages;
//! - [`server`]: the listener: header-read timeout, connection cap, TLS,
//!   graceful stop;
//! - [`trace`]: a span per request when traces are on, continuing the
//!   caller's `traceparent`.
//!
//! Errors are JSON `{"error": …, "status": …}` with a 4xx or 5xx status, never a 200.

pub mod admin;
pub mod auth;
pub mod headers;
pub mod html;
pub mod limits;
pub mod server;
pub mod trace;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use admin::AdminToken;
pub use auth::{Principal, Scope, TokenConfig, TokenError, Tokens};
pub use limits::Limits;
pub use server::{BindError, Server, Tls};

/// A failed request: its status and a message that says what was wrong.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// The body was not the JSON asked for: axum's message names the field and position.
    pub fn from_json(e: axum::extract::rejection::JsonRejection) -> Self {
        Self::new(e.status(), e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The answer to a route that does not exist (a JSON 404, as every error).
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The answer to a route asked with a method it does not take (a JSON 405):
/// a write endpoint never answers a GET.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
}

/// A server's whole router, finished: JSON answers for unknown routes and
/// methods, and the authentication layer around everything (routes bring
/// their scopes).
pub fn finish(router: axum::Router, tokens: std::sync::Arc<Tokens>) -> axum::Router {
    let router = auth::protect(router.fallback(no_route).method_not_allowed_fallback(wrong_method), tokens);
    trace::requests(router)
}
