//! The Kafka partial batch response (`ReportBatchItemFailures`) and the per-record bookkeeping
//! that builds it.
//!
//! How the ESM uses it (AWS Lambda docs, "Configuring error handling controls for Kafka event
//! sources" and the stream partial-batch docs): the function returns the records it could not
//! process; an empty or null list means the whole batch succeeded. Kafka offsets are committed per
//! partition, so Lambda resumes each reported partition from its lowest reported offset: records
//! after it in the same partition are delivered again even if they succeeded (writes must be
//! idempotent), and partitions with no reported record are committed. A malformed response is
//! treated as a failure of the whole batch. The response only takes effect when the mapping has
//! `FunctionResponseTypes: [ReportBatchItemFailures]`; without it a returned list is ignored and
//! the batch counts as successful, so deployment templates must set it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::batch::KafkaBatch;
use crate::record_id::RecordId;

/// `{"batchItemFailures":[{"itemIdentifier":{"partition":"<topic>-<partition>","offset":<n>}}]}`.
///
/// ```
/// use event_decoding::{BatchItemFailure, KafkaBatchResponse, RecordId};
/// let r = KafkaBatchResponse {
///     batch_item_failures: vec![BatchItemFailure::from(&RecordId::new("gift_events", 2, 17))],
/// };
/// assert_eq!(
///     serde_json::to_string(&r).unwrap(),
///     r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"gift_events-2","offset":17}}]}"#
/// );
/// ```
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchResponse {
    /// Records to redeliver; empty when the whole batch succeeded.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One failed record.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// Which record.
    pub item_identifier: ItemIdentifier,
}

/// A record as the ESM identifies it in a response.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemIdentifier {
    /// `"<topic>-<partition>"`, the key of the event's `records` object.
    pub partition: String,
    /// The record offset (a JSON number).
    pub offset: i64,
}

impl From<&RecordId> for BatchItemFailure {
    fn from(id: &RecordId) -> Self {
        BatchItemFailure {
            item_identifier: ItemIdentifier {
                partition: id.topic_partition(),
                offset: id.offset,
            },
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BatchItemFailure>, D::Error> {
    Ok(Option::<Vec<BatchItemFailure>>::deserialize(d)?.unwrap_or_default())
}

/// What happened to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Written.
    Stored,
    /// Deliberately ignored (e.g. a CDC message event, a duplicate).
    Skipped,
    /// Permanently bad; sent to the dead-letter store and acknowledged.
    DeadLettered,
    /// Transient failure; must be redelivered.
    Failed,
}

/// Per-outcome counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// [`Outcome::Stored`].
    pub stored: usize,
    /// [`Outcome::Skipped`].
    pub skipped: usize,
    /// [`Outcome::DeadLettered`].
    pub dead_lettered: usize,
    /// [`Outcome::Failed`], plus expected records never recorded.
    pub failed: usize,
}

impl Counts {
    /// All records counted.
    pub fn total(&self) -> usize {
        self.stored + self.skipped + self.dead_lettered + self.failed
    }
}

/// Every record of the batch failed transiently: the handler returns this as its error so Lambda
/// retries the whole batch (a partial response listing every record would do the same with more
/// bytes, and an error shows up in the function's error metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("all {failed} records failed transiently; the whole batch will be retried")]
pub struct AllFailed {
    /// How many records failed.
    pub failed: usize,
}

impl AllFailed {
    /// Stable low-cardinality code.
    pub fn error_code(&self) -> &'static str {
        "all_failed"
    }
}

/// Collects per-record outcomes and turns them into the response.
///
/// Transient failures are reported; dead-lettered, skipped and stored records are not. Built with
/// [`BatchReport::for_batch`], records that were never recorded count as failed, so a handler
/// that forgets a record gets it redelivered instead of acknowledged.
///
/// ```
/// use event_decoding::{BatchReport, Outcome, RecordId};
/// let mut report = BatchReport::new();
/// report.record(&RecordId::new("t", 0, 1), Outcome::Stored);
/// report.record(&RecordId::new("t", 0, 2), Outcome::DeadLettered);
/// report.record(&RecordId::new("t", 1, 5), Outcome::Failed);
/// assert_eq!(report.counts().failed, 1);
/// let response = report.into_response().unwrap();
/// assert_eq!(response.batch_item_failures.len(), 1);
/// assert_eq!(response.batch_item_failures[0].item_identifier.partition, "t-1");
///
/// let mut all_bad = BatchReport::new();
/// all_bad.record(&RecordId::new("t", 0, 1), Outcome::Failed);
/// assert_eq!(all_bad.into_response().unwrap_err().failed, 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct BatchReport {
    outcomes: BTreeMap<RecordId, Option<Outcome>>,
}

impl BatchReport {
    /// An empty report; only recorded records count.
    pub fn new() -> Self {
        Self::default()
    }

    /// A report expecting every record of `batch`; unrecorded ones count as failed.
    pub fn for_batch(batch: &KafkaBatch) -> Self {
        Self {
            outcomes: batch.records().map(|r| (r.id(), None)).collect(),
        }
    }

    /// Records (or overwrites) the outcome of one record.
    pub fn record(&mut self, id: &RecordId, outcome: Outcome) {
        self.outcomes.insert(id.clone(), Some(outcome));
    }

    /// Counts by outcome.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for o in self.outcomes.values() {
            match o {
                Some(Outcome::Stored) => c.stored += 1,
                Some(Outcome::Skipped) => c.skipped += 1,
                Some(Outcome::DeadLettered) => c.dead_lettered += 1,
                Some(Outcome::Failed) | None => c.failed += 1,
            }
        }
        c
    }

    /// The response: failed records in (topic, partition, offset) order; `Err(AllFailed)` when the
    /// batch is non-empty and every record failed transiently.
    pub fn into_response(self) -> Result<KafkaBatchResponse, AllFailed> {
        let counts = self.counts();
        if counts.failed > 0 && counts.failed == counts.total() {
            return Err(AllFailed {
                failed: counts.failed,
            });
        }
        let batch_item_failures = self
            .outcomes
            .iter()
            .filter(|(_, o)| matches!(o, None | Some(Outcome::Failed)))
            .map(|(id, _)| BatchItemFailure::from(id))
            .collect();
        Ok(KafkaBatchResponse {
            batch_item_failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventSource, KafkaRecord};

    #[test]
    fn golden_json() {
        let mut report = BatchReport::new();
        report.record(&RecordId::new("cdc.pages-v2", 10, 300), Outcome::Failed);
        report.record(&RecordId::new("cdc.pages-v2", 2, 7), Outcome::Failed);
        report.record(&RecordId::new("cdc.pages-v2", 2, 5), Outcome::Stored);
        report.record(&RecordId::new("a", 0, 1), Outcome::DeadLettered);
        let json = serde_json::to_string(&report.into_response().unwrap()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"batchItemFailures":["#,
                r#"{"itemIdentifier":{"partition":"cdc.pages-v2-2","offset":7}},"#,
                r#"{"itemIdentifier":{"partition":"cdc.pages-v2-10","offset":300}}"#,
                r#"]}"#
            )
        );
        assert_eq!(
            serde_json::to_string(&KafkaBatchResponse::default()).unwrap(),
            r#"{"batchItemFailures":[]}"#
        );
    }

    #[test]
    fn response_round_trips_and_accepts_null() {
        let r: KafkaBatchResponse = serde_json::from_str(r#"{"batchItemFailures":null}"#).unwrap();
        assert!(r.batch_item_failures.is_empty());
        let r: KafkaBatchResponse = serde_json::from_str("{}").unwrap();
        assert!(r.batch_item_failures.is_empty());
        let text = r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":1}}]}"#;
        let r: KafkaBatchResponse = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), text);
    }

    #[test]
    fn empty_batch_succeeds() {
        assert_eq!(
            BatchReport::new().into_response().unwrap(),
            KafkaBatchResponse::default()
        );
    }

    #[test]
    fn all_failed_is_an_error_but_mixed_is_not() {
        let mut r = BatchReport::new();
        r.record(&RecordId::new("t", 0, 1), Outcome::Failed);
        r.record(&RecordId::new("t", 0, 2), Outcome::Failed);
        let err = r.into_response().unwrap_err();
        assert_eq!(
            err.to_string(),
            "all 2 records failed transiently; the whole batch will be retried"
        );

        let mut r = BatchReport::new();
        r.record(&RecordId::new("t", 0, 1), Outcome::Failed);
        r.record(&RecordId::new("t", 0, 2), Outcome::DeadLettered);
        assert_eq!(r.into_response().unwrap().batch_item_failures.len(), 1);
    }

    #[test]
    fn unrecorded_records_of_a_batch_count_as_failed() {
        let batch = KafkaBatch::builder(EventSource::Msk)
            .record(KafkaRecord::new("t", 0, 1, 0))
            .record(KafkaRecord::new("t", 0, 2, 0))
            .build();
        let mut r = BatchReport::for_batch(&batch);
        r.record(&RecordId::new("t", 0, 1), Outcome::Stored);
        assert_eq!(
            r.counts(),
            Counts {
                stored: 1,
                failed: 1,
                ..Counts::default()
            }
        );
        let resp = r.into_response().unwrap();
        assert_eq!(
            resp.batch_item_failures,
            vec![BatchItemFailure::from(&RecordId::new("t", 0, 2))]
        );
        // Overwriting an outcome keeps one entry per record.
        let mut r = BatchReport::for_batch(&batch);
        r.record(&RecordId::new("t", 0, 1), Outcome::Failed);
        r.record(&RecordId::new("t", 0, 1), Outcome::Stored);
        r.record(&RecordId::new("t", 0, 2), Outcome::Skipped);
        assert_eq!(r.into_response().unwrap(), KafkaBatchResponse::default());
    }
}
