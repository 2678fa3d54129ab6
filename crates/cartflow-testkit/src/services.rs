//! Real services on loopback, one per test, removed when dropped: an S3
//! server (s3s-fs), a Kafka broker (nisshi), a PostgreSQL database, a Redis
//! key prefix.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::tools::tool;

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on the port.
pub fn wait_for_port(port: u16, what: &str, within: Duration) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < within, "{what} did not start within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real S3-compatible server on loopback: the s3s-fs that `.ci/run`
/// installs (or one named by S3S_FS_BIN), keeping objects as files under
/// `root/<bucket>/`. Stopped when dropped.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub root: std::path::PathBuf,
}

impl S3Server {
    /// `None` (the test is skipped) only outside CI, when s3s-fs is missing.
    pub fn start(dir: &Path, bucket: &str) -> Option<S3Server> {
        let bin = tool("s3s-fs", "S3S_FS_BIN")?;
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(bucket)).unwrap(); // s3s-fs: a bucket is a folder
        let port = free_port();
        let child = Self::spawn(&bin, port, &root);
        wait_for_port(port, "s3s-fs", Duration::from_secs(10));
        Some(S3Server { child, port, root })
    }

    fn spawn(bin: &Path, port: u16, root: &Path) -> Child {
        Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "test", "--secret-key", "test"])
            .arg(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Kills the server: requests to it fail until [`S3Server::start_again`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port over the same files.
    pub fn start_again(&mut self) {
        let bin = tool("s3s-fs", "S3S_FS_BIN").expect("s3s-fs started once");
        self.child = Self::spawn(&bin, self.port, &self.root);
        wait_for_port(self.port, "s3s-fs", Duration::from_secs(20));
    }

    /// The usual AWS variables pointing a command at this server.
    pub fn configure<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ALLOW_HTTP", "true")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database of its own on the local PostgreSQL, dropped at the end.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("cartflow_t_{}_{nanos}", std::process::id());
        psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDatabase { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub fn query(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        psql_on_drop(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// A database of its own and a replication slot name of its own, for change
/// capture (slots are cluster-wide): the slot is dropped first at the end,
/// since a slot keeps its database from being dropped.
pub struct CaptureSource {
    pub slot: String,
    pub db: TestDatabase,
}

impl CaptureSource {
    pub fn create() -> CaptureSource {
        let db = TestDatabase::create();
        CaptureSource { slot: format!("{}_slot", db.name), db }
    }

    /// Whether the slot exists now.
    pub fn slot_exists(&self) -> bool {
        psql("postgres", &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'", self.slot)) == "1"
    }
}

impl Drop for CaptureSource {
    fn drop(&mut self) {
        psql_on_drop(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{}'",
            self.slot
        ));
    }
}

/// Runs `sql` on the `postgres` database and ignores the outcome: for
/// `Drop`, which must not panic while a failed test unwinds.
fn psql_on_drop(sql: &str) {
    let _ = Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql]).output();
}

pub fn psql(db: &str, sql: &str) -> String {
    psql_at(5432, db, sql)
}

/// Runs `sql` in `db` on the PostgreSQL at 127.0.0.1:`port` and returns its unaligned output.
pub fn psql_at(port: u16, db: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db])
        .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A real Kafka-protocol broker on loopback: the nisshi that `.ci/run`
/// installs (or one named by NISSHI_BIN), keeping topics in memory, or in
/// SQLite ([`KafkaBroker::start_durable`]). Each test starts its own, so tests
/// run in parallel. Stopped when dropped.
pub struct KafkaBroker {
    child: Child,
    pub url: String,
    port: u16,
    command: Vec<String>,
    log: std::path::PathBuf,
}

impl KafkaBroker {
    /// `None` (the test is skipped) only outside CI, when nisshi is missing.
    pub fn start(dir: &Path) -> Option<KafkaBroker> {
        Self::start_with(dir, "memory://nisshi/".into())
    }

    /// A broker that keeps topics, groups and producer state in SQLite under
    /// `dir`: what it acknowledged survives [`KafkaBroker::stop`] and [`KafkaBroker::start_again`].
    pub fn start_durable(dir: &Path) -> Option<KafkaBroker> {
        Self::start_with(dir, format!("sqlite:///{}", dir.join("nisshi.db").display()))
    }

    fn start_with(dir: &Path, storage: String) -> Option<KafkaBroker> {
        let bin = tool("nisshi", "NISSHI_BIN")?;
        let port = free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let command: Vec<String> = vec![
            bin.display().to_string(),
            "broker".into(),
            "--listener-url".into(),
            listener.clone(),
            "--advertised-listener-url".into(),
            listener,
            "--storage-engine".into(),
            storage,
        ];
        let log = dir.join("broker.log");
        let child = spawn_logged(&command, &log);
        wait_for_port(port, "nisshi", Duration::from_secs(20));
        Some(KafkaBroker { child, url: format!("kafka://127.0.0.1:{port}"), port, command, log })
    }

    /// Kills the broker (as a crash or a host going away would).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same storage. A port the
    /// old broker's connections still hold (TIME_WAIT) can refuse the bind
    /// for a while: tried until it listens.
    pub fn start_again(&mut self) {
        let started = Instant::now();
        loop {
            self.child = spawn_logged(&self.command, &self.log);
            let tried = Instant::now();
            while tried.elapsed() < Duration::from_secs(5) {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                if self.child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.stop();
            assert!(started.elapsed() < Duration::from_secs(120), "nisshi did not listen on {} again", self.port);
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Points a cartflow command at this broker.
    pub fn configure<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("CARTFLOW_LOG", &self.url).env("CARTFLOW_KAFKA__PARTITIONS", "4")
    }

    #[cfg(feature = "kafka")]
    pub fn log(&self) -> cartflow_log::KafkaLog {
        cartflow_log::KafkaLog::connect(&self.url, cartflow_log::KafkaOptions::default()).unwrap()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `command` running, its output appended to `log`.
fn spawn_logged(command: &[String], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(&command[0]).args(&command[1..]).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap()
}

/// A Redis server of the test's own on loopback (Debian's redis-server),
/// writing every change to its append-only file under `dir` before it
/// answers, so that what it acknowledged survives a restart. Stopped when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    pub fn start(dir: &Path) -> RedisServer {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let child = Self::spawn(&dir, port);
        wait_for_port(port, "redis-server", Duration::from_secs(10));
        RedisServer { child, port, dir }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian's package; .ci/run installs it)")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it, as a crash would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port from its append-only file, and waits
    /// until it has loaded it (until then it answers LOADING).
    pub fn start_again(&mut self) {
        self.child = Self::spawn(&self.dir, self.port);
        wait_for_port(self.port, "redis-server", Duration::from_secs(20));
        let client = redis::Client::open(self.url()).unwrap();
        let started = Instant::now();
        while client.get_connection().and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "redis-server did not load its append-only file");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis key prefix of this test's own on the local Redis
/// (`redis://127.0.0.1:6379/0`), its keys deleted when dropped.
pub struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new(what: &str) -> RedisPrefix {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let prefix = format!("cartflow-test-{what}-{}-{nanos}", std::process::id());
        RedisPrefix { url: "redis://127.0.0.1:6379/0".to_owned(), prefix }
    }

    /// Keys under the prefix now.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query(&mut conn).unwrap()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection()) else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}
