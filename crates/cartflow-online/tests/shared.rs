//! A Redis store shared by writers of different input partitions (feature
//! streamers in one group), on one server and on a real Redis Cluster: the
//! answers equal one state of all the events, a batch torn by a crash
//! part-way through its writes replays exactly, and a writer whose partition
//! moved to another is refused.

use cartflow_core::{CommittedOffset, Event};
use cartflow_features::DEFAULT_SESSION_TTL;
use cartflow_online::{Change, OnlineError, OnlineReader, OnlineStore, RedisStore};
use cartflow_sources::{Generator, GeneratorConfig};
use cartflow_testkit::conformance::assert_one_state_of;
use cartflow_testkit::{RedisCluster, RedisPrefix, needs};
use redis::ConnectionLike;

const TOPIC: &str = "tracking.user_behavior.validated";
const PARTITIONS: u32 = 4;
const BATCH: usize = 150;

/// Generated events as the validator partitions them, numbered per partition.
fn partitioned() -> (Vec<Event>, Vec<Vec<Change>>) {
    let events: Vec<Event> =
        Generator::new(GeneratorConfig { events: 6_000, seed: 11, ..Default::default() }).collect();
    let mut parts: Vec<Vec<Change>> = vec![Vec::new(); PARTITIONS as usize];
    for e in &events {
        let p = e.partition_in(PARTITIONS);
        let part = &mut parts[p as usize];
        part.push(Change { event: e.clone(), delete: false, partition: p, offset: part.len() as u64 });
    }
    (events, parts)
}

fn position(batch: &[Change]) -> Vec<CommittedOffset> {
    let last = batch.last().unwrap();
    vec![CommittedOffset {
        topic: TOPIC.into(),
        partition: last.partition,
        offset: last.offset + 1,
        metadata: String::new(),
    }]
}

/// Writes one batch as a writer that died after its products and users,
/// before its sessions and offsets: the sessions and offsets are put back
/// as they were.
fn torn_write(store: &RedisStore, raw: &mut dyn ConnectionLike, prefix: &str, batch: &[Change]) {
    let sessions: Vec<String> =
        batch.iter().filter_map(|c| c.event.user_session.as_ref()).map(|s| format!("{prefix}:s:{s}")).collect();
    let field = format!("{TOPIC}/{}", batch[0].partition);
    let before: Vec<Option<Vec<u8>>> = sessions.iter().map(|k| redis::cmd("GET").arg(k).query(raw).unwrap()).collect();
    let offset: Option<u64> = redis::cmd("HGET").arg(format!("{prefix}:offsets")).arg(&field).query(raw).unwrap();
    store.apply(batch, &position(batch)).unwrap();
    for (key, value) in sessions.iter().zip(before) {
        match value {
            Some(v) => redis::cmd("SET").arg(key).arg(v).arg("EX").arg(86_400).query::<()>(raw).unwrap(),
            None => redis::cmd("DEL").arg(key).query::<()>(raw).unwrap(),
        }
    }
    let offsets = format!("{prefix}:offsets");
    match offset {
        Some(o) => redis::cmd("HSET").arg(&offsets).arg(&field).arg(o).query::<()>(raw).unwrap(),
        None => redis::cmd("HDEL").arg(&offsets).arg(&field).query::<()>(raw).unwrap(),
    }
}

fn shared_by_writers(url: &str, prefix: &str, raw: &mut dyn ConnectionLike) {
    let (events, parts) = partitioned();
    let open = || RedisStore::open(url, prefix, DEFAULT_SESSION_TTL).unwrap();
    let (a, b) = (open(), open());
    // a holds partitions 0 and 1, b 2 and 3; their batches interleave.
    let batches: Vec<Vec<&[Change]>> = parts.iter().map(|p| p.chunks(BATCH).collect()).collect();
    let rounds = batches.iter().map(Vec::len).max().unwrap();
    let torn = batches[3].len() - 2;
    for round in 0..rounds {
        for (p, writer) in [(0, &a), (1, &a), (2, &b), (3, &b)] {
            let Some(batch) = batches[p].get(round) else { continue };
            if p == 3 && round == torn {
                torn_write(writer, raw, prefix, batch);
                break;
            }
            if p == 3 && round > torn {
                continue;
            }
            writer.apply(batch, &position(batch)).unwrap();
        }
    }
    // Partition 3 moves to c, which resumes where the store says: in the torn batch.
    let c = open();
    let at = c.offsets().unwrap().into_iter().find(|o| o.partition == 3).unwrap().offset;
    assert_eq!(at as usize, torn * BATCH, "the torn batch left the offset where it was");
    // Its users and products already hold the torn batch: counted again, the
    // answers below would differ from the reference.
    for batch in parts[3][at as usize..].chunks(BATCH) {
        c.apply(batch, &position(batch)).unwrap();
    }
    // b wrote on after losing partition 3: refused.
    let late = &parts[3][parts[3].len() - 5..];
    match b.apply(late, &position(late)) {
        Err(OnlineError::Taken { input }) => assert!(input.ends_with("/3"), "{input}"),
        other => panic!("a writer that lost its partition wrote: {other:?}"),
    }

    let reader = open();
    let (carts, reference) = assert_one_state_of(&reader, &events, "two writers, a torn batch replayed");
    assert!(carts > 150, "{carts} carts");
    assert_eq!(reader.counts().unwrap().sessions as usize, reference.sessions.len(), "sessions");
    // A reader of its own: the one above keeps its connection on the helper's (ended) runtime.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(open().watermark()).unwrap(), events.iter().map(|e| e.event_time).max());
}

#[test]
fn writers_of_different_partitions_share_one_redis() {
    let keys = RedisPrefix::new("shared");
    let mut raw = redis::Client::open(keys.url.as_str()).unwrap().get_connection().unwrap();
    shared_by_writers(&keys.url, &keys.prefix, &mut raw);
}

#[test]
fn writers_of_different_partitions_share_a_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = needs!(RedisCluster::start(dir.path()));
    let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
    let mut raw = redis::cluster::ClusterClient::new(nodes).unwrap().get_connection().unwrap();
    shared_by_writers(&cluster.url(), "cartflow", &mut raw);
    let spread = cluster.keys_per_node();
    assert!(spread.iter().all(|n| *n > 100), "keys per node: {spread:?}");
}
