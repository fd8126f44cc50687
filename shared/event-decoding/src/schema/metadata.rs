//! The schema metadata an event source mapping with a schema registry attaches to each record
//! (`keySchemaMetadata` / `valueSchemaMetadata`) and its [`DataFormat`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
