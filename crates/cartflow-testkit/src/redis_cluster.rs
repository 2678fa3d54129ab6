//! A real Redis Cluster on loopback: three primaries of Debian's
//! `redis-server` (cluster mode), joined by `redis-cli --cluster create`,
//! in a folder of the test's own. Stopped when dropped.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::services::free_port;

pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
}

impl RedisCluster {
    /// `None` (the test is skipped) only outside CI, when redis-server is missing.
    pub fn start(dir: &Path) -> Option<RedisCluster> {
        if !crate::command("redis-server", "redis-server") {
            return None;
        }
        let mut cluster = RedisCluster { nodes: Vec::new(), ports: Vec::new() };
        for i in 0..3 {
            let (child, port) = start_node(&dir.join(format!("redis-node-{i}")));
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .arg("--cluster-yes")
            .output()
            .unwrap();
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stdout));
        let started = Instant::now();
        while !cluster.ports.iter().all(|p| cluster.info(*p).contains("cluster_state:ok")) {
            assert!(started.elapsed() < Duration::from_secs(20), "the cluster never reached cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(cluster)
    }

    fn info(&self, port: u16) -> String {
        let out = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "info"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The URL cartflow takes for it: every node, as seeds.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Keys held by each primary (all three should hold some).
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|p| {
                let out = Command::new("redis-cli").args(["-p", &p.to_string(), "dbsize"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
            })
            .collect()
    }
}

/// One cluster node in `dir`, on a free port and bus port. A port another
/// test took between our choosing it and the node binding it makes the node
/// exit: then it is started again on other ports.
fn start_node(dir: &Path) -> (Child, u16) {
    std::fs::create_dir_all(dir).unwrap();
    for _ in 0..5 {
        let (port, bus) = (free_port(), free_port());
        if port == bus {
            continue;
        }
        let log = std::fs::File::create(dir.join("redis.log")).unwrap();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--cluster-port", &bus.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            if child.try_wait().unwrap().is_some() {
                break; // its port was taken: again, elsewhere
            }
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server (cluster node) did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("redis-server (cluster node) exited five times: see {}", dir.join("redis.log").display());
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
