//! MLflow's own Python client (PyPI `mlflow`, installed by .ci/run) against
//! this registry, served in-process on a free port behind API tokens, with
//! its tables on SQLite and on the PostgreSQL that runs here: the client API
//! (`mlflow_client.py`) and the fluent API with MLflow 3's logged models
//! (`mlflow_fluent.py`, which also passes against `mlflow server`: see
//! crates/cartflow/tests/registry.rs).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cartflow_http::{Scope, TokenConfig, Tokens};
use cartflow_testkit::TestDatabase;

const WRITE_TOKEN: &str = "ci-registry-writer-0123456789";
const READ_TOKEN: &str = "ci-registry-reader-0123456789";

/// Serves the registry on a free loopback port from a thread of its own.
fn serve(store: &str, artifacts: &Path) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (registry, listener) = rt.block_on(async {
        let registry = cartflow_registry::open(store, &artifacts.display().to_string()).await.unwrap();
        (registry, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    });
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tokens = Tokens::new(&[
        TokenConfig {
            name: "writer".into(),
            token: WRITE_TOKEN.into(),
            scopes: vec![Scope::RegistryWrite, Scope::RegistryRead],
        },
        TokenConfig { name: "reader".into(), token: READ_TOKEN.into(), scopes: vec![Scope::RegistryRead] },
    ])
    .unwrap();
    let app = cartflow_http::finish(cartflow_registry::app(registry), Arc::new(tokens));
    std::thread::spawn(move || rt.block_on(async move { axum::serve(listener, app).await }));
    url
}

fn python(script: &str, url: &str, work: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let out = Command::new("python3")
        .arg(&script)
        .arg(url)
        .arg(work)
        .env("MLFLOW_TRACKING_TOKEN", WRITE_TOKEN)
        .env("CARTFLOW_TEST_READ_TOKEN", READ_TOKEN)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok"),
        "{}: {stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mlflows_client_works_against_the_registry_on_sqlite() {
    if !cartflow_testkit::tools::python_modules("python3", &["mlflow"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = serve(&format!("sqlite://{}", dir.path().join("mlflow.db").display()), &dir.path().join("artifacts"));
    python("mlflow_client.py", &url, dir.path());
    python("mlflow_fluent.py", &url, dir.path());
    assert!(dir.path().join("artifacts").read_dir().unwrap().next().is_some(), "artifacts landed on disk");
}

#[test]
fn mlflows_client_works_against_the_registry_on_postgres() {
    if !cartflow_testkit::tools::python_modules("python3", &["mlflow"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create();
    let url = serve(&db.url(), &dir.path().join("artifacts"));
    python("mlflow_client.py", &url, dir.path());
    python("mlflow_fluent.py", &url, dir.path());
    assert_eq!(db.query("SELECT count(*) FROM model_versions"), "4");
    assert_eq!(db.query("SELECT count(*) FROM runs"), "7");
    assert_eq!(db.query("SELECT count(*) FROM logged_models WHERE lifecycle_stage = 'active'"), "2");
}
