//! The hand-off to the on-failure destination: records older than `MaximumRecordAgeInSeconds`,
//! and records whose retries are exhausted, written there before they are committed past.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::RunnerError;
use super::lane::Lane;
use crate::kafka::{Record, TopicPartition};
use crate::on_failure::{Condition, Discard};

impl Lane {
    /// Sends records too old to deliver to the destination, undelivered.
    pub(super) async fn expire(
        &mut self,
        expired: &[(TopicPartition, Vec<Record>)],
    ) -> Result<(), RunnerError> {
        if expired.is_empty() {
            return Ok(());
        }
        let count: usize = expired.iter().map(|(_, r)| r.len()).sum();
        tracing::warn!(
            lane = self.id,
            records = count,
            error_code = "record_age_exceeded",
            "records older than MaximumRecordAgeInSeconds go to the on-failure destination undelivered"
        );
        let discard = Discard {
            parts: expired,
            condition: Condition::RecordAgeExceeded,
            attempts: 0,
            function_error: false,
        };
        self.discard(&discard, "older than MaximumRecordAgeInSeconds")
            .await?;
        self.stats
            .records_expired
            .fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Sends records whose retries are exhausted (after `attempts` invocations, the last failing
    /// `reason`, as a whole batch when `function_error`) to the destination.
    pub(super) async fn give_up(
        &mut self,
        exhausted: &[(TopicPartition, Vec<Record>)],
        attempts: u32,
        function_error: bool,
        reason: &str,
    ) -> Result<(), RunnerError> {
        if exhausted.is_empty() {
            return Ok(());
        }
        let discard = Discard {
            parts: exhausted,
            condition: Condition::RetryAttemptsExhausted,
            attempts,
            function_error,
        };
        self.discard(&discard, reason).await?;
        let n: usize = exhausted.iter().map(|(_, r)| r.len()).sum();
        self.stats
            .records_dead_lettered
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `discard` to the destination, retrying until it is stored: records are never
    /// committed past before they are somewhere.
    async fn discard(&mut self, discard: &Discard<'_>, reason: &str) -> Result<(), RunnerError> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self
                .settings
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
}
