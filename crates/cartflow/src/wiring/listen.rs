//! What every server command shares (`serve`, `registry serve`, `features
//! serve`, a stage's `--metrics-addr`): the tokens it accepts (this data
//! directory's admin token and the configured ones, or none with
//! `--no-auth`, on loopback only), TLS, the listener with `[serve]`'s
//! limits, and the one Tokio runtime of the process they all serve on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cartflow_http::{AdminToken, Scope, Tls, TokenConfig, Tokens};
use cartflow_stream::StageControl;

use crate::cli::ListenArgs;
use crate::commands::Ctx;

/// Who a server lets in: the configured tokens and the admin token, or
/// anyone (`--no-auth`, then `admin` is `None`).
pub struct Access {
    pub tokens: Tokens,
    pub admin: Option<AdminToken>,
}

/// The tokens the listen flags ask for.
pub fn access(ctx: &Ctx, l: &ListenArgs) -> Result<Access> {
    if l.no_auth {
        return Ok(Access { tokens: Tokens::open(), admin: None });
    }
    let admin = AdminToken::of(&ctx.cfg.data_dir)?;
    let mut all = ctx.cfg.auth.tokens.clone();
    all.push(TokenConfig { name: "admin".into(), token: admin.token.clone(), scopes: vec![Scope::Admin] });
    let tokens = Tokens::new(&all).context("auth.tokens")?;
    Ok(Access { tokens, admin: Some(admin) })
}

/// TLS from the flags, else from `serve.tls_cert`/`serve.tls_key`.
pub fn tls(ctx: &Ctx, l: &ListenArgs) -> Result<Option<Tls>> {
    let cert = l.tls_cert.clone().or_else(|| ctx.cfg.serve.tls_cert.clone());
    let key = l.tls_key.clone().or_else(|| ctx.cfg.serve.tls_key.clone());
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            Tls::from_pem_files(Path::new(&cert), Path::new(&key)).map(Some).map_err(anyhow::Error::msg)
        }
        _ => bail!("TLS needs both a certificate and a key (--tls-cert/--tls-key or serve.tls_cert/serve.tls_key)"),
    }
}

/// A bound server and who it lets in.
pub struct Listener {
    pub server: cartflow_http::Server,
    pub tokens: Arc<Tokens>,
    /// `None` with `--no-auth`.
    pub admin: Option<AdminToken>,
}

impl Listener {
    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// Binds `addr` with `[serve]`'s limits, TLS and tokens.
pub fn listen(ctx: &Ctx, addr: &str, what: &str, l: &ListenArgs) -> Result<Listener> {
    bind(ctx, addr, what, access(ctx, l)?, tls(ctx, l)?)
}

/// A server only this process talks to (the embedded registry, on
/// loopback): the same tokens and limits, plain HTTP.
pub fn listen_internal(ctx: &Ctx, what: &str) -> Result<Listener> {
    bind(ctx, "127.0.0.1:0", what, access(ctx, &ListenArgs::default())?, None)
}

fn bind(ctx: &Ctx, addr: &str, what: &str, access: Access, tls: Option<Tls>) -> Result<Listener> {
    let secure = tls.is_some();
    let server = cartflow_http::Server::bind_for(addr, ctx.cfg.serve.limits(), tls, &access.tokens, what)
        .with_context(|| format!("starting {what}"))?;
    Ok(Listener { server, tokens: Arc::new(access.tokens.with_secure_cookies(secure)), admin: access.admin })
}

/// Resolves when `control` says stop.
pub async fn stopped(control: StageControl) {
    while !control.stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process's one Tokio runtime ([`cartflow_lake::runtime`]): servers
/// and what they open (database pools must be opened on the runtime that
/// serves them) share it with the lake and the warehouse.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    cartflow_lake::runtime()
}

/// Serves `app` on `server` from a thread of its own, on the process's
/// runtime, until `control` stops.
pub fn spawn(
    server: cartflow_http::Server,
    app: axum::Router,
    control: StageControl,
    name: &str,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let what = name.to_owned();
    Ok(std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        runtime().block_on(server.serve(app, stopped(control))).with_context(|| format!("serving {what}"))
    })?)
}
