//! Writer schemas for the values and keys a function decodes: from a Confluent-compatible schema
//! registry, from the AWS Glue Schema Registry ([`glue_registry`](crate::glue_registry)), or
//! shipped with the function as files; the `VALUE_FORMAT` / `KEY_FORMAT` settings that choose
//! among them.
//!
//! - `settings`: [`ValueSettings`], the settings read at cold start.
//! - `values`: [`Values`], what a function decodes with, and the prefetch of a batch's schemas.
//! - `shipped`: schema files shipped with the function (Avro schema, Protobuf descriptor set).
//! - `confluent`: [`SchemaRegistry`], the Confluent-compatible registry client.
//!
//! Both registry clients keep what they fetched in the per-process cache of `schema_cache`.

mod confluent;
mod settings;
mod shipped;
#[cfg(test)]
mod test_support;
mod values;

pub use confluent::{
    MAX_REFERENCE_DEPTH, MAX_REFERENCES, MAX_SCHEMA_ANSWER, RegistryConfig, RegistryError,
    SchemaRegistry,
};
pub use settings::ValueSettings;
pub use values::Values;
