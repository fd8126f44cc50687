//! Values that are not JSON on the wire: the schema metadata an event source mapping with a schema
//! registry (`EventRecordFormat: SOURCE`) attaches to each record, the Confluent wire format
//! (magic byte 0, 4-byte big-endian schema id, body), and the per-record choice of decoder that
//! `VALUE_FORMAT` configures ([`ValueFormat`]).
//!
//! Decoding is synchronous and never fetches anything: the writer schemas a batch needs
//! ([`schema_ids`]) are resolved beforehand (lambda-kit's registry client caches them) and handed
//! over as a [`SchemaLookup`].
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use event_decoding::{AvroSchema, Decoding, KafkaRecord, ValueFormat};
//!
//! let schema = AvroSchema::parse(r#"{"type":"record","name":"Gift","fields":[{"name":"page_id","type":"long"}]}"#).unwrap();
//! let schemas = HashMap::from([("7".to_string(), Arc::new(schema))]);
//! // Confluent wire format: magic byte, schema id 7, then the Avro body (page_id 21 as a zigzag varint).
//! let record = KafkaRecord::new("gift_events", 0, 0, 0).with_value([0, 0, 0, 0, 7, 42]);
//! let value: serde_json::Value = record.value_json_via(Decoding::new(ValueFormat::Auto, &schemas)).unwrap();
//! assert_eq!(value, serde_json::json!({"page_id": 21}));
//! ```

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::avro::AvroSchema;
use crate::cdc::{self, Change};
use crate::error::{ErrorCode, RecordError};
use crate::record::KafkaRecord;
use crate::version::SourceVersion;

/// `keySchemaMetadata` / `valueSchemaMetadata` of a record delivered by an event source mapping
/// with a schema registry and `EventRecordFormat: SOURCE`: the body is the producer's bytes with
/// the registry's wire prefix removed; this says which schema wrote them.
///
/// ```
/// use event_decoding::{DataFormat, SchemaMetadata};
/// let m: SchemaMetadata = serde_json::from_str(r#"{"dataFormat":"AVRO","schemaId":"12"}"#).unwrap();
/// assert_eq!((m.format(), m.schema_id.as_str()), (DataFormat::Avro, "12"));
/// ```
///
/// Without a schema registry the ESM sends `{"dataFormat": "JSON", "schemaId": null}`: metadata
/// without a schema id says nothing, and decoding ignores it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaMetadata {
    /// `AVRO`, `PROTOBUF` or `JSON` (JSON Schema).
    #[serde(default, deserialize_with = "lenient")]
    pub data_format: String,
    /// The registry's id of the writer schema: a Confluent schema id (decimal) or a Glue schema
    /// version id (UUID); empty when absent or null.
    #[serde(default, deserialize_with = "lenient")]
    pub schema_id: String,
}

/// A string, a number (as its text) or null (empty).
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    })
}

impl SchemaMetadata {
    /// Metadata for `format` and `schema_id`.
    pub fn new(data_format: impl Into<String>, schema_id: impl Into<String>) -> Self {
        Self {
            data_format: data_format.into(),
            schema_id: schema_id.into(),
        }
    }

    /// The data format, parsed.
    pub fn format(&self) -> DataFormat {
        match self.data_format.to_ascii_uppercase().as_str() {
            "AVRO" => DataFormat::Avro,
            "PROTOBUF" => DataFormat::Protobuf,
            "JSON" => DataFormat::Json,
            _ => DataFormat::Other,
        }
    }
}

/// `keySchemaMetadata` / `valueSchemaMetadata` as a batch is parsed: `None` unless a schema id
/// is given, so the `{"dataFormat": "JSON", "schemaId": null}` the ESM puts on every record
/// without a registry costs no allocation.
#[derive(Debug, Default)]
pub(crate) struct MetadataField(pub(crate) Option<Box<SchemaMetadata>>);

impl<'de> Deserialize<'de> for MetadataField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Borrowed<'a> {
            #[serde(default, borrow)]
            data_format: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            schema_id: Option<Value>,
        }
        let Some(b) = Option::<Borrowed>::deserialize(d)? else {
            return Ok(Self(None));
        };
        let schema_id = match b.schema_id {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Ok(Self(None)),
        };
        Ok(Self(Some(Box::new(SchemaMetadata {
            data_format: b.data_format.map(String::from).unwrap_or_default(),
            schema_id,
        }))))
    }
}

/// The `dataFormat` of [`SchemaMetadata`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// Apache Avro.
    Avro,
    /// Protocol Buffers (not decoded by this crate yet).
    Protobuf,
    /// JSON Schema: the body is JSON.
    Json,
    /// Anything else.
    Other,
}

/// How record values are decoded (`VALUE_FORMAT`).
///
/// ```
/// use event_decoding::ValueFormat;
/// assert_eq!("AVRO".parse::<ValueFormat>().unwrap(), ValueFormat::Avro);
/// assert_eq!(ValueFormat::default(), ValueFormat::Json);
/// assert!("xml".parse::<ValueFormat>().unwrap_err().contains("json, avro or auto"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// Every value is JSON (the default; the ESM's `EventRecordFormat: JSON` delivers JSON too).
    #[default]
    Json,
    /// Every value is Avro: a record's `valueSchemaMetadata` names the schema, else its Confluent
    /// wire prefix does; a value with neither is dead-lettered (`missing_schema_id`).
    Avro,
    /// Per record: Avro when the metadata says so or the value starts with the Confluent magic
    /// byte (0, which no JSON text starts with), JSON otherwise.
    Auto,
}

impl ValueFormat {
    /// `json`, `avro` or `auto`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ValueFormat::Json => "json",
            ValueFormat::Avro => "avro",
            ValueFormat::Auto => "auto",
        }
    }
}

impl FromStr for ValueFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(ValueFormat::Json),
            "avro" => Ok(ValueFormat::Avro),
            "auto" => Ok(ValueFormat::Auto),
            other => Err(format!(
                "`{other}` is not a value format; expected json, avro or auto"
            )),
        }
    }
}

impl fmt::Display for ValueFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits a value in the Confluent wire format: magic byte `0`, the schema id as 4 big-endian
/// bytes, then the body. `None` when `bytes` do not start so.
///
/// ```
/// use event_decoding::confluent_prefix;
/// assert_eq!(confluent_prefix(&[0, 0, 0, 1, 2, 9, 9]), Some((258, &[9u8, 9][..])));
/// assert_eq!(confluent_prefix(b"{}"), None);
/// assert_eq!(confluent_prefix(&[0, 0, 0]), None);
/// ```
pub fn confluent_prefix(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => None,
    }
}

/// Why a writer schema is not at hand.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaUnavailable {
    /// The registry does not know the id (or the schema it returned cannot be used): a fault of
    /// the environment (wrong registry, deleted subject), reported for redelivery.
    #[error("{0}")]
    Unknown(String),
    /// The registry could not be asked (network, 5xx, auth, deadline): transient.
    #[error("{0}")]
    FetchFailed(String),
}

/// Writer schemas by id, resolved before a batch is decoded.
///
/// A `HashMap<String, Arc<AvroSchema>>` is one (schemas given in configuration, tests); lambda-kit's
/// registry client is another.
pub trait SchemaLookup {
    /// The Avro schema with registry id `id`.
    fn avro(&self, id: &str) -> Result<Arc<AvroSchema>, SchemaUnavailable>;
}

impl SchemaLookup for HashMap<String, Arc<AvroSchema>> {
    fn avro(&self, id: &str) -> Result<Arc<AvroSchema>, SchemaUnavailable> {
        self.get(id)
            .cloned()
            .ok_or_else(|| SchemaUnavailable::Unknown(format!("no Avro schema with id {id}")))
    }
}

/// No schemas at all (for [`Decoding::JSON`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSchemas;

impl SchemaLookup for NoSchemas {
    fn avro(&self, id: &str) -> Result<Arc<AvroSchema>, SchemaUnavailable> {
        Err(SchemaUnavailable::Unknown(format!(
            "schema {id} is needed but no schema registry is configured (SCHEMA_REGISTRY_URL)"
        )))
    }
}

/// How a function decodes its records: the [`ValueFormat`] and where writer schemas come from.
#[derive(Clone, Copy)]
pub struct Decoding<'a> {
    /// `VALUE_FORMAT`.
    pub format: ValueFormat,
    /// Writer schemas, resolved for the batch.
    pub schemas: &'a dyn SchemaLookup,
}

impl fmt::Debug for Decoding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoding")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl<'a> Decoding<'a> {
    /// JSON values only: exactly [`KafkaRecord::value_json`] and [`KafkaRecord::change`].
    pub const JSON: Decoding<'static> = Decoding {
        format: ValueFormat::Json,
        schemas: &NoSchemas,
    };

    /// `format` with `schemas`.
    pub fn new(format: ValueFormat, schemas: &'a dyn SchemaLookup) -> Self {
        Self { format, schemas }
    }
}

/// What a key or value is, once its format is decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Encoded<'b> {
    /// JSON text (or plain text for keys).
    Json(&'b [u8]),
    /// An Avro body and the id of its writer schema.
    Avro { schema_id: String, body: &'b [u8] },
}

/// Which schema ids decoding `records` with `format` needs, keys and values: what a resolver
/// fetches before the batch is decoded. Empty for [`ValueFormat::Json`]; records whose bytes are
/// not base64 are left to decoding to reject.
///
/// ```
/// use event_decoding::{KafkaRecord, SchemaMetadata, ValueFormat, schema_ids};
/// let records = [
///     KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 5, 2]),
///     KafkaRecord::new("t", 0, 1, 0).with_value("AgQ=").with_value_schema_metadata(SchemaMetadata::new("AVRO", "9")),
///     KafkaRecord::new("t", 0, 2, 0).with_value("{}"),
/// ];
/// let ids: Vec<String> = schema_ids(&records, ValueFormat::Auto).into_iter().collect();
/// assert_eq!(ids, ["5", "9"]);
/// assert!(schema_ids(&records, ValueFormat::Json).is_empty());
/// ```
pub fn schema_ids(records: &[KafkaRecord], format: ValueFormat) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    if format == ValueFormat::Json {
        return ids;
    }
    for r in records {
        for (meta, bytes) in [
            (r.key_schema_metadata.as_deref(), r.key().ok().flatten()),
            (r.value_schema_metadata.as_deref(), r.value().ok().flatten()),
        ] {
            if let Some(bytes) = bytes
                && let Ok(Encoded::Avro { schema_id, .. }) = encoding(meta, &bytes, format)
            {
                ids.insert(schema_id);
            }
        }
    }
    ids
}

/// Decides how `bytes` are encoded. `Err` carries the code and message of a record the format
/// cannot take.
fn encoding<'b>(
    meta: Option<&SchemaMetadata>,
    bytes: &'b [u8],
    format: ValueFormat,
) -> Result<Encoded<'b>, (ErrorCode, String)> {
    if format == ValueFormat::Json {
        return Ok(Encoded::Json(bytes));
    }
    if let Some(meta) = meta.filter(|m| !m.schema_id.is_empty()) {
        return match meta.format() {
            DataFormat::Avro => Ok(Encoded::Avro {
                schema_id: meta.schema_id.clone(),
                body: bytes,
            }),
            DataFormat::Json => Ok(Encoded::Json(bytes)),
            DataFormat::Protobuf | DataFormat::Other => Err((
                ErrorCode::UnsupportedFormat,
                format!(
                    "schema metadata says {}, which this function does not decode (VALUE_FORMAT={format} takes AVRO and JSON)",
                    meta.data_format
                ),
            )),
        };
    }
    match confluent_prefix(bytes) {
        Some((id, body)) => Ok(Encoded::Avro {
            schema_id: id.to_string(),
            body,
        }),
        None if format == ValueFormat::Auto => Ok(Encoded::Json(bytes)),
        None => Err((
            ErrorCode::MissingSchemaId,
            "no schema metadata and no Confluent wire prefix (magic byte 0 + schema id); VALUE_FORMAT=avro needs one"
                .to_string(),
        )),
    }
}

impl KafkaRecord {
    /// `keySchemaMetadata`, when the event source mapping's schema registry set it.
    pub fn key_schema_metadata(&self) -> Option<&SchemaMetadata> {
        self.key_schema_metadata.as_deref()
    }

    /// `valueSchemaMetadata`, when the event source mapping's schema registry set it.
    pub fn value_schema_metadata(&self) -> Option<&SchemaMetadata> {
        self.value_schema_metadata.as_deref()
    }

    /// Sets `keySchemaMetadata`.
    pub fn with_key_schema_metadata(mut self, meta: SchemaMetadata) -> Self {
        self.key_schema_metadata = Some(Box::new(meta));
        self
    }

    /// Sets `valueSchemaMetadata`.
    pub fn with_value_schema_metadata(mut self, meta: SchemaMetadata) -> Self {
        self.value_schema_metadata = Some(Box::new(meta));
        self
    }

    /// Decodes the value into `T` the way `decoding` says: JSON exactly as
    /// [`value_json`](Self::value_json), Avro through the writer schema into the same JSON shape
    /// (see [`AvroSchema`] for the mapping), then into `T`.
    ///
    /// Errors: `missing_value`, `missing_schema_id` and `schema_mismatch` (the record is bad:
    /// dead-letter it), `unknown_schema_id`, `schema_fetch_failed` and `unsupported_format`
    /// (not the record's fault: [`RecordError::is_permanent`] is `false`, report it for
    /// redelivery).
    pub fn value_json_via<T: DeserializeOwned + 'static>(
        &self,
        decoding: Decoding<'_>,
    ) -> Result<T, RecordError> {
        if decoding.format == ValueFormat::Json {
            return self.value_json();
        }
        let bytes = self.value()?.ok_or_else(|| {
            self.error(
                ErrorCode::MissingValue,
                "value is null or absent; expected a value",
            )
        })?;
        match self.encoded(
            self.value_schema_metadata(),
            &bytes,
            decoding.format,
            "value",
        )? {
            Encoded::Json(b) => self.parse_json(b, "value"),
            Encoded::Avro { schema_id, body } => {
                let v = self.avro_json(&schema_id, body, decoding, "value")?;
                // `T` is often `serde_json::Value` itself: no round trip through serde then.
                let v = match (Box::new(v) as Box<dyn Any>).downcast::<T>() {
                    Ok(t) => return Ok(*t),
                    Err(v) => *v.downcast::<Value>().expect("boxed a Value"),
                };
                serde_path_to_error::deserialize(v).map_err(|e| {
                    let path = e.path().to_string();
                    let field = if path == "." {
                        "value".to_string()
                    } else {
                        path
                    };
                    self.error(ErrorCode::InvalidField, format!("{field}: {}", e.inner()))
                })
            }
        }
    }

    /// [`change`](Self::change), with values and keys decoded the way `decoding` says.
    pub fn change_via(&self, decoding: Decoding<'_>) -> Result<Change, RecordError> {
        self.change_with_version_via(decoding).map(|(c, _)| c)
    }

    /// [`change_with_version`](Self::change_with_version), with values and keys decoded the way
    /// `decoding` says: a Debezium envelope written in Avro gives the same [`Change`] as its
    /// JsonConverter twin.
    pub fn change_with_version_via(
        &self,
        decoding: Decoding<'_>,
    ) -> Result<(Change, Option<SourceVersion>), RecordError> {
        if decoding.format == ValueFormat::Json {
            return self.change_with_version();
        }
        let key = || self.key_via(decoding);
        let Some(bytes) = self.value()? else {
            return cdc::from_value(self, None, key);
        };
        match self.encoded(
            self.value_schema_metadata(),
            &bytes,
            decoding.format,
            "value",
        )? {
            Encoded::Json(_) => cdc::decode_versioned_with_key(self, key),
            Encoded::Avro { schema_id, body } => {
                let v = self.avro_json(&schema_id, body, decoding, "value")?;
                cdc::from_value(self, Some(v), key)
            }
        }
    }

    /// The key as CDC uses it: Avro through its schema, else as [`change`](Self::change) reads
    /// keys (JSON, or text).
    fn key_via(&self, decoding: Decoding<'_>) -> Result<Option<Value>, RecordError> {
        let Some(bytes) = self.key()? else {
            return Ok(None);
        };
        // A key is Avro only when something says so: `auto` and `avro` alike read a key without
        // metadata or prefix as JSON or text (keys are often plain strings).
        let format = match decoding.format {
            ValueFormat::Avro => ValueFormat::Auto,
            f => f,
        };
        match self.encoded(self.key_schema_metadata(), &bytes, format, "key")? {
            Encoded::Json(_) => cdc::key_value(self),
            Encoded::Avro { schema_id, body } => {
                let v = self.avro_json(&schema_id, body, decoding, "key")?;
                Ok(Some(cdc::unwrap_key(v)))
            }
        }
    }

    fn encoded<'b>(
        &self,
        meta: Option<&SchemaMetadata>,
        bytes: &'b [u8],
        format: ValueFormat,
        what: &str,
    ) -> Result<Encoded<'b>, RecordError> {
        encoding(meta, bytes, format)
            .map_err(|(code, message)| self.error(code, format!("{what}: {message}")))
    }

    fn avro_json(
        &self,
        schema_id: &str,
        body: &[u8],
        decoding: Decoding<'_>,
        what: &str,
    ) -> Result<Value, RecordError> {
        let schema = decoding.schemas.avro(schema_id).map_err(|e| match e {
            SchemaUnavailable::Unknown(m) => self.error(
                ErrorCode::UnknownSchemaId,
                format!("{what}: writer schema {schema_id}: {m}"),
            ),
            SchemaUnavailable::FetchFailed(m) => self.error(
                ErrorCode::SchemaFetchFailed,
                format!("{what}: writer schema {schema_id}: {m}"),
            ),
        })?;
        schema.decode(body).map_err(|m| {
            self.error(
                ErrorCode::SchemaMismatch,
                format!("{what} does not match its writer schema {schema_id}: {m}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas(id: &str, schema: &str) -> HashMap<String, Arc<AvroSchema>> {
        HashMap::from([(id.to_string(), Arc::new(AvroSchema::parse(schema).unwrap()))])
    }

    const GIFT: &str = r#"{"type":"record","name":"Gift","fields":[
        {"name":"page_id","type":"long"},{"name":"question","type":"string"}]}"#;

    /// page_id 3, question "hi".
    const GIFT_BODY: [u8; 4] = [6, 4, b'h', b'i'];

    fn wire(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn metadata_parses_and_names_formats() {
        for (s, f) in [
            ("AVRO", DataFormat::Avro),
            ("avro", DataFormat::Avro),
            ("PROTOBUF", DataFormat::Protobuf),
            ("JSON", DataFormat::Json),
            ("XML", DataFormat::Other),
        ] {
            assert_eq!(SchemaMetadata::new(s, "1").format(), f);
        }
    }

    #[test]
    fn metadata_without_a_schema_id_says_nothing() {
        let m: SchemaMetadata =
            serde_json::from_str(r#"{"dataFormat":"JSON","schemaId":null}"#).unwrap();
        assert_eq!(m.schema_id, "");
        let m: SchemaMetadata =
            serde_json::from_str(r#"{"dataFormat":"AVRO","schemaId":17}"#).unwrap();
        assert_eq!(m.schema_id, "17");
        let s = schemas("1", GIFT);
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(1, &GIFT_BODY))
            .with_value_schema_metadata(SchemaMetadata::new("JSON", ""));
        let v: Value = r
            .value_json_via(Decoding::new(ValueFormat::Avro, &s))
            .unwrap();
        assert_eq!(v["page_id"], 3);
    }

    #[test]
    fn json_format_ignores_prefixes_and_metadata() {
        let s = schemas("1", GIFT);
        let r = KafkaRecord::new("t", 0, 0, 0).with_value(wire(1, &GIFT_BODY));
        let err = r
            .value_json_via::<Value>(Decoding::new(ValueFormat::Json, &s))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn avro_by_prefix_and_by_metadata() {
        let s = schemas("1", GIFT);
        let d = Decoding::new(ValueFormat::Avro, &s);
        let by_prefix = KafkaRecord::new("t", 0, 0, 0).with_value(wire(1, &GIFT_BODY));
        let by_meta = KafkaRecord::new("t", 0, 1, 0)
            .with_value(GIFT_BODY)
            .with_value_schema_metadata(SchemaMetadata::new("AVRO", "1"));
        for r in [by_prefix, by_meta] {
            let v: Value = r.value_json_via(d).unwrap();
            assert_eq!(v, json!({"page_id": 3, "question": "hi"}));
        }
    }

    #[test]
    fn typed_values_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            page_id: String,
        }
        let s = schemas("1", GIFT);
        let r = KafkaRecord::new("t", 0, 0, 0).with_value(wire(1, &GIFT_BODY));
        let err = r
            .value_json_via::<Wrong>(Decoding::new(ValueFormat::Avro, &s))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        assert!(err.message.starts_with("page_id: invalid type"), "{err}");
    }

    #[test]
    fn auto_takes_json_and_avro_avro_refuses_json() {
        let s = schemas("1", GIFT);
        let r = KafkaRecord::new("t", 0, 0, 0).with_value(r#"{"page_id":1}"#);
        let v: Value = r
            .value_json_via(Decoding::new(ValueFormat::Auto, &s))
            .unwrap();
        assert_eq!(v, json!({"page_id": 1}));
        let err = r
            .value_json_via::<Value>(Decoding::new(ValueFormat::Avro, &s))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::MissingSchemaId);
        assert!(err.is_permanent());
    }

    #[test]
    fn schema_errors_are_classified() {
        let s = schemas("1", GIFT);
        let d = Decoding::new(ValueFormat::Avro, &s);
        // Unknown id: not the record's fault.
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(2, &GIFT_BODY))
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSchemaId);
        assert!(!err.is_permanent());
        // A body that does not match: dead letter.
        for body in [&[6u8, 9, b'h'][..], &[6, 4, b'h', b'i', 1][..], &[][..]] {
            let err = KafkaRecord::new("t", 0, 0, 0)
                .with_value(wire(1, body))
                .value_json_via::<Value>(d)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::SchemaMismatch, "{body:?}");
            assert!(err.is_permanent());
        }
        // Protobuf metadata: not decoded here, redelivered.
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(GIFT_BODY)
            .with_value_schema_metadata(SchemaMetadata::new("PROTOBUF", "1"))
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedFormat);
        assert!(!err.is_permanent());
        // A fetch failure surfaces as such.
        struct Down;
        impl SchemaLookup for Down {
            fn avro(&self, _: &str) -> Result<Arc<AvroSchema>, SchemaUnavailable> {
                Err(SchemaUnavailable::FetchFailed(
                    "registry answered 503".into(),
                ))
            }
        }
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(1, &GIFT_BODY))
            .value_json_via::<Value>(Decoding::new(ValueFormat::Auto, &Down))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaFetchFailed);
        assert!(err.message.contains("503"));
        assert!(!err.is_permanent());
    }

    #[test]
    fn schema_ids_cover_keys_and_values() {
        let records = [
            KafkaRecord::new("t", 0, 0, 0)
                .with_key(wire(3, &[2]))
                .with_value(wire(4, &GIFT_BODY)),
            KafkaRecord::new("t", 0, 1, 0)
                .with_key("plain")
                .with_value(GIFT_BODY)
                .with_value_schema_metadata(SchemaMetadata::new("AVRO", "4")),
            KafkaRecord::new("t", 0, 2, 0).with_raw_value("not base64!"),
        ];
        let ids: Vec<String> = schema_ids(&records, ValueFormat::Avro)
            .into_iter()
            .collect();
        assert_eq!(ids, ["3", "4"]);
    }

    #[test]
    fn avro_key_and_tombstone_changes() {
        let key_schema =
            r#"{"type":"record","name":"Key","fields":[{"name":"page_id","type":"long"}]}"#;
        let mut s = schemas("1", GIFT);
        s.insert("2".into(), Arc::new(AvroSchema::parse(key_schema).unwrap()));
        let d = Decoding::new(ValueFormat::Avro, &s);
        let tomb = KafkaRecord::new("t", 0, 0, 0).with_key(wire(2, &[84]));
        assert_eq!(
            tomb.change_via(d).unwrap(),
            Change::Tombstone {
                key: json!({"page_id": 42})
            }
        );
        let text_key = KafkaRecord::new("t", 0, 0, 0)
            .with_key("p-1")
            .with_value(wire(1, &GIFT_BODY));
        match text_key.change_via(d).unwrap() {
            Change::Upsert { row, key, .. } => {
                assert_eq!(Value::Object(row), json!({"page_id": 3, "question": "hi"}));
                assert_eq!(key, Some(json!("p-1")));
            }
            other => panic!("{other:?}"),
        }
    }
}
