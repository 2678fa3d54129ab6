//! Secrets from files, as container images take them: `X_FILE=/run/secrets/x`
//! stands for `X` set to that file's contents (the convention of PostgreSQL's,
//! MinIO's and most official images, and what compose's `secrets:` mount).
//! It covers every setting a secret can hide in (a Redis or PostgreSQL URL with
//! its password, API tokens, S3 keys, the registry's token) without one option
//! per secret, and the values never appear in a compose file or `ps`.
//!
//! Only variables cartflow reads take part: `CARTFLOW_*` (its configuration),
//! `AWS_*` (object_store's S3 settings), `MLFLOW_TRACKING_TOKEN` and `OTEL_*`.

use std::ffi::OsString;

use anyhow::{Context, Result, bail};

const PREFIXES: [&str; 4] = ["CARTFLOW_", "AWS_", "MLFLOW_TRACKING_", "OTEL_"];

/// The variables `vars` asks for by their `_FILE` twins, read from the files:
/// (name, value) pairs to set and the `_FILE` names to remove. Pure but for the
/// reads, so the rules are tested without touching the process's environment.
fn resolve(vars: impl Iterator<Item = (OsString, OsString)>) -> Result<Vec<(String, Option<String>)>> {
    let vars: Vec<(String, String)> =
        vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let mut changes = Vec::new();
    for (key, path) in &vars {
        let Some(name) = key.strip_suffix("_FILE") else { continue };
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        if vars.iter().any(|(k, _)| k == name) {
            bail!("both {name} and {key} are set: keep one");
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("{key}: cannot read {path}"))?;
        // A file written by `echo` or an editor ends in a newline that is not part of the secret.
        let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        changes.push((name.to_owned(), Some(value.to_owned())));
        // Gone, so that the configuration's unknown-key check never sees it.
        changes.push((key.clone(), None));
    }
    Ok(changes)
}

/// Sets each `X` whose `X_FILE` is set, and removes the `X_FILE`s.
///
/// # Safety
/// Changes the environment: call it before any thread starts.
pub unsafe fn load_from_files() -> Result<()> {
    for (name, value) in resolve(std::env::vars_os())? {
        // SAFETY: the caller runs this before any other thread exists.
        match value {
            Some(v) => unsafe { std::env::set_var(name, v) },
            None => unsafe { std::env::remove_var(name) },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn a_file_stands_for_its_variable_without_the_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("redis_url");
        std::fs::write(&url, "redis://:s3cret@redis:6379/0\n").unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "two\nlines\r\n").unwrap();
        let changes = resolve(vars(&[
            ("CARTFLOW_FEATURES__ONLINE_FILE", url.to_str().unwrap()),
            ("AWS_SECRET_ACCESS_KEY_FILE", key.to_str().unwrap()),
            ("PATH_FILE", "/nonexistent"),
        ]))
        .unwrap();
        assert_eq!(
            changes,
            vec![
                ("CARTFLOW_FEATURES__ONLINE".into(), Some("redis://:s3cret@redis:6379/0".into())),
                ("CARTFLOW_FEATURES__ONLINE_FILE".into(), None),
                ("AWS_SECRET_ACCESS_KEY".into(), Some("two\nlines".into())),
                ("AWS_SECRET_ACCESS_KEY_FILE".into(), None),
            ]
        );
    }

    #[test]
    fn a_missing_file_or_a_twin_set_both_ways_is_an_error_that_names_it() {
        let e = format!("{:#}", resolve(vars(&[("MLFLOW_TRACKING_TOKEN_FILE", "/no/such/file")])).unwrap_err());
        assert!(e.contains("MLFLOW_TRACKING_TOKEN_FILE") && e.contains("/no/such/file"), "{e}");
        let e = resolve(vars(&[("OTEL_X_FILE", "/f"), ("OTEL_X", "v")])).unwrap_err().to_string();
        assert!(e.contains("OTEL_X and OTEL_X_FILE"), "{e}");
    }
}
