//! `cartflow health`: asks a running cartflow process for its `/health` and
//! exits 0 when it answers 200. It is the container image's HEALTHCHECK, so
//! the image needs no curl. It loads no configuration and starts no logging:
//! it runs every few seconds beside a stage and must be quick and quiet.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::HealthArgs;

pub fn run(a: HealthArgs) -> Result<()> {
    let url = health_url(&a.url);
    if url.starts_with("https://") {
        // The probe runs beside the process, on its plain metrics address; TLS is nginx's.
        bail!("{url}: `cartflow health` speaks plain HTTP; point it at the process's --metrics-addr");
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(a.timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut answer = agent.get(&url).call().with_context(|| format!("{url} did not answer"))?;
    let status = answer.status();
    let body = answer.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body.trim());
    }
    println!("{}", body.trim());
    Ok(())
}

/// `host:port` or a URL without a path means its `/health`.
fn health_url(given: &str) -> String {
    let url = if given.contains("://") { given.to_owned() } else { format!("http://{given}") };
    let path_start = url.find("://").map_or(0, |i| i + 3);
    if url[path_start..].contains('/') { url } else { format!("{url}/health") }
}

#[cfg(test)]
mod tests {
    use super::health_url;

    #[test]
    fn an_address_means_its_health_path() {
        assert_eq!(health_url("127.0.0.1:9464"), "http://127.0.0.1:9464/health");
        assert_eq!(health_url("http://serve-1:8000"), "http://serve-1:8000/health");
        assert_eq!(health_url("http://serve-1:8000/ready"), "http://serve-1:8000/ready");
    }
}
