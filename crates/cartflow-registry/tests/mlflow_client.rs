//! MLflow's own Python client (PyPI `mlflow`, installed by .ci/run) against
//! this registry, served in-process on a free port, with its tables on
//! SQLite and on the PostgreSQL that runs here.

use std::path::Path;
use std::process::Command;

/// Serves the registry on a free loopback port from a thread of its own.
fn serve(store: &str, artifacts: &Path) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (registry, listener) = rt.block_on(async {
        let registry = cartflow_registry::open(store, &artifacts.display().to_string()).await.unwrap();
        (registry, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    });
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        rt.block_on(async move { axum::serve(listener, cartflow_registry::app(registry)).await })
    });
    url
}

fn python_client(url: &str, work: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlflow_client.py");
    let out = Command::new("python3").arg(script).arg(url).arg(work).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok"),
        "mlflow client: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn mlflows_client_works_against_the_registry_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(&format!("sqlite://{}", dir.path().join("mlflow.db").display()), &dir.path().join("artifacts"));
    python_client(&url, dir.path());
    assert!(dir.path().join("artifacts").read_dir().unwrap().next().is_some(), "artifacts landed on disk");
}

#[test]
fn mlflows_client_works_against_the_registry_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let db = format!("cartflow_registry_{}_{nanos}", std::process::id());
    psql("postgres", &format!("CREATE DATABASE {db}"));
    let url = serve(&format!("postgres://postgres@127.0.0.1:5432/{db}"), &dir.path().join("artifacts"));
    python_client(&url, dir.path());
    assert_eq!(psql(&db, "SELECT count(*) FROM model_versions"), "2");
    assert_eq!(psql(&db, "SELECT count(*) FROM runs"), "2");
    let _ = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
        .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .output();
}
