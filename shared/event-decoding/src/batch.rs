//! The whole ESM invocation payload: event source, cluster identity, and the records grouped by
//! topic-partition, exposed in a deterministic order.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::BatchError;
use crate::record::{Header, HeaderList, KafkaRecord};

/// Which kind of Kafka cluster the event source mapping reads from.
///
/// ```
/// use event_decoding::EventSource;
/// assert_eq!(EventSource::from("aws:kafka"), EventSource::Msk);
/// assert_eq!(EventSource::SelfManaged.as_str(), "SelfManagedKafka");
/// assert_eq!(EventSource::from("x").as_str(), "x");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventSource {
    /// Amazon MSK: `"aws:kafka"`, with `eventSourceArn`.
    Msk,
    /// Self-managed Apache Kafka: `"SelfManagedKafka"`, with `bootstrapServers`.
    SelfManaged,
    /// Anything else (kept verbatim; empty when the field is absent).
    Other(String),
}

impl EventSource {
    /// The `eventSource` string.
    pub fn as_str(&self) -> &str {
        match self {
            EventSource::Msk => "aws:kafka",
            EventSource::SelfManaged => "SelfManagedKafka",
            EventSource::Other(s) => s,
        }
    }
}

impl From<&str> for EventSource {
    fn from(s: &str) -> Self {
        match s {
            "aws:kafka" => EventSource::Msk,
            "SelfManagedKafka" => EventSource::SelfManaged,
            other => EventSource::Other(other.to_string()),
        }
    }
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kafka event source mapping payload (MSK or self-managed).
///
/// Tolerant where Lambda is loose: `key`/`value` may be `null` or absent, `headers` may be absent,
/// unknown fields (`keySchemaMetadata`, ...) are ignored. Topic and partition come from each
/// record's fields, never from splitting the `"<topic>-<partition>"` key.
///
/// Records iterate sorted by topic, then partition, then offset.
///
/// ```
/// use event_decoding::KafkaBatch;
/// let payload = br#"{
///   "eventSource": "SelfManagedKafka", "bootstrapServers": "b-1:9092",
///   "records": {"my.topic-name-1": [
///     {"topic": "my.topic-name", "partition": 1, "offset": 5, "timestamp": 1000,
///      "timestampType": "CREATE_TIME", "value": "eyJhIjoxfQ=="}
///   ]}
/// }"#;
/// let batch = KafkaBatch::from_slice(payload).unwrap();
/// let record = batch.records().next().unwrap();
/// assert_eq!((record.topic.as_str(), record.partition), ("my.topic-name", 1));
/// assert_eq!(record.value_str().unwrap().as_deref(), Some(r#"{"a":1}"#));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaBatch {
    event_source: EventSource,
    event_source_arn: Option<String>,
    bootstrap_servers: Option<String>,
    /// Sorted by (topic, partition, offset); stable for duplicates.
    records: Vec<KafkaRecord>,
}

impl KafkaBatch {
    /// Parses an invocation payload; the error names the JSON path of the problem.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, BatchError> {
        if let Some(raw) = parse_fast::<RawBatch>(bytes) {
            return raw.into_batch();
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawBatch =
            serde_path_to_error::deserialize(&mut de).map_err(|e| BatchError::InvalidEvent {
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        de.end().map_err(|e| BatchError::InvalidEvent {
            path: ".".into(),
            message: e.to_string(),
        })?;
        raw.into_batch()
    }

    /// Records in deterministic order: topic, partition, then offset ascending.
    pub fn records(&self) -> impl Iterator<Item = &KafkaRecord> {
        self.records.iter()
    }

    /// Records as a slice, in the same order as [`KafkaBatch::records`].
    pub fn as_slice(&self) -> &[KafkaRecord] {
        &self.records
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// `true` when the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// MSK, self-managed, or other.
    pub fn event_source(&self) -> &EventSource {
        &self.event_source
    }

    /// The MSK cluster ARN (MSK only).
    pub fn event_source_arn(&self) -> Option<&str> {
        self.event_source_arn.as_deref()
    }

    /// The bootstrap servers (self-managed only).
    pub fn bootstrap_servers(&self) -> Option<&str> {
        self.bootstrap_servers.as_deref()
    }

    /// The smallest record timestamp (ms), for an "oldest record age" metric.
    ///
    /// ```
    /// use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
    /// let batch = KafkaBatch::builder(EventSource::Msk)
    ///     .record(KafkaRecord::new("t", 0, 1, 2_000))
    ///     .record(KafkaRecord::new("t", 1, 1, 1_000))
    ///     .build();
    /// assert_eq!(batch.oldest_timestamp_ms(), Some(1_000));
    /// ```
    pub fn oldest_timestamp_ms(&self) -> Option<i64> {
        self.records.iter().map(|r| r.timestamp).min()
    }

    /// Starts building a payload (tests, the local ESM runner).
    ///
    /// ```
    /// use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
    /// let batch = KafkaBatch::builder(EventSource::SelfManaged)
    ///     .bootstrap_servers("localhost:9092")
    ///     .record(KafkaRecord::new("gift_events", 0, 1, 0).with_value("{}"))
    ///     .build();
    /// let json = serde_json::to_vec(&batch).unwrap();
    /// assert_eq!(KafkaBatch::from_slice(&json).unwrap(), batch);
    /// ```
    pub fn builder(source: EventSource) -> KafkaBatchBuilder {
        KafkaBatchBuilder {
            batch: KafkaBatch {
                event_source: source,
                event_source_arn: None,
                bootstrap_servers: None,
                records: Vec::new(),
            },
        }
    }

    fn sort(&mut self) {
        fn key(r: &KafkaRecord) -> (&str, i32, i64) {
            (r.topic.as_str(), r.partition, r.offset)
        }
        // The ESM usually delivers partitions in order already; a stable sort of sorted records
        // changes nothing, and skipping it saves its scratch buffer (half the batch).
        if !self.records.is_sorted_by(|a, b| key(a) <= key(b)) {
            self.records.sort_by(|a, b| key(a).cmp(&key(b)));
        }
    }
}

/// Builds a [`KafkaBatch`]; records may be added in any order.
#[derive(Debug, Clone)]
pub struct KafkaBatchBuilder {
    batch: KafkaBatch,
}

impl KafkaBatchBuilder {
    /// Sets `eventSourceArn` (MSK).
    pub fn event_source_arn(mut self, arn: impl Into<String>) -> Self {
        self.batch.event_source_arn = Some(arn.into());
        self
    }

    /// Sets `bootstrapServers` (self-managed).
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.batch.bootstrap_servers = Some(servers.into());
        self
    }

    /// Adds a record.
    pub fn record(mut self, record: KafkaRecord) -> Self {
        self.batch.records.push(record);
        self
    }

    /// Adds records.
    pub fn records(mut self, records: impl IntoIterator<Item = KafkaRecord>) -> Self {
        self.batch.records.extend(records);
        self
    }

    /// Finishes the batch.
    pub fn build(mut self) -> KafkaBatch {
        self.batch.sort();
        self.batch
    }
}

impl Serialize for KafkaBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Grouped<'a>(&'a [KafkaRecord]);
        impl Serialize for Grouped<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                for group in self
                    .0
                    .chunk_by(|a, b| a.topic == b.topic && a.partition == b.partition)
                {
                    map.serialize_entry(&group[0].topic_partition(), group)?;
                }
                map.end()
            }
        }
        let fields = 2
            + usize::from(self.event_source_arn.is_some())
            + usize::from(self.bootstrap_servers.is_some());
        let mut st = s.serialize_struct("KafkaBatch", fields)?;
        st.serialize_field("eventSource", self.event_source.as_str())?;
        if let Some(arn) = &self.event_source_arn {
            st.serialize_field("eventSourceArn", arn)?;
        }
        if let Some(servers) = &self.bootstrap_servers {
            st.serialize_field("bootstrapServers", servers)?;
        }
        st.serialize_field("records", &Grouped(&self.records))?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for KafkaBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawBatch::deserialize(d)?
            .into_batch()
            .map_err(de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBatch {
    #[serde(default)]
    event_source: Option<String>,
    #[serde(default)]
    event_source_arn: Option<String>,
    #[serde(default)]
    bootstrap_servers: Option<String>,
    records: RawRecords,
}

/// `records` keeps the map keys only to recover a topic a record does not state.
struct RawRecords(Vec<(String, Vec<RawRecord>)>);

impl<'de> Deserialize<'de> for RawRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRecords;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping \"<topic>-<partition>\" to a list of records")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawRecords, E> {
                Ok(RawRecords(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecords, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Option<Vec<RawRecord>>>()? {
                    out.push((k, v.unwrap_or_default()));
                }
                Ok(RawRecords(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    #[serde(default)]
    topic: Option<String>,
    partition: i64,
    offset: i64,
    timestamp: i64,
    #[serde(default)]
    timestamp_type: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: HeaderList,
}

impl RawBatch {
    fn into_batch(self) -> Result<KafkaBatch, BatchError> {
        let mut records = Vec::with_capacity(self.records.0.iter().map(|(_, v)| v.len()).sum());
        for (group_key, group) in self.records.0 {
            for r in group {
                let partition = i32::try_from(r.partition).map_err(|_| BatchError::OutOfRange {
                    field: "partition",
                    value: r.partition,
                })?;
                let topic = match r.topic {
                    Some(t) => t,
                    // Never split the key on '-': the partition field tells us the exact suffix.
                    None => topic_from_group_key(&group_key, partition).ok_or_else(|| {
                        BatchError::InvalidEvent {
                            path: format!("records.{group_key}"),
                            message: format!(
                                "record at offset {} has no `topic` and the key does not end in -{partition}",
                                r.offset
                            ),
                        }
                    })?,
                };
                let mut record = KafkaRecord::new(topic, partition, r.offset, r.timestamp);
                record.timestamp_type = r.timestamp_type;
                record.key = r.key;
                record.value = r.value;
                record.headers = r.headers.0;
                records.push(record);
            }
        }
        let mut batch = KafkaBatch {
            event_source: self
                .event_source
                .as_deref()
                .map(EventSource::from)
                .unwrap_or(EventSource::Other(String::new())),
            event_source_arn: self.event_source_arn,
            bootstrap_servers: self.bootstrap_servers,
            records,
        };
        batch.sort();
        Ok(batch)
    }
}

fn topic_from_group_key(key: &str, partition: i32) -> Option<String> {
    let suffix = format!("-{partition}");
    key.strip_suffix(&suffix)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

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
                        topic: r.topic,
                        partition: r.partition,
                        offset: r.offset,
                        timestamp: r.timestamp.timestamp_millis(),
                        timestamp_type: r.timestamp_type,
                        key: r.key,
                        value: r.value,
                        headers: HeaderList(headers),
                    }
                })
                .collect();
            raw.push((key, records));
        }
        RawBatch {
            event_source: event.event_source,
            event_source_arn: event.event_source_arn,
            bootstrap_servers: event.bootstrap_servers,
            records: RawRecords(raw),
        }
        .into_batch()
    }
}

/// JSON without path tracking, UTF-8 checked once rather than string by string: `None` on any
/// failure, which the caller then parses again with `serde_path_to_error` only to name where it
/// went wrong. Tracking the path costs on every value; a valid payload never pays it.
pub(crate) fn parse_fast<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<KafkaBatch, BatchError> {
        KafkaBatch::from_slice(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn empty_batch() {
        let b = parse(json!({"eventSource": "aws:kafka", "eventSourceArn": "arn", "records": {}}))
            .unwrap();
        assert!(b.is_empty());
        assert_eq!(b.len(), 0);
        assert_eq!(b.oldest_timestamp_ms(), None);
        let b = parse(json!({"eventSource": "aws:kafka", "records": null})).unwrap();
        assert!(b.is_empty());
        let b = parse(json!({"eventSource": "aws:kafka", "records": {"t-0": []}})).unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn not_an_esm_event() {
        for bad in [
            json!({"Records": []}),
            json!([]),
            json!("x"),
            json!({"records": []}),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert_eq!(err.error_code(), "invalid_event", "{bad}");
        }
        let err = KafkaBatch::from_slice(b"{not json").unwrap_err();
        assert!(matches!(err, BatchError::InvalidEvent { .. }));
        let err =
            parse(json!({"records": {"t-0": [{"topic": "t", "partition": 0, "timestamp": 1}]}}))
                .unwrap_err();
        match err {
            BatchError::InvalidEvent { path, message } => {
                assert_eq!(path, "records.t-0[0]");
                assert!(message.contains("offset"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let err = parse(json!({"records": {"t-0": [{"topic": "t", "partition": 1_i64 << 40, "offset": 0, "timestamp": 1}]}}))
            .unwrap_err();
        assert!(matches!(
            err,
            BatchError::OutOfRange {
                field: "partition",
                ..
            }
        ));
        let err = parse(json!({"records": {"t-0": [{"topic": "t", "partition": 0, "offset": 0, "timestamp": 1, "headers": [{"h": [1000]}]}]}}))
            .unwrap_err();
        assert!(err.to_string().contains("headers"), "{err}");
    }

    #[test]
    fn tolerant_of_missing_optional_fields_and_unknown_ones() {
        let b = parse(json!({
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": "b:9092",
            "somethingNew": {"x": 1},
            "records": {"t-0": [{
                "topic": "t", "partition": 0, "offset": 5, "timestamp": 9,
                "keySchemaMetadata": {"dataFormat": "AVRO", "schemaId": "abc"},
                "valueSchemaMetadata": null,
                "futureField": [1, 2]
            }]}
        }))
        .unwrap();
        let r = b.records().next().unwrap();
        assert_eq!(r.key().unwrap(), None);
        assert_eq!(r.value().unwrap(), None);
        assert!(r.headers().is_empty());
        assert_eq!(r.timestamp_type, None);
        assert_eq!(b.event_source(), &EventSource::SelfManaged);
        let b = parse(json!({"records": {}})).unwrap();
        assert_eq!(b.event_source(), &EventSource::Other(String::new()));
    }

    #[test]
    fn topics_with_dashes_and_dots_come_from_record_fields() {
        let rec = |topic: &str, p: i32, o: i64| json!({"topic": topic, "partition": p, "offset": o, "timestamp": 0});
        let b = parse(json!({"eventSource": "aws:kafka", "records": {
            "my-topic.v2-10-3": [rec("my-topic.v2-10", 3, 8), rec("my-topic.v2-10", 3, 2)],
            "my-topic.v2-1": [rec("my-topic.v2", 1, 0)],
            "a-10": [rec("a", 10, 0)],
            "a-2": [rec("a", 2, 0)],
        }}))
        .unwrap();
        let ids: Vec<String> = b.records().map(|r| r.id().to_string()).collect();
        assert_eq!(
            ids,
            [
                "a-2@0",
                "a-10@0",
                "my-topic.v2-1@0",
                "my-topic.v2-10-3@2",
                "my-topic.v2-10-3@8"
            ]
        );
        assert_eq!(b.records().nth(3).unwrap().topic, "my-topic.v2-10");
    }

    #[test]
    fn missing_topic_recovered_from_the_key_suffix_only() {
        let b = parse(
            json!({"records": {"cdc.pages-x-7": [{"partition": 7, "offset": 1, "timestamp": 0}]}}),
        )
        .unwrap();
        assert_eq!(b.records().next().unwrap().topic, "cdc.pages-x");
        let err = parse(
            json!({"records": {"cdc.pages-7": [{"partition": 8, "offset": 1, "timestamp": 0}]}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("has no `topic`"), "{err}");
    }

    #[test]
    fn order_is_independent_of_input_order() {
        let recs: Vec<KafkaRecord> = (0..20)
            .map(|i| KafkaRecord::new(format!("t{}", i % 3), i % 2, 100 - i as i64, 0))
            .collect();
        let forward = KafkaBatch::builder(EventSource::Msk)
            .records(recs.clone())
            .build();
        let backward = KafkaBatch::builder(EventSource::Msk)
            .records(recs.into_iter().rev())
            .build();
        assert_eq!(forward, backward);
        let json = serde_json::to_value(&forward).unwrap();
        assert_eq!(json["records"].as_object().unwrap().len(), 6);
        assert_eq!(
            KafkaBatch::from_slice(&serde_json::to_vec(&json).unwrap()).unwrap(),
            forward
        );
    }

    #[test]
    fn six_megabyte_batch_decodes_every_record() {
        #[derive(Deserialize)]
        struct Gift {
            page_id: i64,
            answer: String,
        }
        let answer = "a".repeat(340);
        let batch = KafkaBatch::builder(EventSource::Msk)
            .records((0..10_000).map(|i| {
                KafkaRecord::new("gift_events", i % 4, i64::from(i), 0)
                    .with_value(format!(
                        r#"{{"page_id":{i},"question":"Q?","answer":"{answer}"}}"#
                    ))
                    .with_header("h", vec![0xc3, 0xbc])
            }))
            .build();
        let bytes = serde_json::to_vec(&batch).unwrap();
        assert!(
            bytes.len() > 6_000_000 && bytes.len() < 6_300_000,
            "{}",
            bytes.len()
        );
        let decoded = KafkaBatch::from_slice(&bytes).unwrap();
        assert_eq!(decoded.len(), 10_000);
        let mut sum = 0i64;
        for r in decoded.records() {
            let g: Gift = r.value_json().unwrap();
            assert_eq!(g.answer.len(), 340);
            sum += g.page_id;
        }
        assert_eq!(sum, (0..10_000).sum::<i64>());
    }
}
