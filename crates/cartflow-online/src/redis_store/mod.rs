//! The Redis online store. Layout, under a key prefix:
//!
//! - `{prefix}:s:{session}`, `{prefix}:u:{user_id}`, `{prefix}:p:{product_id}`:
//!   one string per entity, its state (postcard, a format byte first);
//!   sessions expire after the session TTL. Strings, not hashes, so that a
//!   request's three entities are one `MGET`: Redis's cost is per command;
//! - `{prefix}:offsets`: a hash `topic/partition` → next offset to read;
//! - `{prefix}:watermark`, the newest event time, and `{prefix}:layout`,
//!   this layout's number, so an older layout is refused, not misread.
//!
//! The streamer keeps a working copy of the entities it has touched (read
//! through from Redis on first use, so a restarted streamer picks up where
//! the last left off) and writes each batch's changed entities and the input
//! offsets in one MULTI/EXEC pipeline: the stored state and offsets never
//! disagree. API replicas read with one `MGET` per request.

use std::collections::BTreeSet;
use std::sync::Mutex;

use cartflow_core::CommittedOffset;
use cartflow_core::time::Micros;
use cartflow_features::state::{ProductState, SessionState, UserState};
use cartflow_features::{CartQuery, Entities, EntityView};
use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;

use crate::{Answer, ApplyStats, Change, EntityCounts, OnlineError, OnlineReader, OnlineStore, Result, codec};

pub struct RedisStore {
    client: redis::Client,
    url: String,
    prefix: String,
    session_ttl: Micros,
    cache: Mutex<Entities>,
    conn: Mutex<Option<redis::Connection>>,
    reader: tokio::sync::OnceCell<MultiplexedConnection>,
}

/// An entity's stored state, when there is one.
type Stored = Option<Vec<u8>>;

/// The key layout above; 1 was a hash per entity.
const LAYOUT: u32 = 2;
/// Keys per pipeline when writing everything (materialize).
const CHUNK: usize = 5_000;

impl RedisStore {
    pub fn open(url: &str, prefix: &str, session_ttl: Micros) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| redis_error(url, e))?;
        let store = RedisStore {
            client,
            // Kept for messages only, so without its password.
            url: cartflow_core::redact::url(url),
            prefix: prefix.to_owned(),
            session_ttl,
            cache: Mutex::new(Entities::new(session_ttl)),
            conn: Mutex::new(None),
            reader: tokio::sync::OnceCell::new(),
        };
        // Fail now, with the URL in the message, rather than at the first event.
        let (layout, offsets): (Option<u32>, bool) =
            store.with_conn(|c| redis::pipe().get(store.layout_key()).exists(store.offsets_key()).query(c))?;
        match (layout, offsets) {
            (Some(LAYOUT), _) => {}
            (None, false) => store.with_conn(|c| c.set::<_, _, ()>(store.layout_key(), LAYOUT))?,
            (found, _) => {
                return Err(OnlineError::Config(format!(
                    "redis at {url}: prefix {prefix:?} holds an online store of layout {} (this cartflow writes \
                     layout {LAYOUT}); delete its keys (`redis-cli --scan --pattern '{prefix}:*' | xargs \
                     redis-cli del`) and rebuild it with `cartflow features materialize`",
                    found.unwrap_or(1)
                )));
            }
        }
        Ok(store)
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

    fn watermark_key(&self) -> String {
        format!("{}:watermark", self.prefix)
    }

    fn offsets_key(&self) -> String {
        format!("{}:offsets", self.prefix)
    }

    fn layout_key(&self) -> String {
        format!("{}:layout", self.prefix)
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        let mut slot = self.conn.lock().expect("redis connection lock poisoned");
        if slot.is_none() {
            *slot = Some(self.client.get_connection()?);
        }
        let result = f(slot.as_mut().expect("connected"));
        if result.is_err() {
            // Reconnect next time rather than reuse a connection in an unknown state.
            *slot = None;
        }
        result.map_err(|e| redis_error(&self.url, e))
    }

    /// Reads the touched entities the working copy lacks.
    fn read_through(&self, cache: &mut Entities, touched: &Touched<'_>) -> Result<()> {
        let sessions: Vec<&str> =
            touched.sessions.iter().copied().filter(|s| !cache.sessions.contains_key(*s)).collect();
        let users: Vec<i64> = touched.users.iter().copied().filter(|u| !cache.users.contains_key(u)).collect();
        let products: Vec<i64> = touched.products.iter().copied().filter(|p| !cache.products.contains_key(p)).collect();
        if sessions.is_empty() && users.is_empty() && products.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = (sessions.iter().map(|s| self.session_key(s)))
            .chain(users.iter().map(|u| self.user_key(*u)))
            .chain(products.iter().map(|p| self.product_key(*p)))
            .collect();
        let mut found: Vec<Stored> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            found.extend(self.with_conn(|c| redis::cmd("MGET").arg(chunk).query::<Vec<Stored>>(c))?);
        }
        let mut found = found.into_iter();
        for s in sessions {
            if let Some(bytes) = found.next().flatten() {
                cache.sessions.insert(s.to_owned(), codec::decode(&bytes, &self.session_key(s))?);
            }
        }
        for u in users {
            if let Some(bytes) = found.next().flatten() {
                cache.users.insert(u, codec::decode(&bytes, &self.user_key(u))?);
            }
        }
        for p in products {
            if let Some(bytes) = found.next().flatten() {
                cache.products.insert(p, codec::decode(&bytes, &self.product_key(p))?);
            }
        }
        Ok(())
    }

    fn put_session(&self, pipe: &mut redis::Pipeline, key: &str, s: &SessionState) {
        pipe.set_ex(self.session_key(key), codec::encode(s), ttl_secs(self.session_ttl)).ignore();
    }

    fn put_user(&self, pipe: &mut redis::Pipeline, id: i64, u: &UserState) {
        pipe.set(self.user_key(id), codec::encode(u)).ignore();
    }

    fn put_product(&self, pipe: &mut redis::Pipeline, id: i64, p: &ProductState) {
        pipe.set(self.product_key(id), codec::encode(p)).ignore();
    }

    fn put_offsets(&self, pipe: &mut redis::Pipeline, offsets: &[CommittedOffset]) {
        for o in offsets {
            pipe.hset(self.offsets_key(), format!("{}/{}", o.topic, o.partition), o.offset).ignore();
        }
    }

    /// Deletes every key under the prefix.
    fn clear(&self) -> Result<u64> {
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = self.with_conn(|c| c.scan_match(&pattern)?.collect())?;
        for chunk in keys.chunks(CHUNK) {
            self.with_conn(|c| redis::cmd("DEL").arg(chunk).query::<()>(c))?;
        }
        Ok(keys.len() as u64)
    }

    async fn reader(&self) -> Result<MultiplexedConnection> {
        let conn = self
            .reader
            .get_or_try_init(|| self.client.get_multiplexed_async_connection())
            .await
            .map_err(|e| redis_error(&self.url, e))?;
        Ok(conn.clone())
    }
}

use redis::Commands;

/// The entities a batch of changes touches, each once.
struct Touched<'a> {
    sessions: BTreeSet<&'a str>,
    users: BTreeSet<i64>,
    products: BTreeSet<i64>,
}

impl<'a> Touched<'a> {
    fn of(changes: &'a [Change]) -> Self {
        Touched {
            sessions: changes.iter().filter_map(|c| c.event.user_session.as_deref()).collect(),
            users: changes.iter().map(|c| c.event.user_id).collect(),
            products: changes.iter().map(|c| c.event.product_id).collect(),
        }
    }
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

impl OnlineStore for RedisStore {
    fn apply(&self, changes: &[Change], offsets: &[CommittedOffset]) -> Result<ApplyStats> {
        let touched = Touched::of(changes);
        let mut cache = self.cache.lock().expect("redis cache lock poisoned");
        self.read_through(&mut cache, &touched)?;
        let mut stats = ApplyStats::default();
        for c in changes {
            stats.add(cache.apply(&c.event, c.delete));
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for s in touched.sessions {
            match cache.sessions.get(s) {
                Some(state) => self.put_session(&mut pipe, s, state),
                // Emptied by deletes.
                None => {
                    pipe.del(self.session_key(s)).ignore();
                }
            }
        }
        for u in touched.users {
            if let Some(state) = cache.users.get(&u) {
                self.put_user(&mut pipe, u, state);
            }
        }
        for p in touched.products {
            if let Some(state) = cache.products.get(&p) {
                self.put_product(&mut pipe, p, state);
            }
        }
        self.put_offsets(&mut pipe, offsets);
        if cache.watermark != Micros::MIN {
            pipe.set(self.watermark_key(), cache.watermark).ignore();
        }
        self.with_conn(|c| pipe.query::<()>(c))?;
        Ok(stats)
    }

    fn offsets(&self) -> Result<Vec<CommittedOffset>> {
        let stored: Vec<(String, u64)> = self.with_conn(|c| c.hgetall(self.offsets_key()))?;
        stored
            .into_iter()
            .map(|(tp, offset)| {
                let (topic, partition) =
                    tp.rsplit_once('/').and_then(|(t, p)| Some((t, p.parse().ok()?))).ok_or_else(|| {
                        OnlineError::Corrupt { what: self.offsets_key(), message: format!("field {tp:?}") }
                    })?;
                Ok(CommittedOffset { topic: topic.to_owned(), partition, offset, metadata: String::new() })
            })
            .collect()
    }

    fn expire(&self) -> Result<usize> {
        // Redis expires the stored sessions itself; this trims the working copy.
        Ok(self.cache.lock().expect("redis cache lock poisoned").expire_sessions().len())
    }

    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    fn replace(&self, entities: Entities, offsets: &[CommittedOffset]) -> Result<EntityCounts> {
        self.clear()?;
        let mut pipe = redis::pipe();
        pipe.set(self.layout_key(), LAYOUT).ignore();
        let mut queued = 1;
        let flush = |pipe: &mut redis::Pipeline, queued: &mut usize, force: bool| -> Result<()> {
            if *queued >= CHUNK || (force && *queued > 0) {
                self.with_conn(|c| pipe.query::<()>(c))?;
                pipe.clear();
                *queued = 0;
            }
            Ok(())
        };
        for (k, s) in &entities.sessions {
            self.put_session(&mut pipe, k, s);
            queued += 1;
            flush(&mut pipe, &mut queued, false)?;
        }
        for (k, u) in &entities.users {
            self.put_user(&mut pipe, *k, u);
            queued += 1;
            flush(&mut pipe, &mut queued, false)?;
        }
        for (k, p) in &entities.products {
            self.put_product(&mut pipe, *k, p);
            queued += 1;
            flush(&mut pipe, &mut queued, false)?;
        }
        // The offsets last: a store cut off half-way resumes nowhere it should not.
        if entities.watermark != Micros::MIN {
            pipe.set(self.watermark_key(), entities.watermark).ignore();
            queued += 1;
        }
        self.put_offsets(&mut pipe, offsets);
        queued += offsets.len();
        flush(&mut pipe, &mut queued, true)?;
        let counts = EntityCounts {
            sessions: entities.sessions.len() as u64,
            users: entities.users.len() as u64,
            products: entities.products.len() as u64,
        };
        let mut cache = self.cache.lock().expect("redis cache lock poisoned");
        *cache = entities;
        cache.session_ttl = self.session_ttl;
        Ok(counts)
    }
}

impl OnlineReader for RedisStore {
    fn counts(&self) -> Result<EntityCounts> {
        let count = |kind: &str| -> Result<u64> {
            let pattern = format!("{}:{kind}:*", self.prefix);
            self.with_conn(|c| c.scan_match::<_, String>(&pattern)?.try_fold(0, |n, k| k.map(|_| n + 1)))
        };
        Ok(EntityCounts { sessions: count("s")?, users: count("u")?, products: count("p")? })
    }

    fn watermark(&self) -> BoxFuture<'_, Result<Option<Micros>>> {
        Box::pin(async move {
            let mut conn = self.reader().await?;
            redis::cmd("GET")
                .arg(self.watermark_key())
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&self.url, e))
        })
    }

    fn features<'a>(&'a self, q: &'a CartQuery<'a>) -> BoxFuture<'a, Result<Answer>> {
        Box::pin(async move {
            let mut conn = self.reader().await?;
            let user_key = self.user_key(q.user_id);
            let product_key = self.product_key(q.product_id);
            let mut get = redis::cmd("MGET");
            get.arg(&user_key).arg(&product_key);
            if let Some(session) = q.user_session {
                get.arg(self.session_key(session));
            }
            let found: Vec<Stored> = get.query_async(&mut conn).await.map_err(|e| redis_error(&self.url, e))?;
            // In the order asked: user, product, then the session when there is one.
            let mut found = found.into_iter();
            let (u, p, s) = (found.next().flatten(), found.next().flatten(), found.next().flatten());
            let session: Option<SessionState> = match (q.user_session, s) {
                (Some(key), Some(b)) => Some(codec::decode(&b, &self.session_key(key))?),
                _ => None,
            };
            let user: Option<UserState> = u.map(|b| codec::decode(&b, &user_key)).transpose()?;
            let product: Option<ProductState> = p.map(|b| codec::decode(&b, &product_key)).transpose()?;
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
        // Layout 1: a hash per entity, and offsets, but no layout key.
        let _: () = c.hset(format!("{prefix}:offsets"), "tracking.user_behavior.validated/0", 7).unwrap();
        let _: () = c.hset(format!("{prefix}:u:1"), "state", b"x".as_slice()).unwrap();
        let err = RedisStore::open(REDIS, &prefix, 1_000_000).err().expect("refused").to_string();
        assert!(err.contains("layout 1") && err.contains(&prefix), "{err}");

        let _: () =
            redis::cmd("DEL").arg(format!("{prefix}:offsets")).arg(format!("{prefix}:u:1")).query(&mut c).unwrap();
        // An empty prefix is taken and marked; opened again, it is the same layout.
        let store = RedisStore::open(REDIS, &prefix, 1_000_000).unwrap();
        let layout: u32 = c.get(format!("{prefix}:layout")).unwrap();
        assert_eq!(layout, LAYOUT);
        RedisStore::open(REDIS, &prefix, 1_000_000).unwrap();
        store.clear().unwrap();
    }
}
