//! The `cartflow` command as a library: the command line ([`cli`]), the
//! layered configuration ([`config`]), the one place backends are opened
//! ([`backends`]), what commands share ([`wiring`]) and the commands
//! themselves ([`commands`]). The `cartflow` binary calls [`main`]; the
//! `cartflow-bench` binary builds on the same pieces.

pub mod allocator;
pub mod backends;
pub mod cli;
pub mod commands;
pub use cartflow_config as config;
pub mod schedule;
pub mod secrets;
pub mod telemetry;
pub mod wiring;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// Parses the command line, runs the command, says what went wrong.
pub fn main() -> ExitCode {
    // SAFETY: no thread has started yet (clap reads CARTFLOW_* variables next).
    if let Err(e) = unsafe { secrets::load_from_files() } {
        return exit(Err(e));
    }
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    exit(commands::run(cli, &cli::service_name(&matches)))
}

/// The exit code of a command's result, its error printed on stderr.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: some errors (DataFusion's)
/// already print their source, which `{:#}` would repeat.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !out.contains(&cause) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&cause);
        }
    }
    out
}
