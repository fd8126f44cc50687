//! The ESM event a function receives and the partial batch response it returns.
//!
//! Event shape (self-managed Kafka): `{"eventSource":"SelfManagedKafka","bootstrapServers":"h:p",
//! "records":{"<topic>-<partition>":[{"topic","partition","offset","timestamp","timestampType",
//! "key"?,"value"?,"headers":[{"name":[signed bytes]}]}]}}`; key and value base64, absent when null.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kafka_protocol::records::TimestampType;
use serde_json::{Map, Value, json};

use crate::kafka::{Record, TopicPartition};

/// Lambda's synchronous invocation payload limit, which the ESM respects when batching.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Bytes the envelope around the records adds (keys, braces), generously rounded up.
const ENVELOPE_OVERHEAD: usize = 256;

/// One record rendered as the ESM renders it.
pub fn record_json(tp: &TopicPartition, r: &Record) -> Value {
    let mut m = Map::new();
    m.insert("topic".into(), json!(tp.topic));
    m.insert("partition".into(), json!(tp.partition));
    m.insert("offset".into(), json!(r.offset));
    m.insert("timestamp".into(), json!(r.timestamp));
    let ts_type = match r.timestamp_type {
        TimestampType::Creation => "CREATE_TIME",
        TimestampType::LogAppend => "LOG_APPEND_TIME",
    };
    m.insert("timestampType".into(), json!(ts_type));
    if let Some(k) = &r.key {
        m.insert("key".into(), json!(B64.encode(k)));
    }
    if let Some(v) = &r.value {
        m.insert("value".into(), json!(B64.encode(v)));
    }
    // Headers are arrays of *signed* byte values, one single-key object per header, in order.
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            let bytes: Vec<i8> = v
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|b| *b as i8)
                .collect();
            json!({ k.as_str(): bytes })
        })
        .collect();
    m.insert("headers".into(), Value::Array(headers));
    Value::Object(m)
}

/// One record as a mapping with a schema registry and `EventRecordFormat: SOURCE` delivers it:
/// a key or value in the Confluent wire format (magic byte 0, 4-byte big-endian schema id) loses
/// that prefix and gains `keySchemaMetadata` / `valueSchemaMetadata` `{"dataFormat", "schemaId"}`
/// (the API reference: in SOURCE format Lambda "removes all schema metadata, such as the schema
/// ID"; the metadata fields are those event-decoding reads). `data_format` (`AVRO`, `PROTOBUF`,
/// `JSON`) stands for what the registry would say of the schema; Protobuf message indexes stay
/// in the body. A key or value not in that format is delivered as it is, without metadata.
///
/// ```
/// use esm_local::payload::source_record_json;
/// # use esm_local::kafka::TopicPartition;
/// # use esm_local::kafka::plain_record;
/// let value = Some(vec![0, 0, 0, 0, 12, 2, 4].into());
/// let r = plain_record(0, 0, None, value, Default::default());
/// let v = source_record_json(&TopicPartition::new("t", 0), &r, "AVRO");
/// assert_eq!(v["value"], "AgQ="); // [2, 4]
/// assert_eq!(v["valueSchemaMetadata"]["schemaId"], "12");
/// ```
pub fn source_record_json(tp: &TopicPartition, r: &Record, data_format: &str) -> Value {
    let mut v = record_json(tp, r);
    for (bytes, field, meta) in [
        (&r.key, "key", "keySchemaMetadata"),
        (&r.value, "value", "valueSchemaMetadata"),
    ] {
        if let Some(b) = bytes
            && b.len() >= 5
            && b[0] == 0
        {
            let id = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
            v[field] = json!(B64.encode(&b[5..]));
            v[meta] = json!({"dataFormat": data_format, "schemaId": id.to_string()});
        }
    }
    v
}

/// Accumulates records into one event, refusing records past the payload cap.
#[derive(Debug)]
pub struct EventBuilder {
    bootstrap_servers: String,
    groups: BTreeMap<String, Vec<Value>>,
    size: usize,
    count: usize,
}

impl EventBuilder {
    /// An empty event for a cluster reached at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        let bootstrap_servers = bootstrap_servers.into();
        let size = ENVELOPE_OVERHEAD + bootstrap_servers.len();
        Self {
            bootstrap_servers,
            groups: BTreeMap::new(),
            size,
            count: 0,
        }
    }

    /// Adds a record unless it would push the payload past [`MAX_PAYLOAD_BYTES`]; a record that
    /// alone exceeds the cap is still accepted when the event is empty, so it can be delivered
    /// (and dead-lettered by its failure) instead of blocking its partition forever.
    pub fn try_push(&mut self, tp: &TopicPartition, r: &Record) -> bool {
        self.try_push_json(tp, record_json(tp, r))
    }

    /// [`try_push`](Self::try_push) for a record already rendered (by [`record_json`], with
    /// fields added: the schema metadata an ESM schema registry sets, say).
    pub fn try_push_json(&mut self, tp: &TopicPartition, v: Value) -> bool {
        let key = tp.to_string();
        let len = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0)
            + 1
            + if self.groups.contains_key(&key) {
                0
            } else {
                key.len() + 6
            };
        if self.count > 0 && self.size + len > MAX_PAYLOAD_BYTES {
            return false;
        }
        self.size += len;
        self.count += 1;
        self.groups.entry(key).or_default().push(v);
        true
    }

    /// Records added so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The JSON payload.
    pub fn build(self) -> Vec<u8> {
        let records: Map<String, Value> = self
            .groups
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v)))
            .collect();
        serde_json::to_vec(&json!({
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": self.bootstrap_servers,
            "records": records,
        }))
        .expect("JSON values always serialize")
    }
}

/// What the function said about a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchVerdict {
    /// Every record was processed.
    AllProcessed,
    /// Per partition, the first offset that must be redelivered (with everything after it).
    PartialFailure(HashMap<TopicPartition, i64>),
    /// The whole batch must be redelivered (function error, crash, timeout, invalid response).
    AllFailed(String),
}

/// Reads a function's response for a batch whose partitions are `in_batch` (`"t-p"` -> tp).
///
/// A response without `batchItemFailures` (including `null`) means success. An identifier that
/// is malformed or names a partition/offset not in the batch fails the whole batch, as Lambda
/// does, so a buggy response never silently acknowledges records.
pub fn parse_response(
    body: &[u8],
    in_batch: &HashMap<String, (TopicPartition, Vec<i64>)>,
) -> BatchVerdict {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => return BatchVerdict::AllProcessed,
        Err(e) => return BatchVerdict::AllFailed(format!("response is not JSON: {e}")),
    };
    let Some(failures) = v.get("batchItemFailures") else {
        return BatchVerdict::AllProcessed;
    };
    let failures = match failures {
        Value::Null => return BatchVerdict::AllProcessed,
        Value::Array(a) => a,
        _ => return BatchVerdict::AllFailed("batchItemFailures is not an array".into()),
    };
    let mut first: HashMap<TopicPartition, i64> = HashMap::new();
    for f in failures {
        let id = f.get("itemIdentifier");
        // `{"partition": "<topic>-<partition>", "offset": n}`: the identifier Powertools for AWS
        // Lambda's batch utility writes for Kafka (`KafkaItemIdentifier`) and event-decoding's
        // response writes. Another key name is a complete failure, as the streams pages list
        // "an itemIdentifier with a bad key name".
        let partition = id.and_then(|i| i.get("partition")).and_then(Value::as_str);
        let offset = id.and_then(|i| i.get("offset")).and_then(|o| match o {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        let (Some(partition), Some(offset)) = (partition, offset) else {
            return BatchVerdict::AllFailed(format!("invalid batchItemFailures entry: {f}"));
        };
        let Some((tp, offsets)) = in_batch.get(partition) else {
            return BatchVerdict::AllFailed(format!(
                "batchItemFailures names partition `{partition}` not in the batch"
            ));
        };
        if !offsets.contains(&offset) {
            return BatchVerdict::AllFailed(format!(
                "batchItemFailures names offset {offset} not in the batch for `{partition}`"
            ));
        }
        let e = first.entry(tp.clone()).or_insert(offset);
        *e = (*e).min(offset);
    }
    if first.is_empty() {
        BatchVerdict::AllProcessed
    } else {
        BatchVerdict::PartialFailure(first)
    }
}

/// A record of an uncompressed batch with one header `h` (unit tests).
#[cfg(test)]
pub(crate) fn test_record(offset: i64, value: &[u8]) -> Record {
    let mut headers = kafka_protocol::indexmap::IndexMap::new();
    headers.insert(
        kafka_protocol::protocol::StrBytes::from_static_str("h"),
        Some(bytes::Bytes::from_static(&[0x41, 0xff])),
    );
    crate::kafka::plain_record(
        offset,
        1_700_000_000_000,
        None,
        Some(bytes::Bytes::copy_from_slice(value)),
        headers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(offset: i64, value: &[u8]) -> Record {
        test_record(offset, value)
    }

    #[test]
    fn event_groups_by_topic_partition_and_encodes_like_the_esm() {
        let mut b = EventBuilder::new("127.0.0.1:9092");
        let t0 = TopicPartition::new("gift_events", 0);
        let t1 = TopicPartition::new("gift_events", 1);
        assert!(b.try_push(&t0, &rec(5, b"{\"a\":1}")));
        assert!(b.try_push(&t1, &rec(9, b"x")));
        assert!(b.try_push(&t0, &rec(6, b"y")));
        let v: Value = serde_json::from_slice(&b.build()).unwrap();
        assert_eq!(v["eventSource"], "SelfManagedKafka");
        assert_eq!(v["bootstrapServers"], "127.0.0.1:9092");
        let p0 = v["records"]["gift_events-0"].as_array().unwrap();
        assert_eq!(p0.len(), 2);
        assert_eq!(p0[0]["offset"], 5);
        assert_eq!(p0[1]["offset"], 6);
        assert_eq!(p0[0]["value"], B64.encode(b"{\"a\":1}"));
        assert!(p0[0].get("key").is_none());
        assert_eq!(p0[0]["headers"], json!([{"h": [65, -1]}]));
        assert_eq!(p0[0]["timestampType"], "CREATE_TIME");
        assert_eq!(v["records"]["gift_events-1"][0]["partition"], 1);
    }

    #[test]
    fn payload_cap_is_respected_but_a_lone_huge_record_passes() {
        let tp = TopicPartition::new("t", 0);
        let big = vec![b'a'; 2 * 1024 * 1024];
        let mut b = EventBuilder::new("b:1");
        assert!(b.try_push(&tp, &rec(0, &big)));
        assert!(b.try_push(&tp, &rec(1, &big)));
        // base64 grows 2 MiB to 2.67 MiB: a third would pass 6 MiB.
        assert!(!b.try_push(&tp, &rec(2, &big)));
        assert_eq!(b.len(), 2);
        assert!(b.build().len() <= MAX_PAYLOAD_BYTES);

        let mut lone = EventBuilder::new("b:1");
        assert!(lone.try_push(&tp, &rec(0, &vec![b'a'; 7 * 1024 * 1024])));
    }

    /// What the functions will see: our event decoded by the workspace's own decoder.
    #[test]
    fn events_decode_with_event_decoding() {
        let mut b = EventBuilder::new("127.0.0.1:9092");
        let tp = TopicPartition::new("gift_events", 2);
        let mut r = rec(41, "{\"gift\":\"ünïcode\"}".as_bytes());
        r.key = Some(Bytes::from_static(b"user-1"));
        assert!(b.try_push(&tp, &r));
        assert!(b.try_push(&tp, &rec(42, b"")));
        let batch = event_decoding::KafkaBatch::from_slice(&b.build()).unwrap();
        assert_eq!(
            batch.event_source(),
            &event_decoding::EventSource::SelfManaged
        );
        assert_eq!(batch.bootstrap_servers(), Some("127.0.0.1:9092"));
        let recs: Vec<_> = batch.records().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].topic_partition(), "gift_events-2");
        assert_eq!(recs[0].key_str().unwrap().as_deref(), Some("user-1"));
        assert_eq!(
            recs[0].value_str().unwrap().as_deref(),
            Some("{\"gift\":\"ünïcode\"}")
        );
        assert_eq!(recs[1].value().unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(recs[1].key().unwrap(), None);
    }

    /// EventRecordFormat SOURCE: the functions' decoder reads the schema id from the metadata
    /// and the body without the wire prefix; a value not in that format is left as it is.
    #[test]
    fn source_format_moves_the_schema_id_into_the_metadata() {
        let tp = TopicPartition::new("gifts", 0);
        let mut framed = rec(3, &[0, 0, 0, 1, 7, 0x02, 0x41]);
        framed.key = Some(Bytes::from_static(b"plain-key"));
        let mut b = EventBuilder::new("b:1");
        assert!(b.try_push_json(&tp, source_record_json(&tp, &framed, "AVRO")));
        assert!(b.try_push_json(&tp, source_record_json(&tp, &rec(4, b"{}"), "AVRO")));
        let batch = event_decoding::KafkaBatch::from_slice(&b.build()).unwrap();
        let recs: Vec<_> = batch.records().collect();
        let meta = recs[0].value_schema_metadata().expect("metadata");
        assert_eq!(
            (meta.data_format.as_str(), meta.schema_id.as_str()),
            ("AVRO", "263")
        );
        assert_eq!(recs[0].value().unwrap().as_deref(), Some(&[0x02, 0x41][..]));
        assert_eq!(recs[0].key_str().unwrap().as_deref(), Some("plain-key"));
        assert!(recs[1].value_schema_metadata().is_none());
        assert_eq!(recs[1].value().unwrap().as_deref(), Some(&b"{}"[..]));
    }

    fn batch() -> HashMap<String, (TopicPartition, Vec<i64>)> {
        HashMap::from([
            (
                "t-0".to_owned(),
                (TopicPartition::new("t", 0), vec![1, 2, 3]),
            ),
            ("t-1".to_owned(), (TopicPartition::new("t", 1), vec![7])),
        ])
    }

    #[test]
    fn response_verdicts() {
        let b = batch();
        assert_eq!(parse_response(b"null", &b), BatchVerdict::AllProcessed);
        assert_eq!(parse_response(b"", &b), BatchVerdict::AllProcessed);
        assert_eq!(
            parse_response(br#"{"batchItemFailures":[]}"#, &b),
            BatchVerdict::AllProcessed
        );
        let body = br#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":3}},
            {"itemIdentifier":{"partition":"t-0","offset":"2"}}]}"#;
        assert_eq!(
            parse_response(body, &b),
            BatchVerdict::PartialFailure(HashMap::from([(TopicPartition::new("t", 0), 2)]))
        );
    }

    #[test]
    fn bad_responses_fail_the_whole_batch() {
        let b = batch();
        for body in [
            &br#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-9","offset":1}}]}"#[..],
            br#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0","offset":99}}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":{"partition":"t-0"}}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":{"topic-partition":"t-0","offset":1}}]}"#,
            br#"{"batchItemFailures":{}}"#,
            b"not json",
        ] {
            assert!(
                matches!(parse_response(body, &b), BatchVerdict::AllFailed(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
