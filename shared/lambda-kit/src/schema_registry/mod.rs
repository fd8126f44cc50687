//! Writer schemas for the values and keys a function decodes: from a Confluent-compatible schema
//! registry, from the AWS Glue Schema Registry, or shipped with the function as files; the
//! `VALUE_FORMAT` / `KEY_FORMAT` settings that choose among them.
//!
//! - `settings`: [`ValueSettings`], the settings read at cold start.
//! - `values`: [`Values`], what a function decodes with, and the prefetch of a batch's schemas.
//! - `shipped`: schema files shipped with the function (Avro schema, Protobuf descriptor set).
//! - `confluent`: [`SchemaRegistry`], the Confluent-compatible registry client.
//! - `glue`: [`GlueRegistry`], the AWS Glue Schema Registry client (`GetSchemaVersion`).
//! - `error`: [`RegistryError`], the one error of both clients.
//!
//! Both registry clients keep what they fetched in the per-process cache of `schema_cache`.

mod confluent;
mod error;
mod glue;
mod settings;
mod shipped;
#[cfg(test)]
mod test_support;
mod values;

pub use confluent::{
    MAX_REFERENCE_DEPTH, MAX_REFERENCES, MAX_SCHEMA_ANSWER, RegistryConfig, SchemaRegistry,
};
pub use error::{GET_SCHEMA_VERSION, Registry, RegistryError};
pub use glue::{
    GlueRegistry, GlueRegistryArn, GlueRegistryConfig, GlueSchemaVersion, is_schema_version_id,
};
pub use settings::ValueSettings;
pub use values::Values;
