//! A lane: its share of the partitions with their positions and buffers, its own Kafka
//! connection and function, and its loop (gather, deliver, wait out a backoff, commit).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{DeliverySettings, FunctionTarget, RunnerError, RunnerStats};
use crate::invoke::{FunctionProcess, HttpInvoker, Invoker};
use crate::kafka::{KafkaClient, Record, TopicPartition};

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

pub(super) struct PartitionState {
    /// Next offset to fetch.
    pub(super) fetch_pos: i64,
    /// Fetched, not yet delivered (or handed back for redelivery), in offset order.
    pub(super) buffer: VecDeque<Record>,
    /// Offset of the failing head and how many times it failed.
    pub(super) failing: Option<(i64, u32)>,
}

pub(super) struct Lane {
    pub(super) id: usize,
    pub(super) settings: DeliverySettings,
    pub(super) client: KafkaClient,
    pub(super) invoker: Invoker,
    pub(super) parts: Vec<(TopicPartition, PartitionState)>,
    /// The partition the next batch starts with.
    pub(super) rotate: usize,
    /// Sizes of the next batches while bisecting (the top is the next one).
    pub(super) bisect: Vec<usize>,
    pub(super) stats: Arc<RunnerStats>,
}

impl Lane {
    pub(super) async fn start(
        id: usize,
        settings: DeliverySettings,
        tps: Vec<TopicPartition>,
        stats: Arc<RunnerStats>,
    ) -> Result<Self, RunnerError> {
        let mut client = KafkaClient::connect(settings.kafka.clone()).await?;
        client.refresh_metadata(&settings.topics).await?;
        let committed = retry_kafka!(client.committed_offsets(&settings.group, &tps))?;
        let mut parts = Vec::new();
        for tp in tps {
            let pos = match committed.get(&tp).copied().flatten() {
                Some(o) => o,
                None => client.list_offset(&tp, settings.starting_position).await?,
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
        let invoker = match &settings.function {
            FunctionTarget::Process(spec) => {
                Invoker::Process(Box::new(FunctionProcess::new(spec.clone())))
            }
            FunctionTarget::InvokeUrl(url, timeout) => {
                Invoker::Http(HttpInvoker::new(url.clone(), *timeout)?)
            }
        };
        Ok(Self {
            id,
            settings,
            client,
            invoker,
            parts,
            rotate: 0,
            bisect: Vec::new(),
            stats,
        })
    }

    pub(super) fn buffered(&self) -> usize {
        self.parts.iter().map(|(_, s)| s.buffer.len()).sum()
    }

    pub(super) async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
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

    pub(super) async fn commit(&mut self, commits: &[(TopicPartition, i64)]) {
        if commits.is_empty() {
            return;
        }
        let group = self.settings.group.clone();
        if let Err(e) = retry_kafka!(self.client.commit(&group, commits)) {
            // Positions in memory stay right; only a restart would redeliver (at-least-once).
            tracing::error!(lane = self.id, error = %e, error_code = e.error_code(), "offset commit failed");
        }
    }
}
