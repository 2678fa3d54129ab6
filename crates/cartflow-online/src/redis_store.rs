//! The Redis online store. Layout, under a key prefix:
//!
//! - `{prefix}:s:{session}`, `{prefix}:u:{user_id}`, `{prefix}:p:{product_id}`:
//!   one hash per entity, field `state` (the entity's state, postcard) and
//!   `t` (its newest event time, µs); sessions EXPIRE after the session TTL;
//! - `{prefix}:offsets`: a hash `topic/partition` → next offset to read.
//!
//! The streamer keeps a working copy of the entities it has touched (read
//! through from Redis on first use, so a restarted streamer picks up where
//! the last left off) and writes each batch's changed entities and the input
//! offsets in one MULTI/EXEC pipeline: the stored state and offsets never
//! disagree. API replicas read with one pipelined round trip per request.

use std::collections::BTreeSet;
use std::sync::Mutex;

use cartflow_core::time::Micros;
use cartflow_features::state::{ProductState, SessionState, UserState};
use cartflow_features::{CartQuery, Entities, EntityView};
use cartflow_log::CommittedOffset;
use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;

use crate::{Answer, ApplyStats, Change, EntityCounts, OnlineError, OnlineStore, Result, codec};

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

const STATE: &str = "state";
const TIME: &str = "t";
/// Keys per pipeline when writing everything (materialize).
const CHUNK: usize = 5_000;

impl RedisStore {
    pub fn open(url: &str, prefix: &str, session_ttl: Micros) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let store = RedisStore {
            client,
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            session_ttl,
            cache: Mutex::new(Entities::new(session_ttl)),
            conn: Mutex::new(None),
            reader: tokio::sync::OnceCell::new(),
        };
        // Fail now, with the URL in the message, rather than at the first event.
        store.with_conn(|c| redis::cmd("PING").query::<String>(c))?;
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
        let mut pipe = redis::pipe();
        sessions.iter().for_each(|s| {
            pipe.hget(self.session_key(s), STATE);
        });
        users.iter().for_each(|u| {
            pipe.hget(self.user_key(*u), STATE);
        });
        products.iter().for_each(|p| {
            pipe.hget(self.product_key(*p), STATE);
        });
        let found: Vec<Option<Vec<u8>>> = self.with_conn(|c| pipe.query(c))?;
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
        let k = self.session_key(key);
        pipe.hset_multiple(
            &k,
            &[(STATE, codec::encode(s)), (TIME, s.last_time().unwrap_or(0).to_string().into_bytes())],
        )
        .ignore()
        .expire(&k, ttl_secs(self.session_ttl))
        .ignore();
    }

    fn put_user(&self, pipe: &mut redis::Pipeline, id: i64, u: &UserState) {
        pipe.hset(self.user_key(id), STATE, codec::encode(u)).ignore();
    }

    fn put_product(&self, pipe: &mut redis::Pipeline, id: i64, p: &ProductState) {
        let t = p.attrs.as_ref().map_or(0, |a| a.time);
        pipe.hset_multiple(self.product_key(id), &[(STATE, codec::encode(p)), (TIME, t.to_string().into_bytes())])
            .ignore();
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

fn ttl_secs(ttl: Micros) -> i64 {
    (ttl / 1_000_000).max(1)
}

fn redis_error(url: &str, e: redis::RedisError) -> OnlineError {
    OnlineError::Config(format!("redis at {url}: {e}"))
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
        let mut queued = 0;
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
            let (s, u, p): (Stored, Stored, Stored) = match q.user_session {
                Some(session) => {
                    redis::pipe()
                        .hget(self.session_key(session), STATE)
                        .hget(&user_key, STATE)
                        .hget(&product_key, STATE)
                        .query_async(&mut conn)
                        .await
                }
                None => redis::pipe()
                    .hget(&user_key, STATE)
                    .hget(&product_key, STATE)
                    .query_async(&mut conn)
                    .await
                    .map(|(u, p)| (None, u, p)),
            }
            .map_err(|e| redis_error(&self.url, e))?;
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
