//! The Redis online store, on one server or a Redis Cluster. Layout, under a
//! key prefix:
//!
//! - `{prefix}:s:{session}`: a session's state (postcard, a format byte
//!   first), expiring after the session TTL. A session's events all come
//!   through one input partition;
//! - `{prefix}:u:{user_id}`, `{prefix}:p:{product_id}`: a hash per user and
//!   product, one field per input partition holding that partition's part of
//!   the state. Streamers that split a topic's partitions between them each
//!   write only their own fields, so nothing is shared but the key; readers
//!   merge the fields (`Entities::merge`: the same answer as one state of
//!   all the events);
//! - every stored state carries the input offset after the batch that wrote
//!   it, so a streamer that died part-way through writing a batch skips, when
//!   it replays, what each entity already holds;
//! - `{prefix}:offsets`: a hash `topic/partition` → next offset to read,
//!   advanced by compare-and-set: a streamer that lost its partition to
//!   another but wrote on is stopped at its next batch;
//! - `{prefix}:watermarks`: partition → newest event time; `{prefix}:layout`,
//!   this layout's number, so an older layout is refused, not misread.
//!
//! One key is one hash slot, so every write touches single keys and the
//! store runs unchanged on a cluster. Without a transaction across keys, a
//! batch is written in an order that keeps a replay exact: products, users,
//! sessions, then the offsets (see `cartflow_features::Held`). Readers see
//! a batch land entity by entity.

mod conn;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use cartflow_core::CommittedOffset;
use cartflow_core::time::Micros;
use cartflow_features::state::{ProductState, SessionState, UserState};
use cartflow_features::{CartQuery, Entities, EntityView, Held, Map};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use conn::CLUSTER_SCHEMES;
use conn::{AsyncConn, Client, Conn, Pipe};

use crate::{Answer, ApplyStats, Change, EntityCounts, OnlineError, OnlineReader, OnlineStore, Result, codec};

/// How long the writer's connection may sit unused before it is checked.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

pub struct RedisStore {
    client: Client,
    url: String,
    prefix: String,
    session_ttl: Micros,
    /// The working copy of the partitions this process writes.
    shards: Mutex<BTreeMap<u32, Shard>>,
    /// The writer's connection, and when it was last used.
    conn: Mutex<Option<(Conn, std::time::Instant)>>,
    reader: tokio::sync::OnceCell<AsyncConn>,
}

/// One input partition's part of the state, as this process last wrote it.
struct Shard {
    entities: Entities,
    /// The input offset after the batch that last wrote each entity.
    sessions: Map<String, u64>,
    users: Map<i64, u64>,
    products: Map<i64, u64>,
    /// The partition's stored offset, what the next write expects to find
    /// (`None` until read).
    stored: Option<Option<u64>>,
}

/// An entity's stored state, when there is one.
type Stored = Option<Vec<u8>>;

/// The key layout above; 1 was a hash per entity, 2 a string per entity
/// written by one streamer.
const LAYOUT: u32 = 3;
/// Keys per pipeline when writing everything (materialize) or reading a batch's entities.
const CHUNK: usize = 5_000;

/// Sets `offsets[ARGV[i]]` to `ARGV[i+2]` for each triple if it holds
/// `ARGV[i+1]` (empty: nothing yet); returns the first field that did not.
/// Hashed once per process, not per batch.
static ADVANCE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
for i = 1, #ARGV, 3 do
  local now = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if now ~= ARGV[i + 1] then return ARGV[i] end
end
for i = 1, #ARGV, 3 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2]) end
return ''
",
    )
});

impl RedisStore {
    /// `redis://…` for one server, `redis+cluster://host:port,…` for a cluster.
    pub fn open(url: &str, prefix: &str, session_ttl: Micros) -> Result<Self> {
        let client = Client::open(url).map_err(|e| redis_error(url, e))?;
        let store = RedisStore {
            client,
            // Kept for messages only, so without its password.
            url: cartflow_core::redact::url(url),
            prefix: prefix.to_owned(),
            session_ttl,
            shards: Mutex::new(BTreeMap::new()),
            conn: Mutex::new(None),
            reader: tokio::sync::OnceCell::new(),
        };
        // Fail now, with the URL in the message, rather than at the first event.
        let layout: Option<u32> = store.with_conn(|c| redis::cmd("GET").arg(store.key("layout")).query(c))?;
        let offsets: bool = store.with_conn(|c| redis::cmd("EXISTS").arg(store.key("offsets")).query(c))?;
        match (layout, offsets) {
            (Some(LAYOUT), _) => {}
            (None, false) => store.with_conn(|c| redis::cmd("SET").arg(store.key("layout")).arg(LAYOUT).query(c))?,
            (found, _) => {
                return Err(OnlineError::Config(format!(
                    "redis at {}: prefix {prefix:?} holds an online store of layout {} (this cartflow writes \
                     layout {LAYOUT}); delete its keys (`redis-cli --scan --pattern '{prefix}:*' | xargs \
                     redis-cli del`) and rebuild it with `cartflow features materialize`",
                    store.url,
                    found.unwrap_or(1)
                )));
            }
        }
        Ok(store)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn session_key(&self, s: &str) -> String {
        format!("{}:s:{s}", self.prefix)
    }

    fn user_key(&self, u: i64) -> String {
        format!("{}:u:{u}", self.prefix)
    }

    fn product_key(&self, p: i64) -> String {
        format!("{}:p:{p}", self.prefix)
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>) -> Result<T> {
        let mut slot = self.conn.lock().expect("redis connection lock poisoned");
        // A connection idle for a while is checked first, as a pool checks one
        // before lending it: Redis may have restarted meanwhile, and a write
        // must not be the request that finds out (a PING can be sent again).
        if let Some((conn, used)) = slot.as_mut()
            && used.elapsed() > IDLE_CHECK
            && redis::cmd("PING").query::<String>(conn).is_err()
        {
            *slot = None;
        }
        if slot.is_none() {
            let conn = self.client.connect().map_err(|e| redis_error(&self.url, e))?;
            *slot = Some((conn, std::time::Instant::now()));
        }
        let (conn, used) = slot.as_mut().expect("connected");
        let result = f(conn);
        *used = std::time::Instant::now();
        if result.is_err() {
            // Reconnect next time rather than reuse a connection in an unknown state.
            *slot = None;
        }
        result.map_err(|e| redis_error(&self.url, e))
    }

    /// A partition's working copy.
    fn shard<'s>(&self, shards: &'s mut BTreeMap<u32, Shard>, partition: u32) -> &'s mut Shard {
        shards.entry(partition).or_insert_with(|| Shard {
            entities: Entities::new(self.session_ttl),
            sessions: Map::default(),
            users: Map::default(),
            products: Map::default(),
            stored: None,
        })
    }

    /// The input position stored for `topic/partition`.
    fn stored_offset(&self, field: &str) -> Result<Option<u64>> {
        self.with_conn(|c| redis::cmd("HGET").arg(self.key("offsets")).arg(field).query(c))
    }

    /// Reads the entities of `changes` that the partition's working copy lacks.
    fn read_through(&self, shard: &mut Shard, partition: u32, changes: &[&Change]) -> Result<()> {
        let sessions: BTreeSet<&str> = changes
            .iter()
            .filter_map(|c| c.event.user_session.as_deref())
            .filter(|s| !shard.sessions.contains_key(*s))
            .collect();
        let users: BTreeSet<i64> =
            changes.iter().map(|c| c.event.user_id).filter(|u| !shard.users.contains_key(u)).collect();
        let products: BTreeSet<i64> =
            changes.iter().map(|c| c.event.product_id).filter(|p| !shard.products.contains_key(p)).collect();
        let field = partition.to_string();
        let mut keys: Vec<(String, bool)> = Vec::new();
        keys.extend(sessions.iter().map(|s| (self.session_key(s), false)));
        keys.extend(users.iter().map(|u| (self.user_key(*u), true)));
        keys.extend(products.iter().map(|p| (self.product_key(*p), true)));
        let mut found: Vec<Stored> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let mut pipe = self.client.pipe();
            for (key, hashed) in chunk {
                if *hashed {
                    pipe.hget(key.clone(), field.clone());
                } else {
                    pipe.get(key.clone());
                }
            }
            found.extend(self.with_conn(|c| pipe.query::<Vec<Stored>>(c))?);
        }
        let mut found = found.into_iter().zip(keys.iter().map(|(k, _)| k));
        let sessions = sessions.into_iter().map(str::to_owned);
        take_in(sessions, &mut found, &mut shard.entities.sessions, &mut shard.sessions)?;
        take_in(users, &mut found, &mut shard.entities.users, &mut shard.users)?;
        take_in(products, &mut found, &mut shard.entities.products, &mut shard.products)
    }

    /// Deletes every key under the prefix.
    fn clear(&self) -> Result<u64> {
        let pattern = format!("{}:*", self.prefix);
        let mut keys = Vec::new();
        self.with_conn(|c| {
            c.on_each_primary(&mut |node| {
                let found = scan(node, &pattern)?;
                let n = found.len() as u64;
                keys.extend(found);
                Ok(n)
            })
        })?;
        // A DEL per key, pipelined: a cluster refuses one DEL of keys in several slots.
        for chunk in keys.chunks(CHUNK) {
            let mut pipe = self.client.pipe();
            for key in chunk {
                pipe.del(key.clone());
            }
            self.with_conn(|c| pipe.query::<()>(c))?;
        }
        Ok(keys.len() as u64)
    }

    async fn reader(&self) -> Result<AsyncConn> {
        let conn =
            self.reader.get_or_try_init(|| self.client.connect_async()).await.map_err(|e| redis_error(&self.url, e))?;
        Ok(conn.clone())
    }
}

/// Every key matching `pattern` on one node.
fn scan(node: &mut dyn conn::NodeRunner, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let answer = node.run(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000))?;
        let (next, found): (u64, Vec<String>) = redis::from_redis_value(answer)?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Puts what Redis answered for `ids` (in order) into a working copy: the
/// state, if stored, and the offset that wrote it.
fn take_in<'k, K: std::hash::Hash + Eq + Clone, T: DeserializeOwned>(
    ids: impl IntoIterator<Item = K>,
    found: &mut impl Iterator<Item = (Stored, &'k String)>,
    states: &mut Map<K, T>,
    marks: &mut Map<K, u64>,
) -> Result<()> {
    for id in ids {
        let (bytes, key) = found.next().expect("one answer per key");
        let (through, state) = decode_marked::<T>(bytes, key)?;
        if let Some(state) = state {
            states.insert(id.clone(), state);
        }
        marks.insert(id, through);
    }
    Ok(())
}

/// A stored state and the offset after the batch that wrote it (0: none stored).
fn decode_marked<T: DeserializeOwned>(bytes: Stored, key: &str) -> Result<(u64, Option<T>)> {
    match bytes {
        None => Ok((0, None)),
        Some(b) => {
            let (through, state): (u64, T) = codec::decode(&b, key)?;
            Ok((through, Some(state)))
        }
    }
}

fn encode_marked<T: Serialize>(through: u64, state: &T) -> Vec<u8> {
    codec::encode(&(through, state))
}

/// Merges the partitions' parts of one user or product.
fn merged<T: DeserializeOwned + Default>(
    parts: Vec<(String, Vec<u8>)>,
    key: &str,
    merge: impl Fn(&mut T, &T),
) -> Result<Option<T>> {
    let mut out: Option<T> = None;
    for (_, bytes) in parts {
        let (_, part): (u64, T) = codec::decode(&bytes, key)?;
        merge(out.get_or_insert_with(T::default), &part);
    }
    Ok(out)
}

/// Whether the entity's stored state was written after the record at `offset`.
fn holds<K, Q>(marks: &Map<K, u64>, key: &Q, offset: u64) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    marks.get(key).is_some_and(|through| *through > offset)
}

fn ttl_secs(ttl: Micros) -> u64 {
    (ttl / 1_000_000).max(1) as u64
}

/// `url` is the redacted one; the redis crate's own message may quote the URL it was given.
fn redis_error(url: &str, e: redis::RedisError) -> OnlineError {
    OnlineError::Config(format!(
        "redis at {}: {}",
        cartflow_core::redact::url(url),
        cartflow_core::redact::text(&e.to_string())
    ))
}

/// What one batch writes, in the order that keeps a replay exact.
struct Writes {
    products: Pipe,
    users: Pipe,
    sessions: Pipe,
    /// `field, expected, new` triples for [`ADVANCE`].
    advance: Vec<String>,
    watermarks: Vec<(u32, Micros)>,
}

impl OnlineStore for RedisStore {
    fn apply(&self, changes: &[Change], offsets: &[CommittedOffset]) -> Result<ApplyStats> {
        let mut by_partition: BTreeMap<u32, Vec<&Change>> = BTreeMap::new();
        for c in changes {
            by_partition.entry(c.partition).or_default().push(c);
        }
        let given_for = |p: u32| offsets.iter().find(|o| o.partition == p);
        for o in offsets {
            by_partition.entry(o.partition).or_default();
        }
        let mut shards = self.shards.lock().expect("redis shards lock poisoned");
        let mut stats = ApplyStats::default();
        let mut w = Writes {
            products: self.client.pipe(),
            users: self.client.pipe(),
            sessions: self.client.pipe(),
            advance: Vec::new(),
            watermarks: Vec::new(),
        };
        for (partition, changes) in by_partition {
            let given = given_for(partition);
            let shard = self.shard(&mut shards, partition);
            self.read_through(shard, partition, &changes)?;
            // The offset after this batch: what every entity it writes is marked with.
            let end = given.map(|o| o.offset).or(changes.iter().map(|c| c.offset + 1).max()).unwrap_or(0);
            let mut touched = Touched::default();
            for c in &changes {
                let e = &c.event;
                let decided = match &e.user_session {
                    Some(s) => holds(&shard.sessions, s.as_str(), c.offset),
                    None => holds(&shard.users, &e.user_id, c.offset),
                };
                if decided {
                    stats.duplicates += 1;
                    continue;
                }
                let held = Held {
                    user: holds(&shard.users, &e.user_id, c.offset),
                    product: holds(&shard.products, &e.product_id, c.offset),
                };
                stats.add(shard.entities.apply_held(e, c.delete, held));
                touched.add(c, held);
            }
            let field = partition.to_string();
            for p in touched.products {
                if let Some(state) = shard.entities.products.get(&p) {
                    w.products.hset(self.product_key(p), field.clone(), encode_marked(end, state));
                    shard.products.insert(p, end);
                }
            }
            for u in touched.users {
                if let Some(state) = shard.entities.users.get(&u) {
                    w.users.hset(self.user_key(u), field.clone(), encode_marked(end, state));
                    shard.users.insert(u, end);
                }
            }
            for s in touched.sessions {
                match shard.entities.sessions.get(&s) {
                    Some(state) => {
                        w.sessions.set_ex(self.session_key(&s), encode_marked(end, state), ttl_secs(self.session_ttl))
                    }
                    // Emptied by deletes.
                    None => w.sessions.del(self.session_key(&s)),
                };
                shard.sessions.insert(s, end);
            }
            if let Some(o) = given {
                let field = format!("{}/{}", o.topic, o.partition);
                let stored = match shard.stored {
                    Some(stored) => stored,
                    None => self.stored_offset(&field)?,
                };
                w.advance.extend([field, stored.map(|s| s.to_string()).unwrap_or_default(), o.offset.to_string()]);
                shard.stored = Some(Some(o.offset));
            }
            if shard.entities.watermark != Micros::MIN {
                w.watermarks.push((partition, shard.entities.watermark));
            }
        }
        let written = self.write(w);
        if written.is_err() {
            // What was written is unknown: read it again before the next batch.
            shards.clear();
        }
        written?;
        Ok(stats)
    }

    fn offsets(&self) -> Result<Vec<CommittedOffset>> {
        let stored: Vec<(String, u64)> = self.with_conn(|c| redis::cmd("HGETALL").arg(self.key("offsets")).query(c))?;
        stored
            .into_iter()
            .map(|(tp, offset)| {
                let (topic, partition) =
                    tp.rsplit_once('/').and_then(|(t, p)| Some((t, p.parse().ok()?))).ok_or_else(|| {
                        OnlineError::Corrupt { what: self.key("offsets"), message: format!("field {tp:?}") }
                    })?;
                Ok(CommittedOffset { topic: topic.to_owned(), partition, offset, metadata: String::new() })
            })
            .collect()
    }

    fn shared(&self) -> bool {
        true
    }

    fn forget(&self, partitions: &[u32]) {
        let mut shards = self.shards.lock().expect("redis shards lock poisoned");
        for p in partitions {
            shards.remove(p);
        }
    }

    fn expire(&self) -> Result<usize> {
        // Redis expires the stored sessions itself; this trims the working copy.
        let mut shards = self.shards.lock().expect("redis shards lock poisoned");
        let mut n = 0;
        for shard in shards.values_mut() {
            for gone in shard.entities.expire_sessions() {
                shard.sessions.remove(&gone);
                n += 1;
            }
        }
        Ok(n)
    }

    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    fn delete(&self) -> Result<()> {
        self.clear()?;
        self.shards.lock().expect("redis shards lock poisoned").clear();
        Ok(())
    }

    fn replace(&self, partitions: Vec<Entities>, offsets: &[CommittedOffset]) -> Result<EntityCounts> {
        self.clear()?;
        self.with_conn(|c| redis::cmd("SET").arg(self.key("layout")).arg(LAYOUT).query::<()>(c))?;
        let mut counts = EntityCounts::default();
        let mut pipe = self.client.pipe();
        let mut queued = 0;
        let flush = |pipe: &mut Pipe, queued: &mut usize, force: bool| -> Result<()> {
            if *queued >= CHUNK || (force && *queued > 0) {
                self.with_conn(|c| pipe.query::<()>(c))?;
                *pipe = self.client.pipe();
                *queued = 0;
            }
            Ok(())
        };
        for (partition, entities) in partitions.iter().enumerate() {
            let through = offsets.iter().find(|o| o.partition == partition as u32).map_or(0, |o| o.offset);
            let field = partition.to_string();
            for (k, s) in &entities.sessions {
                pipe.set_ex(self.session_key(k), encode_marked(through, s), ttl_secs(self.session_ttl));
                queued += 1;
                flush(&mut pipe, &mut queued, false)?;
            }
            for (k, u) in &entities.users {
                pipe.hset(self.user_key(*k), field.clone(), encode_marked(through, u));
                queued += 1;
                flush(&mut pipe, &mut queued, false)?;
            }
            for (k, p) in &entities.products {
                pipe.hset(self.product_key(*k), field.clone(), encode_marked(through, p));
                queued += 1;
                flush(&mut pipe, &mut queued, false)?;
            }
            if entities.watermark != Micros::MIN {
                pipe.hset(self.key("watermarks"), field, entities.watermark.to_string().into_bytes());
                queued += 1;
            }
            counts.sessions += entities.sessions.len() as u64;
        }
        flush(&mut pipe, &mut queued, true)?;
        // The offsets last: a store cut off half-way resumes nowhere it should not.
        for o in offsets {
            let field = format!("{}/{}", o.topic, o.partition);
            self.with_conn(|c| redis::cmd("HSET").arg(self.key("offsets")).arg(field).arg(o.offset).query::<()>(c))?;
        }
        self.shards.lock().expect("redis shards lock poisoned").clear();
        // A user or product has a part in each partition that saw it: count each once.
        let distinct = |ids: &mut dyn Iterator<Item = i64>| ids.collect::<BTreeSet<i64>>().len() as u64;
        counts.users = distinct(&mut partitions.iter().flat_map(|p| p.users.keys().copied()));
        counts.products = distinct(&mut partitions.iter().flat_map(|p| p.products.keys().copied()));
        Ok(counts)
    }
}

impl RedisStore {
    /// Products, users, sessions, then the offsets (if they still hold what
    /// this process last wrote), then the watermarks.
    fn write(&self, w: Writes) -> Result<()> {
        for pipe in [&w.products, &w.users, &w.sessions] {
            if !pipe.is_empty() {
                self.with_conn(|c| pipe.query::<()>(c))?;
            }
        }
        if !w.advance.is_empty() {
            let mut call = ADVANCE.key(self.key("offsets"));
            for arg in &w.advance {
                call.arg(arg);
            }
            let refused: String = self.with_conn(|c| call.invoke(c))?;
            if !refused.is_empty() {
                return Err(OnlineError::Taken { input: refused });
            }
        }
        if !w.watermarks.is_empty() {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(self.key("watermarks"));
            for (p, t) in &w.watermarks {
                cmd.arg(p).arg(t);
            }
            self.with_conn(|c| cmd.query::<()>(c))?;
        }
        Ok(())
    }
}

/// The entities a partition's batch changed, each once.
#[derive(Default)]
struct Touched {
    sessions: BTreeSet<String>,
    users: BTreeSet<i64>,
    products: BTreeSet<i64>,
}

impl Touched {
    fn add(&mut self, c: &Change, held: Held) {
        if let Some(s) = &c.event.user_session {
            self.sessions.insert(s.clone());
        }
        if !held.user {
            self.users.insert(c.event.user_id);
        }
        if !held.product {
            self.products.insert(c.event.product_id);
        }
    }
}

impl OnlineReader for RedisStore {
    fn counts(&self) -> Result<EntityCounts> {
        let count = |kind: &str| -> Result<u64> {
            let pattern = format!("{}:{kind}:*", self.prefix);
            self.with_conn(|c| c.on_each_primary(&mut |node| Ok(scan(node, &pattern)?.len() as u64)))
        };
        Ok(EntityCounts { sessions: count("s")?, users: count("u")?, products: count("p")? })
    }

    fn watermark(&self) -> BoxFuture<'_, Result<Option<Micros>>> {
        Box::pin(async move {
            let mut conn = self.reader().await?;
            let all: Vec<Micros> = redis::cmd("HVALS")
                .arg(self.key("watermarks"))
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&self.url, e))?;
            Ok(all.into_iter().max())
        })
    }

    fn features<'a>(&'a self, q: &'a CartQuery<'a>) -> BoxFuture<'a, Result<Answer>> {
        Box::pin(async move {
            let conn = self.reader().await?;
            let (user_key, product_key) = (self.user_key(q.user_id), self.product_key(q.product_id));
            let session_key = q.user_session.map(|s| self.session_key(s));
            let err = |e| redis_error(&self.url, e);
            // Three keys, perhaps on three nodes: asked at once (one round trip on one server).
            let (mut c1, mut c2, mut c3) = (conn.clone(), conn.clone(), conn);
            let user = redis::cmd("HGETALL").arg(&user_key).to_owned();
            let product = redis::cmd("HGETALL").arg(&product_key).to_owned();
            let session = async {
                match &session_key {
                    Some(k) => redis::cmd("GET").arg(k).query_async::<Stored>(&mut c3).await,
                    None => Ok(None),
                }
            };
            let (u, p, s) = futures::future::try_join3(
                user.query_async::<Vec<(String, Vec<u8>)>>(&mut c1),
                product.query_async::<Vec<(String, Vec<u8>)>>(&mut c2),
                session,
            )
            .await
            .map_err(err)?;
            let session: Option<SessionState> = match (&session_key, s) {
                (Some(key), bytes @ Some(_)) => decode_marked(bytes, key)?.1,
                _ => None,
            };
            let user: Option<UserState> = merged(u, &user_key, UserState::merge)?;
            let product: Option<ProductState> = merged(p, &product_key, ProductState::merge)?;
            let view = EntityView { session: session.as_ref(), user: user.as_ref(), product: product.as_ref() };
            Ok(Answer::of(q, view, self.session_ttl))
        })
    }

    fn describe(&self) -> String {
        format!("{} (prefix {:?})", self.url, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &str = "redis://127.0.0.1:6379/0";

    #[test]
    fn a_prefix_written_in_another_layout_is_refused_by_name() {
        let prefix = format!("cartflow-test-layout-{}", std::process::id());
        let mut c = redis::Client::open(REDIS).unwrap().get_connection().unwrap();
        // Layout 2: a string per entity and offsets, layout key 2.
        let _: () = redis::cmd("SET").arg(format!("{prefix}:layout")).arg(2).query(&mut c).unwrap();
        let err = RedisStore::open(REDIS, &prefix, 1_000_000).err().expect("refused").to_string();
        assert!(err.contains("layout 2") && err.contains(&prefix), "{err}");

        let _: () = redis::cmd("DEL").arg(format!("{prefix}:layout")).query(&mut c).unwrap();
        // An empty prefix is taken and marked; opened again, it is the same layout.
        let store = RedisStore::open(REDIS, &prefix, 1_000_000).unwrap();
        let layout: u32 = redis::cmd("GET").arg(format!("{prefix}:layout")).query(&mut c).unwrap();
        assert_eq!(layout, LAYOUT);
        RedisStore::open(REDIS, &prefix, 1_000_000).unwrap();
        store.clear().unwrap();
    }
}
