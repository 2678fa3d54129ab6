//! One Redis server or a Redis Cluster, behind the same calls. The redis
//! crate gives the two different connection and pipeline types (a cluster
//! pipeline splits its commands by node and cannot be a transaction); these
//! enums pick one by the URL and forward.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConnection, ClusterPipeline};
use redis::cluster_async::ClusterConnection as AsyncClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ConnectionLike, Pipeline, RedisFuture, RedisResult, Value};

/// `redis+cluster://` / `rediss+cluster://`: a cluster, by any of its nodes.
pub const CLUSTER_SCHEMES: [&str; 2] = ["redis+cluster://", "rediss+cluster://"];

pub enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl Client {
    /// `redis://…` is one server; `redis+cluster://[user:password@]host:port[,host:port…]`
    /// a cluster, found from those nodes.
    pub fn open(url: &str) -> RedisResult<Client> {
        let Some((scheme, rest)) = CLUSTER_SCHEMES.iter().find_map(|s| Some((*s, url.strip_prefix(s)?))) else {
            return Ok(Client::Single(redis::Client::open(url)?));
        };
        let plain = if scheme.starts_with("rediss") { "rediss://" } else { "redis://" };
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let nodes: Vec<String> =
            hosts.trim_end_matches('/').split(',').map(|h| format!("{plain}{auth}{}", h.trim())).collect();
        Ok(Client::Cluster(Box::new(ClusterClient::new(nodes)?)))
    }

    pub fn connect(&self) -> RedisResult<Conn> {
        Ok(match self {
            Client::Single(c) => Conn::Single(c.get_connection()?),
            Client::Cluster(c) => Conn::Cluster(Box::new(c.get_connection()?)),
        })
    }

    pub async fn connect_async(&self) -> RedisResult<AsyncConn> {
        Ok(match self {
            // Not a bare multiplexed connection: once its socket breaks (a Redis
            // restart, a failover, a dropped idle connection) every request on it
            // fails at once, for good. The manager connects again behind it; one
            // retry, not its default six (about 6 s of backoff), so that requests
            // while Redis is away fail fast and each later one tries again.
            Client::Single(c) => AsyncConn::Single(
                c.get_connection_manager_with_config(ConnectionManagerConfig::new().set_number_of_retries(1)).await?,
            ),
            Client::Cluster(c) => AsyncConn::Cluster(c.get_async_connection().await?),
        })
    }

    pub fn pipe(&self) -> Pipe {
        match self {
            Client::Single(_) => Pipe::Single(redis::pipe()),
            Client::Cluster(_) => Pipe::Cluster(redis::cluster::cluster_pipe()),
        }
    }
}

pub enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    /// Runs `cmd` on every primary (a cluster's keys are spread over them) and
    /// sums what `each` makes of each node's answers.
    pub fn on_each_primary(
        &mut self,
        each: &mut dyn FnMut(&mut dyn NodeRunner) -> RedisResult<u64>,
    ) -> RedisResult<u64> {
        match self {
            Conn::Single(c) => each(&mut SingleNode(c)),
            Conn::Cluster(c) => {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(c)?;
                let mut total = 0;
                for line in nodes.lines() {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
                    if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                        continue;
                    }
                    let addr = addr.split('@').next().unwrap_or(addr);
                    let Some((host, port)) = addr.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?))) else {
                        continue;
                    };
                    total += each(&mut ClusterNode { conn: c.as_mut(), host: host.to_owned(), port })?;
                }
                Ok(total)
            }
        }
    }
}

/// Sends commands to one node.
pub trait NodeRunner {
    fn run(&mut self, cmd: &Cmd) -> RedisResult<Value>;
}

struct SingleNode<'a>(&'a mut redis::Connection);

impl NodeRunner for SingleNode<'_> {
    fn run(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.0.req_command(cmd)
    }
}

struct ClusterNode<'a> {
    conn: &'a mut ClusterConnection,
    host: String,
    port: u16,
}

impl NodeRunner for ClusterNode<'_> {
    fn run(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let to = SingleNodeRoutingInfo::ByAddress { host: self.host.clone(), port: self.port };
        self.conn.route_command(cmd, RoutingInfo::SingleNode(to))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Single(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}

/// Commands sent together (not a transaction: a cluster cannot run one
/// across nodes, so the store orders its writes instead).
pub enum Pipe {
    Single(Pipeline),
    Cluster(ClusterPipeline),
}

macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(pub fn $name(&mut self, $($arg: $ty),*) -> &mut Self {
            match self {
                Pipe::Single(p) => { p.$name($($arg),*).ignore(); }
                Pipe::Cluster(p) => { p.$name($($arg),*).ignore(); }
            }
            self
        })*
    };
}

impl Pipe {
    forward! {
        set_ex(key: String, value: Vec<u8>, secs: u64);
        del(key: String);
        hset(key: String, field: String, value: Vec<u8>);
    }

    /// A command whose answer is wanted.
    pub fn get(&mut self, key: String) -> &mut Self {
        match self {
            Pipe::Single(p) => {
                p.get(key);
            }
            Pipe::Cluster(p) => {
                p.get(key);
            }
        }
        self
    }

    /// A command whose answer is wanted.
    pub fn hget(&mut self, key: String, field: String) -> &mut Self {
        match self {
            Pipe::Single(p) => {
                p.hget(key, field);
            }
            Pipe::Cluster(p) => {
                p.hget(key, field);
            }
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Pipe::Single(p) => p.cmd_iter().next().is_none(),
            Pipe::Cluster(p) => p.cmd_iter().next().is_none(),
        }
    }

    pub fn query<T: redis::FromRedisValue>(&self, conn: &mut Conn) -> RedisResult<T> {
        match (self, conn) {
            (Pipe::Single(p), Conn::Single(c)) => p.query(c),
            (Pipe::Cluster(p), Conn::Cluster(c)) => p.query(c.as_mut()),
            _ => unreachable!("a pipe is made by the client of its connection"),
        }
    }
}

#[derive(Clone)]
pub enum AsyncConn {
    Single(ConnectionManager),
    Cluster(AsyncClusterConnection),
}

impl redis::aio::ConnectionLike for AsyncConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AsyncConn::Single(c) => c.req_packed_command(cmd),
            AsyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AsyncConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            AsyncConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AsyncConn::Single(c) => c.get_db(),
            AsyncConn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_its_nodes_with_the_password_on_each() {
        let Client::Cluster(_) = Client::open("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/").unwrap() else {
            panic!("a cluster URL made a single-server client");
        };
        let Client::Single(_) = Client::open("redis://127.0.0.1:6379/0").unwrap() else {
            panic!("a server URL made a cluster client");
        };
    }
}
