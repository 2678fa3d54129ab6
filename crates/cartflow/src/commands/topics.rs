//! `cartflow topics`: topics, partitions, end offsets and consumer lag;
//! `cartflow topics delete`: a topic gone, like `kafka-topics --delete`.

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Ctx;
use crate::backends::Backends;
use crate::cli::{TopicsArgs, TopicsCommand};
use crate::telemetry::thousands;

pub fn run(ctx: &Ctx, a: TopicsArgs) -> Result<()> {
    match a.command {
        Some(TopicsCommand::Delete { topics, force }) => delete(ctx, &topics, force),
        None => list(ctx, a.json),
    }
}

fn delete(ctx: &Ctx, topics: &[String], force: bool) -> Result<()> {
    let log = ctx.cfg.open_log()?;
    for name in topics {
        let Some(topic) = log.topic(name)? else { bail!("no topic {name}") };
        let records = topic.records();
        if records > 0 && !force {
            bail!("topic {name} holds {} records: add --force to delete them with it", thousands(records));
        }
        log.delete_topic(name).with_context(|| format!("deleting topic {name}"))?;
        println!("deleted {name} ({} partitions, {} records)", topic.partitions.len(), thousands(records));
    }
    Ok(())
}

fn list(ctx: &Ctx, json_out: bool) -> Result<()> {
    let log = ctx.cfg.open_log()?;
    let topics = log.topics()?;
    // Some Kafka-protocol brokers do not list groups: the topics still help.
    let groups = log.groups().unwrap_or_else(|e| {
        tracing::warn!("consumer groups unavailable: {e}");
        Vec::new()
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({ "topics": topics, "groups": groups }))?);
        return Ok(());
    }
    if topics.is_empty() {
        let place = match &ctx.cfg.log {
            cartflow_log::LogBackend::Embedded => ctx.cfg.log_dir().display().to_string(),
            kafka => cartflow_core::redact::url(&kafka.to_string()),
        };
        println!("no topics yet in {place} (run `cartflow produce` first)");
        return Ok(());
    }
    println!("{:<40} {:>10} {:>12}  END OFFSETS BY PARTITION", "TOPIC", "PARTITIONS", "RECORDS");
    for t in &topics {
        let records = t.records();
        let ends: Vec<String> = t.partitions.iter().map(|p| p.end.to_string()).collect();
        println!("{:<40} {:>10} {:>12}  {}", t.name, t.partitions.len(), thousands(records), ends.join(" "));
    }
    if groups.is_empty() {
        return Ok(());
    }
    println!();
    println!("{:<24} {:<40} {:>9} {:>12} {:>12} {:>10}", "GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG");
    for g in &groups {
        for c in &g.offsets {
            let end = topics
                .iter()
                .find(|t| t.name == c.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == c.partition))
                .map_or(c.offset, |p| p.end);
            println!(
                "{:<24} {:<40} {:>9} {:>12} {:>12} {:>10}",
                g.group,
                c.topic,
                c.partition,
                c.offset,
                end,
                thousands(end.saturating_sub(c.offset))
            );
        }
    }
    Ok(())
}
