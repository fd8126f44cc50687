//! A local mapping's delivery settings: the cluster, topics and group records come from, how
//! they are batched, retried and handed off, and the function they go to.

use std::time::Duration;

use lambda_kit::retry::RetryPolicy;

use crate::dead_letter::DeadLetterTarget;
use crate::filter::FilterCriteria;
use crate::invoke::FunctionSpec;
use crate::kafka::{KafkaConfig, OffsetSpec};

/// How the function is reached.
#[derive(Debug, Clone)]
pub enum FunctionTarget {
    /// Spawn this binary per lane and serve it the Runtime API.
    Process(FunctionSpec),
    /// POST events to this URL (e.g. `cargo lambda watch`), with this timeout.
    InvokeUrl(String, Duration),
}

/// How a local mapping delivers records from Kafka to the function, everything [`super::run`]
/// needs; see `esm-local run --help` for the defaults.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Cluster.
    pub kafka: KafkaConfig,
    /// Topics to consume (all partitions).
    pub topics: Vec<String>,
    /// Consumer group id (offsets are committed under it).
    pub group: String,
    /// Max records per batch (ESM `BatchSize`, default 100).
    pub batch_size: usize,
    /// Max time to gather a batch (ESM `MaximumBatchingWindowInSeconds`, default 500 ms).
    pub batching_window: Duration,
    /// Where to start without a committed offset (`TRIM_HORIZON` = earliest, `LATEST`).
    pub starting_position: OffsetSpec,
    /// Retries of a failing partition head before dead-lettering (0 = dead-letter at first
    /// failure; `u32::MAX` = until the records are discarded for their age, the ESM's -1).
    pub max_retries: u32,
    /// First retry delay; doubles per attempt up to 30 s ([`DeliverySettings::retry_policy`]).
    pub retry_backoff: Duration,
    /// Max lanes (function processes) running at once.
    pub concurrency: usize,
    /// Where exhausted records go.
    pub dead_letter: DeadLetterTarget,
    /// The function.
    pub function: FunctionTarget,
    /// The mapping's error handling and filters.
    pub behaviour: MappingBehaviour,
}

/// What a mapping's `FunctionResponseTypes`, `BisectBatchOnFunctionError`,
/// `MaximumRecordAgeInSeconds` and `FilterCriteria` make the runner do (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct MappingBehaviour {
    /// Honour `batchItemFailures` (`FunctionResponseTypes: [ReportBatchItemFailures]`); without
    /// it a returned list is ignored and the batch counts as processed.
    pub report_batch_item_failures: bool,
    /// Split a batch that fails as a whole in two (`BisectBatchOnFunctionError`).
    pub bisect_batch_on_function_error: bool,
    /// Records older than this go to the destination undelivered (`MaximumRecordAgeInSeconds`).
    pub max_record_age: Option<Duration>,
    /// Records delivered (`FilterCriteria`); empty = all.
    pub filters: FilterCriteria,
    /// `EventRecordFormat: SOURCE` with this `dataFormat` ([`crate::payload::source_record_json`]);
    /// `None`: records as produced (no registry on the mapping).
    pub source_data_format: Option<String>,
}

impl Default for MappingBehaviour {
    /// esm-local's behaviour without a template: partial batch responses honoured, no bisection,
    /// no age limit, no filter.
    fn default() -> Self {
        Self {
            report_batch_item_failures: true,
            bisect_batch_on_function_error: false,
            max_record_age: None,
            filters: FilterCriteria::default(),
            source_data_format: None,
        }
    }
}

/// Longest wait before a redelivery.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

impl DeliverySettings {
    /// When a failing partition head is redelivered: lambda-kit's retry policy, starting at
    /// `retry_backoff` and doubling per attempt up to 30 s, each wait drawn from 75-100 % of
    /// that so lanes failing together do not retry in step.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_retries.saturating_add(1),
            initial_backoff: self.retry_backoff,
            max_backoff: MAX_RETRY_BACKOFF,
            multiplier: 2.0,
            jitter: 0.25,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(retry_backoff: Duration) -> DeliverySettings {
        DeliverySettings {
            kafka: KafkaConfig::new(vec!["127.0.0.1:9092".into()]),
            topics: vec!["t".into()],
            group: "g".into(),
            batch_size: 100,
            batching_window: Duration::from_millis(500),
            starting_position: OffsetSpec::Earliest,
            max_retries: 3,
            retry_backoff,
            concurrency: 4,
            dead_letter: DeadLetterTarget::File("dlq.jsonl".into()),
            function: FunctionTarget::InvokeUrl(
                "http://127.0.0.1:9000".into(),
                Duration::from_secs(1),
            ),
            behaviour: MappingBehaviour::default(),
        }
    }

    #[test]
    fn backoff_starts_at_the_flag_doubles_and_is_capped() {
        let policy = settings(Duration::from_millis(100)).retry_policy();
        assert_eq!(policy.max_attempts, 4, "1 attempt + 3 retries");
        for attempts in 1..40 {
            let d = policy.backoff(attempts);
            let nominal = Duration::from_millis(100)
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(Duration::from_secs(30));
            assert!(
                d >= nominal.mul_f64(0.749) && d <= nominal,
                "{attempts}: {d:?} vs {nominal:?}"
            );
        }
        let zero = settings(Duration::ZERO).retry_policy();
        assert_eq!(zero.backoff(5), Duration::ZERO);
    }
}
