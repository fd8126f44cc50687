//! Errors: per-record decoding failures (permanent, the bytes will not change on retry, but for a
//! writer schema that cannot be had) and
//! whole-payload failures (the invocation input is not a Kafka ESM event at all).

use std::fmt;

use crate::record_id::RecordId;

/// Stable, low-cardinality classification of a decoding failure, suitable as a metric dimension
/// or a `tracing` field.
///
/// ```
/// use event_decoding::ErrorCode;
/// assert_eq!(ErrorCode::InvalidBase64.as_str(), "invalid_base64");
/// assert_eq!(ErrorCode::UnknownOp.to_string(), "unknown_op");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// `key` or `value` is not valid base64.
    InvalidBase64,
    /// Bytes that must be text are not valid UTF-8.
    InvalidUtf8,
    /// The value is not syntactically valid JSON.
    InvalidJson,
    /// The record has no value (null or absent) where one is required.
    MissingValue,
    /// The record has no key where one is required (a tombstone).
    MissingKey,
    /// The JSON is well formed but a field is missing or has the wrong type or value.
    InvalidField,
    /// A CDC `op` that this crate does not know.
    UnknownOp,
    /// A CDC envelope whose shape is wrong (e.g. `after` is not an object).
    InvalidEnvelope,
    /// `VALUE_FORMAT=avro` and the value carries neither schema metadata nor a Confluent wire
    /// prefix: nothing says which schema wrote it.
    MissingSchemaId,
    /// The body does not decode with its writer schema.
    SchemaMismatch,
    /// The registry does not know the writer schema's id. Not the record's fault: redelivered.
    UnknownSchemaId,
    /// The writer schema could not be fetched (network, 5xx, auth). Transient: redelivered.
    SchemaFetchFailed,
    /// Schema metadata names a format this function does not decode (e.g. `PROTOBUF`): a
    /// configuration to fix, redelivered.
    UnsupportedFormat,
}

impl ErrorCode {
    /// The code as a static snake_case string.
    ///
    /// ```
    /// assert_eq!(event_decoding::ErrorCode::InvalidField.as_str(), "invalid_field");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::InvalidBase64 => "invalid_base64",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::MissingValue => "missing_value",
            ErrorCode::MissingKey => "missing_key",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidEnvelope => "invalid_envelope",
            ErrorCode::MissingSchemaId => "missing_schema_id",
            ErrorCode::SchemaMismatch => "schema_mismatch",
            ErrorCode::UnknownSchemaId => "unknown_schema_id",
            ErrorCode::SchemaFetchFailed => "schema_fetch_failed",
            ErrorCode::UnsupportedFormat => "unsupported_format",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that cannot be decoded. Always permanent: the same bytes are redelivered on retry, so
/// the caller dead-letters the record instead of failing the batch.
///
/// The message names the part of the record (`key`, `value`, a JSON field path such as
/// `answer` or `after.page_id`) and the problem; it never contains the record's payload.
///
/// ```
/// use event_decoding::{ErrorCode, KafkaRecord};
/// let record = KafkaRecord::new("gift_events", 0, 7, 0).with_raw_value("not base64!");
/// let err = record.value().unwrap_err();
/// assert_eq!(err.code, ErrorCode::InvalidBase64);
/// assert!(err.to_string().starts_with("gift_events-0@7: invalid_base64: value"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{id}: {code}: {message}")]
pub struct RecordError {
    /// Which record failed.
    pub id: RecordId,
    /// Stable classification.
    pub code: ErrorCode,
    /// Human-readable description naming the field and the problem.
    pub message: String,
}

impl RecordError {
    /// Builds an error for `id`.
    ///
    /// ```
    /// use event_decoding::{ErrorCode, RecordError, RecordId};
    /// let id = RecordId::new("gift_events", 1, 5);
    /// let err = RecordError::new(id, ErrorCode::InvalidField, "question: must not be empty");
    /// assert_eq!(err.to_string(), "gift_events-1@5: invalid_field: question: must not be empty");
    /// ```
    pub fn new(id: RecordId, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
        }
    }

    /// The error code as a static string (for logs and metrics).
    pub fn error_code(&self) -> &'static str {
        self.code.as_str()
    }

    /// `true` when the error is about the bytes of the record, which do not change on
    /// redelivery: dead-letter it. `false` for a writer schema that is unknown or could not be
    /// fetched, or a format this function does not decode: the environment's fault, report the
    /// record for redelivery.
    ///
    /// ```
    /// use event_decoding::{ErrorCode, RecordError, RecordId};
    /// let id = RecordId::new("t", 0, 0);
    /// assert!(RecordError::new(id.clone(), ErrorCode::SchemaMismatch, "").is_permanent());
    /// assert!(!RecordError::new(id, ErrorCode::SchemaFetchFailed, "").is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self.code,
            ErrorCode::UnknownSchemaId
                | ErrorCode::SchemaFetchFailed
                | ErrorCode::UnsupportedFormat
        )
    }
}

/// The invocation payload is not a Kafka event source mapping event (wrong JSON shape).
///
/// Returned by [`crate::KafkaBatch::from_slice`]; the `Deserialize` impl used by
/// `LambdaEvent<KafkaBatch>` reports the same problems as serde errors.
///
/// ```
/// use event_decoding::KafkaBatch;
/// let err = KafkaBatch::from_slice(br#"{"Records": []}"#).unwrap_err();
/// assert_eq!(err.error_code(), "invalid_event");
/// assert!(err.to_string().contains("records"));
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The payload is not JSON, or not shaped like a Kafka ESM event. `path` is the JSON path of
    /// the offending element (`.` for the root).
    #[error("not a Kafka event source mapping payload: at `{path}`: {message}")]
    InvalidEvent {
        /// JSON path of the problem, e.g. `records.gift_events-0[3].offset`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A record field is out of range (e.g. a partition that does not fit in `i32`).
    #[error("not a Kafka event source mapping payload: record {field} out of range: {value}")]
    OutOfRange {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: i64,
    },
}

impl BatchError {
    /// Stable low-cardinality code. A malformed invocation payload is permanent: retrying
    /// delivers the same bytes.
    pub fn error_code(&self) -> &'static str {
        match self {
            BatchError::InvalidEvent { .. } | BatchError::OutOfRange { .. } => "invalid_event",
        }
    }
}
