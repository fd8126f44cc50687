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
//!
//! [`schema_ids`]: crate::schema_ids

mod avro_references;
mod decoding;
mod format;
mod lookup;
mod metadata;
mod wire;
mod writer;

pub use decoding::Decoding;
pub(crate) use decoding::Part;
pub use format::{KeyFormat, ValueFormat};
pub use lookup::{NoSchemas, SchemaLookup, SchemaUnavailable};
pub(crate) use metadata::MetadataField;
pub use metadata::{DataFormat, SchemaMetadata};
pub use wire::confluent_prefix;
pub(crate) use wire::{Encoded, Framing, encoding};
pub use writer::WriterSchema;
