//! Access control in two steps, as axum applications usually split it:
//!
//! - [`authenticate`], around the whole router: every path but `/health`
//!   needs a known API token (401 otherwise), whose name and scopes go into
//!   the request's extensions as a [`Principal`];
//! - [`require`], on each route ([`scoped`]): the scope that route needs
//!   (403 when the token lacks it). A route without it takes any known token.
//!
//! So the scope of an endpoint is declared beside its handler, never guessed
//! from the HTTP method. A router mounted without [`authenticate`] refuses
//! every scoped route: forgetting the layer fails closed.
//!
//! A token comes as `Authorization: Bearer …` (what MLflow's client sends
//! for `MLFLOW_TRACKING_TOKEN`, and Prometheus for `authorization`), from the
//! cookie a browser got, or once as `?token=…` on a GET: a valid one is
//! answered with a redirect that drops it from the URL and sets the cookie
//! (Jupyter's way). Tokens are kept as SHA-256 digests and looked up by
//! digest, so the lookup's timing says nothing about any token's characters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "predict")]
    Predict,
    #[serde(rename = "features:read")]
    FeaturesRead,
    #[serde(rename = "registry:read")]
    RegistryRead,
    #[serde(rename = "registry:write")]
    RegistryWrite,
    /// `/metrics` and `/status`: what a Prometheus scraper needs, nothing more.
    #[serde(rename = "metrics")]
    Metrics,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Predict => "predict",
            Scope::FeaturesRead => "features:read",
            Scope::RegistryRead => "registry:read",
            Scope::RegistryWrite => "registry:write",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

/// A token as configured: `{ name = "shop-frontend", token = "…", scopes = ["predict"] }`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
}

/// Never prints the secret, so a configuration dump or a panic cannot leak it.
impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Who made a request: the token's name and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Principal {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == Scope::Admin)
    }
}

/// The tokens a server accepts.
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Principal>,
    /// Every request acts as `anonymous` with every scope (`--no-auth`).
    open: bool,
    /// Cookies are marked `Secure` (the server speaks HTTPS).
    secure_cookies: bool,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A configured token that cannot be used, by its name (never its secret).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token {0:?}: at least 16 characters, so it cannot be guessed")]
    TooShort(String),
    #[error("token {0:?}: give it at least one scope")]
    NoScope(String),
    #[error("token {0:?}: the same secret is configured twice")]
    Duplicate(String),
}

impl Tokens {
    pub fn new(tokens: &[TokenConfig]) -> Result<Self, TokenError> {
        let mut by_digest = HashMap::new();
        for t in tokens {
            if t.token.len() < 16 {
                return Err(TokenError::TooShort(t.name.clone()));
            }
            if t.scopes.is_empty() {
                return Err(TokenError::NoScope(t.name.clone()));
            }
            let known = Principal { name: t.name.clone(), scopes: t.scopes.clone() };
            if by_digest.insert(digest(&t.token), known).is_some() {
                return Err(TokenError::Duplicate(t.name.clone()));
            }
        }
        Ok(Self { by_digest, open: false, secure_cookies: false })
    }

    /// No token asked of anyone. The caller checks that the server listens on
    /// loopback only and says so loudly ([`crate::server::open_mode_allowed`]).
    pub fn open() -> Self {
        Self { by_digest: HashMap::new(), open: true, secure_cookies: false }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Marks the cookies this server sets `Secure` (it speaks HTTPS).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// The principal a token stands for.
    pub fn principal(&self, token: Option<&str>) -> Result<Principal, &'static str> {
        if self.open {
            return Ok(Principal { name: "anonymous".into(), scopes: vec![Scope::Admin] });
        }
        let token = token.ok_or("this route needs an API token: send `Authorization: Bearer <token>`")?;
        self.by_digest.get(&digest(token)).cloned().ok_or("the API token is not one this server knows")
    }
}

/// The cookie a browser keeps the token in.
pub const COOKIE: &str = "cartflow_token";

/// Paths anyone may ask: liveness only, nothing else.
pub const OPEN_PATHS: [&str; 1] = ["/health"];

/// MLflow's routes answer errors in MLflow's shape, so its client reports
/// them by their code (`UNAUTHENTICATED`) instead of as a server fault.
pub fn is_mlflow_path(path: &str) -> bool {
    ["/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/"].iter().any(|p| path.starts_with(p))
}

fn refuse(path: &str, status: StatusCode, message: String) -> Response {
    let mut response = if is_mlflow_path(path) {
        let code = if status == StatusCode::UNAUTHORIZED { "UNAUTHENTICATED" } else { "PERMISSION_DENIED" };
        (status, axum::Json(serde_json::json!({ "error_code": code, "message": message }))).into_response()
    } else {
        ApiError { status, message }.into_response()
    };
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"cartflow\""));
    }
    response
}

/// Where the request's token came from.
enum Presented {
    Header(String),
    Cookie(String),
    /// `?token=` and the rest of the query without it.
    Query(String, String),
    None,
}

fn pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(s.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn presented(req: &Request) -> Presented {
    let headers = req.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    {
        return Presented::Header(bearer.trim().to_owned());
    }
    let query = req.uri().query().unwrap_or("");
    if let Some((_, t)) = pairs(query).find(|(k, _)| k == "token") {
        let mut rest = form_urlencoded::Serializer::new(String::new());
        rest.extend_pairs(pairs(query).filter(|(k, _)| k != "token"));
        return Presented::Query(t, rest.finish());
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| pairs(&format!("t={v}")).next().map(|(_, t)| t));
    cookie.map_or(Presented::None, Presented::Cookie)
}

/// The authentication layer: `axum::middleware::from_fn_with_state(tokens, auth::authenticate)`.
pub async fn authenticate(State(tokens): State<Arc<Tokens>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if OPEN_PATHS.contains(&path.as_str()) {
        return next.run(req).await;
    }
    let presented = presented(&req);
    let token = match &presented {
        Presented::Header(t) | Presented::Cookie(t) | Presented::Query(t, _) => Some(t.as_str()),
        Presented::None => None,
    };
    let principal = match tokens.principal(token) {
        Ok(p) => p,
        Err(why) => return refuse(&path, StatusCode::UNAUTHORIZED, why.to_owned()),
    };
    // A token in a browser's address bar: keep it in a cookie, take it out of the URL.
    if let Presented::Query(token, rest) = &presented
        && !tokens.open
        && matches!(*req.method(), Method::GET | Method::HEAD)
    {
        let location = if rest.is_empty() { path.clone() } else { format!("{path}?{rest}") };
        let secure = if tokens.secure_cookies { "; Secure" } else { "" };
        let value: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}");
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) {
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The authorization layer of one route: its [`Scope`].
pub async fn require(State(scope): State<Scope>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match req.extensions().get::<Principal>() {
        None => refuse(&path, StatusCode::UNAUTHORIZED, "this route needs an API token".into()),
        Some(p) if !p.allows(scope) => {
            refuse(&path, StatusCode::FORBIDDEN, format!("token {:?} lacks scope {}", p.name, scope.as_str()))
        }
        Some(_) => next.run(req).await,
    }
}

/// `route` behind `scope`: `.route("/predict", scoped(Scope::Predict, post(predict)))`.
pub fn scoped<S: Clone + Send + Sync + 'static>(scope: Scope, route: MethodRouter<S>) -> MethodRouter<S> {
    route.route_layer(axum::middleware::from_fn_with_state(scope, require))
}

/// A router behind `tokens` (the authentication layer only; routes bring their scopes).
pub fn protect(router: axum::Router, tokens: Arc<Tokens>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(tokens, authenticate))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn tokens() -> Arc<Tokens> {
        Arc::new(
            Tokens::new(&[
                TokenConfig { name: "shop".into(), token: "p".repeat(20), scopes: vec![Scope::Predict] },
                TokenConfig { name: "ops".into(), token: "a".repeat(20), scopes: vec![Scope::Admin] },
            ])
            .unwrap(),
        )
    }

    fn app(tokens: Arc<Tokens>) -> Router {
        let routes = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/predict", scoped(Scope::Predict, post(|| async { "scored" })))
            .route("/api/2.0/mlflow/runs/create", scoped(Scope::RegistryWrite, post(|| async { "{}" })))
            .route("/ready", get(|| async { "ready" }));
        protect(routes, tokens)
    }

    async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, String, Response) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let response = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned(), Response::from_parts(parts, Body::empty()))
    }

    #[tokio::test]
    async fn no_token_and_unknown_tokens_are_401_missing_scopes_403() {
        let app = app(tokens());
        assert_eq!(call(&app, "GET", "/health", None).await.0, StatusCode::OK);
        let (status, body, response) = call(&app, "POST", "/predict", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("Bearer"), "{body}");
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(call(&app, "POST", "/predict", Some(&"x".repeat(20))).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "POST", "/predict", Some(&"p".repeat(20))).await.0, StatusCode::OK);
        let (status, body, _) = call(&app, "POST", "/api/2.0/mlflow/runs/create", Some(&"p".repeat(20))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("PERMISSION_DENIED") && body.contains("lacks scope registry:write"), "{body}");
        let (_, body, _) = call(&app, "POST", "/api/2.0/mlflow/runs/create", None).await;
        assert!(body.contains("\"error_code\":\"UNAUTHENTICATED\""), "{body}");
        assert_eq!(call(&app, "POST", "/api/2.0/mlflow/runs/create", Some(&"a".repeat(20))).await.0, StatusCode::OK);
        // Unscoped routes take any known token, and only a known one.
        assert_eq!(call(&app, "GET", "/ready", Some(&"p".repeat(20))).await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/ready", None).await.0, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_route_mounted_without_authentication_refuses() {
        let bare = Router::new().route("/predict", scoped(Scope::Predict, post(|| async { "scored" })));
        let response = bare.oneshot(Request::post("/predict").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_token_in_the_url_becomes_a_cookie_and_leaves_the_url() {
        let app = app(Arc::new(
            Tokens::new(&[TokenConfig {
                name: "ops".into(),
                token: "a;b c=d/0123456789".into(),
                scopes: vec![Scope::Admin],
            }])
            .unwrap()
            .with_secure_cookies(true),
        ));
        let (status, _, response) = call(&app, "GET", "/ready?x=1&token=a%3Bb+c%3Dd%2F0123456789&y=2", None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/ready?x=1&y=2");
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            cookie.starts_with("cartflow_token=a%3Bb+c%3Dd%2F0123456789; Path=/; HttpOnly; SameSite=Strict; Secure"),
            "{cookie}"
        );
        let value = cookie.split(';').next().unwrap();
        let req = Request::get("/ready").header("cookie", value).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
        // An unknown token sets nothing.
        let (status, _, response) = call(&app, "GET", "/ready?token=%3Bx%3Dinjected%3B+Path%3D%2F", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!response.headers().contains_key(header::SET_COOKIE));
    }

    #[test]
    fn weak_or_repeated_tokens_are_refused_and_never_printed() {
        let short = TokenConfig { name: "x".into(), token: "short".into(), scopes: vec![Scope::Admin] };
        assert!(Tokens::new(&[short]).err().unwrap().to_string().contains("at least 16"));
        let a = TokenConfig { name: "a".into(), token: "s".repeat(16), scopes: vec![Scope::Admin] };
        let b = TokenConfig { name: "b".into(), ..a.clone() };
        assert!(!format!("{a:?}").contains("ssss"));
        assert!(Tokens::new(&[a, b]).err().unwrap().to_string().contains("twice"));
    }
}
