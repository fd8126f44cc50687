//! Dead letters: records that can never succeed are stored with the reason instead of being
//! retried forever or dropped. Writes are idempotent (one row per function and record), so a
//! redelivered batch does not duplicate them.

use std::future::Future;

use base64::Engine as _;
use event_decoding::{KafkaRecord, RecordId, SchemaMetadata};
use serde::Serialize;

use crate::bulk::{WriteLimits, write_rows};
use crate::error::Classify;
use crate::fate::Fate;
use crate::postgrest::{Duplicates, PostgrestClient, Upsert};
use crate::retry::Deadline;

/// How `raw_value` is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ValueEncoding {
    /// The value bytes were UTF-8 text (without NUL) and are stored as is.
    Utf8,
    /// Anything else: base64 of the bytes as delivered.
    Base64,
}

/// One dead-lettered record, serialized as a row of the dead-letter table.
///
/// ```
/// use event_decoding::KafkaRecord;
/// use lambda_kit::dead_letter::{DeadLetter, ValueEncoding};
///
/// let r = KafkaRecord::new("gift_events", 0, 7, 0).with_value(b"{oops");
/// let d = DeadLetter::new("gift-persister", &r, "invalid_json", "expected value at line 1");
/// assert_eq!(d.raw_value.as_deref(), Some("{oops"));
/// assert_eq!(d.value_encoding, ValueEncoding::Utf8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The function giving up on the record.
    pub function_name: String,
    /// Where the record came from.
    #[serde(skip)]
    pub record: RecordId,
    #[serde(rename = "topic")]
    topic: String,
    kafka_partition: i32,
    kafka_offset: i64,
    /// The record's timestamp (milliseconds since the epoch).
    pub kafka_timestamp: i64,
    /// The key as text (UTF-8 when valid, else base64 as delivered, see `key_encoding`).
    #[serde(rename = "record_key")]
    pub key: Option<String>,
    /// How `key` is stored; `None` without a key.
    pub key_encoding: Option<ValueEncoding>,
    /// The value as text or base64, see `value_encoding`.
    pub raw_value: Option<String>,
    /// How `raw_value` is encoded.
    pub value_encoding: ValueEncoding,
    /// The record's headers, in order (`null` when it had none): a replay needs them as much as
    /// the value.
    pub record_headers: Option<Vec<HeaderRow>>,
    /// `keySchemaMetadata`, when an ESM schema registry set it.
    pub key_schema_metadata: Option<SchemaMetadata>,
    /// `valueSchemaMetadata`, when an ESM schema registry set it: with `EventRecordFormat:
    /// SOURCE` the value cannot be decoded again without its schema id.
    pub value_schema_metadata: Option<SchemaMetadata>,
    /// Low-cardinality reason.
    pub error_code: String,
    /// Human-readable reason (truncated, never a secret).
    pub error_message: String,
}

impl DeadLetter {
    /// A dead letter for `record` with the given reason.
    pub fn new(
        function_name: &str,
        record: &KafkaRecord,
        error_code: &str,
        error_message: impl Into<String>,
    ) -> Self {
        let id = record.id();
        let (key, key_encoding) = match record.key() {
            Ok(Some(bytes)) => {
                let (s, enc) = text_or_base64(&bytes, record.raw_key());
                (Some(s), Some(enc))
            }
            Ok(None) => (None, None),
            // Not even base64: keep what was delivered.
            Err(_) => (
                record.raw_key().map(str::to_owned),
                Some(ValueEncoding::Base64),
            ),
        };
        let (raw_value, value_encoding) = match record.value() {
            Ok(Some(bytes)) => {
                let (s, enc) = text_or_base64(&bytes, record.raw_value());
                (Some(s), enc)
            }
            Ok(None) => (None, ValueEncoding::Utf8),
            // Not even base64: keep what was delivered.
            Err(_) => (record.raw_value().map(str::to_owned), ValueEncoding::Base64),
        };
        // Short, single-line, control characters removed.
        let error_message = crate::http::sanitize_body(&error_message.into(), None);
        let headers = record.headers();
        let record_headers =
            (!headers.is_empty()).then(|| headers.iter().map(HeaderRow::of).collect());
        Self {
            function_name: function_name.to_owned(),
            topic: id.topic.clone(),
            kafka_partition: id.partition,
            kafka_offset: id.offset,
            record: id,
            kafka_timestamp: record.timestamp,
            key,
            key_encoding,
            raw_value,
            value_encoding,
            record_headers,
            key_schema_metadata: record.key_schema_metadata().cloned(),
            value_schema_metadata: record.value_schema_metadata().cloned(),
            error_code: error_code.to_owned(),
            error_message,
        }
    }

    /// A dead letter whose reason is `error` (its `error_code` and message).
    pub fn for_error<E: Classify + std::fmt::Display>(
        function_name: &str,
        record: &KafkaRecord,
        error: &E,
    ) -> Self {
        Self::new(function_name, record, error.error_code(), error.to_string())
    }

    /// The row as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead letter always serializes")
    }
}

/// One record header as stored in a dead letter: the value as UTF-8 text when it is text (without
/// NUL), else as base64. Deserializes too: `kl` rebuilds records from stored rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HeaderRow {
    /// Header name.
    pub name: String,
    /// The value, when it is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in base64, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl HeaderRow {
    fn of(header: &event_decoding::Header) -> Self {
        let (text, encoding) = text_or_base64(&header.value, None);
        let (value, value_base64) = match encoding {
            ValueEncoding::Utf8 => (Some(text), None),
            ValueEncoding::Base64 => (None, Some(text)),
        };
        Self {
            name: header.name.clone(),
            value,
            value_base64,
        }
    }
}

/// PostgreSQL text cannot hold NUL, so such values are stored as base64 too.
fn text_or_base64(bytes: &[u8], delivered: Option<&str>) -> (String, ValueEncoding) {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => (s.to_owned(), ValueEncoding::Utf8),
        _ => (
            delivered
                .map(str::to_owned)
                .unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(bytes)),
            ValueEncoding::Base64,
        ),
    }
}

/// Where dead letters go.
pub trait DeadLetterSink: Send + Sync {
    /// Stores the letters; returns the fate of each, in order. A letter that is not
    /// [`Fate::Stored`] (or has no fate) means its record must be reported as failed
    /// (redelivered).
    fn write(
        &self,
        deadline: &Deadline,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Vec<Fate>> + Send;
}

/// Dead letters in a PostgREST table (`dead_letters` schema), upserted on
/// `(function_name, topic, kafka_partition, kafka_offset)` with ignore-duplicates.
#[derive(Debug, Clone)]
pub struct PostgrestDeadLetters {
    client: PostgrestClient,
    table: String,
    limits: WriteLimits,
}

impl PostgrestDeadLetters {
    /// Dead letters in `table` through `client`.
    ///
    /// ```
    /// use lambda_kit::{bulk::WriteLimits, dead_letter::PostgrestDeadLetters};
    /// use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, Secret};
    /// let client = PostgrestClient::new(PostgrestConfig::new("http://127.0.0.1:3000", Secret::new("k"))).unwrap();
    /// let sink = PostgrestDeadLetters::new(client, "dead_letters", WriteLimits::default());
    /// ```
    pub fn new(client: PostgrestClient, table: impl Into<String>, limits: WriteLimits) -> Self {
        Self {
            client,
            table: table.into(),
            limits,
        }
    }
}

impl DeadLetterSink for PostgrestDeadLetters {
    async fn write(&self, deadline: &Deadline, letters: &[DeadLetter]) -> Vec<Fate> {
        if letters.is_empty() {
            return Vec::new();
        }
        // Keyed by position: one letter per record, so no two share a conflict key.
        let rows: Vec<(usize, Vec<u8>)> = letters
            .iter()
            .map(DeadLetter::to_json)
            .enumerate()
            .collect();
        let upsert = Upsert::on_conflict(
            "function_name,topic,kafka_partition,kafka_offset",
            Duplicates::Ignore,
        );
        write_rows(&rows, &self.limits, |body| {
            self.client.upsert(deadline, &self.table, body, &upsert)
        })
        .await
    }
}

/// Dead letters kept in memory (tests and benchmarks; `testing` feature): every letter is
/// stored, once per record, like the PostgREST sink's ignore-duplicates upsert.
///
/// ```
/// use event_decoding::KafkaRecord;
/// use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink, MemoryDeadLetters};
/// use lambda_kit::retry::Deadline;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sink = MemoryDeadLetters::default();
/// let letter = DeadLetter::new("f", &KafkaRecord::new("t", 0, 1, 0), "bad", "why");
/// let deadline = Deadline::after(std::time::Duration::from_secs(1));
/// sink.write(&deadline, &[letter.clone(), letter]).await;
/// assert_eq!(sink.letters().len(), 1);
/// # }
/// ```
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct MemoryDeadLetters(std::sync::Mutex<Vec<DeadLetter>>);

#[cfg(any(test, feature = "testing"))]
impl MemoryDeadLetters {
    /// The letters stored so far, in the order they were first written.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(any(test, feature = "testing"))]
impl DeadLetterSink for MemoryDeadLetters {
    async fn write(&self, _deadline: &Deadline, letters: &[DeadLetter]) -> Vec<Fate> {
        let mut stored = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for l in letters {
            if !stored
                .iter()
                .any(|s| s.function_name == l.function_name && s.record == l.record)
            {
                stored.push(l.clone());
            }
        }
        vec![Fate::Stored; letters.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_value_is_base64_as_delivered() {
        let r = KafkaRecord::new("t", 1, 2, 1_732_350_000_123)
            .with_value([0xff, 0x00, 0x10])
            .with_key(b"k1");
        let d = DeadLetter::new("f", &r, "invalid_utf8", "bad");
        assert_eq!(d.value_encoding, ValueEncoding::Base64);
        assert_eq!(d.raw_value.as_deref(), Some("/wAQ"));
        assert_eq!(d.key.as_deref(), Some("k1"));
        let json: serde_json::Value = serde_json::from_slice(&d.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"function_name":"f","topic":"t","kafka_partition":1,"kafka_offset":2,
                "kafka_timestamp":1_732_350_000_123_i64,"record_key":"k1","key_encoding":"utf8",
                "raw_value":"/wAQ","value_encoding":"base64","record_headers":null,
                "key_schema_metadata":null,"value_schema_metadata":null,
                "error_code":"invalid_utf8","error_message":"bad"})
        );
    }

    #[test]
    fn headers_are_kept_in_order_text_or_base64() {
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_value("{}")
            .with_header("traceparent", "00-abc-def-01")
            .with_header("bin", [0xff, 0x00]);
        let json: serde_json::Value =
            serde_json::from_slice(&DeadLetter::new("f", &r, "x", "y").to_json()).unwrap();
        assert_eq!(
            json["record_headers"],
            serde_json::json!([{"name": "traceparent", "value": "00-abc-def-01"}, {"name": "bin", "value_base64": "/wA="}])
        );
    }

    #[test]
    fn nul_in_text_goes_base64_and_invalid_base64_is_kept() {
        let r = KafkaRecord::new("t", 0, 0, 0).with_value(b"a\0b");
        assert_eq!(
            DeadLetter::new("f", &r, "x", "y").value_encoding,
            ValueEncoding::Base64
        );
        let r = KafkaRecord::new("t", 0, 0, 0).with_raw_value("!!not base64!!");
        let d = DeadLetter::new("f", &r, "invalid_base64", "y");
        assert_eq!(d.raw_value.as_deref(), Some("!!not base64!!"));
        assert_eq!(d.value_encoding, ValueEncoding::Base64);
    }

    #[test]
    fn binary_keys_and_schema_metadata_are_kept_for_a_replay() {
        // An Avro key and value as an ESM schema registry with `EventRecordFormat: SOURCE`
        // delivers them: the producer's bytes without the wire prefix, and the schema ids.
        let r = KafkaRecord::new("t", 0, 0, 5)
            .with_key([0x02, 0xff])
            .with_value([0x2a, 0x00])
            .with_key_schema_metadata(SchemaMetadata::new("AVRO", "3"))
            .with_value_schema_metadata(SchemaMetadata::new("AVRO", "12"));
        let json: serde_json::Value =
            serde_json::from_slice(&DeadLetter::new("f", &r, "schema_mismatch", "y").to_json())
                .unwrap();
        assert_eq!(json["record_key"], "Av8=");
        assert_eq!(json["key_encoding"], "base64");
        assert_eq!(json["raw_value"], "KgA=");
        assert_eq!(
            json["value_schema_metadata"],
            serde_json::json!({"dataFormat": "AVRO", "schemaId": "12"})
        );
        assert_eq!(json["key_schema_metadata"]["schemaId"], "3");
        let keyless = DeadLetter::new("f", &KafkaRecord::new("t", 0, 0, 0), "x", "y");
        assert_eq!(keyless.key_encoding, None);
    }

    #[test]
    fn null_value_and_long_unicode_message() {
        let r = KafkaRecord::new("t", 0, 0, 0);
        let d = DeadLetter::new("f", &r, "missing_value", "é".repeat(5000));
        assert_eq!(d.raw_value, None);
        assert!(d.error_message.len() <= crate::http::MAX_ERROR_BODY + 4);
    }
}
