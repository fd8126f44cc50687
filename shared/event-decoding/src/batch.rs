//! The whole ESM invocation payload: event source, cluster identity, and the records grouped by
//! topic-partition, exposed in a deterministic order.

use std::fmt;
use std::sync::Arc;

use serde::de;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::BatchError;
use crate::record::KafkaRecord;

mod envelope;
mod lambda_events;
mod raw;

use raw::{RawBatch, RawText, Str, raw_range};

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
/// assert_eq!((&*record.topic, record.partition), ("my.topic-name", 1));
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
        if let Ok(text) = simdutf8::basic::from_utf8(bytes)
            && let Some(batch) = Self::parse_fast(Arc::new(text.to_owned()))
        {
            return batch;
        }
        Self::parse_strict(bytes)
    }

    /// No path tracking, key and value texts read raw and left where they are in `payload`,
    /// which the records share. `None` when anything is refused: the strict parse then decides
    /// and names the error.
    fn parse_fast(payload: Arc<String>) -> Option<Result<Self, BatchError>> {
        if let Some(batch) = envelope::read(&payload) {
            return Some(Ok(batch));
        }
        serde_json::from_str::<RawBatch<RawText>>(&payload)
            .ok()?
            .into_batch(&payload)
    }

    /// Every text read as a JSON string, the JSON path of a failure tracked.
    fn parse_strict(bytes: &[u8]) -> Result<Self, BatchError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawBatch<Str> =
            serde_path_to_error::deserialize(&mut de).map_err(|e| BatchError::InvalidEvent {
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        de.end().map_err(|e| BatchError::InvalidEvent {
            path: ".".into(),
            message: e.to_string(),
        })?;
        raw.into_batch(&Arc::default())
            .expect("texts parsed as JSON strings are valid texts")
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
        fn order(a: &KafkaRecord, b: &KafkaRecord) -> std::cmp::Ordering {
            // Records of a parsed batch share their topic's `Arc`: no string comparison then.
            let topic = if Arc::ptr_eq(&a.topic, &b.topic) {
                std::cmp::Ordering::Equal
            } else {
                a.topic.cmp(&b.topic)
            };
            topic.then((a.partition, a.offset).cmp(&(b.partition, b.offset)))
        }
        // The ESM usually delivers partitions in order already; a stable sort of sorted records
        // changes nothing, and skipping it saves its scratch buffer (half the batch).
        if !self.records.is_sorted_by(|a, b| order(a, b).is_le()) {
            self.records.sort_by(order);
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

/// Takes the payload's JSON text as it is and decodes it with [`KafkaBatch::from_slice`]. The
/// Lambda runtime deserializes its event through `serde_path_to_error`, which records the path of
/// every value as it goes (a string per map key); decoding the text ourselves pays for a path only
/// when a payload is refused. The error message names the path all the same.
impl<'de> Deserialize<'de> for KafkaBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Box::<serde_json::value::RawValue>::deserialize(d)?;
        // The text taken is the batch's buffer: no second copy.
        let payload = Arc::new(String::from(Box::<str>::from(text)));
        match KafkaBatch::parse_fast(Arc::clone(&payload)) {
            Some(batch) => batch,
            None => KafkaBatch::parse_strict(payload.as_bytes()),
        }
        .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The strict parse alone: every text read as a JSON string, the path tracked.
    fn strict(bytes: &[u8]) -> Result<KafkaBatch, BatchError> {
        KafkaBatch::parse_strict(bytes)
    }

    /// A payload with `key` and `value` spliced in as they are (not escaped).
    fn spliced(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut p = br#"{"eventSource":"aws:kafka","records":{"t-0":[{"topic":"t","partition":0,"offset":1,"timestamp":2,"key":"#.to_vec();
        p.extend_from_slice(key);
        p.extend_from_slice(br#","value":"#);
        p.extend_from_slice(value);
        p.extend_from_slice(
            br#"},{"topic":"t","partition":0,"offset":2,"timestamp":2,"value":"eyJhIjoxfQ=="}]}}"#,
        );
        p
    }

    #[test]
    fn raw_texts_decide_like_json_strings() {
        let cases: [&[u8]; 16] = [
            br#""eyJhIjoxfQ==""#,
            b"\"\"",
            b"null",
            b"5",
            b"[1,2]",
            br#"{"a":1}"#,
            br#""a\/b""#,
            br#""a\\b""#,
            br#""\u00e9""#,
            br#""\ud800""#,
            "\"\u{e9}t\u{e9}\"".as_bytes(),
            b"\"a\tb\"",
            b"\"a\x01\"",
            b"\"\xff\xfe\"",
            b"\"\xc3\"",
            br#""unterminated"#,
        ];
        for key in cases {
            for value in cases {
                let p = spliced(key, value);
                assert_eq!(
                    KafkaBatch::from_slice(&p).map_err(|e| e.to_string()),
                    strict(&p).map_err(|e| e.to_string()),
                    "{}",
                    String::from_utf8_lossy(&p)
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_and_strict_parses_agree(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            quote in proptest::prelude::any::<bool>(),
        ) {
            // Arbitrary bytes between quotes (control characters, escapes, broken UTF-8 and all),
            // or bare.
            let wrap = |b: &[u8]| if quote { [b"\"".as_slice(), b, b"\""].concat() } else { b.to_vec() };
            let p = spliced(&wrap(&key), &wrap(&value));
            proptest::prop_assert_eq!(
                KafkaBatch::from_slice(&p).map_err(|e| e.to_string()),
                strict(&p).map_err(|e| e.to_string())
            );
        }
    }

    /// Payloads of the ESM's shape with the variations JSON and the ESM allow (field order,
    /// whitespace, nulls, absent fields, headers, schema metadata, unknown fields) and the ones the
    /// envelope reader leaves to serde (escapes, duplicates, fractions, leading zeros, overflow,
    /// wrong types), built from `seed`.
    fn varied_payload(seed: u64) -> String {
        let mut state = seed | 1;
        let mut next = move |n: u64| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
        };
        let ws = |next: &mut dyn FnMut(u64) -> u64| {
            [" ", "", "", "", "\n  ", "\t", "\r\n"][next(7) as usize].to_string()
        };
        // Mostly the first (valid) option, so most payloads are good batches.
        let pick = |next: &mut dyn FnMut(u64) -> u64, options: &[&str]| {
            let i = if next(25) == 0 {
                next(options.len() as u64)
            } else {
                0
            };
            options[i as usize].to_string()
        };
        let mut records = Vec::new();
        for i in 0..next(5) {
            let mut fields: Vec<(String, String)> = vec![
                (
                    "topic".into(),
                    pick(&mut next, &["\"t\"", "\"t\"", "null", "\"t\\u0031\"", "5"]),
                ),
                (
                    "partition".into(),
                    pick(
                        &mut next,
                        &["0", "0", "-0", "1", "01", "2.0", "2147483648", "\"0\""],
                    ),
                ),
                (
                    "offset".into(),
                    pick(
                        &mut next,
                        &[
                            &i.to_string(),
                            "9223372036854775807",
                            "-9223372036854775808",
                            "9223372036854775808",
                            "12345678901234567890123",
                            "1e3",
                            "-",
                            "null",
                        ],
                    ),
                ),
                (
                    "timestamp".into(),
                    pick(&mut next, &["1732350000000", "0", "-1", "1.5E2", "true"]),
                ),
                (
                    "timestampType".into(),
                    pick(
                        &mut next,
                        &[
                            "\"CREATE_TIME\"",
                            "\"CREATE_TIME\"",
                            "null",
                            "\"LOG\\tTIME\"",
                            "7",
                        ],
                    ),
                ),
                (
                    "key".into(),
                    pick(&mut next, &["\"azE=\"", "null", "\"\"", "\"a\\/b\"", "1"]),
                ),
                (
                    "value".into(),
                    pick(
                        &mut next,
                        &[
                            "\"eyJhIjoxfQ==\"",
                            "\"eyJhIjoxfQ==\"",
                            "null",
                            "\"eyJh\\u0049joxfQ==\"",
                            "[]",
                        ],
                    ),
                ),
                (
                    "headers".into(),
                    pick(
                        &mut next,
                        &[
                            "[]",
                            "[ ]",
                            "null",
                            "[{\"a\":[104,105]}]",
                            "[{\"t\":[1],\"u\":[-1]}]",
                            "{}",
                        ],
                    ),
                ),
                (
                    "keySchemaMetadata".into(),
                    pick(
                        &mut next,
                        &[
                            "{\"dataFormat\":\"JSON\",\"schemaId\":null}",
                            "null",
                            "{\"dataFormat\":\"AVRO\",\"schemaId\":\"7\"}",
                            "{ \"schemaId\" : \"\" , \"dataFormat\" : null }",
                            "{\"dataFormat\":\"JSON\",\"dataFormat\":\"AVRO\"}",
                            "{\"dataFormat\":1}",
                        ],
                    ),
                ),
                (
                    "valueSchemaMetadata".into(),
                    pick(
                        &mut next,
                        &[
                            "{\"dataFormat\":\"AVRO\",\"schemaId\":\"12\"}",
                            "{\"dataFormat\":\"AVRO\",\"schemaId\":12}",
                            "{}",
                            "[]",
                            "{\"schemaId\":\"a\\u0062\",\"x\":1}",
                            "{\"dataFormat\":\"PROTOBUF\",\"schemaId\":{\"a\":1}}",
                        ],
                    ),
                ),
                (
                    "unknown".into(),
                    pick(&mut next, &["{\"x\":[1,2.5,\"y\"]}", "1", "\"\\\"\""]),
                ),
            ];
            // Drop some fields, repeat one, rename one with an escape, shuffle.
            fields.retain(|_| next(30) != 0);
            if next(30) == 0 && !fields.is_empty() {
                let f = fields[0].clone();
                fields.push(f);
            }
            if next(30) == 0 && !fields.is_empty() {
                fields[0].0 = fields[0].0.replacen('t', "\\u0074", 1);
            }
            for j in (1..fields.len()).rev() {
                if next(3) == 0 {
                    fields.swap(j, next(j as u64 + 1) as usize);
                }
            }
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}\"{k}\"{}:{}{v}{}",
                        ws(&mut next),
                        ws(&mut next),
                        ws(&mut next),
                        ws(&mut next)
                    )
                })
                .collect();
            records.push(format!("{{{}}}", body.join(",")));
        }
        let group = pick(&mut next, &["t-0", "t-0", "t-1", "x"]);
        let records = match next(12) {
            0 => "null".to_string(),
            1 => format!("{{{}\"{group}\":null}}", ws(&mut next)),
            _ => format!(
                "{{\"{group}\":{}[{}]{}}}",
                ws(&mut next),
                records.join(&format!(",{}", ws(&mut next))),
                ws(&mut next)
            ),
        };
        let mut top = vec![
            format!(
                "\"eventSource\":{}",
                pick(
                    &mut next,
                    &["\"aws:kafka\"", "\"SelfManagedKafka\"", "null"]
                )
            ),
            format!(
                "\"bootstrapServers\":{}",
                pick(&mut next, &["\"b-1:9092\"", "null", "[]"])
            ),
            format!("\"records\":{records}"),
            format!(
                "\"eventSourceArn\":{}",
                pick(&mut next, &["\"arn:aws:kafka:x\"", "null"])
            ),
        ];
        top.retain(|f| f.starts_with("\"records") || next(4) != 0);
        format!(
            "{}{{{}}}{}",
            ws(&mut next),
            top.join(&format!(",{}", ws(&mut next))),
            pick(&mut next, &["", "\n", " x"])
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The envelope reader takes what it can of the payload's shape and serde the rest: the
        /// result (batch or named error) is always the strict parse's.
        #[test]
        fn envelope_reader_agrees_with_the_strict_parse(seed in proptest::prelude::any::<u64>()) {
            let p = varied_payload(seed);
            proptest::prop_assert_eq!(
                KafkaBatch::from_slice(p.as_bytes()).map_err(|e| e.to_string()),
                strict(p.as_bytes()).map_err(|e| e.to_string()),
                "{}", p
            );
            let payload = Arc::new(p.clone());
            if let Some(read) = envelope::read(&payload) {
                let fast = serde_json::from_str::<RawBatch<RawText>>(&payload).ok().and_then(|r| r.into_batch(&payload));
                proptest::prop_assert_eq!(Some(Ok(read)), fast.map(|b| b.map_err(|e| e.to_string())), "{}", p);
            }
        }
    }

    #[test]
    fn the_envelope_reader_takes_what_the_esm_sends() {
        // As MSK sends it (headers, schema metadata without a registry), and pretty-printed.
        let msk = r#"{"eventSource":"aws:kafka","eventSourceArn":"arn:aws:kafka:us-east-1:123456789012:cluster/c/abc","bootstrapServers":"b-1:9098","records":{"gift_events-0":[{"topic":"gift_events","partition":0,"offset":15,"timestamp":1545084650987,"timestampType":"CREATE_TIME","key":"azE=","value":"eyJhIjoxfQ==","headers":[{"traceparent":[48,48]}],"keySchemaMetadata":{"dataFormat":"JSON","schemaId":null},"valueSchemaMetadata":{"dataFormat":"JSON","schemaId":null}}]}}"#;
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(msk).unwrap())
                .unwrap();
        for p in [msk, pretty.as_str()] {
            let payload = Arc::new(p.to_string());
            let batch = envelope::read(&payload).expect("read without serde");
            assert_eq!(batch, strict(p.as_bytes()).unwrap());
            assert_eq!(batch.as_slice()[0].headers()[0].name, "traceparent");
        }
        // Left to serde: an escape in a name, a duplicate field, a fraction.
        for p in [
            msk.replace("\"offset\"", "\"o\\u0066fset\""),
            msk.replace("\"partition\":0,", "\"partition\":0,\"partition\":0,"),
            msk.replace("\"offset\":15", "\"offset\":15.0"),
        ] {
            assert!(envelope::read(&Arc::new(p.clone())).is_none(), "{p}");
        }
    }

    #[test]
    fn through_the_lambda_runtime_deserializer() {
        // lambda_runtime 1.x deserializes the event with serde_path_to_error over serde_json.
        fn runtime(bytes: &[u8]) -> Result<KafkaBatch, String> {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())
        }
        let p = spliced(br#""azE=""#, br#""eyJhIjoxfQ==""#);
        assert_eq!(runtime(&p).unwrap(), KafkaBatch::from_slice(&p).unwrap());
        let from_reader: KafkaBatch = serde_json::from_reader(p.as_slice()).unwrap();
        assert_eq!(from_reader, KafkaBatch::from_slice(&p).unwrap());
        let err = runtime(br#"{"records":{"t-0":[{"topic":"t","partition":0,"timestamp":1}]}}"#)
            .unwrap_err();
        assert!(
            err.contains("records.t-0[0]") && err.contains("offset"),
            "{err}"
        );
        // Text that is not JSON at all is refused while the payload's text is taken, with the
        // position (the ESM never sends such a payload).
        let err = runtime(&spliced(b"\"a\x01\"", b"null")).unwrap_err();
        assert!(
            err.contains("control character") && err.contains("column 105"),
            "{err}"
        );
        assert!(runtime(b"{not json").is_err());
    }

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
        assert_eq!(&*b.records().nth(3).unwrap().topic, "my-topic.v2-10");
    }

    #[test]
    fn missing_topic_recovered_from_the_key_suffix_only() {
        let b = parse(
            json!({"records": {"cdc.pages-x-7": [{"partition": 7, "offset": 1, "timestamp": 0}]}}),
        )
        .unwrap();
        assert_eq!(&*b.records().next().unwrap().topic, "cdc.pages-x");
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
