//! The poll -> batch -> invoke -> commit loop.
//!
//! Partitions are split over `concurrency` lanes (partition `i` of the sorted list goes to lane
//! `i % lanes`). A lane owns its Kafka connections and one function process, and runs one batch
//! at a time, so records of a partition are delivered in order while lanes run concurrently.
//!
//! Per batch: gather until `batch_size` records or the batching window ends, invoke, then per
//! partition commit up to the first failed offset. Unprocessed records go back to the front of
//! the lane's buffer and are redelivered after a backoff; once a partition's head has failed
//! `max_retries + 1` times, its unprocessed records are dead-lettered and the lane moves on.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use lambda_kit::retry::RetryPolicy;
use tokio::sync::watch;

use crate::dead_letter::DeadLetterTarget;
use crate::invoke::{
    FunctionProcess, FunctionSpec, HttpInvoker, InvokeError, InvokeOutcome, Invoker,
};
use crate::kafka::{KafkaClient, KafkaConfig, KafkaError, OffsetSpec, Record, TopicPartition};
use crate::payload::{BatchVerdict, EventBuilder, parse_response};

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
    /// Retries of a failing partition head before dead-lettering (0 = dead-letter at first failure).
    pub max_retries: u32,
    /// First retry delay; doubles per attempt up to 30 s ([`RunnerConfig::retry_policy`]).
    pub retry_backoff: Duration,
    /// Max lanes (function processes) running at once.
    pub concurrency: usize,
    /// Where exhausted records go.
    pub dead_letter: DeadLetterTarget,
    /// The function.
    pub function: FunctionTarget,
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
    async fn deliver_one_batch(&mut self) -> Result<Option<Duration>, RunnerError> {
        let mut event = EventBuilder::new(self.client.bootstrap_servers());
        let n = self.parts.len();
        // Take whole runs per partition, starting at a rotating partition so none starves.
        let mut taken: Vec<(usize, Vec<Record>)> = Vec::new();
        'outer: for k in 0..n {
            let i = (self.rotate + k) % n;
            let (tp, state) = &mut self.parts[i];
            let mut mine = Vec::new();
            while event.len() < self.config.batch_size {
                let Some(r) = state.buffer.front() else { break };
                if !event.try_push(tp, r) {
                    if !mine.is_empty() {
                        taken.push((i, mine));
                    }
                    break 'outer;
                }
                mine.push(state.buffer.pop_front().expect("front exists"));
            }
            if !mine.is_empty() {
                taken.push((i, mine));
            }
            if event.len() >= self.config.batch_size {
                break;
            }
        }
        self.rotate = (self.rotate + 1) % n.max(1);
        let count = event.len();
        let in_batch: HashMap<String, (TopicPartition, Vec<i64>)> = taken
            .iter()
            .map(|(i, recs)| {
                let tp = self.parts[*i].0.clone();
                (
                    tp.to_string(),
                    (tp, recs.iter().map(|r| r.offset).collect()),
                )
            })
            .collect();

        let started = Instant::now();
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let verdict = match self.invoker.invoke(event.build()).await {
            Ok(InvokeOutcome::Response(body)) => parse_response(&body, &in_batch),
            Ok(InvokeOutcome::FunctionError(e)) => {
                BatchVerdict::AllFailed(format!("function error: {e}"))
            }
            Err(e) if e.is_transient() => BatchVerdict::AllFailed(e.to_string()),
            Err(e) => return Err(e.into()),
        };
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

        let mut commits = Vec::new();
        let mut max_attempts = 0;
        for (i, recs) in taken {
            let tp = self.parts[i].0.clone();
            let first_failed = match &verdict {
                BatchVerdict::AllProcessed => None,
                BatchVerdict::PartialFailure(f) => f.get(&tp).copied(),
                BatchVerdict::AllFailed(_) => recs.first().map(|r| r.offset),
            };
            let reason = match &verdict {
                BatchVerdict::AllFailed(why) => why.clone(),
                _ => "reported in batchItemFailures".to_owned(),
            };
            let last = recs.last().expect("non-empty").offset;
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
                Some((o, a)) if o == f => a + 1,
                _ => 1,
            };
            if attempts > self.config.max_retries {
                tracing::error!(lane = self.id, partition = %tp, offset = f, attempts, records = failed.len(), error_code = "retries_exhausted", "dead-lettering records");
                self.dead_letter(&tp, &failed, &reason, attempts).await?;
                self.stats
                    .records_dead_lettered
                    .fetch_add(failed.len() as u64, Ordering::Relaxed);
                self.parts[i].1.failing = None;
                commits.push((tp, last + 1));
            } else {
                max_attempts = max_attempts.max(attempts);
                state.failing = Some((f, attempts));
                self.stats
                    .records_redelivered
                    .fetch_add(failed.len() as u64, Ordering::Relaxed);
                for r in failed.into_iter().rev() {
                    state.buffer.push_front(r);
                }
                if f > 0 || !done.is_empty() {
                    commits.push((tp, f));
                }
            }
        }
        self.commit(&commits).await;
        Ok((max_attempts > 0).then(|| self.config.retry_policy().backoff(max_attempts)))
    }

    async fn dead_letter(
        &mut self,
        tp: &TopicPartition,
        recs: &[Record],
        reason: &str,
        attempts: u32,
    ) -> Result<(), RunnerError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self
                .config
                .dead_letter
                .send(&mut self.client, tp, recs, reason, attempts)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Never skip records that were not stored anywhere: keep trying.
                    tracing::error!(lane = self.id, partition = %tp, error = %e, error_code = "dead_letter_failed", "dead-lettering failed, retrying");
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
