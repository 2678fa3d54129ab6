//! Finding the tools tests run. `.ci/run` installs them and sets `CI`; there a
//! missing tool is a failure, never a silent pass. On a developer's machine a
//! test whose tool is missing says so on stderr and is skipped.

use std::path::PathBuf;

/// Whether this is a CI run (`.ci/run` and CI services set `CI`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `name`, from `$env` or `~/.cache/cartflow/tools/bin` (where `.ci/run`
/// installs it). Missing: panics in CI, else `None` after saying why.
pub fn tool(name: &str, env: &str) -> Option<PathBuf> {
    let found = [
        std::env::var(env).ok().map(PathBuf::from),
        std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cache/cartflow/tools/bin").join(name)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists());
    if found.is_none() {
        missing(&format!("{name} (run .ci/run, which installs it, or set {env})"));
    }
    found
}

/// A tool is missing: a failure in CI; elsewhere the test is skipped with a
/// line saying what to install.
pub fn missing(what: &str) {
    assert!(!in_ci(), "this test needs {what}, and CI must have it");
    eprintln!("SKIPPED: this test needs {what}");
}

/// Whether `python` imports every one of `modules` (`.ci/run` installs them
/// with pip). Missing: fails in CI, else the test is skipped.
pub fn python_modules(python: &str, modules: &[&str]) -> bool {
    let imports = format!("import {}", modules.join(", "));
    let ok = std::process::Command::new(python).args(["-c", &imports]).output().is_ok_and(|o| o.status.success());
    if !ok {
        missing(&format!("{python} with {} (pip install {0}; .ci/run installs them)", modules.join(" ")));
    }
    ok
}

/// Whether the command `name` is on PATH (`.ci/run` installs Debian's
/// `package`). Missing: fails in CI, else the test is skipped.
pub fn command(name: &str, package: &str) -> bool {
    let found =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()));
    if !found {
        missing(&format!("{name} (apt-get install {package}; .ci/run installs it)"));
    }
    found
}
