//! What the stores write about a chunk beside its vector (its key, hash, model and text), in one
//! shape; the rows of an upsert in a store's own shape; and the error of a body that cannot be
//! serialized.

use lambda_kit::error::ErrorClass;
use serde::Serialize;

use super::{StoreError, VectorRow};

/// The fields of a [`VectorRow`] other than its vector, borrowed; a Qdrant payload, and the
/// columns of a `page_vectors` row beside `embedding`.
#[derive(Serialize)]
pub(super) struct ChunkFields<'a> {
    page_id: &'a str,
    chunk_index: usize,
    content_hash: &'a str,
    model: &'a str,
    chunk_text: &'a str,
}

impl<'a> From<&'a VectorRow> for ChunkFields<'a> {
    fn from(r: &'a VectorRow) -> Self {
        Self {
            page_id: &r.page_id,
            chunk_index: r.chunk_index,
            content_hash: &r.content_hash,
            model: &r.model,
            chunk_text: &r.chunk_text,
        }
    }
}

/// The rows of an upsert, each in the store's own shape; `None` for no rows, so that a store
/// makes no call for nothing.
pub(super) fn upsert_rows<'a, T>(
    rows: &'a [VectorRow],
    shape: impl FnMut(&'a VectorRow) -> T,
) -> Option<Vec<T>> {
    (!rows.is_empty()).then(|| rows.iter().map(shape).collect())
}

/// A write body that could not be serialized: the rows' fault, not the store's.
pub(super) fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError {
        class: ErrorClass::Data,
        code: "encode",
        message: e.to_string(),
    }
}
