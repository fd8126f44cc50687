//! [`WriterSchema`]: a registry's writer schema (Avro, Protobuf or JSON Schema), parsed.

use crate::avro::AvroSchema;
use crate::protobuf::ProtoSchema;

use super::{DataFormat, avro_references};

/// A writer schema of any registry, parsed and ready to decode bodies with: what a
/// [`SchemaLookup`] hands out. A registry client fetches `(format, definition, references)` by
/// the id a record names and calls [`WriterSchema::parse`]; decoding follows the variant.
///
/// [`SchemaLookup`]: super::SchemaLookup
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
