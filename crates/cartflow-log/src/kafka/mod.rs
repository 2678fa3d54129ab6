//! The Kafka backend (librdkafka through the rdkafka crate): every stage runs
//! on it unchanged. Producers are idempotent with `acks=all`; consumers never
//! auto-commit (stages commit after their outputs are durable), and a group's
//! members split the partitions, as Kafka's consumers do.

mod consumer;
mod producer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

pub use consumer::KafkaConsumer;
pub use producer::KafkaProducer;

use crate::{
    CommittedOffset, Consumer, ConsumerConfig, EventLog, GroupInfo, KafkaOptions, LogError, PartitionInfo, Producer,
    Result, TopicInfo,
};

/// How long a metadata, offset or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Cheap to clone: the clients are shared, so a producer can create the
/// topics it writes to through the log that made it.
#[derive(Clone)]
pub struct KafkaLog {
    brokers: String,
    options: KafkaOptions,
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// Answers metadata and watermark queries; never subscribes.
    meta: Arc<BaseConsumer>,
    /// Reads a partition's last records to find its end (see [`KafkaLog::true_end`]);
    /// one reader at a time, as it is assigned and unassigned per read.
    probe: Arc<Mutex<BaseConsumer>>,
}

pub(crate) fn backend(what: &str, e: KafkaError) -> LogError {
    let message = format!("kafka: {what}: {e}");
    if brokers_away(&e) { LogError::Unavailable(message) } else { LogError::Backend(message) }
}

/// What librdkafka says when brokers do not answer; it retries inside until
/// a timeout, so these reach the caller only after an outage.
fn brokers_away(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::OperationTimedOut
                | Code::RequestTimedOut
                | Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::BrokerNotAvailable
                | Code::NetworkException
                | Code::Resolve
                | Code::CoordinatorNotAvailable
                | Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition,
        )
    )
}

impl KafkaLog {
    /// Connects to `kafka://host:port[,host:port…]` and checks that a broker answers.
    pub fn connect(url: &str, options: KafkaOptions) -> Result<Self> {
        let brokers = url
            .strip_prefix("kafka://")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| LogError::Backend(format!("{url:?} is not a kafka://host:port URL")))?
            .trim_end_matches('/')
            .to_owned();
        let probe = client_config(&brokers, &options)
            .set("group.id", format!("cartflow-probe-{}", std::process::id()))
            // The probe reads what is there: no waiting on the broker for more.
            .set("fetch.wait.max.ms", "10")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| backend("creating a client", e))?;
        let mut log = KafkaLog {
            admin: Arc::new(
                client_config(&brokers, &options).create().map_err(|e| backend("creating the admin client", e))?,
            ),
            meta: Arc::new(client_config(&brokers, &options).create().map_err(|e| backend("creating a client", e))?),
            probe: Arc::new(Mutex::new(probe)),
            brokers,
            options,
        };
        log.meta
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| backend(&format!("no broker answered at {}", log.brokers), e))?;
        log.options.partitions = log.options.partitions.max(1);
        Ok(log)
    }

    fn config(&self) -> ClientConfig {
        client_config(&self.brokers, &self.options)
    }

    /// The offset after a partition's last record. tansu 0.6 answers a
    /// ListOffsets(latest) with the first offset of the last batch plus one,
    /// not the last offset plus one, so the reported end is checked by reading
    /// from just before it: a Kafka broker's answer passes unchanged.
    fn true_end(&self, topic: &str, partition: i32, reported: i64) -> Result<u64> {
        if reported <= 0 {
            return Ok(0);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(reported - 1))
            .map_err(|e| backend("probing an end offset", e))?;
        let probe = self.probe.lock().expect("probe");
        probe.assign(&tpl).map_err(|e| backend("probing an end offset", e))?;
        let mut end = reported;
        let mut wait = REQUEST_TIMEOUT;
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while let Some(m) = probe.poll(wait) {
            match m {
                Ok(m) => {
                    end = end.max(m.offset() + 1);
                    wait = Duration::from_millis(50);
                }
                // The probe lives as long as the log, and librdkafka queues a
                // broker outage's connection errors on it until they are polled:
                // stale news once the broker answered the watermarks above.
                Err(e) if brokers_away(&e) && std::time::Instant::now() < deadline => continue,
                Err(e) => return Err(backend(&format!("probing {topic}[{partition}]'s end"), e)),
            }
        }
        let _ = probe.unassign();
        Ok(end as u64)
    }

    /// Every topic but the broker's own (`__consumer_offsets`…), sorted.
    fn topic_names(&self) -> Result<Vec<String>> {
        let md = self.meta.fetch_metadata(None, REQUEST_TIMEOUT).map_err(|e| backend("reading metadata", e))?;
        let mut names: Vec<String> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| t.name().to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// A topic's partition numbers from the metadata alone (no offsets); `None` when it does not exist.
    pub(crate) fn partition_ids(&self, name: &str) -> Result<Option<Vec<i32>>> {
        let md = self
            .meta
            .fetch_metadata(Some(name), REQUEST_TIMEOUT)
            .map_err(|e| backend(&format!("reading topic {name}'s metadata"), e))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == name && t.error().is_none()) else {
            return Ok(None);
        };
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        Ok((!ids.is_empty()).then_some(ids))
    }

    fn committed_by(&self, group: &str, topics: &[(String, Vec<i32>)]) -> Result<Vec<CommittedOffset>> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| backend("creating a client", e))?;
        let mut tpl = TopicPartitionList::new();
        for (name, ids) in topics {
            for id in ids {
                tpl.add_partition(name, *id);
            }
        }
        let committed = consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| backend(&format!("reading group {group}'s offsets"), e))?;
        Ok(committed_entries(&committed))
    }
}

/// The partitions of a committed-offsets answer that have an offset.
pub(crate) fn committed_entries(tpl: &TopicPartitionList) -> Vec<CommittedOffset> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(CommittedOffset {
                topic: e.topic().to_owned(),
                partition: e.partition() as u32,
                offset: o as u64,
                metadata: e.metadata().to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// The properties every client shares; the user's properties come last and win.
fn client_config(brokers: &str, options: &KafkaOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in &options.properties {
        c.set(k, v);
    }
    c
}

impl EventLog for KafkaLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        crate::embedded::check_name(topic)?;
        if self.partition_ids(topic)?.is_some() {
            return Ok(());
        }
        let partitions = if partitions == 0 { self.options.partitions } else { partitions };
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(self.options.replication));
        let results = futures::executor::block_on(
            self.admin.create_topics([&new], &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT))),
        )
        .map_err(|e| backend(&format!("creating topic {topic}"), e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(LogError::Backend(format!("kafka: creating topic {name}: {code}"))),
            }
        }
        // Metadata can lag a creation by a moment.
        for _ in 0..50 {
            if self.partition_ids(topic)?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LogError::Backend(format!("kafka: topic {topic} was created but does not show in the metadata")))
    }

    fn topics(&self) -> Result<Vec<TopicInfo>> {
        self.topic_names()?.iter().filter_map(|n| self.topic(n).transpose()).collect()
    }

    fn topic(&self, name: &str) -> Result<Option<TopicInfo>> {
        let Some(ids) = self.partition_ids(name)? else { return Ok(None) };
        let mut partitions = Vec::with_capacity(ids.len());
        for id in ids {
            let (low, high) = self
                .meta
                .fetch_watermarks(name, id, REQUEST_TIMEOUT)
                .map_err(|e| backend(&format!("reading {name}[{id}]'s offsets"), e))?;
            let end = self.true_end(name, id, high.max(0))?;
            partitions.push(PartitionInfo { partition: id as u32, start: low.max(0) as u64, end });
        }
        Ok(Some(TopicInfo { name: name.to_owned(), partitions }))
    }

    fn groups(&self) -> Result<Vec<GroupInfo>> {
        let list = self.meta.fetch_group_list(None, REQUEST_TIMEOUT).map_err(|e| backend("listing groups", e))?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_owned()).collect();
        names.sort();
        // Partition numbers are enough here: no offsets read (each costs the broker a request).
        let mut topics = Vec::new();
        for name in self.topic_names()? {
            if let Some(ids) = self.partition_ids(&name)? {
                topics.push((name, ids));
            }
        }
        names.into_iter().map(|group| Ok(GroupInfo { offsets: self.committed_by(&group, &topics)?, group })).collect()
    }

    fn delete_topic(&self, topic: &str) -> Result<()> {
        crate::embedded::check_name(topic)?;
        if self.partition_ids(topic)?.is_none() {
            return Err(LogError::NoTopic(topic.to_owned()));
        }
        let results = futures::executor::block_on(
            self.admin.delete_topics(&[topic], &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT))),
        )
        .map_err(|e| backend(&format!("deleting topic {topic}"), e))?;
        for r in results {
            if let Err((name, code)) = r {
                return Err(LogError::Backend(format!("kafka: deleting topic {name}: {code}")));
            }
        }
        // Metadata can lag a deletion by a moment.
        for _ in 0..50 {
            if self.partition_ids(topic)?.is_none() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LogError::Backend(format!("kafka: topic {topic} was deleted but still shows in the metadata")))
    }

    fn producer(&self) -> Result<Box<dyn Producer>> {
        let log = self.clone();
        let ensure = move |topic: &str| log.ensure_topic(topic, 0);
        Ok(Box::new(KafkaProducer::new(self.config(), Box::new(ensure))?))
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(KafkaConsumer::new(self, config)?))
    }
}
