//! The poll -> batch -> invoke -> commit loop.
//!
//! Partitions are split over `concurrency` lanes (partition `i` of the sorted list goes to lane
//! `i % lanes`). A lane owns its Kafka connections and one function process, and runs one batch
//! at a time, so records of a partition are delivered in order while lanes run concurrently.
//!
//! Per batch: gather until `batch_size` records or the batching window ends, invoke, then per
//! partition commit up to the first failed offset. Unprocessed records go back to the front of
//! the lane's buffer and are redelivered after a backoff; once a partition's head has failed
//! `max_retries + 1` times, its unprocessed records go to the on-failure destination and the
//! lane moves on.
//!
//! [`MappingBehaviour`] adds what a mapping's error-handling controls do, as AWS documents them
//! for Kafka in "Configuring error handling controls for Kafka event sources"
//! (<https://docs.aws.amazon.com/lambda/latest/dg/kafka-retry-configurations.html>):
//! `MaximumRetryAttempts` does not count the first invocation (-1 = infinite, capped at 10 by
//! Lambda when an on-failure destination is set: "Using a Kafka topic as an on-failure
//! destination"); with `ReportBatchItemFailures` only the reported records are retried, a
//! partition resuming at its lowest reported offset, an empty or null list meaning success and
//! an identifier not in the batch failing the whole batch; `BisectBatchOnFunctionError` splits a
//! batch that failed as a whole in two and retries each half. The Kafka page does not say
//! whether a split uses up a retry; the stream page ("Retain discarded batch records for a
//! Kinesis Data Streams event source",
//! <https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html>) says
//! "Splitting batches doesn't consume the retry quota", and that is what happens here: only a
//! batch that cannot be split further counts retries. `MaximumRecordAgeInSeconds`: older
//! records are sent to the destination without being delivered. `FilterCriteria`
//! ([`crate::filter`]): a record no filter matches is committed, never delivered.

mod delivery;
mod fetch;
mod hand_off;
mod lane;
mod settings;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::watch;

use crate::invoke::InvokeError;
use crate::kafka::{KafkaClient, KafkaError, TopicPartition};
use lane::Lane;
pub use settings::{DeliverySettings, FunctionTarget, MappingBehaviour};

/// Counters shared by all lanes (tests and the bench read them).
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Invocations made.
    pub invocations: AtomicU64,
    /// Invocations whose whole batch failed.
    pub failed_invocations: AtomicU64,
    /// Records acknowledged (committed as processed).
    pub records_processed: AtomicU64,
    /// Records dead-lettered.
    pub records_dead_lettered: AtomicU64,
    /// Records handed back for redelivery.
    pub records_redelivered: AtomicU64,
    /// Records the filters rejected (committed, not delivered).
    pub records_filtered: AtomicU64,
    /// Records sent to the destination for their age, undelivered.
    pub records_expired: AtomicU64,
    /// Batches split in two after failing as a whole.
    pub bisections: AtomicU64,
}

/// Errors that stop the runner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// Kafka failed permanently (unknown topic, auth, unsupported broker).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The function cannot be started at all.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Runs until `shutdown` turns true; lanes finish their current batch first.
pub async fn run(
    settings: DeliverySettings,
    stats: Arc<RunnerStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RunnerError> {
    if settings.topics.is_empty() {
        return Err(RunnerError::Config("no topic given (--topic)".into()));
    }
    if settings.batch_size == 0 || settings.batch_size > 10_000 {
        return Err(RunnerError::Config("batch size must be 1..=10000".into()));
    }
    let mut client = KafkaClient::connect(settings.kafka.clone()).await?;
    let counts = client.refresh_metadata(&settings.topics).await?;
    let mut tps: Vec<TopicPartition> = counts
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    tps.sort();
    let lanes = settings.concurrency.clamp(1, tps.len().max(1));
    tracing::info!(topics = ?settings.topics, partitions = tps.len(), lanes, group = %settings.group, "esm-local starting");
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let mine: Vec<TopicPartition> = tps.iter().skip(lane).step_by(lanes).cloned().collect();
        let (settings, stats, shutdown) = (settings.clone(), stats.clone(), shutdown.clone());
        handles.push(tokio::spawn(async move {
            Lane::start(lane, settings, mine, stats)
                .await?
                .run(shutdown)
                .await
        }));
    }
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(RunnerError::Config(format!("lane panicked: {join}")));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
