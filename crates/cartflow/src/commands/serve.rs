//! `cartflow serve`: predictions with the registry's champion, swapped when
//! the alias moves; the feature API; the dashboard; `/metrics`, `/health`,
//! `/ready`; with the embedded registry, its API and UI too. Behind API
//! tokens, over TLS when given a certificate ([`crate::wiring::server`]).

use anyhow::Result;

use super::Ctx;
use crate::cli::ServeArgs;
use crate::wiring::server::{ServeOptions, print_started, start};

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let started =
        start(ctx, ServeOptions { addr: a.addr, online: a.online.online, registry: a.registry, listen: a.listen })?;
    println!("cartflow serve (Ctrl-C stops)");
    print_started(&started, "  ");
    started.wait_and_report()
}
