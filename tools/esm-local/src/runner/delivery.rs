//! One batch's delivery: take records from the partitions' buffers, invoke the function, then
//! bisect a batch that failed as a whole or settle each partition (commit what was processed,
//! put the rest back for a retry, or hand it off once its retries are exhausted).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::RunnerError;
use super::lane::Lane;
use crate::invoke::InvokeOutcome;
use crate::kafka::{Record, TopicPartition};
use crate::on_failure::now_ms;
use crate::payload::{BatchVerdict, EventBuilder, parse_response, source_record_json};

/// The records taken from one partition for a batch.
struct Run {
    /// The partition's index in the lane.
    index: usize,
    /// Records delivered, in offset order.
    records: Vec<Record>,
    /// The last offset taken, delivered or not (expired and filtered records count).
    last: i64,
}

/// What one batch took from the lane's buffers.
struct Taken {
    event: EventBuilder,
    runs: Vec<Run>,
    /// Records too old to deliver, per partition.
    expired: Vec<(TopicPartition, Vec<Record>)>,
    /// How many records the filters rejected.
    filtered: u64,
}

impl Lane {
    /// Builds, invokes and settles one batch; returns the backoff to wait when something failed.
    ///
    /// Records are taken in offset order per partition; one older than `max_record_age` goes to
    /// the destination without being delivered, one the filters reject is dropped (both are
    /// committed with the batch). A whole-batch failure with bisection on splits the batch
    /// (the halves are the next batches, and the split consumes no retry); otherwise each
    /// failing partition head counts an attempt and, past `max_retries`, its records from the
    /// first failed offset are discarded to the destination and the partition moves on.
    pub(super) async fn deliver_one_batch(&mut self) -> Result<Option<Duration>, RunnerError> {
        let taken = self.take_batch();
        let rotated = self.bisect.is_empty();
        if rotated {
            self.rotate = (self.rotate + 1) % self.parts.len().max(1);
        }
        self.stats
            .records_filtered
            .fetch_add(taken.filtered, Ordering::Relaxed);
        self.expire(&taken.expired).await?;
        let count = taken.event.len();
        if count == 0 {
            let commits: Vec<(TopicPartition, i64)> = taken
                .runs
                .iter()
                .map(|run| (self.parts[run.index].0.clone(), run.last + 1))
                .collect();
            self.commit(&commits).await;
            return Ok(None);
        }
        let verdict = self.invoke(taken.event, &taken.runs).await?;
        let whole = matches!(verdict, BatchVerdict::AllFailed(_));
        if whole && self.settings.behaviour.bisect_batch_on_function_error && count > 1 {
            self.split_failed_batch(taken.runs, count, rotated).await;
            return Ok(None);
        }
        self.settle(taken.runs, &verdict).await
    }

    /// Takes the next batch: whole runs per partition, up to `batch_size` records (or the size
    /// of the half being retried), from a rotating partition so none starves; not rotating
    /// while bisecting, so a half is the same records again.
    fn take_batch(&mut self) -> Taken {
        let cap = self
            .bisect
            .last()
            .copied()
            .unwrap_or(self.settings.batch_size);
        let mut taken = Taken {
            event: EventBuilder::new(self.client.bootstrap_servers()),
            runs: Vec::new(),
            expired: Vec::new(),
            filtered: 0,
        };
        let n = self.parts.len();
        let now = now_ms();
        for k in 0..n {
            let full = self.take_from((self.rotate + k) % n, cap, now, &mut taken);
            if full || taken.event.len() >= cap {
                break;
            }
        }
        taken
    }

    /// Moves records of partition `i` from its buffer into `taken` while the batch holds fewer
    /// than `cap`; true when the event reached its size limit.
    fn take_from(&mut self, i: usize, cap: usize, now: i64, taken: &mut Taken) -> bool {
        let behaviour = &self.settings.behaviour;
        let (tp, state) = &mut self.parts[i];
        let (mut mine, mut old, mut last) = (Vec::new(), Vec::new(), None);
        let mut full = false;
        while taken.event.len() < cap {
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
                    taken.filtered += 1;
                }
                continue;
            }
            let pushed = match &behaviour.source_data_format {
                Some(format) => taken
                    .event
                    .try_push_json(tp, source_record_json(tp, r, format)),
                None => taken.event.try_push(tp, r),
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
            taken.expired.push((tp.clone(), old));
        }
        if let Some(last) = last {
            taken.runs.push(Run {
                index: i,
                records: mine,
                last,
            });
        }
        full
    }

    /// Invokes the function with `event` and reads its answer: a transient invoke error fails
    /// the batch as a whole, a permanent one stops the lane.
    async fn invoke(
        &mut self,
        event: EventBuilder,
        runs: &[Run],
    ) -> Result<BatchVerdict, RunnerError> {
        let in_batch: HashMap<String, (TopicPartition, Vec<i64>)> = runs
            .iter()
            .filter(|run| !run.records.is_empty())
            .map(|run| {
                let tp = self.parts[run.index].0.clone();
                let offsets = run.records.iter().map(|r| r.offset).collect();
                (tp.to_string(), (tp, offsets))
            })
            .collect();
        let records = event.len();
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
        let lane = self.id;
        if matches!(verdict, BatchVerdict::PartialFailure(_))
            && !self.settings.behaviour.report_batch_item_failures
        {
            tracing::warn!(
                lane,
                "batchItemFailures ignored: the mapping's FunctionResponseTypes lacks ReportBatchItemFailures, so the batch counts as processed"
            );
            verdict = BatchVerdict::AllProcessed;
        }
        let ms = started.elapsed().as_millis();
        match &verdict {
            BatchVerdict::AllProcessed => {
                let partitions = runs.len();
                tracing::info!(lane, records, partitions, ms, "batch processed");
            }
            BatchVerdict::PartialFailure(f) => {
                let failed_partitions = f.len();
                tracing::warn!(
                    lane,
                    records,
                    failed_partitions,
                    ms,
                    "batch partially failed"
                );
            }
            BatchVerdict::AllFailed(why) => {
                self.stats
                    .failed_invocations
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lane, records, ms, error_code = "batch_failed", reason = %why, "batch failed");
            }
        }
        Ok(verdict)
    }

    /// `BisectBatchOnFunctionError`: the first half of the failed batch of `count` records,
    /// then the second, as batches of their own; the split is not a retry.
    async fn split_failed_batch(&mut self, runs: Vec<Run>, count: usize, rotated: bool) {
        let first = count.div_ceil(2);
        if rotated {
            // The halves start where this batch started.
            let n = self.parts.len();
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
        for Run {
            index,
            records,
            last,
        } in runs
        {
            let resume = records.first().map_or(last + 1, |r| r.offset);
            self.put_back(index, records);
            commits.push((self.parts[index].0.clone(), resume));
        }
        self.commit(&commits).await;
    }

    /// Puts `records` back at the front of partition `index`'s buffer, for redelivery.
    fn put_back(&mut self, index: usize, records: Vec<Record>) {
        self.stats
            .records_redelivered
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let state = &mut self.parts[index].1;
        for r in records.into_iter().rev() {
            state.buffer.push_front(r);
        }
    }

    /// Per partition of the batch: commits what was processed, and from the first failed
    /// offset either puts the records back for a retry or, past `max_retries`, hands them off
    /// and moves on. Returns the backoff before the retry, if any.
    async fn settle(
        &mut self,
        runs: Vec<Run>,
        verdict: &BatchVerdict,
    ) -> Result<Option<Duration>, RunnerError> {
        let whole = matches!(verdict, BatchVerdict::AllFailed(_));
        let mut commits = Vec::new();
        let mut max_attempts = 0;
        let mut exhausted: Vec<(TopicPartition, Vec<Record>)> = Vec::new();
        let mut exhausted_attempts = 0;
        for Run {
            index,
            records,
            last,
        } in runs
        {
            let tp = self.parts[index].0.clone();
            let first_failed = match verdict {
                BatchVerdict::AllProcessed => None,
                BatchVerdict::PartialFailure(f) => f.get(&tp).copied(),
                BatchVerdict::AllFailed(_) => records.first().map(|r| r.offset),
            };
            let Some(f) = first_failed else {
                self.processed(records.len());
                self.parts[index].1.failing = None;
                commits.push((tp, last + 1));
                continue;
            };
            let (done, failed): (Vec<Record>, Vec<Record>) =
                records.into_iter().partition(|r| r.offset < f);
            self.processed(done.len());
            let state = &mut self.parts[index].1;
            let attempts = match state.failing {
                Some((o, a)) if o == f => a.saturating_add(1),
                _ => 1,
            };
            if attempts > self.settings.max_retries {
                tracing::error!(lane = self.id, partition = %tp, offset = f, attempts, records = failed.len(), error_code = "retries_exhausted", "discarding records to the on-failure destination");
                exhausted_attempts = exhausted_attempts.max(attempts);
                state.failing = None;
                commits.push((tp.clone(), last + 1));
                exhausted.push((tp, failed));
            } else {
                max_attempts = max_attempts.max(attempts);
                state.failing = Some((f, attempts));
                self.put_back(index, failed);
                commits.push((tp, f));
            }
        }
        let reason = match verdict {
            BatchVerdict::AllFailed(why) => why.clone(),
            _ => "reported in batchItemFailures".to_owned(),
        };
        self.give_up(&exhausted, exhausted_attempts, whole, &reason)
            .await?;
        // This batch (a half, when bisecting) is settled unless it is to be retried as it is.
        if !whole || !exhausted.is_empty() {
            self.bisect.pop();
        }
        self.commit(&commits).await;
        Ok((max_attempts > 0).then(|| self.settings.retry_policy().backoff(max_attempts)))
    }

    fn processed(&self, records: usize) {
        self.stats
            .records_processed
            .fetch_add(records as u64, Ordering::Relaxed);
    }
}
