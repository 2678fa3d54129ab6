//! Access control: API tokens with scopes, checked on every route but
//! `/health`. A token comes as `Authorization: Bearer …` (what MLflow's
//! client sends for `MLFLOW_TRACKING_TOKEN`), or, for a browser, once as
//! `?token=…`, which sets a cookie as Jupyter does. No token or an unknown
//! one is 401; a known token without the route's scope is 403.
//!
//! Tokens are kept as SHA-256 digests and looked up by digest, so the
//! lookup's timing says nothing about any token's characters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
            Scope::Admin => "admin",
        }
    }
}

/// A token as configured: `{ name = "shop-frontend", token = "…", scopes = ["predict"] }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    /// Any known token (routes that exist for every client, and unknown
    /// routes, so a 404 is not hidden behind a 403).
    AnyToken,
    Scope(Scope),
}

/// The scope each route asks for.
pub fn access(method: &Method, path: &str) -> Access {
    let registry_read =
        |p: &str| *method == Method::GET || p.ends_with("/search") || p.ends_with("/get-latest-versions");
    match path {
        "/health" => Access::Open,
        "/predict" => Access::Scope(Scope::Predict),
        "/ready" => Access::AnyToken,
        "/features" | "/get-online-features" => Access::Scope(Scope::FeaturesRead),
        "/metrics" => Access::Scope(Scope::Admin),
        p if p.starts_with("/api/2.0/mlflow") => {
            Access::Scope(if registry_read(p) { Scope::RegistryRead } else { Scope::RegistryWrite })
        }
        p if p == "/" || p.starts_with("/ui") || p.starts_with("/dashboard") => Access::Scope(Scope::RegistryRead),
        _ => Access::AnyToken,
    }
}

/// The cookie a `?token=` visit leaves in the browser.
pub const COOKIE: &str = "cartflow_token";

struct Known {
    name: String,
    scopes: Vec<Scope>,
}

/// The tokens this server accepts.
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Known>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn new(tokens: &[TokenConfig]) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for t in tokens {
            if t.token.len() < 16 {
                return Err(format!("token {:?}: at least 16 characters, so it cannot be guessed", t.name));
            }
            if t.scopes.is_empty() {
                return Err(format!("token {:?}: give it at least one scope", t.name));
            }
            let known = Known { name: t.name.clone(), scopes: t.scopes.clone() };
            if by_digest.insert(digest(&t.token), known).is_some() {
                return Err(format!("token {:?}: the same secret is configured twice", t.name));
            }
        }
        Ok(Self { by_digest })
    }

    /// Decides a request from the token it carries.
    pub fn check(&self, token: Option<&str>, access: Access) -> Result<(), ApiError> {
        if access == Access::Open {
            return Ok(());
        }
        let Some(token) = token else {
            return Err(unauthorized("this route needs an API token: send `Authorization: Bearer <token>`"));
        };
        let Some(known) = self.by_digest.get(&digest(token)) else {
            return Err(unauthorized("the API token is not one this server knows"));
        };
        match access {
            Access::Scope(scope) if !known.scopes.iter().any(|s| *s == scope || *s == Scope::Admin) => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: format!("token {:?} lacks scope {}", known.name, scope.as_str()),
            }),
            _ => Ok(()),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError { status: StatusCode::UNAUTHORIZED, message: message.to_owned() }
}

/// The token a request carries: bearer header, then `?token=`, then the cookie.
fn presented(req: &Request) -> (Option<String>, bool) {
    let headers = req.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    {
        return (Some(bearer.trim().to_owned()), false);
    }
    let query = req.uri().query().unwrap_or("");
    if let Some((_, t)) = url_pairs(query).find(|(k, _)| k == "token") {
        return (Some(t), true);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned());
    (cookie, false)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// The middleware: `axum::middleware::from_fn_with_state(tokens, auth::layer)`.
pub async fn layer(State(tokens): State<Arc<Tokens>>, req: Request, next: Next) -> Response {
    let access = access(req.method(), req.uri().path());
    let (token, from_query) = presented(&req);
    if let Err(e) = tokens.check(token.as_deref(), access) {
        let mut response = e.into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"cartflow\""));
        }
        return response;
    }
    let mut response = next.run(req).await;
    if let (true, Some(token)) = (from_query, token) {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[
            TokenConfig { name: "shop".into(), token: "p".repeat(20), scopes: vec![Scope::Predict] },
            TokenConfig { name: "ops".into(), token: "a".repeat(20), scopes: vec![Scope::Admin] },
        ])
        .unwrap()
    }

    #[test]
    fn routes_ask_for_their_scopes() {
        let post = Method::POST;
        assert_eq!(access(&Method::GET, "/health"), Access::Open);
        assert_eq!(access(&post, "/predict"), Access::Scope(Scope::Predict));
        assert_eq!(access(&post, "/get-online-features"), Access::Scope(Scope::FeaturesRead));
        assert_eq!(access(&post, "/api/2.0/mlflow/runs/search"), Access::Scope(Scope::RegistryRead));
        assert_eq!(access(&post, "/api/2.0/mlflow/runs/create"), Access::Scope(Scope::RegistryWrite));
        assert_eq!(access(&Method::PUT, "/api/2.0/mlflow-artifacts/artifacts/x"), Access::Scope(Scope::RegistryWrite));
        assert_eq!(access(&Method::GET, "/api/2.0/mlflow-artifacts/artifacts/x"), Access::Scope(Scope::RegistryRead));
        assert_eq!(access(&Method::GET, "/dashboard"), Access::Scope(Scope::RegistryRead));
        assert_eq!(access(&Method::GET, "/nowhere"), Access::AnyToken);
    }

    #[test]
    fn no_token_and_unknown_tokens_are_401_missing_scopes_403() {
        let t = tokens();
        let predict = Access::Scope(Scope::Predict);
        assert_eq!(t.check(None, predict).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.check(Some(&"x".repeat(20)), predict).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(t.check(Some(&"p".repeat(20)), predict).is_ok());
        let e = t.check(Some(&"p".repeat(20)), Access::Scope(Scope::RegistryWrite)).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("\"shop\" lacks scope registry:write"), "{}", e.message);
        assert!(t.check(Some(&"a".repeat(20)), Access::Scope(Scope::RegistryWrite)).is_ok());
        assert!(t.check(None, Access::Open).is_ok());
    }

    #[test]
    fn weak_or_repeated_tokens_are_refused() {
        let short = TokenConfig { name: "x".into(), token: "short".into(), scopes: vec![Scope::Admin] };
        assert!(Tokens::new(&[short]).err().unwrap().contains("at least 16"));
        let a = TokenConfig { name: "a".into(), token: "s".repeat(16), scopes: vec![Scope::Admin] };
        let b = TokenConfig { name: "b".into(), ..a.clone() };
        assert!(Tokens::new(&[a, b]).err().unwrap().contains("twice"));
    }
}
