//! The default store: the `page_vectors` table (`page_id`, `chunk_index`, `embedding
//! vector(N)`, `content_hash`, `model`, `chunk_text`) through PostgREST, with bulk upserts on
//! `(page_id, chunk_index)` (`resolution=merge-duplicates`) and bulk deletes.

use lambda_kit::postgrest::{Duplicates, Filter, PostgrestClient, Upsert};
use lambda_kit::retry::Deadline;
use serde::{Deserialize, Serialize};

use super::{StoreError, StoredChunk, StoredHashes, VectorRow, VectorStore};

/// Page ids per `in.(...)` filter; long ids split sooner ([`Filter::in_lists`] keeps URLs under
/// common 8 KiB limits). A typical batch (up to a few hundred pages) needs one query.
const IDS_PER_QUERY: usize = 200;

/// `page_vectors` over PostgREST.
#[derive(Debug, Clone)]
pub struct SupabaseStore {
    client: PostgrestClient,
    table: String,
}

#[derive(Deserialize)]
struct HashRow {
    page_id: String,
    chunk_index: usize,
    content_hash: String,
}

#[derive(Serialize)]
struct Row<'a> {
    page_id: &'a str,
    chunk_index: usize,
    /// pgvector's text form `[x,y,...]`, which PostgREST passes to the column's input function.
    embedding: String,
    content_hash: &'a str,
    model: &'a str,
    chunk_text: &'a str,
}

/// pgvector's text literal of a vector.
///
/// ```
/// assert_eq!(page_embedder::store::vector_literal(&[1.0, -0.5, 0.25]), "[1,-0.5,0.25]");
/// ```
pub fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // `Display` of f32 is the shortest text that reads back to the same value.
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

impl SupabaseStore {
    /// A store writing `table` (`VECTORS_TABLE`, default `page_vectors`).
    pub fn new(client: PostgrestClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn wrap(e: lambda_kit::postgrest::PostgrestError) -> StoreError {
    StoreError::from_error(&e)
}

impl VectorStore for SupabaseStore {
    async fn stored_hashes(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<StoredHashes, StoreError> {
        let mut out = StoredHashes::new();
        for ids in Filter::in_lists("page_id", page_ids, IDS_PER_QUERY) {
            let rows: Vec<HashRow> = self
                .client
                .select_all(
                    deadline,
                    &self.table,
                    "page_id,chunk_index,content_hash",
                    &[ids],
                    "page_id,chunk_index",
                )
                .await
                .map_err(wrap)?;
            for r in rows {
                out.entry(r.page_id).or_default().push(StoredChunk {
                    chunk_index: r.chunk_index,
                    content_hash: r.content_hash,
                });
            }
        }
        Ok(out)
    }

    async fn upsert(&self, deadline: &Deadline, rows: &[VectorRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let body: Vec<Row<'_>> = rows
            .iter()
            .map(|r| Row {
                page_id: &r.page_id,
                chunk_index: r.chunk_index,
                embedding: vector_literal(&r.embedding),
                content_hash: &r.content_hash,
                model: &r.model,
                chunk_text: &r.chunk_text,
            })
            .collect();
        let bytes = serde_json::to_vec(&body).map_err(|e| StoreError {
            class: lambda_kit::error::ErrorClass::Data,
            code: "encode",
            message: e.to_string(),
        })?;
        self.client
            .upsert(
                deadline,
                &self.table,
                bytes.into(),
                &Upsert::on_conflict("page_id,chunk_index", Duplicates::Merge),
            )
            .await
            .map_err(wrap)
    }

    async fn delete_pages(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<(), StoreError> {
        for ids in Filter::in_lists("page_id", page_ids, IDS_PER_QUERY) {
            self.client
                .delete(deadline, &self.table, &[ids])
                .await
                .map_err(wrap)?;
        }
        Ok(())
    }

    async fn delete_all(&self, deadline: &Deadline) -> Result<(), StoreError> {
        self.client
            .delete(deadline, &self.table, &[Filter::not_null("page_id")])
            .await
            .map_err(wrap)
    }

    fn supports_delete_all(&self) -> bool {
        true
    }

    async fn delete_chunks_from(
        &self,
        deadline: &Deadline,
        page_id: &str,
        from: usize,
    ) -> Result<(), StoreError> {
        self.client
            .delete(
                deadline,
                &self.table,
                &[
                    Filter::eq("page_id", page_id),
                    Filter::gte("chunk_index", from),
                ],
            )
            .await
            .map_err(wrap)
    }
}
