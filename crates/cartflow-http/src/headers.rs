//! Security headers. Pages (the registry's UI, the dashboard) need no
//! script and are never framed: their Content-Security-Policy says so, and
//! an injected handler or `<script>` would not run even if escaping failed.
//! Files that users uploaded (artifacts) are served sandboxed, and only
//! images inline: an uploaded `.html` cannot run in the server's origin.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// What a page may load: its own images and inline styles, nothing else.
pub const PAGE_POLICY: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

async fn page_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    set(h, header::CONTENT_SECURITY_POLICY, PAGE_POLICY);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    response
}

async fn nosniff(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    set(response.headers_mut(), header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    response
}

/// `router`'s answers carry the page headers.
pub fn pages(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(page_headers))
}

/// Every answer says its content type is the one meant (`nosniff`).
pub fn common(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(nosniff))
}

/// Headers for a stored file: sandboxed, and a download unless it is an image.
pub fn download(name: &str, content_type: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    set(&mut h, header::CONTENT_SECURITY_POLICY, "sandbox");
    set(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if !content_type.starts_with("image/") {
        let safe: String = name.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';')).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    h
}
