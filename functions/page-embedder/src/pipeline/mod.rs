//! The page steps of the shared batch lifecycle ([`lambda_kit::runner`]), run by the
//! [`BatchFunction`](lambda_kit::runner::BatchFunction) impl in [`crate::handler`]: decode each
//! record into a page change (the runner keeps the last change per page), then, as the write
//! step, chunk and hash the new bodies, fetch the stored hashes of the batch's pages in one query,
//! embed only what changed, write vectors in bulk, remove stale chunks and deleted pages, and
//! notify the RAG service. Dead letters, the partial batch response, the summary log and the
//! metrics line are the runner's.
//!
//! Here the types the steps share ([`Settings`], [`PageChange`], [`PageItem`], [`Stats`],
//! [`Pipeline`]); each step in a file of its own:
//! - `decode`: a record into a page change (page ids, truncates, bodies not sent);
//! - `plan`: what the write must do: stale changes dropped, stored hashes read, the chunks of a
//!   page and which of them changed;
//! - `embed`: the changed chunks embedded, pages re-chunked smaller when a chunk is too long;
//! - `write`: the write step itself (truncate, vector upserts, trims, deletes, versions);
//! - `notify`: the RAG notifications of the pages written ([`Notifications`], what the write
//!   leaves for the runner's `after_settled`), sent once the batch is settled.

mod decode;
mod embed;
mod notify;
mod plan;
mod write;

use event_decoding::SourceVersion;
use lambda_kit::bulk::WriteLimits;
use lambda_kit::schema_registry::Values;
use lambda_kit::trace::TraceContext;

use crate::chunk::ChunkLimits;
use crate::embed::EmbedSettings;
use crate::page_state::PageStates;
use crate::rag::RefreshStats;

pub use decode::MAX_PAGE_ID_BYTES;
pub use notify::Notifications;

/// Settings of the pipeline (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Field holding the page id (row, then key).
    pub page_id_field: String,
    /// Field holding the page text.
    pub body_field: String,
    /// Prefix put before every chunk sent to the model (`search_document: `).
    pub doc_prefix: String,
    /// Chunk limits, prefix excluded.
    pub limits: ChunkLimits,
    /// Request grouping and retries.
    pub embed: EmbedSettings,
    /// Vector upserts and page deletes: whole pages per request within `WRITE_MAX_ROWS` (rows)
    /// and `WRITE_MAX_BYTES` (estimated), up to `WRITE_CONCURRENCY` requests in flight.
    pub writes: WriteLimits,
    /// Whether RAG notifications are sent (then chunk 0's vector is computed for changed pages).
    pub rag_enabled: bool,
    /// Name written in dead letters: stable across deployments (the package name), so a
    /// redelivered record that was already dead-lettered is not written twice.
    pub function_name: String,
    /// `CDC_ON_TRUNCATE=delete-all`: a truncate of the source table deletes every vector (for a
    /// vector table that mirrors one source table); off by default (a truncate is ignored).
    pub truncate_deletes_all: bool,
    /// `CDC_SOURCE_TABLE`: the only table whose truncate `truncate_deletes_all` acts on
    /// (`schema.table`, or `table` for any schema); a truncate of another table, or one that
    /// names none, is ignored.
    pub source_table: Option<String>,
    /// `CDC_UNAVAILABLE_VALUE`: what Debezium sends instead of a column it does not have (an
    /// unchanged TOASTed column with `REPLICA IDENTITY DEFAULT`; the connector's
    /// `unavailable.value.placeholder`). A body equal to it, or to its base64 (`bytea` columns),
    /// means "body unchanged".
    pub unavailable_value: String,
}

/// Debezium's default `unavailable.value.placeholder`.
pub const DEBEZIUM_UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// What a record asks for a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// Create, update, snapshot read or Cassandra insert: the page's text is now `body`.
    Upsert {
        /// The full text of the page (may be empty: then the page has no vectors).
        body: String,
    },
    /// Delete or tombstone: the page is gone.
    Delete,
    /// The source table was truncated and `CDC_ON_TRUNCATE=delete-all`: every vector goes.
    DeleteAll,
}

/// What the write step receives for a page: the change, for a Debezium event its source version,
/// and with a RAG hook its record's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageItem {
    /// What the record says of the page: an upsert with its body, or a delete.
    pub change: PageChange,
    /// Where it sits in its source (`None` for plain rows and tombstones: last write wins).
    pub version: Option<SourceVersion>,
    /// The record's partition and offset (what a truncate supersedes).
    pub position: (i32, i64),
    /// With a RAG hook: the record's W3C trace context, so the page's notification is sent in
    /// that record's trace.
    pub trace: Option<TraceContext>,
}

/// Counters of one batch, for logs and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Embedding HTTP requests (retries included).
    pub embed_requests: usize,
    /// Chunks sent to the embedding provider (new or changed text).
    pub chunks_embedded: usize,
    /// Chunks whose stored hash matched (not embedded).
    pub chunks_unchanged: usize,
    /// Pages whose vectors were written or trimmed.
    pub pages_changed: usize,
    /// Pages whose vectors were removed (a delete or a tombstone).
    pub pages_deleted: usize,
    /// Changes whose body the producer did not send (Debezium's unavailable-value placeholder
    /// for an unchanged TOASTed column, or a Cassandra cell with `"set": false`): the page's
    /// stored vectors are kept.
    pub bodies_unavailable: usize,
    /// Truncate events ignored (never a mass delete).
    pub truncates_ignored: usize,
    /// Truncate events applied (`CDC_ON_TRUNCATE=delete-all`).
    pub truncates_applied: usize,
    /// Changes older than the version already applied to their page (replays), ignored.
    pub stale_changes_ignored: usize,
    /// RAG deliveries.
    pub rag: RefreshStats,
}

/// The page pipeline over its three collaborators.
#[derive(Debug)]
pub struct Pipeline<E, S, R> {
    /// Embedding provider.
    pub embedder: E,
    /// Vector store.
    pub store: S,
    /// RAG notifier.
    pub rag: R,
    /// The version last applied to each page.
    pub states: PageStates,
    /// Chunking, model and write limits.
    pub settings: Settings,
    /// `VALUE_FORMAT` and the schema registry (Debezium Avro or Protobuf envelopes).
    pub values: Values,
}
