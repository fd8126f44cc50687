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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use lambda_kit::retry::RetryPolicy;
use tokio::sync::watch;

use crate::dead_letter::DeadLetterTarget;
use crate::filter::FilterCriteria;
use crate::invoke::{
    FunctionProcess, FunctionSpec, HttpInvoker, InvokeError, InvokeOutcome, Invoker,
};
use crate::kafka::{KafkaClient, KafkaConfig, KafkaError, OffsetSpec, Record, TopicPartition};
use crate::on_failure::{Condition, Discard, now_ms};
use crate::payload::{BatchVerdict, EventBuilder, parse_response, source_record_json};

/// Retries a Kafka call a few times on transient errors (a macro: the call borrows `&mut`).
macro_rules! retry_kafka {
    ($call:expr) => {{
        let mut delay = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            match $call.await {
                Err(e) if e.is_transient() && tries < 5 => {
                    tracing::warn!(error = %e, error_code = e.error_code(), "transient Kafka error, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    tries += 1;
                }
                other => break other,
            }
        }
    }};
}

/// How the function is reached.
#[derive(Debug, Clone)]
pub enum FunctionTarget {
    /// Spawn this binary per lane and serve it the Runtime API.
    Process(FunctionSpec),
    /// POST events to this URL (e.g. `cargo lambda watch`), with this timeout.
    InvokeUrl(String, Duration),
}

/// Everything the runner needs; see `esm-local run --help` for the defaults.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
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
    /// First retry delay; doubles per attempt up to 30 s ([`RunnerConfig::retry_policy`]).
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

impl RunnerConfig {
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
    config: RunnerConfig,
    stats: Arc<RunnerStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RunnerError> {
    if config.topics.is_empty() {
        return Err(RunnerError::Config("no topic given (--topic)".into()));
    }
    if config.batch_size == 0 || config.batch_size > 10_000 {
        return Err(RunnerError::Config("batch size must be 1..=10000".into()));
    }
    let mut client = KafkaClient::connect(config.kafka.clone()).await?;
    let counts = client.refresh_metadata(&config.topics).await?;
    let mut tps: Vec<TopicPartition> = counts
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    tps.sort();
    let lanes = config.concurrency.clamp(1, tps.len().max(1));
    tracing::info!(topics = ?config.topics, partitions = tps.len(), lanes, group = %config.group, "esm-local starting");
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let mine: Vec<TopicPartition> = tps.iter().skip(lane).step_by(lanes).cloned().collect();
        let (config, stats, shutdown) = (config.clone(), stats.clone(), shutdown.clone());
        handles.push(tokio::spawn(async move {
            Lane::start(lane, config, mine, stats)
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

struct PartitionState {
    /// Next offset to fetch.
    fetch_pos: i64,
    /// Fetched, not yet delivered (or handed back for redelivery), in offset order.
    buffer: VecDeque<Record>,
    /// Offset of the failing head and how many times it failed.
    failing: Option<(i64, u32)>,
}

struct Lane {
    id: usize,
    config: RunnerConfig,
    client: KafkaClient,
    invoker: Invoker,
    parts: Vec<(TopicPartition, PartitionState)>,
    rotate: usize,
    /// Sizes of the next batches while bisecting (the top is the next one).
    bisect: Vec<usize>,
    stats: Arc<RunnerStats>,
}

/// Per-partition fetch cap: a batch of 100 records of ~60 KB fits, and memory stays bounded.
const PARTITION_MAX_BYTES: i32 = 4 * 1024 * 1024;

impl Lane {
    async fn start(
        id: usize,
        config: RunnerConfig,
        tps: Vec<TopicPartition>,
        stats: Arc<RunnerStats>,
    ) -> Result<Self, RunnerError> {
        let mut client = KafkaClient::connect(config.kafka.clone()).await?;
        client.refresh_metadata(&config.topics).await?;
        let committed = retry_kafka!(client.committed_offsets(&config.group, &tps))?;
        let mut parts = Vec::new();
        for tp in tps {
            let pos = match committed.get(&tp).copied().flatten() {
                Some(o) => o,
                None => client.list_offset(&tp, config.starting_position).await?,
            };
            tracing::info!(lane = id, partition = %tp, offset = pos, "starting position");
            parts.push((
                tp,
                PartitionState {
                    fetch_pos: pos,
                    buffer: VecDeque::new(),
                    failing: None,
                },
            ));
        }
        let invoker = match &config.function {
            FunctionTarget::Process(spec) => {
                Invoker::Process(Box::new(FunctionProcess::new(spec.clone())))
            }
            FunctionTarget::InvokeUrl(url, timeout) => {
                Invoker::Http(HttpInvoker::new(url.clone(), *timeout)?)
            }
        };
        Ok(Self {
            id,
            config,
            client,
            invoker,
            parts,
            rotate: 0,
            bisect: Vec::new(),
            stats,
        })
    }

    fn buffered(&self) -> usize {
        self.parts.iter().map(|(_, s)| s.buffer.len()).sum()
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), RunnerError> {
        while !*shutdown.borrow() {
            tokio::select! {
                r = self.gather() => r?,
                _ = shutdown.changed() => break,
            }
            if self.buffered() == 0 {
                continue;
            }
            let delay = self.deliver_one_batch().await?;
            if let Some(delay) = delay {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
        Ok(())
    }

    /// Fetches until a batch is full or the batching window has passed.
    async fn gather(&mut self) -> Result<(), RunnerError> {
        let start = Instant::now();
        let window = self.config.batching_window;
        loop {
            if self.buffered() >= self.config.batch_size {
                return Ok(());
            }
            let left = window.saturating_sub(start.elapsed());
            if left.is_zero() && self.buffered() > 0 {
                return Ok(());
            }
            let wait = if left.is_zero() { window } else { left };
            let positions: Vec<(TopicPartition, i64)> = self
                .parts
                .iter()
                .filter(|(_, s)| s.buffer.len() < self.config.batch_size)
                .map(|(tp, s)| (tp.clone(), s.fetch_pos))
                .collect();
            let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX).max(1);
            let fetched = match self
                .client
                .fetch(&positions, wait_ms, PARTITION_MAX_BYTES)
                .await
            {
                Ok(f) => f,
                Err(e) if e.is_transient() => {
                    tracing::warn!(lane = self.id, error = %e, error_code = e.error_code(), "fetch failed, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.client.refresh_metadata(&self.config.topics).await.ok();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for f in fetched {
                let Some((_, state)) = self.parts.iter_mut().find(|(tp, _)| *tp == f.tp) else {
                    continue;
                };
                if let Some(e) = f.error {
                    if e.broker_error() == Some(ResponseError::OffsetOutOfRange) {
                        let reset = self
                            .client
                            .list_offset(&f.tp, self.config.starting_position)
                            .await?;
                        tracing::warn!(lane = self.id, partition = %f.tp, from = state.fetch_pos, to = reset, "offset out of range, resetting");
                        state.fetch_pos = reset;
                        state.buffer.clear();
                    } else if e.is_transient() {
                        tracing::warn!(lane = self.id, partition = %f.tp, error = %e, "partition fetch error, retrying");
                        self.client.refresh_metadata(&self.config.topics).await.ok();
                    } else {
                        return Err(e.into());
                    }
                    continue;
                }
                if let Some(last) = f.records.last() {
                    state.fetch_pos = last.offset + 1;
                }
                state.buffer.extend(f.records);
            }
        }
    }

    /// Builds, invokes and settles one batch; returns the backoff to wait when something failed.
    ///
    /// Records are taken in offset order per partition; one older than `max_record_age` goes to
    /// the destination without being delivered, one the filters reject is dropped (both are
    /// committed with the batch). A whole-batch failure with bisection on splits the batch
    /// (the halves are the next batches, and the split consumes no retry); otherwise each
    /// failing partition head counts an attempt and, past `max_retries`, its records from the
    /// first failed offset are discarded to the destination and the partition moves on.
    async fn deliver_one_batch(&mut self) -> Result<Option<Duration>, RunnerError> {
        let cap = self
            .bisect
            .last()
            .copied()
            .unwrap_or(self.config.batch_size);
        let mut event = EventBuilder::new(self.client.bootstrap_servers());
        let n = self.parts.len();
        let now = now_ms();
        let behaviour = &self.config.behaviour;
        // Per partition taken from: (index, delivered records, last offset taken incl. skipped).
        let mut taken: Vec<(usize, Vec<Record>, i64)> = Vec::new();
        let mut expired: Vec<(TopicPartition, Vec<Record>)> = Vec::new();
        let mut filtered = 0u64;
        // Whole runs per partition, from a rotating partition so none starves; not rotating while
        // bisecting, so a half is the same records again.
        for k in 0..n {
            let i = (self.rotate + k) % n;
            let (tp, state) = &mut self.parts[i];
            let (mut mine, mut old, mut last) = (Vec::new(), Vec::new(), None);
            let mut full = false;
            while event.len() < cap {
                let Some(r) = state.buffer.front() else { break };
                let too_old = behaviour
                    .max_record_age
                    .is_some_and(|age| now.saturating_sub(r.timestamp) > age.as_millis() as i64);
                if too_old || !behaviour.filters.matches(r.value.as_deref()) {
                    let r = state.buffer.pop_front().expect("front exists");
                    last = Some(r.offset);
                    if too_old {
                        old.push(r);
                    } else {
                        filtered += 1;
                    }
                    continue;
                }
                let pushed = match &behaviour.source_data_format {
                    Some(format) => event.try_push_json(tp, source_record_json(tp, r, format)),
                    None => event.try_push(tp, r),
                };
                if !pushed {
                    full = true;
                    break;
                }
                let r = state.buffer.pop_front().expect("front exists");
                last = Some(r.offset);
                mine.push(r);
            }
            if !old.is_empty() {
                expired.push((tp.clone(), old));
            }
            if let Some(last) = last {
                taken.push((i, mine, last));
            }
            if full || event.len() >= cap {
                break;
            }
        }
        let rotated = self.bisect.is_empty();
        if rotated {
            self.rotate = (self.rotate + 1) % n.max(1);
        }
        self.stats
            .records_filtered
            .fetch_add(filtered, Ordering::Relaxed);
        if !expired.is_empty() {
            let count: usize = expired.iter().map(|(_, r)| r.len()).sum();
            tracing::warn!(
                lane = self.id,
                records = count,
                error_code = "record_age_exceeded",
                "records older than MaximumRecordAgeInSeconds go to the on-failure destination undelivered"
            );
            let discard = Discard {
                parts: &expired,
                condition: Condition::RecordAgeExceeded,
                attempts: 0,
                function_error: false,
            };
            self.discard(&discard, "older than MaximumRecordAgeInSeconds")
                .await?;
            self.stats
                .records_expired
                .fetch_add(count as u64, Ordering::Relaxed);
        }
        let count = event.len();
        if count == 0 {
            let commits: Vec<(TopicPartition, i64)> = taken
                .iter()
                .map(|(i, _, last)| (self.parts[*i].0.clone(), last + 1))
                .collect();
            self.commit(&commits).await;
            return Ok(None);
        }
        let in_batch: HashMap<String, (TopicPartition, Vec<i64>)> = taken
            .iter()
            .filter(|(_, recs, _)| !recs.is_empty())
            .map(|(i, recs, _)| {
                let tp = self.parts[*i].0.clone();
                (
                    tp.to_string(),
                    (tp, recs.iter().map(|r| r.offset).collect()),
                )
            })
            .collect();

        let started = Instant::now();
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let mut verdict = match self.invoker.invoke(event.build()).await {
            Ok(InvokeOutcome::Response(body)) => parse_response(&body, &in_batch),
            Ok(InvokeOutcome::FunctionError(e)) => {
                BatchVerdict::AllFailed(format!("function error: {e}"))
            }
            Err(e) if e.is_transient() => BatchVerdict::AllFailed(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        if matches!(verdict, BatchVerdict::PartialFailure(_))
            && !self.config.behaviour.report_batch_item_failures
        {
            tracing::warn!(
                lane = self.id,
                "batchItemFailures ignored: the mapping's FunctionResponseTypes lacks ReportBatchItemFailures, so the batch counts as processed"
            );
            verdict = BatchVerdict::AllProcessed;
        }
        let ms = started.elapsed().as_millis();
        match &verdict {
            BatchVerdict::AllProcessed => {
                tracing::info!(
                    lane = self.id,
                    records = count,
                    partitions = taken.len(),
                    ms,
                    "batch processed"
                );
            }
            BatchVerdict::PartialFailure(f) => {
                tracing::warn!(
                    lane = self.id,
                    records = count,
                    failed_partitions = f.len(),
                    ms,
                    "batch partially failed"
                );
            }
            BatchVerdict::AllFailed(why) => {
                self.stats
                    .failed_invocations
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lane = self.id, records = count, ms, error_code = "batch_failed", reason = %why, "batch failed");
            }
        }
        let whole = matches!(verdict, BatchVerdict::AllFailed(_));

        if whole && self.config.behaviour.bisect_batch_on_function_error && count > 1 {
            // BisectBatchOnFunctionError: the first half, then the second, as batches of their
            // own; the split is not a retry.
            let first = count.div_ceil(2);
            if rotated {
                // The halves start where this batch started.
                self.rotate = (self.rotate + n - 1) % n;
            }
            self.bisect.pop();
            self.bisect.push(count - first);
            self.bisect.push(first);
            self.stats.bisections.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                lane = self.id,
                records = count,
                first,
                second = count - first,
                "bisecting the failed batch"
            );
            let mut commits = Vec::new();
            for (i, recs, last) in taken {
                let state = &mut self.parts[i].1;
                let resume = recs.first().map_or(last + 1, |r| r.offset);
                self.stats
                    .records_redelivered
                    .fetch_add(recs.len() as u64, Ordering::Relaxed);
                for r in recs.into_iter().rev() {
                    state.buffer.push_front(r);
                }
                commits.push((self.parts[i].0.clone(), resume));
            }
            self.commit(&commits).await;
            return Ok(None);
        }

        let reason = match &verdict {
            BatchVerdict::AllFailed(why) => why.clone(),
            _ => "reported in batchItemFailures".to_owned(),
        };
        let mut commits = Vec::new();
        let mut max_attempts = 0;
        let mut exhausted: Vec<(TopicPartition, Vec<Record>)> = Vec::new();
        let mut exhausted_attempts = 0;
        for (i, recs, last) in taken {
            let tp = self.parts[i].0.clone();
            let first_failed = match &verdict {
                BatchVerdict::AllProcessed => None,
                BatchVerdict::PartialFailure(f) => f.get(&tp).copied(),
                BatchVerdict::AllFailed(_) => recs.first().map(|r| r.offset),
            };
            let Some(f) = first_failed else {
                self.stats
                    .records_processed
                    .fetch_add(recs.len() as u64, Ordering::Relaxed);
                self.parts[i].1.failing = None;
                commits.push((tp, last + 1));
                continue;
            };
            let (done, failed): (Vec<Record>, Vec<Record>) =
                recs.into_iter().partition(|r| r.offset < f);
            self.stats
                .records_processed
                .fetch_add(done.len() as u64, Ordering::Relaxed);
            let state = &mut self.parts[i].1;
            let attempts = match state.failing {
                Some((o, a)) if o == f => a.saturating_add(1),
                _ => 1,
            };
            if attempts > self.config.max_retries {
                tracing::error!(lane = self.id, partition = %tp, offset = f, attempts, records = failed.len(), error_code = "retries_exhausted", "discarding records to the on-failure destination");
                exhausted_attempts = exhausted_attempts.max(attempts);
                state.failing = None;
                commits.push((tp.clone(), last + 1));
                exhausted.push((tp, failed));
            } else {
                max_attempts = max_attempts.max(attempts);
                state.failing = Some((f, attempts));
                self.stats
                    .records_redelivered
                    .fetch_add(failed.len() as u64, Ordering::Relaxed);
                for r in failed.into_iter().rev() {
                    state.buffer.push_front(r);
                }
                commits.push((tp, f));
            }
        }
        if !exhausted.is_empty() {
            let discard = Discard {
                parts: &exhausted,
                condition: Condition::RetryAttemptsExhausted,
                attempts: exhausted_attempts,
                function_error: whole,
            };
            self.discard(&discard, &reason).await?;
            let n: usize = exhausted.iter().map(|(_, r)| r.len()).sum();
            self.stats
                .records_dead_lettered
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        // This batch (a half, when bisecting) is settled unless it is to be retried as it is.
        if !whole || !exhausted.is_empty() {
            self.bisect.pop();
        }
        self.commit(&commits).await;
        Ok((max_attempts > 0).then(|| self.config.retry_policy().backoff(max_attempts)))
    }

    /// Writes `discard` to the destination, retrying until it is stored: records are never
    /// committed past before they are somewhere.
    async fn discard(&mut self, discard: &Discard<'_>, reason: &str) -> Result<(), RunnerError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self
                .config
                .dead_letter
                .send(&mut self.client, discard, reason)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::error!(lane = self.id, error = %e, error_code = "dead_letter_failed", "writing to the on-failure destination failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn commit(&mut self, commits: &[(TopicPartition, i64)]) {
        if commits.is_empty() {
            return;
        }
        let group = self.config.group.clone();
        if let Err(e) = retry_kafka!(self.client.commit(&group, commits)) {
            // Positions in memory stay right; only a restart would redeliver (at-least-once).
            tracing::error!(lane = self.id, error = %e, error_code = e.error_code(), "offset commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaConfig;

    fn config(retry_backoff: Duration) -> RunnerConfig {
        RunnerConfig {
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
        let policy = config(Duration::from_millis(100)).retry_policy();
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
        let zero = config(Duration::ZERO).retry_policy();
        assert_eq!(zero.backoff(5), Duration::ZERO);
    }
}
