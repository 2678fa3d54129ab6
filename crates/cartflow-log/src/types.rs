use std::sync::Arc;

pub use cartflow_core::position::{CommittedOffset, TopicPartition};

use serde::Serialize;

/// A record read from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    /// Milliseconds since the epoch, set by the producer.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition { topic: self.topic.clone(), partition: self.partition }
    }
}

/// A record to write.
#[derive(Debug, Clone, Copy)]
pub struct ProducerRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Milliseconds since the epoch; `None` takes the current time.
    pub timestamp_ms: Option<i64>,
}

impl<'a> ProducerRecord<'a> {
    pub fn new(topic: &'a str, key: Option<&'a [u8]>, value: &'a [u8]) -> Self {
        ProducerRecord { topic, key, value, headers: &[], timestamp_ms: None }
    }

    pub fn headers(mut self, headers: &'a [(&'a str, &'a [u8])]) -> Self {
        self.headers = headers;
        self
    }

    /// The record's time (milliseconds since the epoch) instead of now.
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp_ms = Some(ms);
        self
    }
}

/// Where a consumer without a committed offset starts (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone)]
pub enum Subscription {
    /// Every partition of these topics (the group's share of them on Kafka).
    Topics(Vec<String>),
    /// Exactly these partitions, outside any group's assignment.
    Partitions(Vec<TopicPartition>),
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub group: Option<String>,
    pub subscription: Subscription,
    pub reset: OffsetReset,
}

impl ConsumerConfig {
    pub fn group(group: &str, topics: &[&str]) -> Self {
        ConsumerConfig {
            group: Some(group.to_owned()),
            subscription: Subscription::Topics(topics.iter().map(|t| t.to_string()).collect()),
            reset: OffsetReset::Earliest,
        }
    }

    /// Reads whole topics without a group (nothing is committed).
    pub fn topics(topics: &[&str], reset: OffsetReset) -> Self {
        ConsumerConfig {
            group: None,
            subscription: Subscription::Topics(topics.iter().map(|t| t.to_string()).collect()),
            reset,
        }
    }

    pub fn assign(partitions: Vec<TopicPartition>) -> Self {
        ConsumerConfig { group: None, subscription: Subscription::Partitions(partitions), reset: OffsetReset::Earliest }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: u32,
    /// First offset still held (older ones were removed by retention).
    pub start: u64,
    /// Offset the next record will get.
    pub end: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Records held now, over every partition.
    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.end - p.start).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub group: String,
    pub offsets: Vec<CommittedOffset>,
}

/// Partitions a group rebalance gave to and took from one consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebalance {
    pub gained: Vec<TopicPartition>,
    pub lost: Vec<TopicPartition>,
}
