//! [`KafkaBatch`] from `aws_lambda_events`' `KafkaEvent`, for callers that already hold one.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::KafkaBatch;
use super::raw::{RawBatch, RawRecord, RawRecords, Str};
use crate::error::BatchError;
use crate::record::{Header, HeaderList};

impl TryFrom<aws_lambda_events::event::kafka::KafkaEvent> for KafkaBatch {
    type Error = BatchError;

    /// Converts the `aws_lambda_events` type for callers that already have one. Prefer
    /// deserializing [`KafkaBatch`] directly: the upstream type rejects records without
    /// `headers`, and its timestamp parsing goes through floating point, which can shift a
    /// timestamp by one millisecond.
    fn try_from(event: aws_lambda_events::event::kafka::KafkaEvent) -> Result<Self, BatchError> {
        // Sort the groups so duplicate handling does not depend on HashMap order.
        let groups: BTreeMap<_, _> = event.records.into_iter().collect();
        let mut raw = Vec::with_capacity(groups.len());
        for (key, group) in groups {
            let records = group
                .into_iter()
                .map(|r| {
                    let headers = r
                        .headers
                        .into_iter()
                        .flat_map(|m| {
                            // HashMap order within one header map is arbitrary; the ESM sends one
                            // entry per map, so sort names for determinism when there are more.
                            let mut entries: Vec<_> = m.into_iter().collect();
                            entries.sort_by(|a, b| a.0.cmp(&b.0));
                            entries
                        })
                        .map(|(name, bytes)| {
                            Header::new(
                                name,
                                bytes.into_iter().map(|b| b as u8).collect::<Vec<u8>>(),
                            )
                        })
                        .collect();
                    RawRecord {
                        topic: r.topic.map(Str::owned),
                        partition: r.partition,
                        offset: r.offset,
                        timestamp: r.timestamp.timestamp_millis(),
                        timestamp_type: r.timestamp_type.map(Str::owned),
                        key: r.key.map(Str::owned),
                        value: r.value.map(Str::owned),
                        headers: HeaderList(headers),
                        key_schema_metadata: Default::default(),
                        value_schema_metadata: Default::default(),
                    }
                })
                .collect();
            raw.push((Str::owned(key), records));
        }
        RawBatch {
            event_source: event.event_source,
            event_source_arn: event.event_source_arn,
            bootstrap_servers: event.bootstrap_servers,
            records: RawRecords(raw),
        }
        .into_batch(&Arc::default())
        .expect("texts from strings are valid texts")
    }
}
