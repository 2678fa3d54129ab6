//! What every server command shares (`serve`, `registry serve`, `features
//! serve`, a stage's `--metrics-addr`): the tokens it accepts (this data
//! directory's admin token and the configured ones, or none with
//! `--no-auth`, on loopback only), TLS, and the listener with `[serve]`'s
//! limits, stopped by Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cartflow_http::{Scope, Tls, TokenConfig, Tokens};
use cartflow_stream::StageControl;

use super::Ctx;
use crate::cli::ListenArgs;

/// The data directory's admin token, and whether this start made it.
#[derive(Clone)]
pub struct AdminToken {
    pub token: String,
    pub created: bool,
    pub path: PathBuf,
}

impl AdminToken {
    /// Reads the admin token of `data_dir`, creating it (readable by its owner only) on first use.
    pub fn of(data_dir: &Path) -> Result<AdminToken> {
        let path = data_dir.join("auth").join("token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            return Ok(AdminToken { token: token.trim().to_owned(), created: false, path });
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(path.parent().expect("token path has a parent"))?;
        write_private(&path, &token).with_context(|| format!("writing the admin token to {}", path.display()))?;
        Ok(AdminToken { token, created: true, path })
    }

    /// The token itself the first time (nobody has seen it yet), else where it is kept:
    /// a secret is not printed on every start.
    pub fn shown(&self) -> String {
        if self.created {
            format!("{} (new; kept in {})", self.token, self.path.display())
        } else {
            format!("in {} (printed once, when it was made)", self.path.display())
        }
    }

    /// The token, or the shell that reads it, for commands a person copies.
    pub fn for_shell(&self) -> String {
        if self.created { self.token.clone() } else { format!("$(cat {})", self.path.display()) }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

/// The configured tokens and the admin token.
pub fn tokens(ctx: &Ctx, admin: &str) -> Result<Tokens> {
    let mut all = ctx.cfg.auth.tokens.clone();
    all.push(TokenConfig { name: "admin".into(), token: admin.to_owned(), scopes: vec![Scope::Admin] });
    Tokens::new(&all).map_err(|e| anyhow::anyhow!("auth.tokens: {e}"))
}

/// TLS from the flags, else from `serve.tls_cert`/`serve.tls_key`.
fn tls(ctx: &Ctx, l: &ListenArgs) -> Result<Option<Tls>> {
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
    bind(ctx, addr, what, l, tls(ctx, l)?)
}

/// A server only this process talks to (the embedded registry, on
/// loopback): the same tokens and limits, plain HTTP.
pub fn listen_internal(ctx: &Ctx, what: &str) -> Result<Listener> {
    bind(ctx, "127.0.0.1:0", what, &ListenArgs::default(), None)
}

fn bind(ctx: &Ctx, addr: &str, what: &str, l: &ListenArgs, tls: Option<Tls>) -> Result<Listener> {
    let secure = tls.is_some();
    let server = cartflow_http::Server::bind(addr, ctx.cfg.serve.limits(), tls)
        .with_context(|| format!("binding {addr} for {what}"))?;
    if l.no_auth {
        let local = server.local_addr();
        if !cartflow_http::server::open_mode_allowed(&local) {
            bail!("--no-auth serves without API tokens, so only on a loopback address (127.0.0.1, ::1), not {local}");
        }
        eprintln!(
            "WARNING: {what} on {} asks no API token (--no-auth): anyone who can reach this machine's loopback may \
             read and change everything it serves",
            server.url()
        );
        return Ok(Listener { server, tokens: Arc::new(Tokens::open()), admin: None });
    }
    let admin = AdminToken::of(&ctx.cfg.data_dir)?;
    let tokens = Arc::new(tokens(ctx, &admin.token)?.with_secure_cookies(secure));
    Ok(Listener { server, tokens, admin: Some(admin) })
}

/// Resolves when `control` says stop.
pub async fn stopped(control: StageControl) {
    while !control.stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A runtime for a server: what its state opens (database pools) must be
/// opened on the runtime that serves it.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?)
}

/// Serves `app` on `server` from a thread of its own, on `rt`, until `control` stops.
pub fn spawn(
    rt: tokio::runtime::Runtime,
    server: cartflow_http::Server,
    app: axum::Router,
    control: StageControl,
    name: &str,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let what = name.to_owned();
    Ok(std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || rt.block_on(server.serve(app, stopped(control))).with_context(|| format!("serving {what}")))?)
}
