//! [`Decoding`]: how a function decodes its records (value and key formats, writer schemas,
//! shipped schemas), and the per-part view ([`Part`]) that decoding a key or a value reads.

use std::fmt;

use super::{KeyFormat, NoSchemas, SchemaLookup, ValueFormat, WriterSchema};

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
    ///
    /// [`ProtoSchema::from_descriptor_set`]: crate::ProtoSchema::from_descriptor_set
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
    ///
    /// [`KafkaRecord::value_json`]: crate::KafkaRecord::value_json
    /// [`KafkaRecord::change`]: crate::KafkaRecord::change
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
    pub(crate) fn value_part(&self) -> Part<'a> {
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
    ///
    /// [`encoding`]: super::encoding
    pub(crate) fn key_part(&self) -> Option<Part<'a>> {
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
pub(crate) struct Part<'a> {
    /// `key` or `value`.
    pub(crate) what: &'static str,
    /// Its format (a key's [`KeyFormat`] as the value format that reads alike).
    pub(crate) format: ValueFormat,
    /// Writer schemas by id.
    pub(crate) schemas: &'a dyn SchemaLookup,
    /// The shipped schema of plain bytes.
    pub(crate) plain: Option<&'a WriterSchema>,
}

impl Part<'_> {
    /// The variable that sets the format.
    pub(crate) fn format_setting(&self) -> &'static str {
        if self.what == "key" {
            "KEY_FORMAT"
        } else {
            "VALUE_FORMAT"
        }
    }

    /// The setting that ships the schema of plain bytes of this part ([`Decoding::plain`],
    /// [`Decoding::key_plain`]).
    pub(crate) fn shipped_setting(&self) -> Option<&'static str> {
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
