//! The page steps of the shared batch lifecycle ([`lambda_kit::runner`]): decode each record into
//! a page change (the runner keeps the last change per page), then, as the write step, chunk and
//! hash the new bodies, fetch the stored hashes of the batch's pages in one query, embed only what
//! changed, write vectors in bulk, remove stale chunks and deleted pages, and notify the RAG
//! service. Dead letters, the partial batch response, the summary log and the metrics line are
//! the runner's.

use std::collections::HashMap;

use event_decoding::{Change, KafkaRecord, json_kind};
use lambda_kit::batch::bisect;
use lambda_kit::fate::Fate;
use lambda_kit::metrics::MetricSet;
use lambda_kit::retry::Deadline;
use lambda_kit::runner::{BatchFunction, Decoded, Keep};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chunk::{ChunkLimits, chunk_text};
use crate::embed::{EmbedError, Embedder};
use crate::embedding::{EmbedSettings, embed_all};
use crate::hash::content_hash;
use crate::rag::{ChunkNote, RagNotifier, Refresh, RefreshStats};
use crate::store::{StoreError, StoredChunk, VectorRow, VectorStore};
use lambda_kit::error::Classify;

/// Smallest chunk size tried when the provider keeps refusing inputs as too long.
const MIN_CHUNK_CHARS: usize = 64;

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
    /// Whether RAG notifications are sent (then chunk 0's vector is computed for changed pages).
    pub rag_enabled: bool,
    /// Name written in dead letters: stable across deployments (the package name), so a
    /// redelivered record that was already dead-lettered is not written twice.
    pub function_name: String,
}

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
}

/// Counters of one batch, for logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Embedding HTTP requests (retries included).
    pub embed_requests: usize,
    /// Chunks embedded.
    pub chunks_embedded: usize,
    /// Chunks whose stored hash matched (not embedded).
    pub chunks_unchanged: usize,
    /// Pages whose vectors were written or trimmed.
    pub pages_changed: usize,
    /// Pages deleted.
    pub pages_deleted: usize,
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
    /// Settings.
    pub settings: Settings,
}

#[derive(Debug)]
struct ChunkWork {
    text: String,
    embedded: String,
    hash: String,
    changed: bool,
    vector: Option<Vec<f32>>,
}

#[derive(Debug)]
struct PageWork {
    /// Index of the page's item in the write step's input.
    item: usize,
    page_id: String,
    body: String,
    max_chars: usize,
    chunks: Vec<ChunkWork>,
    stored: Vec<StoredChunk>,
    /// `None` while in progress; [`Fate::Stored`] once its vectors are ready or written.
    fate: Option<Fate>,
}

impl PageWork {
    fn stale_from(&self) -> Option<usize> {
        let n = self.chunks.len();
        self.stored.iter().any(|c| c.chunk_index >= n).then_some(n)
    }

    fn is_changed(&self) -> bool {
        self.chunks.iter().any(|c| c.changed) || self.stale_from().is_some()
    }

    fn is_pending(&self) -> bool {
        self.fate.is_none()
    }

    fn is_done(&self) -> bool {
        matches!(self.fate, Some(Fate::Stored))
    }

    /// Fails the page for `error` unless it is already failed or rejected.
    fn fail(&mut self, error: &(impl Classify + std::fmt::Display)) {
        if matches!(self.fate, None | Some(Fate::Stored)) {
            self.fate = Some(Fate::failed(error));
        }
    }

    /// Rejects the page (dead-letters its last record) unless it already ended otherwise.
    fn reject(&mut self, error: &(impl Classify + std::fmt::Display)) {
        if matches!(self.fate, None | Some(Fate::Stored)) {
            self.fate = Some(Fate::rejected(
                error.error_code(),
                format!("page {}: {error}", self.page_id),
            ));
        }
    }
}

/// Page id as text: strings as they are, integers in decimal.
fn page_id_text(v: &Value) -> Result<String, &'static str> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err("is empty"),
        // Page ids are non-negative numbers or names; "-9" is a corrupted numeric id.
        Value::String(s) if s.trim().parse::<i64>().is_ok_and(|i| i < 0) => {
            Err("must not be negative")
        }
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => Err("must not be negative"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Number(_) => Err("is a non-integer number"),
        _ => Err("must be a string or an integer"),
    }
}

/// Hash of a whole page: over its chunk hashes in order.
fn page_hash(chunks: &[ChunkWork]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c.hash.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl<E: Embedder, S: VectorStore, R: RagNotifier> Pipeline<E, S, R> {
    /// Decodes a record into `(page id, change)`, `Ok(None)` for records without a page change
    /// (truncate, skip), `Err` for a record to dead-letter.
    fn decode_change(&self, record: &KafkaRecord) -> Result<Option<(String, PageChange)>, Fate> {
        let reject = Fate::rejected;
        let change = record
            .change()
            .map_err(|e| reject(e.code.as_str(), e.message.clone()))?;
        let id_field = &self.settings.page_id_field;
        let page_id = |change: &Change| -> Result<String, Fate> {
            let value = change.field(id_field).or_else(|| {
                // A scalar record key (`"42"`) identifies the page of a delete or tombstone.
                matches!(change, Change::Delete { .. } | Change::Tombstone { .. })
                    .then(|| change.key())
                    .flatten()
                    .filter(|k| k.is_string() || k.is_number())
            });
            let value = value.ok_or_else(|| {
                reject(
                    "missing_page_id",
                    format!(
                        "{id_field}: missing from the row and the key ({})",
                        change.kind()
                    ),
                )
            })?;
            page_id_text(value).map_err(|p| reject("invalid_page_id", format!("{id_field}: {p}")))
        };
        match &change {
            Change::Truncate => {
                tracing::info!(topic = %record.topic, partition = record.partition, offset = record.offset, "truncate event skipped: never a mass delete");
                Ok(None)
            }
            Change::Skip { reason } => {
                tracing::debug!(offset = record.offset, reason, "record skipped");
                Ok(None)
            }
            Change::Delete { .. } | Change::Tombstone { .. } => {
                Ok(Some((page_id(&change)?, PageChange::Delete)))
            }
            Change::Upsert { row, .. } => {
                let id = page_id(&change)?;
                let field = &self.settings.body_field;
                let body = match row.get(field) {
                    None => {
                        return Err(reject(
                            "missing_body",
                            format!("{field}: missing from the row"),
                        ));
                    }
                    // A NULL column: the page has no text, hence no vectors.
                    Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => {
                        return Err(reject(
                            "invalid_body",
                            format!("{field}: expected a string, found {}", json_kind(other)),
                        ));
                    }
                };
                Ok(Some((id, PageChange::Upsert { body })))
            }
        }
    }

    fn chunk_page(&self, page: &mut PageWork) {
        let model = self.embedder.model();
        let dims = self.embedder.dimensions();
        let limits = ChunkLimits::new(
            page.max_chars,
            self.settings.limits.overlap_chars.min(page.max_chars / 4),
        );
        let stored: HashMap<usize, &str> = page
            .stored
            .iter()
            .map(|c| (c.chunk_index, c.content_hash.as_str()))
            .collect();
        page.chunks = chunk_text(&page.body, limits)
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                let embedded = format!("{}{text}", self.settings.doc_prefix);
                let hash = content_hash(model, dims, &embedded);
                let changed = stored.get(&i) != Some(&hash.as_str());
                ChunkWork {
                    text: text.to_owned(),
                    embedded,
                    hash,
                    changed,
                    vector: None,
                }
            })
            .collect();
    }

    /// The write step: embeds and stores the batch's last change of each page; returns one fate
    /// per item, in order.
    async fn write_changes(
        &self,
        deadline: &Deadline,
        items: Vec<(String, PageChange)>,
        stats: &mut Stats,
    ) -> Vec<Fate> {
        let mut fates: Vec<Fate> = vec![Fate::missing(); items.len()];
        let mut deletes: Vec<(usize, String)> = Vec::new();
        let mut pages: Vec<PageWork> = Vec::new();
        for (item, (page_id, change)) in items.into_iter().enumerate() {
            match change {
                PageChange::Delete => deletes.push((item, page_id)),
                PageChange::Upsert { body } => pages.push(PageWork {
                    item,
                    page_id,
                    body,
                    max_chars: self.settings.limits.max_chars,
                    chunks: Vec::new(),
                    stored: Vec::new(),
                    fate: None,
                }),
            }
        }

        // One query for the stored hashes of every page to upsert.
        if !pages.is_empty() {
            let ids: Vec<String> = pages.iter().map(|p| p.page_id.clone()).collect();
            match self.store.stored_hashes(deadline, &ids).await {
                Ok(mut stored) => {
                    for p in &mut pages {
                        p.stored = stored.remove(&p.page_id).unwrap_or_default();
                    }
                }
                Err(e) => {
                    for p in &mut pages {
                        p.fail(&e);
                    }
                }
            }
        }

        self.embed_pages(&mut pages, deadline, stats).await;
        let mut refreshes = self.write_pages(&mut pages, deadline, stats).await;

        // Deletes: one bulk request; an id the store refuses is isolated, the others go through.
        if !deletes.is_empty() {
            let ids: Vec<String> = deletes.iter().map(|(_, id)| id.clone()).collect();
            let tried = bisect(std::iter::once(0..ids.len()), |range| {
                self.store.delete_pages(deadline, &ids[range])
            })
            .await;
            for (range, result) in tried {
                for (item, id) in &deletes[range] {
                    fates[*item] = match &result {
                        Ok(()) => {
                            stats.pages_deleted += 1;
                            refreshes.push(Refresh::deleted(id.clone()));
                            Fate::Stored
                        }
                        Err(e) if e.class.is_permanent() && e.blames_input => {
                            Fate::rejected(e.code, format!("page {id}: {e}"))
                        }
                        Err(e) => Fate::failed(&**e),
                    };
                }
            }
        }

        for page in pages {
            fates[page.item] = page.fate.unwrap_or_else(Fate::missing);
        }
        if !refreshes.is_empty() {
            stats.rag = self.rag.notify(refreshes).await;
        }
        fates
    }

    /// Chunks, compares hashes and embeds, re-chunking smaller the pages whose chunks the
    /// provider refuses as too long.
    async fn embed_pages(&self, pages: &mut [PageWork], deadline: &Deadline, stats: &mut Stats) {
        let mut to_chunk: Vec<usize> = (0..pages.len())
            .filter(|&i| pages[i].is_pending())
            .collect();
        while !to_chunk.is_empty() {
            let mut items: Vec<(usize, usize)> = Vec::new();
            for &pi in &to_chunk {
                let page = &mut pages[pi];
                self.chunk_page(page);
                let changed = page.is_changed();
                for (ci, c) in page.chunks.iter().enumerate() {
                    // Chunk 0 of a changed page is needed for the RAG notification's `vector`.
                    if c.changed || (ci == 0 && changed && self.settings.rag_enabled) {
                        items.push((pi, ci));
                    }
                }
            }
            stats.chunks_unchanged += to_chunk
                .iter()
                .map(|&pi| pages[pi].chunks.iter().filter(|c| !c.changed).count())
                .sum::<usize>();
            let texts: Vec<String> = items
                .iter()
                .map(|&(pi, ci)| pages[pi].chunks[ci].embedded.clone())
                .collect();
            let embedded = if texts.is_empty() {
                None
            } else {
                Some(embed_all(&self.embedder, &texts, &self.settings.embed, deadline).await)
            };
            let mut rechunk = Vec::new();
            if let Some(embedded) = embedded {
                stats.embed_requests += embedded.requests;
                let mut too_long: Vec<usize> = Vec::new();
                for (&(pi, ci), result) in items.iter().zip(embedded.results) {
                    let page = &mut pages[pi];
                    match result {
                        Ok(v) => {
                            stats.chunks_embedded += 1;
                            page.chunks[ci].vector = Some(v);
                        }
                        Err(EmbedError::InputTooLong { .. })
                            if page.max_chars / 2 >= MIN_CHUNK_CHARS =>
                        {
                            if !too_long.contains(&pi) {
                                too_long.push(pi);
                            }
                        }
                        Err(e) if e.blames_input() => {
                            if page.is_pending() {
                                page.reject(&e);
                            }
                        }
                        Err(e) => page.fail(&e),
                    }
                }
                for pi in too_long {
                    let page = &mut pages[pi];
                    if page.is_pending() {
                        page.max_chars /= 2;
                        tracing::info!(page_id = %page.page_id, max_chars = page.max_chars, "provider refused a chunk as too long; splitting smaller");
                        rechunk.push(pi);
                    }
                }
            }
            for &pi in &to_chunk {
                if pages[pi].is_pending() && !rechunk.contains(&pi) {
                    pages[pi].fate = Some(Fate::Stored);
                }
            }
            to_chunk = rechunk;
        }
    }

    /// Writes changed chunks in one bulk upsert (isolating pages if the store rejects the rows),
    /// trims pages that shrank, and builds the refresh notifications of pages written.
    async fn write_pages(
        &self,
        pages: &mut [PageWork],
        deadline: &Deadline,
        stats: &mut Stats,
    ) -> Vec<Refresh> {
        let model = self.embedder.model();
        let rows_of = |page: &PageWork| -> Vec<VectorRow> {
            page.chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.changed)
                .map(|(i, c)| VectorRow {
                    page_id: page.page_id.clone(),
                    chunk_index: i,
                    embedding: c.vector.clone().unwrap_or_default(),
                    content_hash: c.hash.clone(),
                    model: model.to_owned(),
                    chunk_text: c.text.clone(),
                })
                .collect()
        };
        let writing: Vec<usize> = (0..pages.len())
            .filter(|&i| pages[i].is_done() && pages[i].chunks.iter().any(|c| c.changed))
            .collect();
        // One bulk upsert; when the store refuses the rows, the refused pages are isolated by
        // bisection and the others are written.
        let tried = bisect(std::iter::once(0..writing.len()), |range| {
            let rows: Vec<VectorRow> = writing[range]
                .iter()
                .flat_map(|&i| rows_of(&pages[i]))
                .collect();
            async move { self.store.upsert(deadline, &rows).await }
        })
        .await;
        for (range, result) in tried {
            if let Err(e) = result {
                for &i in &writing[range] {
                    self.mark_store_error(&mut pages[i], &e);
                }
            }
        }
        let mut refreshes = Vec::new();
        for page in pages.iter_mut() {
            if !page.is_done() {
                continue;
            }
            if let Some(from) = page.stale_from()
                && let Err(e) = self
                    .store
                    .delete_chunks_from(deadline, &page.page_id, from)
                    .await
            {
                self.mark_store_error(page, &e);
                continue;
            }
            if !page.is_changed() {
                continue;
            }
            stats.pages_changed += 1;
            if page.chunks.is_empty() {
                refreshes.push(Refresh::deleted(page.page_id.clone()));
                continue;
            }
            let chunks: Vec<ChunkNote> = page
                .chunks
                .iter()
                .enumerate()
                .map(|(i, c)| ChunkNote {
                    chunk_index: i,
                    content_hash: c.hash.clone(),
                    vector: c.vector.clone(),
                })
                .collect();
            if let Some(vector) = page.chunks[0].vector.clone() {
                refreshes.push(Refresh::Changed {
                    page_id: page.page_id.clone(),
                    vector,
                    chunks,
                    model: model.to_owned(),
                    content_hash: page_hash(&page.chunks),
                });
            }
        }
        refreshes
    }

    fn mark_store_error(&self, page: &mut PageWork, e: &StoreError) {
        if e.class.is_permanent() && e.blames_input {
            page.reject(e);
        } else {
            page.fail(e);
        }
    }
}

impl<E: Embedder, S: VectorStore, R: RagNotifier> BatchFunction for Pipeline<E, S, R> {
    /// The page id, as text.
    type Key = String;
    type Item = PageChange;
    type Stats = Stats;

    /// Within a batch the last change of a page (in partition/offset order) wins: an update
    /// followed by a delete ends deleted, a delete followed by a create ends present.
    const KEEP: Keep = Keep::Last;

    fn name(&self) -> &str {
        &self.settings.function_name
    }

    fn decode(&self, record: &KafkaRecord) -> Decoded<String, PageChange> {
        match self.decode_change(record) {
            Ok(Some((key, item))) => Decoded::Item { key, item },
            Ok(None) => Decoded::Settled(Fate::Skipped),
            Err(fate) => Decoded::Settled(fate),
        }
    }

    async fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(String, PageChange)>,
        stats: &mut Stats,
    ) -> Vec<Fate> {
        self.write_changes(deadline, items, stats).await
    }

    /// `EmbeddingCalls`, `ChunksEmbedded` and `ChunksUnchanged` (chunks skipped because their
    /// stored hash matched).
    fn metrics(&self, stats: &Stats, set: &mut MetricSet) {
        set.count("EmbeddingCalls", stats.embed_requests as u64)
            .count("ChunksEmbedded", stats.chunks_embedded as u64)
            .count("ChunksUnchanged", stats.chunks_unchanged as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_ids_are_normalised_to_text_and_bad_ones_named() {
        assert_eq!(page_id_text(&json!("42")), Ok("42".into()));
        assert_eq!(page_id_text(&json!(42)), Ok("42".into()));
        assert_eq!(page_id_text(&json!(u64::MAX)), Ok(u64::MAX.to_string()));
        assert_eq!(page_id_text(&json!("-9")), Err("must not be negative"));
        assert_eq!(page_id_text(&json!(-9)), Err("must not be negative"));
        assert_eq!(page_id_text(&json!(" ")), Err("is empty"));
        assert_eq!(page_id_text(&json!(1.5)), Err("is a non-integer number"));
        assert_eq!(
            page_id_text(&json!(true)),
            Err("must be a string or an integer")
        );
    }
}
