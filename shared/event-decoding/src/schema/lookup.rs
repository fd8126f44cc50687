//! Where writer schemas come from while a batch is decoded: the [`SchemaLookup`] trait, its
//! map and [`NoSchemas`] implementations, and why a schema may be unavailable.

use std::collections::HashMap;
use std::sync::Arc;

use super::WriterSchema;

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
///
/// [`Decoding::JSON`]: super::Decoding::JSON
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSchemas;

impl SchemaLookup for NoSchemas {
    fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        Err(SchemaUnavailable::Unknown(format!(
            "schema {id} is needed but no schema registry is configured (SCHEMA_REGISTRY_URL)"
        )))
    }
}
