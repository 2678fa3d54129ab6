//! `cartflow tail`: a topic's records as JSON lines, like `kcat -C -J`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use cartflow_log::{ConsumerConfig, Record, TopicPartition};
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::backends::Backends;
use crate::cli::TailArgs;

pub fn run(ctx: &Ctx, a: TailArgs) -> Result<()> {
    let log = ctx.cfg.open_log()?;
    let topics = log.topics()?;
    let Some(topic) = topics.iter().find(|t| t.name == a.topic) else {
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        bail!(
            "no topic {:?}; topics: {}",
            a.topic,
            if names.is_empty() { "none yet".into() } else { names.join(", ") }
        );
    };
    let tps: Vec<TopicPartition> =
        topic.partitions.iter().map(|p| TopicPartition::new(&topic.name, p.partition)).collect();
    let mut consumer = log.consumer(ConsumerConfig::assign(tps))?;
    let limit = a.lines.unwrap_or(if a.from_beginning { u64::MAX } else { 10 });
    let mut stdout = std::io::stdout().lock();
    let mut printed = 0u64;

    if a.from_beginning {
        for p in &topic.partitions {
            consumer.seek(&TopicPartition::new(&topic.name, p.partition), p.start)?;
        }
        // Everything up to now, in each partition's order.
        let mut remaining = topic.records();
        while remaining > 0 && printed < limit && !ctx.control.stopped() {
            let batch = consumer.poll(4096, Duration::from_millis(200))?;
            if batch.is_empty() {
                break;
            }
            remaining = remaining.saturating_sub(batch.len() as u64);
            for r in batch.iter().take((limit - printed) as usize) {
                writeln!(stdout, "{}", record_json(r))?;
                printed += 1;
            }
        }
    } else {
        // The last N records across partitions, oldest first.
        let mut last: Vec<Record> = Vec::new();
        for p in &topic.partitions {
            let tp = TopicPartition::new(&topic.name, p.partition);
            let from = p.end.saturating_sub(limit).max(p.start);
            last.extend(cartflow_log::read_range(log.as_ref(), &tp, from, p.end)?);
            consumer.seek(&tp, p.end)?;
        }
        last.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
        let skip = last.len().saturating_sub(limit as usize);
        for r in &last[skip..] {
            writeln!(stdout, "{}", record_json(r))?;
        }
    }
    stdout.flush()?;
    while a.follow && !ctx.control.stopped() {
        for r in consumer.poll(4096, Duration::from_millis(200))? {
            writeln!(stdout, "{}", record_json(&r))?;
        }
        stdout.flush()?;
    }
    Ok(())
}

/// A record as one JSON object; the value is inlined when it is JSON.
pub fn record_json(r: &Record) -> Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let value = serde_json::from_slice::<Value>(&r.value).unwrap_or_else(|_| Value::String(text(&r.value)));
    let headers: Map<String, Value> = r.headers.iter().map(|(k, v)| (k.clone(), Value::String(text(v)))).collect();
    json!({
        "topic": r.topic.as_ref(),
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": r.key.as_deref().map(text),
        "headers": headers,
        "value": value,
    })
}
