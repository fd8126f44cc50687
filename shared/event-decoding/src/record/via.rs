//! [`KafkaRecord`]'s `*_via` methods: values, keys and changes decoded the way a [`Decoding`]
//! says (JSON, or Avro, Protobuf and JSON Schema through writer schemas).

use std::any::Any;
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cdc::{self, Change};
use crate::error::{ErrorCode, RecordError};
use crate::glue::{self, GlueCompression};
use crate::protobuf;
use crate::schema::{
    Decoding, Encoded, Framing, KeyFormat, Part, SchemaMetadata, SchemaUnavailable, ValueFormat,
    WriterSchema, confluent_prefix, encoding,
};
use crate::version::SourceVersion;

use super::KafkaRecord;

impl KafkaRecord {
    /// Decodes the value into `T` the way `decoding` says: JSON exactly as
    /// [`value_json`](Self::value_json), Avro and Protobuf through the writer schema into the
    /// same JSON shape (see [`AvroSchema`] and [`ProtoSchema`] for the mappings), a JSON Schema
    /// value as JSON, then into `T`.
    ///
    /// Errors: `missing_value`, `missing_schema_id` and `schema_mismatch` (the record is bad:
    /// dead-letter it), `unknown_schema_id`, `schema_fetch_failed` and `unsupported_format`
    /// (not the record's fault: [`RecordError::is_permanent`] is `false`, report it for
    /// redelivery).
    ///
    /// [`AvroSchema`]: crate::AvroSchema
    /// [`ProtoSchema`]: crate::ProtoSchema
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
                _ => self.change_with_key(key),
            };
        }
        let Some(bytes) = self.value()? else {
            return cdc::from_value(&self.at(), None, key);
        };
        let part = decoding.value_part();
        if let Some(v) = self.shipped_avro_whole(self.value_schema_metadata(), &bytes, part) {
            return cdc::from_value(&self.at(), Some(v), key);
        }
        match self.encoded(self.value_schema_metadata(), &bytes, part)? {
            Encoded::Json(_) => self.change_with_key(key),
            Encoded::Registry {
                schema_id,
                body,
                framing,
            } => {
                let v = match self.registry_body(&schema_id, body, framing, part)? {
                    Body::Json(b) => self.parse_json(&b, "value")?,
                    Body::Value(v) => v,
                };
                cdc::from_value(&self.at(), Some(v), key)
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
            return self.key_value();
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
                Encoded::Json(_) => return self.key_value(),
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

#[cfg(test)]
pub(crate) mod tests;
