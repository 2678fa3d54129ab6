//! A span per request (OpenTelemetry's HTTP server conventions: the route as
//! its name, method, path, status), around authentication and the handler,
//! parented by the caller's W3C `traceparent` when it sends one. With traces
//! off the layer only checks a flag.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Wraps every route of `router` in [`traced`].
pub fn requests(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(traced))
}

async fn traced(request: Request, next: Next) -> Response {
    if !cartflow_trace::enabled() {
        return next.run(request).await;
    }
    // The route, not the path: span names stay few (an artifact path is not one).
    let route = request.extensions().get::<MatchedPath>().map_or(request.uri().path(), |m| m.as_str());
    let traceparent = request.headers().get(cartflow_trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    let span = cartflow_trace::request(request.method().as_str(), route, traceparent);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}
