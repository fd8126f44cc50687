//! Decoding of Kafka event source mapping (ESM) payloads for AWS Lambda.
//!
//! - [`KafkaBatch`]: the invocation payload (MSK or self-managed), records in a deterministic
//!   order, tolerant of absent headers, null keys/values and unknown fields.
//! - [`KafkaRecord`]: lazy base64 decoding, typed JSON values with per-record [`RecordError`]s
//!   carrying a stable [`ErrorCode`], and CDC decoding into [`Change`]s.
//! - [`KafkaBatchResponse`] and [`BatchReport`]: the partial batch response.
//! - [`ValueFormat`], [`Decoding`], [`WriterSchema`] ([`AvroSchema`], [`ProtoSchema`], JSON Schema):
//!   Avro, Protobuf and JSON Schema values (schema metadata from the ESM's schema registry, or
//!   the Confluent wire prefix) decoded into the same JSON.
//!
//! ```
//! use event_decoding::{BatchReport, KafkaBatch, Outcome};
//! #[derive(serde::Deserialize)]
//! struct Gift { page_id: i64 }
//!
//! let payload = br#"{"eventSource":"aws:kafka","eventSourceArn":"arn:aws:kafka:...","records":{
//!   "gift_events-0":[{"topic":"gift_events","partition":0,"offset":3,"timestamp":1,
//!                     "value":"eyJwYWdlX2lkIjoxfQ=="}]}}"#;
//! let batch = KafkaBatch::from_slice(payload).unwrap();
//! let mut report = BatchReport::for_batch(&batch);
//! for record in batch.records() {
//!     match record.value_json::<Gift>() {
//!         Ok(gift) => { assert_eq!(gift.page_id, 1); report.record(&record.id(), Outcome::Stored) }
//!         Err(_) => report.record(&record.id(), Outcome::DeadLettered),
//!     }
//! }
//! assert!(report.into_response().unwrap().batch_item_failures.is_empty());
//! ```

mod avro;
mod batch;
mod budget;
pub mod cdc;
mod error;
mod glue;
mod protobuf;
mod record;
mod record_id;
mod response;
mod schema;
mod version;

pub use avro::AvroSchema;
pub use batch::{EventSource, KafkaBatch, KafkaBatchBuilder};
pub use cdc::{Change, Op, json_kind};
pub use error::{BatchError, ErrorCode, RecordError};
pub use glue::{
    GLUE_HEADER_LEN, GLUE_HEADER_VERSION, GlueCompression, GlueHeader, MAX_INFLATED_BODY,
    glue_message_name, glue_prefix, glue_protobuf_index, inflate, is_glue_schema_version_id,
};
pub use protobuf::{DescriptorSetError, ProtoSchema};
pub use record::{Header, KafkaRecord, key_and_value_schema_ids, schema_ids};
pub use record_id::RecordId;
pub use response::{
    AllFailed, BatchItemFailure, BatchReport, Counts, ItemIdentifier, KafkaBatchResponse, Outcome,
};
pub use schema::{
    DataFormat, Decoding, KeyFormat, NoSchemas, SchemaLookup, SchemaMetadata, SchemaUnavailable,
    ValueFormat, WriterSchema, confluent_prefix,
};
pub use version::SourceVersion;
