//! A PostgreSQL server of a test's own, for the tests that stop and start
//! it: the machine's shared server (127.0.0.1:5432) must stay up for the
//! tests running beside them. Debian's server binaries, a cluster made by
//! `initdb` under /tmp, logical decoding on, trust auth on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::services::free_port;

pub struct PostgresServer {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
}

impl PostgresServer {
    /// Makes and starts the cluster. PostgreSQL refuses to run as root, so
    /// as root (CI here) it runs as the `postgres` user, which needs a
    /// directory of its own: not under a root-only temporary directory.
    pub fn start() -> PostgresServer {
        let bin = server_binaries();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let data = std::env::temp_dir().join(format!("cartflow-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            run("chown", Command::new("chown").arg("postgres:postgres").arg(&data));
        }
        let server = PostgresServer { port: free_port(), data, bin };
        run("initdb", server.as_owner("initdb").args(["-A", "trust", "-U", "postgres", "-D"]).arg(&server.data));
        server.start_again();
        server
    }

    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.as_owner("pg_ctl");
        cmd.arg("-D").arg(&self.data).args(["-w", "-t", "60"]).args(args);
        cmd
    }

    /// Starts it (again) on its port, and waits until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c wal_level=logical \
             -c max_replication_slots=16 -c max_wal_senders=16 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        run("pg_ctl start", self.pg_ctl(&["-o", &options, "-l"]).arg(&log).arg("start"));
    }

    /// A fast shutdown, as an administrator's restart does: sessions are
    /// ended, the server checkpoints and exits.
    pub fn stop(&self) {
        run("pg_ctl stop", &mut self.pg_ctl(&["-m", "fast", "stop"]));
    }

    /// A URL of the database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in `db` with psql and returns its unaligned output.
    pub fn query(&self, db: &str, sql: &str) -> String {
        crate::services::psql_at(self.port, db, sql)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The newest of Debian's PostgreSQL server installations.
fn server_binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    root.join(newest.to_string()).join("bin")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
