//! Values that are not JSON on the wire: the schema metadata an event source mapping with a schema
//! registry (`EventRecordFormat: SOURCE`) attaches to each record, the Confluent wire format
//! (magic byte 0, 4-byte big-endian schema id, for Protobuf the message indexes, then the body),
//! and the per-record choice of decoder that `VALUE_FORMAT` configures ([`ValueFormat`]).
//!
//! Decoding is synchronous and never fetches anything: the writer schemas a batch needs
//! ([`schema_ids`]) are resolved beforehand (lambda-kit's registry client caches them) and handed
//! over as a [`SchemaLookup`]. What a body is (Avro, Protobuf or JSON Schema) is the writer
//! schema's type ([`WriterSchema`]), whichever registry it came from.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use event_decoding::{DataFormat, Decoding, KafkaRecord, ValueFormat, WriterSchema};
//!
//! let schema = WriterSchema::parse(DataFormat::Avro, r#"{"type":"record","name":"Gift","fields":[{"name":"page_id","type":"long"}]}"#, &[]).unwrap();
//! let schemas = HashMap::from([("7".to_string(), Arc::new(schema))]);
//! // Confluent wire format: magic byte, schema id 7, then the Avro body (page_id 21 as a zigzag varint).
//! let record = KafkaRecord::new("gift_events", 0, 0, 0).with_value([0, 0, 0, 0, 7, 42]);
//! let value: serde_json::Value = record.value_json_via(Decoding::new(ValueFormat::Auto, &schemas)).unwrap();
//! assert_eq!(value, serde_json::json!({"page_id": 21}));
//! ```

use std::any::Any;
use std::borrow::Cow;
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
use crate::glue::{self, GlueCompression};
use crate::protobuf::{self, ProtoSchema};
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
    /// Protocol Buffers.
    Protobuf,
    /// JSON Schema: the body is JSON.
    Json,
    /// Anything else.
    Other,
}

/// How record values are decoded (`VALUE_FORMAT`).
///
/// Whichever is chosen, a value described by a registry schema is decoded as that schema's type
/// says (the registry's `schemaType`: Avro, Protobuf or JSON Schema). A JSON Schema value is
/// JSON text and is read as such: it is not validated against its schema (the producer's
/// serializer and the ESM's validation are where that happens).
///
/// ```
/// use event_decoding::ValueFormat;
/// assert_eq!("AVRO".parse::<ValueFormat>().unwrap(), ValueFormat::Avro);
/// assert_eq!("protobuf".parse::<ValueFormat>().unwrap(), ValueFormat::Protobuf);
/// assert_eq!(ValueFormat::default(), ValueFormat::Json);
/// assert!("xml".parse::<ValueFormat>().unwrap_err().contains("json, avro, protobuf or auto"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// Every value is JSON (the default; the ESM's `EventRecordFormat: JSON` delivers JSON too).
    #[default]
    Json,
    /// Every value is Avro: a record's `valueSchemaMetadata` names the schema, else its Confluent
    /// wire prefix does; a value with neither is dead-lettered (`missing_schema_id`), unless a
    /// shipped schema reads it ([`Decoding::plain`]).
    Avro,
    /// Every value is Protobuf, its schema named as for [`Avro`](Self::Avro).
    Protobuf,
    /// Per record: described by a registry schema when the metadata says so or the value starts
    /// with the Confluent magic byte (0) or the Glue header (version byte 3 and a known
    /// compression byte); no JSON text starts with either. JSON otherwise.
    Auto,
}

/// `as_str` (the setting's spelling), [`FromStr`] (any case, trimmed; the error lists the
/// choices) and [`fmt::Display`] of a closed set of format choices, from one list.
macro_rules! format_names {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            const NAMES: &'static [($ty, &'static str)] = &[$(($ty::$variant, $name)),+];

            #[doc = concat!("The setting's spelling: ", $(concat!("`", $name, "` "),)+ ".")]
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let wanted = s.trim().to_ascii_lowercase();
                if let Some((v, _)) = Self::NAMES.iter().find(|(_, n)| *n == wanted) {
                    return Ok(*v);
                }
                let names: Vec<&str> = Self::NAMES.iter().map(|(_, n)| *n).collect();
                let (last, rest) = names.split_last().expect("a choice");
                Err(format!(
                    "`{wanted}` is not a {}; expected {} or {last}",
                    $what,
                    rest.join(", ")
                ))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

format_names!(ValueFormat, "value format", [Json => "json", Avro => "avro", Protobuf => "protobuf", Auto => "auto"]);

/// How record keys are decoded (`KEY_FORMAT`), each key with its own schema, as Powertools for
/// AWS Lambda's Kafka consumer does with `key_schema_type` / `key_schema`.
///
/// ```
/// use event_decoding::KeyFormat;
/// assert_eq!(KeyFormat::default(), KeyFormat::Auto);
/// assert_eq!("Avro".parse::<KeyFormat>().unwrap(), KeyFormat::Avro);
/// assert_eq!("string".parse::<KeyFormat>().unwrap(), KeyFormat::String);
/// assert!("raw".parse::<KeyFormat>().unwrap_err().contains("auto, string, json, avro or protobuf"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyFormat {
    /// The default, what keys always were: a key that its `keySchemaMetadata` or its wire prefix
    /// (Confluent, Glue) describes is decoded with that registry schema when `VALUE_FORMAT` is
    /// not `json`; any other key is JSON when it parses as JSON, else UTF-8 text (keys are often
    /// plain strings).
    #[default]
    Auto,
    /// Every key is UTF-8 text, taken as a string whatever it holds (Powertools' reading of a key
    /// without a key schema); a key that is not UTF-8 is the record's fault (`invalid_utf8`).
    String,
    /// Every key is JSON text; a key that is not is the record's fault (`invalid_json`).
    Json,
    /// Every key is Avro: named by its `keySchemaMetadata` or wire prefix (the registry's
    /// schema), else plain bytes of the shipped key schema (`KEY_AVRO_SCHEMA_FILE`); a key with
    /// neither is dead-lettered (`missing_schema_id`).
    Avro,
    /// Every key is Protobuf, its schema named as for [`Avro`](Self::Avro) (shipped:
    /// `KEY_PROTOBUF_DESCRIPTOR_SET` + `KEY_PROTOBUF_MESSAGE`).
    Protobuf,
}

format_names!(KeyFormat, "key format", [
    Auto => "auto",
    String => "string",
    Json => "json",
    Avro => "avro",
    Protobuf => "protobuf",
]);

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

/// A writer schema of any registry, parsed and ready to decode bodies with: what a
/// [`SchemaLookup`] hands out. A registry client fetches `(format, definition, references)` by
/// the id a record names and calls [`WriterSchema::parse`]; decoding follows the variant.
#[derive(Debug)]
#[non_exhaustive]
// One per schema id, always behind an `Arc`: the size of the Avro variant costs nothing per record.
#[allow(clippy::large_enum_variant)]
pub enum WriterSchema {
    /// An Avro schema.
    Avro(AvroSchema),
    /// A Protobuf schema (a compiled `.proto` file).
    Protobuf(ProtoSchema),
    /// A JSON Schema: the body is JSON text, read as JSON (not validated against the schema).
    Json,
}

impl WriterSchema {
    /// Parses a registry's schema `definition` of `format` (Confluent's `schemaType`: absent or
    /// `AVRO`, `PROTOBUF`, `JSON`; Glue's `DataFormat`), with `references`: `(name, definition)` of
    /// every schema it refers to, directly or through another reference (Avro: the referenced
    /// named type's full name and its schema; Protobuf: the imported file's name and its
    /// `.proto` text; JSON Schema: ignored). The error says why the schema cannot be used: a
    /// fault of the registry or of configuration, never of a record.
    ///
    /// ```
    /// use event_decoding::{DataFormat, WriterSchema};
    /// let address = ("shop.Address".to_string(),
    ///     r#"{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}"#.to_string());
    /// let s = WriterSchema::parse(DataFormat::Avro,
    ///     r#"{"type":"record","name":"Gift","namespace":"shop","fields":[{"name":"to","type":"Address"}]}"#,
    ///     &[address]).unwrap();
    /// let WriterSchema::Avro(avro) = &s else { unreachable!() };
    /// assert_eq!(avro.decode(&[4, b'O', b'z']).unwrap(), serde_json::json!({"to": {"city": "Oz"}}));
    /// assert!(WriterSchema::parse(DataFormat::Protobuf, "message {", &[]).is_err());
    /// assert!(matches!(WriterSchema::parse(DataFormat::Json, "{}", &[]), Ok(WriterSchema::Json)));
    /// ```
    pub fn parse(
        format: DataFormat,
        definition: &str,
        references: &[(String, String)],
    ) -> Result<Self, String> {
        match format {
            DataFormat::Avro => {
                let inlined = avro_references::inline(definition, references)?;
                AvroSchema::parse(inlined.as_deref().unwrap_or(definition))
                    .map(WriterSchema::Avro)
                    .map_err(|e| format!("not a valid Avro schema: {e}"))
            }
            DataFormat::Protobuf => ProtoSchema::parse(definition, references)
                .map(WriterSchema::Protobuf)
                .map_err(|e| format!("not a valid Protobuf schema: {e}")),
            DataFormat::Json => Ok(WriterSchema::Json),
            DataFormat::Other => Err("a schema type this function does not decode".into()),
        }
    }

    /// The schema's type.
    pub fn format(&self) -> DataFormat {
        match self {
            WriterSchema::Avro(_) => DataFormat::Avro,
            WriterSchema::Protobuf(_) => DataFormat::Protobuf,
            WriterSchema::Json => DataFormat::Json,
        }
    }
}

impl From<AvroSchema> for WriterSchema {
    fn from(s: AvroSchema) -> Self {
        WriterSchema::Avro(s)
    }
}

impl From<ProtoSchema> for WriterSchema {
    fn from(s: ProtoSchema) -> Self {
        WriterSchema::Protobuf(s)
    }
}

/// Writer schemas by id, resolved before a batch is decoded.
///
/// A `HashMap<String, Arc<WriterSchema>>` is one (schemas given in configuration, tests);
/// lambda-kit's registry client is another. An id is whatever the registry calls its schemas: a
/// Confluent schema id (decimal) or a Glue schema version id (UUID).
pub trait SchemaLookup {
    /// The writer schema with registry id `id`.
    fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable>;
}

impl SchemaLookup for HashMap<String, Arc<WriterSchema>> {
    fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        self.get(id)
            .cloned()
            .ok_or_else(|| SchemaUnavailable::Unknown(format!("no schema with id {id}")))
    }
}

/// No schemas at all (for [`Decoding::JSON`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSchemas;

impl SchemaLookup for NoSchemas {
    fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
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
    /// With [`ValueFormat::Protobuf`] or [`ValueFormat::Avro`]: the schema of a value that neither
    /// metadata nor a wire prefix describes, i.e. plain Protobuf bytes (`PROTOBUF_DESCRIPTOR_SET`,
    /// see [`ProtoSchema::from_descriptor_set`]) or plain Avro bytes (`AVRO_SCHEMA_FILE`). An
    /// Avro one also reads a value whole that merely starts like a wire prefix.
    pub plain: Option<&'a WriterSchema>,
    /// `KEY_FORMAT`: how keys are decoded, with their own schemas.
    pub key_format: KeyFormat,
    /// Where the writer schemas of keys come from when not from [`schemas`](Self::schemas): the
    /// shipped key schema standing in for a registry. `None`: `schemas`.
    pub key_schemas: Option<&'a dyn SchemaLookup>,
    /// With [`KeyFormat::Avro`] or [`KeyFormat::Protobuf`]: the schema of a key that neither
    /// metadata nor a wire prefix describes (`KEY_AVRO_SCHEMA_FILE`,
    /// `KEY_PROTOBUF_DESCRIPTOR_SET`), as [`plain`](Self::plain) is for values.
    pub key_plain: Option<&'a WriterSchema>,
}

impl fmt::Debug for Decoding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoding")
            .field("format", &self.format)
            .field("plain", &self.plain)
            .field("key_format", &self.key_format)
            .field("key_plain", &self.key_plain)
            .finish_non_exhaustive()
    }
}

impl<'a> Decoding<'a> {
    /// JSON values only: exactly [`KafkaRecord::value_json`] and [`KafkaRecord::change`].
    pub const JSON: Decoding<'static> = Decoding {
        format: ValueFormat::Json,
        schemas: &NoSchemas,
        plain: None,
        key_format: KeyFormat::Auto,
        key_schemas: None,
        key_plain: None,
    };

    /// `format` with `schemas`.
    pub fn new(format: ValueFormat, schemas: &'a dyn SchemaLookup) -> Self {
        Self {
            format,
            schemas,
            plain: None,
            key_format: KeyFormat::Auto,
            key_schemas: None,
            key_plain: None,
        }
    }

    /// With `schema` for plain values (those without metadata or wire prefix) under
    /// [`ValueFormat::Protobuf`] or [`ValueFormat::Avro`] ([`plain`](Self::plain)).
    ///
    /// ```
    /// use event_decoding::{Decoding, KafkaRecord, NoSchemas, ProtoSchema, ValueFormat, WriterSchema};
    /// # let set = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/schemas/gift.pb")).unwrap();
    /// let gift = WriterSchema::from(ProtoSchema::from_descriptor_set(&set, "vault.Gift").unwrap());
    /// let d = Decoding::new(ValueFormat::Protobuf, &NoSchemas).with_plain(&gift);
    /// // page_id 7 (field 2), question "q" (field 3)
    /// let r = KafkaRecord::new("t", 0, 0, 0).with_value([16, 7, 26, 1, b'q']);
    /// let v: serde_json::Value = r.value_json_via(d).unwrap();
    /// assert_eq!((v["page_id"].as_i64(), v["question"].as_str()), (Some(7), Some("q")));
    /// ```
    pub fn with_plain(mut self, schema: &'a WriterSchema) -> Self {
        self.plain = Some(schema);
        self
    }

    /// Keys decoded as `format` says, with their own schemas: `schemas` for the ids keys name
    /// (`None`: the values' registry), `plain` for keys that name none.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::sync::Arc;
    /// use event_decoding::{AvroSchema, Decoding, KafkaRecord, KeyFormat, NoSchemas, ValueFormat, WriterSchema};
    /// let key = WriterSchema::from(AvroSchema::parse(r#"{"type":"record","name":"K","fields":[{"name":"user_id","type":"long"}]}"#).unwrap());
    /// let d = Decoding::new(ValueFormat::Json, &NoSchemas).with_keys(KeyFormat::Avro, None, Some(&key));
    /// let r = KafkaRecord::new("t", 0, 0, 0).with_key([14]).with_value("{}");
    /// assert_eq!(r.key_via(d).unwrap(), Some(serde_json::json!({"user_id": 7})));
    /// ```
    pub fn with_keys(
        mut self,
        format: KeyFormat,
        schemas: Option<&'a dyn SchemaLookup>,
        plain: Option<&'a WriterSchema>,
    ) -> Self {
        self.key_format = format;
        self.key_schemas = schemas;
        self.key_plain = plain;
        self
    }

    /// How values are read.
    fn value_part(&self) -> Part<'a> {
        Part {
            what: "value",
            format: self.format,
            schemas: self.schemas,
            plain: self.plain,
        }
    }

    /// How keys are read through [`encoding`], or `None` when no schema can describe them: the
    /// default reading of [`KeyFormat::Auto`] with JSON values (JSON, else text), and
    /// [`KeyFormat::String`].
    fn key_part(&self) -> Option<Part<'a>> {
        let format = match (self.key_format, self.format) {
            (KeyFormat::Auto, ValueFormat::Json) | (KeyFormat::String, _) => return None,
            // A key is schema-described only when something says so: `auto`, `avro` and
            // `protobuf` values alike read a key without metadata or prefix as JSON or text.
            (KeyFormat::Auto, _) => ValueFormat::Auto,
            (KeyFormat::Json, _) => ValueFormat::Json,
            (KeyFormat::Avro, _) => ValueFormat::Avro,
            (KeyFormat::Protobuf, _) => ValueFormat::Protobuf,
        };
        Some(Part {
            what: "key",
            format,
            schemas: self.key_schemas.unwrap_or(self.schemas),
            plain: self.key_plain,
        })
    }
}

/// One part of a record (its key or its value) and what reads it.
#[derive(Clone, Copy)]
struct Part<'a> {
    /// `key` or `value`.
    what: &'static str,
    /// Its format (a key's [`KeyFormat`] as the value format that reads alike).
    format: ValueFormat,
    /// Writer schemas by id.
    schemas: &'a dyn SchemaLookup,
    /// The shipped schema of plain bytes.
    plain: Option<&'a WriterSchema>,
}

impl Part<'_> {
    /// The variable that sets the format.
    fn format_setting(&self) -> &'static str {
        if self.what == "key" {
            "KEY_FORMAT"
        } else {
            "VALUE_FORMAT"
        }
    }

    /// The setting that ships the schema of plain bytes of this part ([`Decoding::plain`],
    /// [`Decoding::key_plain`]).
    fn shipped_setting(&self) -> Option<&'static str> {
        let key = self.what == "key";
        match self.format {
            ValueFormat::Avro if key => Some("KEY_AVRO_SCHEMA_FILE"),
            ValueFormat::Avro => Some("AVRO_SCHEMA_FILE"),
            ValueFormat::Protobuf if key => Some("KEY_PROTOBUF_DESCRIPTOR_SET"),
            ValueFormat::Protobuf => Some("PROTOBUF_DESCRIPTOR_SET"),
            ValueFormat::Json | ValueFormat::Auto => None,
        }
    }
}

/// What a key or value is, once its format is decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Encoded<'b> {
    /// JSON text (or plain text for keys).
    Json(&'b [u8]),
    /// A body described by the registry schema `schema_id`: what it is (Avro, Protobuf, JSON) is
    /// the schema's type, known once the schema is fetched.
    Registry {
        schema_id: String,
        body: &'b [u8],
        framing: Framing,
    },
}

/// What precedes a registry-described body besides the schema id, which only matters for
/// Protobuf (Avro and JSON bodies follow the id directly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Behind the Confluent wire prefix: a Protobuf body starts with its message indexes.
    Confluent,
    /// Delivered with schema metadata (`EventRecordFormat: SOURCE`) naming a Confluent schema id:
    /// a Protobuf body may or may not start with its message indexes
    /// ([`protobuf::source_message_indexes`]).
    Source,
    /// Delivered with schema metadata naming a Glue schema version id (a UUID,
    /// [`glue::is_glue_schema_version_id`]): the event source mapping removed the Glue header
    /// (and inflated the body) but kept what followed it, so a Protobuf body starts with Glue's
    /// message index (one unsigned varint), not Confluent's zigzag array.
    GlueSource,
    /// No prefix and no metadata: a plain body of the schema given in configuration
    /// ([`Decoding::plain`]); a Protobuf body may start with message indexes as for `Source`.
    Configured,
    /// Behind the AWS Glue header ([`glue::glue_prefix`]): the body may be zlib-compressed, and a
    /// Protobuf body starts with Glue's message index.
    Glue(GlueCompression),
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
    key_and_value_schema_ids(records, format, KeyFormat::Auto)
}

/// [`schema_ids`] with keys decoded as `key_format` says ([`Decoding::with_keys`]): what a
/// resolver fetches when `KEY_FORMAT` is set.
///
/// ```
/// use event_decoding::{KafkaRecord, KeyFormat, ValueFormat, key_and_value_schema_ids};
/// let records = [KafkaRecord::new("t", 0, 0, 0).with_key([0, 0, 0, 0, 3, 2]).with_value("{}")];
/// let ids: Vec<String> = key_and_value_schema_ids(&records, ValueFormat::Json, KeyFormat::Avro).into_iter().collect();
/// assert_eq!(ids, ["3"]);
/// assert!(key_and_value_schema_ids(&records, ValueFormat::Json, KeyFormat::Auto).is_empty());
/// ```
pub fn key_and_value_schema_ids(
    records: &[KafkaRecord],
    format: ValueFormat,
    key_format: KeyFormat,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let decoding = Decoding::new(format, &NoSchemas).with_keys(key_format, None, None);
    let (value, key) = (decoding.value_part(), decoding.key_part());
    if format == ValueFormat::Json && key.is_none_or(|k| k.format == ValueFormat::Json) {
        return ids;
    }
    for r in records {
        let value = (
            Some(value),
            r.value_schema_metadata.as_deref(),
            r.raw_value(),
        );
        let key = (key, r.key_schema_metadata.as_deref(), r.raw_key());
        for (part, meta, text) in [key, value] {
            if let Some(part) = part
                && let Some(bytes) = head(text)
                && let Ok(Encoded::Registry { schema_id, .. }) = encoding(meta, &bytes, part)
            {
                ids.insert(schema_id);
            }
        }
    }
    ids
}

/// Base64 characters of a text's head that [`head`] decodes: 18 bytes, the longest wire prefix
/// (a Glue header: version, compression, 16-byte schema version id).
const HEAD_CHARS: usize = 24;

/// The first bytes of a key or value text: all [`encoding`] reads to find a schema id, so a
/// batch's ids are collected without decoding every body twice. `None` when absent or not base64.
fn head(text: Option<&str>) -> Option<Vec<u8>> {
    let text = text?;
    crate::record::decode_base64(text.get(..HEAD_CHARS).unwrap_or(text)).ok()
}

/// Decides how `bytes` of `part` are encoded. `Err` carries the code and message of a record the
/// format cannot take.
fn encoding<'b>(
    meta: Option<&SchemaMetadata>,
    bytes: &'b [u8],
    part: Part<'_>,
) -> Result<Encoded<'b>, (ErrorCode, String)> {
    let format = part.format;
    if format == ValueFormat::Json {
        return Ok(Encoded::Json(bytes));
    }
    if let Some(meta) = meta.filter(|m| !m.schema_id.is_empty()) {
        return match meta.format() {
            DataFormat::Avro | DataFormat::Protobuf => Ok(Encoded::Registry {
                schema_id: meta.schema_id.clone(),
                body: bytes,
                framing: if glue::is_glue_schema_version_id(&meta.schema_id) {
                    Framing::GlueSource
                } else {
                    Framing::Source
                },
            }),
            // JSON Schema: the ESM delivers the JSON text; its schema adds nothing to read it.
            DataFormat::Json => Ok(Encoded::Json(bytes)),
            DataFormat::Other => Err((
                ErrorCode::UnsupportedFormat,
                format!(
                    "schema metadata says {}, which this function does not decode (it takes AVRO, PROTOBUF and JSON)",
                    meta.data_format
                ),
            )),
        };
    }
    if let Some(h) = glue::glue_prefix(bytes) {
        return Ok(Encoded::Registry {
            schema_id: h.schema_version_id,
            body: h.raw_body,
            framing: Framing::Glue(h.compression),
        });
    }
    match confluent_prefix(bytes) {
        Some((id, body)) => Ok(Encoded::Registry {
            schema_id: id.to_string(),
            body,
            framing: Framing::Confluent,
        }),
        None if format == ValueFormat::Auto => Ok(Encoded::Json(bytes)),
        None if part.plain.is_some()
            && let Some(setting) = part.shipped_setting() =>
        {
            Ok(Encoded::Registry {
                schema_id: setting.to_string(),
                body: bytes,
                framing: Framing::Configured,
            })
        }
        None => Err((
            ErrorCode::MissingSchemaId,
            format!(
                "no schema metadata and no Confluent wire prefix (magic byte 0 + schema id) or Glue header (byte 3 + schema version id); {}={format} needs one",
                part.format_setting()
            ),
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
    /// [`value_json`](Self::value_json), Avro and Protobuf through the writer schema into the
    /// same JSON shape (see [`AvroSchema`] and [`ProtoSchema`] for the mappings), a JSON Schema
    /// value as JSON, then into `T`.
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
        let part = decoding.value_part();
        let v = match self.shipped_avro_whole(self.value_schema_metadata(), &bytes, part) {
            Some(v) => v,
            None => match self.encoded(self.value_schema_metadata(), &bytes, part)? {
                Encoded::Json(b) => return self.parse_json(b, "value"),
                Encoded::Registry {
                    schema_id,
                    body,
                    framing,
                } => match self.registry_body(&schema_id, body, framing, part)? {
                    Body::Json(b) => return self.parse_json(&b, "value"),
                    Body::Value(v) => v,
                },
            },
        };
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

    /// [`change`](Self::change), with values and keys decoded the way `decoding` says.
    pub fn change_via(&self, decoding: Decoding<'_>) -> Result<Change, RecordError> {
        self.change_with_version_via(decoding).map(|(c, _)| c)
    }

    /// [`change_with_version`](Self::change_with_version), with values and keys decoded the way
    /// `decoding` says: a Debezium envelope written in Avro or Protobuf gives the same [`Change`]
    /// as its JsonConverter twin.
    pub fn change_with_version_via(
        &self,
        decoding: Decoding<'_>,
    ) -> Result<(Change, Option<SourceVersion>), RecordError> {
        let key = || self.key_via(decoding);
        if decoding.format == ValueFormat::Json {
            return match decoding.key_format {
                KeyFormat::Auto => self.change_with_version(),
                _ => cdc::decode_versioned_with_key(self, key),
            };
        }
        let Some(bytes) = self.value()? else {
            return cdc::from_value(self, None, key);
        };
        let part = decoding.value_part();
        if let Some(v) = self.shipped_avro_whole(self.value_schema_metadata(), &bytes, part) {
            return cdc::from_value(self, Some(v), key);
        }
        match self.encoded(self.value_schema_metadata(), &bytes, part)? {
            Encoded::Json(_) => cdc::decode_versioned_with_key(self, key),
            Encoded::Registry {
                schema_id,
                body,
                framing,
            } => {
                let v = match self.registry_body(&schema_id, body, framing, part)? {
                    Body::Json(b) => self.parse_json(&b, "value")?,
                    Body::Value(v) => v,
                };
                cdc::from_value(self, Some(v), key)
            }
        }
    }

    /// The key, decoded the way `decoding` says ([`Decoding::with_keys`], `KEY_FORMAT`), as
    /// changes carry it (a JsonConverter `schema`/`payload` wrapper removed, Cassandra cells
    /// unwrapped): through its writer schema (the registry's, named by `keySchemaMetadata` or
    /// the key's wire prefix, else the shipped key schema); with [`KeyFormat::Json`] JSON text;
    /// with [`KeyFormat::String`] the text as a string;
    /// with [`KeyFormat::Auto`] through the registry when something names its schema (and
    /// values are not JSON), else JSON, else UTF-8 text. `None` for a null key.
    ///
    /// Errors as [`value_json_via`](Self::value_json_via)'s, their message starting with `key`: a
    /// key that does not match its schema is the record's fault (`schema_mismatch`), a schema that
    /// cannot be had is not (`unknown_schema_id`, `schema_fetch_failed`).
    ///
    /// ```
    /// use event_decoding::{Decoding, ErrorCode, KafkaRecord, KeyFormat, NoSchemas, ValueFormat};
    /// let json_keys = Decoding::JSON.with_keys(KeyFormat::Json, None, None);
    /// let r = KafkaRecord::new("t", 0, 0, 0).with_key(r#"{"user_id": 7}"#);
    /// assert_eq!(r.key_via(json_keys).unwrap(), Some(serde_json::json!({"user_id": 7})));
    /// let r = KafkaRecord::new("t", 0, 0, 0).with_key("u-7");
    /// assert_eq!(r.key_via(Decoding::JSON).unwrap(), Some(serde_json::json!("u-7")));
    /// assert_eq!(r.key_via(json_keys).unwrap_err().code, ErrorCode::InvalidJson);
    /// ```
    pub fn key_via(&self, decoding: Decoding<'_>) -> Result<Option<Value>, RecordError> {
        if decoding.key_format == KeyFormat::String {
            return Ok(self.key_str()?.map(Value::String));
        }
        let Some(part) = decoding.key_part() else {
            return cdc::key_value(self);
        };
        let Some(bytes) = self.key()? else {
            return Ok(None);
        };
        let meta = self.key_schema_metadata();
        let v = match self.shipped_avro_whole(meta, &bytes, part) {
            Some(v) => v,
            None => match self.encoded(meta, &bytes, part)? {
                Encoded::Json(b) if part.format == ValueFormat::Json => {
                    self.parse_json(b, "key")?
                }
                Encoded::Json(_) => return cdc::key_value(self),
                Encoded::Registry {
                    schema_id,
                    body,
                    framing,
                } => match self.registry_body(&schema_id, body, framing, part)? {
                    Body::Json(b) => self.parse_json(&b, "key")?,
                    Body::Value(v) => v,
                },
            },
        };
        Ok(Some(cdc::unwrap_key(v)))
    }

    /// Bytes of `part` that its shipped Avro schema (`AVRO_SCHEMA_FILE`, `KEY_AVRO_SCHEMA_FILE`)
    /// reads whole although they start like a Confluent prefix or a Glue header, when no
    /// metadata names their schema: a plain Avro body may begin with those bytes (a null union
    /// branch, an empty string or a zero is byte 0), and the shipped schema says what they are,
    /// so they are read as plain first. `None` otherwise: decoding goes on by the framing.
    fn shipped_avro_whole(
        &self,
        meta: Option<&SchemaMetadata>,
        bytes: &[u8],
        part: Part<'_>,
    ) -> Option<Value> {
        let Some(WriterSchema::Avro(schema)) = part.plain else {
            return None;
        };
        let named = meta.is_some_and(|m| !m.schema_id.is_empty());
        let prefixed = confluent_prefix(bytes).is_some() || glue::glue_prefix(bytes).is_some();
        if part.format != ValueFormat::Avro || named || !prefixed {
            return None;
        }
        schema.decode(bytes).ok()
    }

    fn encoded<'b>(
        &self,
        meta: Option<&SchemaMetadata>,
        bytes: &'b [u8],
        part: Part<'_>,
    ) -> Result<Encoded<'b>, RecordError> {
        encoding(meta, bytes, part)
            .map_err(|(code, message)| self.error(code, format!("{}: {message}", part.what)))
    }

    /// Reads a registry-described body of `part` the way its writer schema's type says.
    fn registry_body<'b>(
        &self,
        schema_id: &str,
        body: &'b [u8],
        framing: Framing,
        part: Part<'_>,
    ) -> Result<Body<'b>, RecordError> {
        let what = part.what;
        let fetched;
        let schema: &WriterSchema = match (framing, part.plain) {
            (Framing::Configured, Some(plain)) => plain,
            _ => {
                fetched = part.schemas.schema(schema_id).map_err(|e| match e {
                    SchemaUnavailable::Unknown(m) => self.error(
                        ErrorCode::UnknownSchemaId,
                        format!("{what}: writer schema {schema_id}: {m}"),
                    ),
                    SchemaUnavailable::FetchFailed(m) => self.error(
                        ErrorCode::SchemaFetchFailed,
                        format!("{what}: writer schema {schema_id}: {m}"),
                    ),
                })?;
                &fetched
            }
        };
        // The shipped schema standing in for a registry names its setting.
        let shipped = match (framing, part.plain) {
            (Framing::Configured, _) => None,
            (_, Some(plain)) if std::ptr::eq(plain, schema) => part.shipped_setting(),
            _ => None,
        };
        let mismatch = |m: String| {
            let message = match shipped {
                Some(setting) => format!(
                    "{what} does not match the shipped schema {setting} (read for schema id {schema_id}, which is not checked): {m}"
                ),
                None => format!("{what} does not match its writer schema {schema_id}: {m}"),
            };
            self.error(ErrorCode::SchemaMismatch, message)
        };
        // A Glue body compressed by its producer is inflated first (bounded: a bomb is a bad
        // record, not an outage).
        let body = match framing {
            Framing::Glue(GlueCompression::Zlib) => Cow::Owned(
                glue::inflate(body, glue::MAX_INFLATED_BODY)
                    .map_err(|m| self.error(ErrorCode::SchemaMismatch, format!("{what}: {m}")))?,
            ),
            _ => Cow::Borrowed(body),
        };
        match schema {
            WriterSchema::Avro(s) => s.decode(&body).map(Body::Value).map_err(mismatch),
            WriterSchema::Protobuf(s) => {
                let (indexes, body) = match framing {
                    Framing::Confluent => protobuf::message_indexes(&body),
                    Framing::Source | Framing::Configured => {
                        protobuf::source_message_indexes(&body)
                    }
                    // The index is read past for a pinned message: it may name none of its file.
                    Framing::Glue(_) | Framing::GlueSource if s.is_pinned() => {
                        glue::glue_protobuf_index(&body)
                            .map(|(_, rest)| (vec![0], rest))
                            .ok_or_else(|| {
                                "no Glue message index (a varint) before the Protobuf body".into()
                            })
                    }
                    Framing::Glue(_) | Framing::GlueSource => glue::glue_message_indexes(s, &body),
                }
                .map_err(mismatch)?;
                // A pinned message is what every body is ([`ProtoSchema::is_pinned`]).
                let indexes = if s.is_pinned() { &[0][..] } else { &indexes };
                s.decode(indexes, body).map(Body::Value).map_err(mismatch)
            }
            WriterSchema::Json => Ok(Body::Json(body)),
        }
    }
}

/// A registry-described body, read.
enum Body<'b> {
    /// Decoded through an Avro or Protobuf schema.
    Value(Value),
    /// JSON text (a JSON Schema value), still to be parsed.
    Json(Cow<'b, [u8]>),
}

/// Avro schema references inlined: Avro names a type defined elsewhere by its name alone, and a
/// name must be defined before use, so the first use of each referenced name is replaced by the
/// referenced schema (itself with its references inlined). The whole is then one self-contained
/// schema, which the parser and the JSON mapping both read as if the producer had written it so.
mod avro_references {
    use std::collections::{HashMap, HashSet};

    use serde_json::{Map, Value};

    /// How deep references may refer to references.
    const MAX_DEPTH: usize = 32;

    /// `Ok(None)` when there is nothing to inline.
    pub(super) fn inline(
        definition: &str,
        references: &[(String, String)],
    ) -> Result<Option<String>, String> {
        if references.is_empty() {
            return Ok(None);
        }
        let mut by_name: HashMap<String, Value> = HashMap::new();
        for (name, text) in references {
            let schema: Value = serde_json::from_str(text)
                .map_err(|e| format!("reference {name} is not JSON: {e}"))?;
            if let Some(full) = full_name(&schema, "") {
                by_name.insert(full, schema.clone());
            }
            by_name.insert(name.clone(), schema);
        }
        let mut main: Value = serde_json::from_str(definition)
            .map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let mut inliner = Inliner {
            references: &by_name,
            defined: HashSet::new(),
        };
        inliner.walk(&mut main, "", 0)?;
        Ok(Some(main.to_string()))
    }

    struct Inliner<'a> {
        references: &'a HashMap<String, Value>,
        /// Full names defined so far, in document order.
        defined: HashSet<String>,
    }

    const KEYWORDS: [&str; 14] = [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "error",
        "enum", "array", "map", "fixed",
    ];

    fn qualified(name: &str, namespace: &str) -> String {
        if name.contains('.') || namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}.{name}")
        }
    }

    fn full_name(schema: &Value, namespace: &str) -> Option<String> {
        let o = schema.as_object()?;
        let name = o.get("name")?.as_str()?;
        let ns = o
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        Some(qualified(name, ns))
    }

    impl Inliner<'_> {
        fn walk(
            &mut self,
            schema: &mut Value,
            namespace: &str,
            depth: usize,
        ) -> Result<(), String> {
            match schema {
                Value::String(name) if !KEYWORDS.contains(&name.as_str()) => {
                    let full = qualified(name, namespace);
                    if self.defined.contains(&full) || self.defined.contains(name.as_str()) {
                        return Ok(());
                    }
                    let found = [full.as_str(), name.as_str()]
                        .into_iter()
                        .find_map(|n| self.references.get(n));
                    if let Some(reference) = found {
                        if depth >= MAX_DEPTH {
                            return Err(format!("references nest deeper than {MAX_DEPTH} levels"));
                        }
                        let mut reference = reference.clone();
                        // A referenced type without a namespace takes the one of the place it is
                        // inlined at, as the parser will read it; later uses of its bare name
                        // there resolve to it (Avro cannot name a type of the null namespace from
                        // inside a namespace).
                        self.walk(&mut reference, namespace, depth + 1)?;
                        *schema = reference;
                    }
                    Ok(())
                }
                Value::Array(branches) => {
                    for b in branches {
                        self.walk(b, namespace, depth)?;
                    }
                    Ok(())
                }
                Value::Object(o) => self.walk_object(o, namespace, depth),
                _ => Ok(()),
            }
        }

        fn walk_object(
            &mut self,
            o: &mut Map<String, Value>,
            namespace: &str,
            depth: usize,
        ) -> Result<(), String> {
            let ns = o
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace)
                .to_string();
            let named = matches!(
                o.get("type").and_then(Value::as_str),
                Some("record" | "error" | "enum" | "fixed")
            );
            let mut inner_ns = ns.clone();
            if named && let Some(name) = o.get("name").and_then(Value::as_str) {
                let full = qualified(name, &ns);
                if let Some((n, _)) = full.rsplit_once('.') {
                    inner_ns = n.to_string();
                }
                self.defined.insert(full);
            }
            for key in ["type", "items", "values"] {
                if let Some(v) = o.get_mut(key) {
                    self.walk(v, &ns, depth)?;
                }
            }
            if let Some(Value::Array(fields)) = o.get_mut("fields") {
                for f in fields {
                    if let Some(t) = f.get_mut("type") {
                        self.walk(t, &inner_ns, depth)?;
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schema_ids` reads only the head of each text; on every sample event it finds exactly the
    /// ids that deciding on the whole decoded key and value finds.
    #[test]
    fn schema_ids_from_text_heads_are_those_of_whole_bodies() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        for name in [
            "gift-avro.json",
            "gift-avro-plain.json",
            "gift-avro-glue.json",
            "gift-avro-glue-source.json",
            "gift-protobuf.json",
            "gift-protobuf-glue.json",
            "gift-protobuf-glue-source.json",
            "gift-jsonschema.json",
            "pages-debezium-avro.json",
        ] {
            let bytes = std::fs::read(format!("{dir}{name}")).unwrap();
            let batch = crate::KafkaBatch::from_slice(&bytes).unwrap();
            for format in [ValueFormat::Avro, ValueFormat::Protobuf, ValueFormat::Auto] {
                let mut whole = BTreeSet::new();
                for r in batch.records() {
                    for (meta, bytes) in [
                        (r.key_schema_metadata(), r.key().ok().flatten()),
                        (r.value_schema_metadata(), r.value().ok().flatten()),
                    ] {
                        if let Some(bytes) = bytes
                            && let Ok(Encoded::Registry { schema_id, .. }) = encoding(
                                meta,
                                &bytes,
                                Decoding::new(format, &NoSchemas).value_part(),
                            )
                        {
                            whole.insert(schema_id);
                        }
                    }
                }
                assert!(!whole.is_empty(), "{name}: no schema ids");
                assert_eq!(
                    schema_ids(batch.as_slice(), format),
                    whole,
                    "{name} {format}"
                );
            }
        }
    }
    use serde_json::json;

    fn schemas(id: &str, schema: &str) -> HashMap<String, Arc<WriterSchema>> {
        HashMap::from([(
            id.to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Avro, schema, &[]).unwrap()),
        )])
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
        // A data format nobody decodes: not the record's fault, redelivered.
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(GIFT_BODY)
            .with_value_schema_metadata(SchemaMetadata::new("THRIFT", "1"))
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedFormat);
        assert!(!err.is_permanent());
        // A fetch failure surfaces as such.
        struct Down;
        impl SchemaLookup for Down {
            fn schema(&self, _: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
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
        s.insert(
            "2".into(),
            Arc::new(WriterSchema::parse(DataFormat::Avro, key_schema, &[]).unwrap()),
        );
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

    const PROTO: &str = r#"syntax = "proto3";
        package shop;
        message Gift {
            int64 page_id = 1;
            string question = 2;
            message Note { string text = 1; }
        }"#;

    fn proto_schemas() -> HashMap<String, Arc<WriterSchema>> {
        HashMap::from([
            (
                "5".to_string(),
                Arc::new(WriterSchema::parse(DataFormat::Protobuf, PROTO, &[]).unwrap()),
            ),
            (
                "6".to_string(),
                Arc::new(WriterSchema::parse(DataFormat::Json, "{}", &[]).unwrap()),
            ),
        ])
    }

    /// page_id 3, question "hi".
    const PROTO_BODY: [u8; 6] = [8, 3, 18, 2, b'h', b'i'];

    #[test]
    fn protobuf_by_prefix_with_message_indexes_and_by_metadata() {
        let s = proto_schemas();
        let mut framed = vec![0]; // message indexes [0]
        framed.extend_from_slice(&PROTO_BODY);
        let mut nested = vec![4, 0, 0]; // message indexes [0, 0]: Gift.Note
        nested.extend_from_slice(&[10, 2, b'o', b'k']);
        for format in [ValueFormat::Protobuf, ValueFormat::Auto, ValueFormat::Avro] {
            let d = Decoding::new(format, &s);
            let by_prefix = KafkaRecord::new("t", 0, 0, 0).with_value(wire(5, &framed));
            // SOURCE: the ESM took the prefix away; with or without the message indexes.
            let by_meta = KafkaRecord::new("t", 0, 1, 0)
                .with_value(PROTO_BODY)
                .with_value_schema_metadata(SchemaMetadata::new("PROTOBUF", "5"));
            let by_meta_indexed = KafkaRecord::new("t", 0, 2, 0)
                .with_value(framed.clone())
                .with_value_schema_metadata(SchemaMetadata::new("PROTOBUF", "5"));
            for r in [by_prefix, by_meta, by_meta_indexed] {
                let v: Value = r.value_json_via(d).unwrap();
                assert_eq!(v, json!({"page_id": 3, "question": "hi"}), "{format}");
            }
            let r = KafkaRecord::new("t", 0, 3, 0).with_value(wire(5, &nested));
            assert_eq!(r.value_json_via::<Value>(d).unwrap(), json!({"text": "ok"}));
        }
        // `protobuf` refuses a value nothing describes.
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(PROTO_BODY)
            .value_json_via::<Value>(Decoding::new(ValueFormat::Protobuf, &s))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::MissingSchemaId);
        assert!(err.message.contains("VALUE_FORMAT=protobuf"), "{err}");
    }

    #[test]
    fn protobuf_mismatches_are_dead_letters() {
        let s = proto_schemas();
        let d = Decoding::new(ValueFormat::Protobuf, &s);
        for (what, value) in [
            ("field 1 as a string", wire(5, &[0, 10, 1, b'x'])),
            ("no message indexes", wire(5, &[])),
            ("an index naming no message", wire(5, &[2, 6, 8, 3])),
            ("cut short", wire(5, &[0, 18, 9, b'h'])),
        ] {
            let err = KafkaRecord::new("t", 0, 0, 0)
                .with_value(value)
                .value_json_via::<Value>(d)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::SchemaMismatch, "{what}: {err}");
            assert!(err.is_permanent());
            assert!(err.message.contains("writer schema 5"), "{err}");
        }
        // A typed value names the field, as for JSON and Avro.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            question: i64,
        }
        let mut framed = vec![0];
        framed.extend_from_slice(&PROTO_BODY);
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(5, &framed))
            .value_json_via::<Wrong>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        assert!(err.message.starts_with("question:"), "{err}");
    }

    #[test]
    fn json_schema_values_are_json_behind_the_prefix() {
        let s = proto_schemas();
        for format in [ValueFormat::Auto, ValueFormat::Avro, ValueFormat::Protobuf] {
            let d = Decoding::new(format, &s);
            let framed = KafkaRecord::new("t", 0, 0, 0).with_value(wire(6, br#"{"page_id":4}"#));
            let by_meta = KafkaRecord::new("t", 0, 1, 0)
                .with_value(r#"{"page_id":4}"#)
                .with_value_schema_metadata(SchemaMetadata::new("JSON", "6"));
            for r in [framed, by_meta] {
                assert_eq!(r.value_json_via::<Value>(d).unwrap(), json!({"page_id": 4}));
            }
            let err = KafkaRecord::new("t", 0, 0, 0)
                .with_value(wire(6, b"{nope"))
                .value_json_via::<Value>(d)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidJson, "{err}");
        }
        // Only the prefixed record needs its schema fetched.
        let records = [
            KafkaRecord::new("t", 0, 0, 0).with_value(wire(6, b"{}")),
            KafkaRecord::new("t", 0, 1, 0)
                .with_value("{}")
                .with_value_schema_metadata(SchemaMetadata::new("JSON", "7")),
        ];
        let ids: Vec<String> = schema_ids(&records, ValueFormat::Auto)
            .into_iter()
            .collect();
        assert_eq!(ids, ["6"]);
    }

    #[test]
    fn protobuf_cdc_changes_and_keys() {
        let key = r#"syntax = "proto3"; message Key { int64 page_id = 1; }"#;
        let mut s = proto_schemas();
        s.insert(
            "8".into(),
            Arc::new(WriterSchema::parse(DataFormat::Protobuf, key, &[]).unwrap()),
        );
        let d = Decoding::new(ValueFormat::Protobuf, &s);
        let mut framed = vec![0];
        framed.extend_from_slice(&PROTO_BODY);
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key(wire(8, &[0, 8, 42]))
            .with_value(wire(5, &framed));
        match r.change_via(d).unwrap() {
            Change::Upsert { row, key, .. } => {
                assert_eq!(Value::Object(row), json!({"page_id": 3, "question": "hi"}));
                assert_eq!(key, Some(json!({"page_id": 42})));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writer_schemas_that_cannot_be_used() {
        let e = WriterSchema::parse(DataFormat::Protobuf, "message {", &[]).unwrap_err();
        assert!(e.starts_with("not a valid Protobuf schema"), "{e}");
        let e = WriterSchema::parse(DataFormat::Avro, r#"{"type":"nope"}"#, &[]).unwrap_err();
        assert!(e.starts_with("not a valid Avro schema"), "{e}");
        assert!(WriterSchema::parse(DataFormat::Other, "", &[]).is_err());
        // A reference missing: the named type does not resolve.
        let gift = r#"{"type":"record","name":"Gift","fields":[{"name":"to","type":"Address"}]}"#;
        assert!(WriterSchema::parse(DataFormat::Avro, gift, &[]).is_err());
        let e = WriterSchema::parse(DataFormat::Avro, gift, &[("Address".into(), "{".into())])
            .unwrap_err();
        assert!(e.contains("reference Address is not JSON"), "{e}");
        // An uncompilable Protobuf schema is the environment's fault, not the record's.
        struct Unusable;
        impl SchemaLookup for Unusable {
            fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
                WriterSchema::parse(DataFormat::Protobuf, "message {", &[])
                    .map(Arc::new)
                    .map_err(|e| SchemaUnavailable::Unknown(format!("schema {id}: {e}")))
            }
        }
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(5, &[0]))
            .value_json_via::<Value>(Decoding::new(ValueFormat::Protobuf, &Unusable))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSchemaId);
        assert!(!err.is_permanent());
    }

    #[test]
    fn avro_references_resolve_nested_and_across_namespaces() {
        let money = r#"{"type":"record","name":"Money","namespace":"fin","fields":[{"name":"cents","type":"long"}]}"#;
        // Address has no namespace and refers to Money by full name; Gift lives in `shop`.
        let address = r#"{"type":"record","name":"Address","fields":[
            {"name":"city","type":"string"},{"name":"fee","type":"fin.Money"}]}"#;
        let gift = r#"{"type":"record","name":"Gift","namespace":"shop","fields":[
            {"name":"to","type":"Address"},
            {"name":"from","type":["null","Address"]},
            {"name":"prices","type":{"type":"array","items":"fin.Money"}}]}"#;
        let refs = [
            ("fin.Money".to_string(), money.to_string()),
            ("Address".to_string(), address.to_string()),
        ];
        let s = WriterSchema::parse(DataFormat::Avro, gift, &refs).unwrap();
        let WriterSchema::Avro(avro) = &s else {
            panic!("{s:?}")
        };
        // to {city "Oz", fee 5}, from: branch 1 {city "", fee 1}, prices [2]
        let body = [4, b'O', b'z', 10, 2, 0, 2, 2, 4, 0];
        assert_eq!(
            avro.decode(&body).unwrap(),
            json!({"to": {"city": "Oz", "fee": {"cents": 5}},
                   "from": {"city": "", "fee": {"cents": 1}},
                   "prices": [{"cents": 2}]})
        );
    }

    #[test]
    fn plain_protobuf_values_with_a_configured_descriptor() {
        let set = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/schemas/gift.pb"
        ))
        .unwrap();
        let plain =
            WriterSchema::from(ProtoSchema::from_descriptor_set(&set, "vault.Gift").unwrap());
        let registry = proto_schemas();
        let d = Decoding::new(ValueFormat::Protobuf, &registry).with_plain(&plain);
        // page_id 7 (field 2), question "q" (field 3): vault.Gift, not the registry's shop.Gift.
        let r = KafkaRecord::new("t", 0, 0, 0).with_value([16, 7, 26, 1, b'q']);
        let v: Value = r.value_json_via(d).unwrap();
        assert_eq!(v["page_id"], 7);
        assert_eq!(v["question"], "q");
        // A prefixed value still names its registry schema.
        let mut framed = vec![0];
        framed.extend_from_slice(&PROTO_BODY);
        let r = KafkaRecord::new("t", 0, 1, 0).with_value(wire(5, &framed));
        assert_eq!(
            r.value_json_via::<Value>(d).unwrap(),
            json!({"page_id": 3, "question": "hi"})
        );
        // A body that does not match the configured message: dead letter.
        let err = KafkaRecord::new("t", 0, 2, 0)
            .with_value([16, 7, 26, 9, b'q'])
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaMismatch);
        assert!(err.message.contains("PROTOBUF_DESCRIPTOR_SET"), "{err}");
        // `auto` reads unprefixed values as JSON, descriptor or not.
        let auto = Decoding::new(ValueFormat::Auto, &registry).with_plain(&plain);
        let r = KafkaRecord::new("t", 0, 3, 0).with_value(r#"{"page_id":1}"#);
        assert_eq!(
            r.value_json_via::<Value>(auto).unwrap(),
            json!({"page_id": 1})
        );
        // Nothing is fetched for plain values.
        let records = [KafkaRecord::new("t", 0, 0, 0).with_value([16, 7])];
        assert!(schema_ids(&records, ValueFormat::Protobuf).is_empty());
    }

    /// A Debezium envelope in Protobuf: an unset `before` / `after` message is absent from the
    /// JSON (not null), which CDC decoding takes as it takes null.
    #[test]
    fn debezium_protobuf_envelopes_are_changes() {
        let envelope = r#"syntax = "proto3";
            message Envelope {
                message Row { string page_id = 1; string body = 2; }
                message Source { string connector = 1; int64 lsn = 2; }
                Row before = 1; Row after = 2; Source source = 3; string op = 4;
            }"#;
        let s = HashMap::from([(
            "9".to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Protobuf, envelope, &[]).unwrap()),
        )]);
        let d = Decoding::new(ValueFormat::Protobuf, &s);
        // after {page_id "p", body "b"}, source {connector "postgresql", lsn 8}, op "c"
        let mut create = vec![0, 18, 6, 10, 1, b'p', 18, 1, b'b', 26, 14, 10, 10];
        create.extend_from_slice(b"postgresql");
        create.extend_from_slice(&[16, 8, 34, 1, b'c']);
        match KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(9, &create))
            .change_via(d)
            .unwrap()
        {
            Change::Upsert { row, .. } => {
                assert_eq!(Value::Object(row), json!({"page_id": "p", "body": "b"}))
            }
            other => panic!("{other:?}"),
        }
        // before {page_id "p", body ""}, op "d": no `after` at all.
        let delete = [0, 10, 3, 10, 1, b'p', 34, 1, b'd'];
        match KafkaRecord::new("t", 0, 1, 0)
            .with_value(wire(9, &delete))
            .change_via(d)
            .unwrap()
        {
            Change::Delete { row, .. } => {
                assert_eq!(
                    row.map(Value::Object),
                    Some(json!({"page_id": "p", "body": ""}))
                )
            }
            other => panic!("{other:?}"),
        }
    }

    const USER_KEY: &str =
        r#"{"type":"record","name":"UserKey","fields":[{"name":"user_id","type":"string"}]}"#;

    /// user_id "" (an empty string: the body is byte 0, like a Confluent magic byte).
    const EMPTY_KEY: [u8; 1] = [0];

    /// Why the key of a record keyed by `key` does not decode.
    fn key_error(d: Decoding<'_>, key: impl AsRef<[u8]>) -> RecordError {
        KafkaRecord::new("t", 0, 0, 0)
            .with_key(key)
            .key_via(d)
            .unwrap_err()
    }

    fn avro(schema: &str) -> WriterSchema {
        WriterSchema::parse(DataFormat::Avro, schema, &[]).unwrap()
    }

    #[test]
    fn key_formats_parse_and_name_the_choices() {
        assert_eq!(
            "PROTOBUF".parse::<KeyFormat>().unwrap(),
            KeyFormat::Protobuf
        );
        assert_eq!(" json ".parse::<KeyFormat>().unwrap(), KeyFormat::Json);
        for k in [
            KeyFormat::Auto,
            KeyFormat::String,
            KeyFormat::Json,
            KeyFormat::Avro,
            KeyFormat::Protobuf,
        ] {
            assert_eq!(k.to_string().parse::<KeyFormat>().unwrap(), k);
        }
        assert!("raw".parse::<KeyFormat>().is_err());
    }

    /// `KEY_FORMAT=avro` with a shipped key schema and no registry: a plain key, one behind a
    /// Confluent prefix, one named by `keySchemaMetadata`, all read with the key's own schema
    /// (not the value's), whatever `VALUE_FORMAT` is.
    #[test]
    fn avro_keys_with_a_shipped_key_schema() {
        // As lambda-kit's stand-in for a registry: the shipped schema answers every id.
        struct Shipped(Arc<WriterSchema>);
        impl SchemaLookup for Shipped {
            fn schema(&self, _: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
                Ok(self.0.clone())
            }
        }
        let stand_in = Shipped(Arc::new(avro(USER_KEY)));
        let key: &WriterSchema = &stand_in.0;
        let values = schemas("1", GIFT);
        for format in [ValueFormat::Json, ValueFormat::Avro] {
            let d = Decoding::new(format, &values).with_keys(
                KeyFormat::Avro,
                Some(&stand_in),
                Some(key),
            );
            let value: &[u8] = if format == ValueFormat::Json {
                br#"{"page_id":3}"#
            } else {
                &[0, 0, 0, 0, 1, 6, 4, b'h', b'i']
            };
            for (what, r) in [
                (
                    "plain",
                    KafkaRecord::new("t", 0, 0, 0).with_key([6, b'u', b'-', b'7']),
                ),
                (
                    "prefixed",
                    KafkaRecord::new("t", 0, 1, 0).with_key(wire(9, &[6, b'u', b'-', b'7'])),
                ),
                (
                    "metadata",
                    KafkaRecord::new("t", 0, 2, 0)
                        .with_key([6, b'u', b'-', b'7'])
                        .with_key_schema_metadata(SchemaMetadata::new("AVRO", "9")),
                ),
            ] {
                let r = r.with_value(value);
                assert_eq!(
                    r.key_via(d).unwrap(),
                    Some(json!({"user_id": "u-7"})),
                    "{format} {what}"
                );
                match r.change_via(d).unwrap() {
                    Change::Upsert { key, .. } => {
                        assert_eq!(key, Some(json!({"user_id": "u-7"})), "{what}")
                    }
                    other => panic!("{other:?}"),
                }
            }
            // A plain body that starts like a wire prefix is read whole by the shipped schema.
            let r = KafkaRecord::new("t", 0, 3, 0)
                .with_key(EMPTY_KEY)
                .with_value(value);
            assert_eq!(r.key_via(d).unwrap(), Some(json!({"user_id": ""})));
            // A key the schema does not read: the record's fault, naming the key and the setting.
            let r = KafkaRecord::new("t", 0, 4, 0)
                .with_key([6, b'u'])
                .with_value(value);
            let err = r.key_via(d).unwrap_err();
            assert_eq!(err.code, ErrorCode::SchemaMismatch);
            assert!(err.is_permanent());
            assert!(err.message.starts_with("key does not match"), "{err}");
            assert!(err.message.contains("KEY_AVRO_SCHEMA_FILE"), "{err}");
            assert_eq!(r.change_via(d).unwrap_err().code, ErrorCode::SchemaMismatch);
            // A null key is no key.
            let r = KafkaRecord::new("t", 0, 5, 0).with_value(value);
            assert_eq!(r.key_via(d).unwrap(), None);
        }
        // Without a shipped key schema a plain key names nothing: dead-lettered, naming KEY_FORMAT.
        let d = Decoding::new(ValueFormat::Json, &values).with_keys(KeyFormat::Avro, None, None);
        let err = key_error(d, "u-7");
        assert_eq!(err.code, ErrorCode::MissingSchemaId);
        assert!(err.message.contains("KEY_FORMAT=avro"), "{err}");
    }

    /// Keys through the registry: their ids are fetched with the values' (also when values are
    /// JSON), and a registry that cannot answer for a key is the environment's fault.
    #[test]
    fn registry_keys_are_fetched_and_an_outage_is_redelivered() {
        let mut s = schemas("1", GIFT);
        s.insert("2".into(), Arc::new(avro(USER_KEY)));
        let records = [KafkaRecord::new("t", 0, 0, 0)
            .with_key(wire(2, &[6, b'u', b'-', b'1']))
            .with_value(r#"{"page_id":1}"#)];
        let ids: Vec<String> =
            key_and_value_schema_ids(&records, ValueFormat::Json, KeyFormat::Avro)
                .into_iter()
                .collect();
        assert_eq!(ids, ["2"]);
        assert!(
            schema_ids(&records, ValueFormat::Json).is_empty(),
            "the default is unchanged"
        );
        let d = Decoding::new(ValueFormat::Json, &s).with_keys(KeyFormat::Avro, None, None);
        assert_eq!(
            records[0].key_via(d).unwrap(),
            Some(json!({"user_id": "u-1"}))
        );
        // A tombstone of a JSON-valued topic keyed by Avro.
        let tomb = KafkaRecord::new("t", 0, 1, 0).with_key(wire(2, &[6, b'u', b'-', b'1']));
        assert_eq!(
            tomb.change_via(d).unwrap(),
            Change::Tombstone {
                key: json!({"user_id": "u-1"})
            }
        );
        // Today's reading is kept by default: the same key is text to a JSON-valued function.
        let text = String::from_utf8(wire(2, &[6, b'u', b'-', b'1'])).unwrap();
        assert_eq!(
            records[0]
                .key_via(Decoding::new(ValueFormat::Json, &s))
                .unwrap(),
            Some(Value::String(text))
        );
        struct Down;
        impl SchemaLookup for Down {
            fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
                Err(SchemaUnavailable::FetchFailed(format!(
                    "registry down for {id}"
                )))
            }
        }
        let d = Decoding::new(ValueFormat::Json, &Down).with_keys(KeyFormat::Avro, None, None);
        let err = records[0].key_via(d).unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaFetchFailed);
        assert!(!err.is_permanent());
        assert!(err.message.starts_with("key: writer schema 2"), "{err}");
    }

    #[test]
    fn protobuf_and_json_keys() {
        let set = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/schemas/gift.pb"
        ))
        .unwrap();
        let key = WriterSchema::from(ProtoSchema::from_descriptor_set(&set, "vault.Gift").unwrap());
        let d = Decoding::JSON.with_keys(KeyFormat::Protobuf, None, Some(&key));
        // page_id 7 (field 2), question "q" (field 3).
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key([16, 7, 26, 1, b'q'])
            .with_value("{}");
        let k = r.key_via(d).unwrap().unwrap();
        assert_eq!(
            (k["page_id"].as_i64(), k["question"].as_str()),
            (Some(7), Some("q"))
        );
        let err = key_error(d, [16, 7, 26, 9]);
        assert_eq!(err.code, ErrorCode::SchemaMismatch);
        assert!(err.message.contains("KEY_PROTOBUF_DESCRIPTOR_SET"), "{err}");
        // `json`: a JSON key (its Connect wrapper removed); text is not JSON.
        let d = Decoding::JSON.with_keys(KeyFormat::Json, None, None);
        let r = KafkaRecord::new("t", 0, 0, 0).with_key(r#"{"schema":{},"payload":{"id":1}}"#);
        assert_eq!(r.key_via(d).unwrap(), Some(json!({"id": 1})));
        let err = key_error(d, "id-1");
        assert_eq!(err.code, ErrorCode::InvalidJson);
        assert!(err.message.starts_with("key is not valid JSON"), "{err}");
        // `string`: the text as it is, JSON-looking or not; bytes that are no UTF-8 are refused.
        let d = Decoding::JSON.with_keys(KeyFormat::String, None, None);
        for text in ["42", r#"{"id":1}"#, "id-1"] {
            let r = KafkaRecord::new("t", 0, 0, 0)
                .with_key(text)
                .with_value(r#"{"a":1}"#);
            assert_eq!(r.key_via(d).unwrap(), Some(json!(text)));
            match r.change_via(d).unwrap() {
                Change::Upsert { key, .. } => assert_eq!(key, Some(json!(text))),
                other => panic!("{other:?}"),
            }
        }
        let err = key_error(d, [0xff]);
        assert_eq!(err.code, ErrorCode::InvalidUtf8);
        assert!(err.message.starts_with("key is not valid UTF-8"), "{err}");
    }

    /// Keys are held to the values' output budget: a key of a few hundred bytes that would be
    /// 32 million nulls is refused as the record's fault, not built.
    #[test]
    fn a_hostile_key_stops_at_the_output_budget() {
        fn varint(n: i64, out: &mut Vec<u8>) {
            let mut z = ((n << 1) ^ (n >> 63)) as u64;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        }
        // 64 arrays of 500,000 nulls each (a null takes no bytes).
        let mut key = Vec::new();
        varint(64, &mut key);
        for _ in 0..64 {
            varint(500_000, &mut key);
            varint(0, &mut key);
        }
        varint(0, &mut key);
        assert!(key.len() < 300, "{}", key.len());
        let nulls = avro(r#"{"type":"array","items":{"type":"array","items":"null"}}"#);
        let d = Decoding::JSON.with_keys(KeyFormat::Avro, None, Some(&nulls));
        let err = key_error(d, &key);
        assert_eq!(err.code, ErrorCode::SchemaMismatch);
        assert!(
            err.message.contains("expands past its output budget"),
            "{err}"
        );
    }

    proptest::proptest! {
        /// Any key bytes, under every key format, with and without metadata: a key or an error,
        /// never a panic; a key error always names the key.
        #[test]
        fn any_key_decodes_or_is_refused_naming_the_key(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            meta in proptest::option::of("[0-9]{1,2}"),
        ) {
            let avro = avro(USER_KEY);
            let registry = schemas("1", USER_KEY);
            for (format, plain) in [
                (KeyFormat::Auto, None),
                (KeyFormat::String, None),
                (KeyFormat::Json, None),
                (KeyFormat::Avro, Some(&avro)),
                (KeyFormat::Avro, None),
            ] {
                for values in [ValueFormat::Json, ValueFormat::Avro] {
                    let d = Decoding::new(values, &registry).with_keys(format, None, plain);
                    let mut r = KafkaRecord::new("t", 0, 0, 0).with_key(&key);
                    if let Some(id) = &meta {
                        r = r.with_key_schema_metadata(SchemaMetadata::new("AVRO", id.as_str()));
                    }
                    if let Err(e) = r.key_via(d) {
                        proptest::prop_assert!(e.message.starts_with("key"), "{format} {values}: {e}");
                    }
                }
            }
        }
    }
}
