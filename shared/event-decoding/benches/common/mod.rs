//! What the decoding benchmarks share: the gift shape gift-persister takes, the 10,000 gifts
//! they decode, the ESM payload around a list of values, and the two measurements (values as
//! typed gifts, values as `serde_json::Value`). Each bench uses part of it.
#![allow(dead_code)]

use event_decoding::{Decoding, EventSource, KafkaBatch, KafkaRecord};
use serde::Deserialize;

/// The gift shape gift-persister takes (its fields that the benchmark's gifts carry).
#[derive(Deserialize)]
pub struct Gift {
    pub page_id: i64,
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub ts: Option<f64>,
    #[serde(default)]
    pub event_id: Option<String>,
}

/// Records per payload: ~6 MB of JSON gifts, the ESM's invocation limit.
pub const RECORDS: usize = 10_000;

/// The answer text of every gift.
pub fn answer() -> String {
    "The answer, with some text to make the record realistic. ".repeat(4)
}

/// The gifts as JSON texts.
pub fn json_values() -> Vec<String> {
    let answer = answer();
    (0..RECORDS)
        .map(|i| format!(
            r#"{{"page_id":{i},"question":"TEST Q number {i}?","answer":"{answer}","ts":1732350000.123,"event_id":"evt-{i:08}"}}"#
        ))
        .collect()
}

/// An MSK payload of `values`, over 8 partitions, keyed by page.
pub fn batch(values: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records(values.enumerate().map(|(i, v)| {
            KafkaRecord::new(
                "gift_events",
                (i % 8) as i32,
                i as i64,
                1_732_350_000_000 + i as i64,
            )
            .with_key(format!("page-{i}"))
            .with_value(v)
        }))
        .build();
    serde_json::to_vec(&batch).unwrap()
}

/// The JSON gifts' payload.
pub fn json_payload() -> Vec<u8> {
    batch(json_values().into_iter().map(String::into_bytes))
}

/// Payload -> typed gifts, decoded as `d` says: the sum of their page ids.
pub fn typed(bytes: &[u8], d: Decoding<'_>) -> i64 {
    let batch = KafkaBatch::from_slice(bytes).unwrap();
    batch
        .records()
        .map(|r| r.value_json_via::<Gift>(d).unwrap().page_id)
        .sum()
}

/// Payload -> `serde_json::Value` per record, decoded as `d` says: how many decoded.
pub fn values(bytes: &[u8], d: Decoding<'_>) -> usize {
    let batch = KafkaBatch::from_slice(bytes).unwrap();
    batch
        .records()
        .filter(|r| r.value_json_via::<serde_json::Value>(d).is_ok())
        .count()
}
