//! How a key or value is framed on the wire: the Confluent wire prefix, the Glue header, schema
//! metadata or a shipped schema, decided per record into an [`Encoded`] body and its [`Framing`].

use crate::error::ErrorCode;
use crate::glue::{self, GlueCompression};

use super::{DataFormat, Part, SchemaMetadata, ValueFormat};

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
    ///
    /// [`protobuf::source_message_indexes`]: crate::protobuf::source_message_indexes
    Source,
    /// Delivered with schema metadata naming a Glue schema version id (a UUID,
    /// [`glue::is_glue_schema_version_id`]): the event source mapping removed the Glue header
    /// (and inflated the body) but kept what followed it, so a Protobuf body starts with Glue's
    /// message index (one unsigned varint), not Confluent's zigzag array.
    GlueSource,
    /// No prefix and no metadata: a plain body of the schema given in configuration
    /// ([`Decoding::plain`]); a Protobuf body may start with message indexes as for `Source`.
    ///
    /// [`Decoding::plain`]: super::Decoding::plain
    Configured,
    /// Behind the AWS Glue header ([`glue::glue_prefix`]): the body may be zlib-compressed, and a
    /// Protobuf body starts with Glue's message index.
    Glue(GlueCompression),
}

/// Decides how `bytes` of `part` are encoded. `Err` carries the code and message of a record the
/// format cannot take.
pub(crate) fn encoding<'b>(
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
