//! Where vectors live: the store-agnostic [`VectorStore`] trait the handler depends on (Supabase
//! through PostgREST, Qdrant's REST API, or Stargate REST v2 for the legacy Cassandra table) and
//! its row types.

mod any;
mod chunk_fields;
mod json_service;
#[cfg(any(test, feature = "testing"))]
mod memory;
mod qdrant;
mod stargate;
mod supabase;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::retry::Deadline;

pub use any::AnyStore;
#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryStore;
pub use qdrant::{QdrantConfig, QdrantStore, point_id};
pub use stargate::{StargateConfig, StargateStore};
pub use supabase::{SupabaseStore, vector_literal};

/// Vector store (`VECTOR_STORE`) with its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreConfig {
    /// A table through PostgREST (`VECTORS_TABLE`, default `page_vectors`, `vector(768)`; with
    /// `EMBED_PROVIDER=local` `page_vectors_minilm`, `vector(384)`: a column has one dimension,
    /// so each model size gets its own table).
    Supabase {
        /// The vectors table.
        table: String,
    },
    /// A Qdrant collection ([`QdrantStore`], `QDRANT_*`).
    Qdrant(QdrantConfig),
    /// A Cassandra table behind Stargate REST v2 ([`StargateStore`],
    /// `STARGATE_*`); deprecated on Astra DB, kept for existing deployments.
    Stargate(StargateConfig),
}

/// What is stored about one chunk, enough to decide whether it must be embedded again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// Position of the chunk in its page, from 0.
    pub chunk_index: usize,
    /// [`crate::hash::content_hash`] of the embedded text, model and dimension.
    pub content_hash: String,
}

/// One chunk's vector, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRow {
    /// Page id (text).
    pub page_id: String,
    /// Position of the chunk in its page, from 0.
    pub chunk_index: usize,
    /// The vector.
    pub embedding: Vec<f32>,
    /// Hash of (embedded text, model, dimension).
    pub content_hash: String,
    /// Model that produced the vector.
    pub model: String,
    /// The chunk's text (without the model prefix).
    pub chunk_text: String,
}

/// A failed store call, keeping the class and code of the underlying error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreError {
    /// Whose fault: the rows' (dead-letter), the environment's, or nobody's yet (retry).
    pub class: ErrorClass,
    /// Low-cardinality code of the underlying error.
    pub code: &'static str,
    /// Description (secret-free).
    pub message: String,
}

impl StoreError {
    /// Wraps any classified error.
    ///
    /// ```
    /// use lambda_kit::postgrest::PostgrestError;
    /// use page_embedder::store::StoreError;
    /// let e = StoreError::from_error(&PostgrestError::DeadlineExceeded);
    /// assert_eq!(e.code, "deadline_exceeded");
    /// ```
    pub fn from_error<E: Classify + fmt::Display>(err: &E) -> Self {
        Self {
            class: err.class(),
            code: err.error_code(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vector store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn error_code(&self) -> &'static str {
        self.code
    }
}

/// Stored hashes by page id.
pub type StoredHashes = HashMap<String, Vec<StoredChunk>>;

/// A vector store. Every method is one bulk operation; all are idempotent, so a redelivered batch
/// can repeat them harmlessly.
pub trait VectorStore: Send + Sync {
    /// Stored chunk hashes of `page_ids`, in as few queries as the store allows (one for
    /// PostgREST). Pages without vectors are absent from the map.
    fn stored_hashes(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> impl Future<Output = Result<StoredHashes, StoreError>> + Send;

    /// Inserts or replaces rows by `(page_id, chunk_index)`.
    fn upsert(
        &self,
        deadline: &Deadline,
        rows: &[VectorRow],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes every chunk of `page_ids`. Removing a page that has no vectors succeeds.
    fn delete_pages(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes every vector (`CDC_ON_TRUNCATE=delete-all`: the source table was truncated).
    /// Stores that cannot do it refuse the setting at cold start
    /// ([`supports_delete_all`](Self::supports_delete_all)).
    fn delete_all(
        &self,
        deadline: &Deadline,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = deadline;
        async {
            Err(StoreError {
                class: ErrorClass::Environment,
                code: "truncate_unsupported",
                message:
                    "this vector store cannot delete every vector (CDC_ON_TRUNCATE=delete-all)"
                        .into(),
            })
        }
    }

    /// Whether [`delete_all`](Self::delete_all) is implemented.
    fn supports_delete_all(&self) -> bool {
        false
    }

    /// Removes the chunks of `page_id` whose index is `from` or more (a page that shrank).
    fn delete_chunks_from(
        &self,
        deadline: &Deadline,
        page_id: &str,
        from: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
