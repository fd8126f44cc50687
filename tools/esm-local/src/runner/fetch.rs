//! Filling a lane's buffers: fetch from every partition with room until a batch is full or the
//! batching window has passed, resetting a partition whose offset fell out of range.

use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use super::RunnerError;
use super::lane::Lane;
use crate::kafka::{FetchedPartition, TopicPartition};

/// Per-partition fetch cap: a batch of 100 records of ~60 KB fits, and memory stays bounded.
const PARTITION_MAX_BYTES: i32 = 4 * 1024 * 1024;

impl Lane {
    /// Fetches until a batch is full or the batching window has passed.
    pub(super) async fn gather(&mut self) -> Result<(), RunnerError> {
        let start = Instant::now();
        let window = self.settings.batching_window;
        loop {
            if self.buffered() >= self.settings.batch_size {
                return Ok(());
            }
            let left = window.saturating_sub(start.elapsed());
            if left.is_zero() && self.buffered() > 0 {
                return Ok(());
            }
            let wait = if left.is_zero() { window } else { left };
            self.fetch_once(wait).await?;
        }
    }

    /// One fetch of every partition with room in its buffer, the broker waiting up to `wait`
    /// for records; a transient failure is logged and left to the next fetch.
    async fn fetch_once(&mut self, wait: Duration) -> Result<(), RunnerError> {
        let positions: Vec<(TopicPartition, i64)> = self
            .parts
            .iter()
            .filter(|(_, s)| s.buffer.len() < self.settings.batch_size)
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
                self.client
                    .refresh_metadata(&self.settings.topics)
                    .await
                    .ok();
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        for f in fetched {
            self.absorb(f).await?;
        }
        Ok(())
    }

    /// Appends one partition's fetched records to its buffer, or handles its error.
    async fn absorb(&mut self, f: FetchedPartition) -> Result<(), RunnerError> {
        let Some((_, state)) = self.parts.iter_mut().find(|(tp, _)| *tp == f.tp) else {
            return Ok(());
        };
        if let Some(e) = f.error {
            if e.broker_error() == Some(ResponseError::OffsetOutOfRange) {
                let reset = self
                    .client
                    .list_offset(&f.tp, self.settings.starting_position)
                    .await?;
                tracing::warn!(lane = self.id, partition = %f.tp, from = state.fetch_pos, to = reset, "offset out of range, resetting");
                state.fetch_pos = reset;
                state.buffer.clear();
            } else if e.is_transient() {
                tracing::warn!(lane = self.id, partition = %f.tp, error = %e, "partition fetch error, retrying");
                self.client
                    .refresh_metadata(&self.settings.topics)
                    .await
                    .ok();
            } else {
                return Err(e.into());
            }
            return Ok(());
        }
        if let Some(last) = f.records.last() {
            state.fetch_pos = last.offset + 1;
        }
        state.buffer.extend(f.records);
        Ok(())
    }
}
