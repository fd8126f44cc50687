//! The page pipeline: decode each record into a page change, keep the last change per page,
//! chunk and hash the new bodies, fetch the stored hashes of the batch's pages in one query,
//! embed only what changed, write vectors in bulk, remove stale chunks and deleted pages, then
//! notify the RAG service. Returns one outcome per record; the handler turns rejected records
//! into dead letters and the outcomes into the partial batch response.

use std::collections::HashMap;

use event_decoding::{Change, KafkaBatch, Outcome, json_kind};
use lambda_kit::error::Classify;
use lambda_kit::retry::Deadline;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chunk::{ChunkLimits, chunk_text};
use crate::embed::{EmbedError, Embedder};
use crate::embedding::{EmbedSettings, embed_all};
use crate::hash::content_hash;
use crate::plan::{PageChange, plan};
use crate::rag::{ChunkNote, RagNotifier, Refresh, RefreshStats};
use crate::store::{StoreError, StoredChunk, VectorRow, VectorStore};

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
}

/// A record that must be dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the record in the batch.
    pub record: usize,
    /// Low-cardinality code.
    pub code: &'static str,
    /// What is wrong (never the payload).
    pub message: String,
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

/// What happened to a batch: an outcome per record (`None` only for records to dead-letter).
#[derive(Debug, Default)]
pub struct Processed {
    /// Outcome per record index; `DeadLettered` ones have a matching [`Rejection`].
    pub outcomes: Vec<Outcome>,
    /// Records to dead-letter.
    pub rejections: Vec<Rejection>,
    /// Counters.
    pub stats: Stats,
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
enum PageState {
    Pending,
    Done,
    Failed { code: &'static str },
    Rejected { code: &'static str, message: String },
}

#[derive(Debug)]
struct PageWork {
    page_id: String,
    body: String,
    records: Vec<usize>,
    max_chars: usize,
    chunks: Vec<ChunkWork>,
    stored: Vec<StoredChunk>,
    state: PageState,
}

impl PageWork {
    fn stale_from(&self) -> Option<usize> {
        let n = self.chunks.len();
        self.stored.iter().any(|c| c.chunk_index >= n).then_some(n)
    }

    fn is_changed(&self) -> bool {
        self.chunks.iter().any(|c| c.changed) || self.stale_from().is_some()
    }

    fn fail(&mut self, code: &'static str) {
        if matches!(self.state, PageState::Pending | PageState::Done) {
            self.state = PageState::Failed { code };
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
    fn decode(
        &self,
        batch_index: usize,
        record: &event_decoding::KafkaRecord,
    ) -> Result<Option<(String, PageChange)>, Rejection> {
        let reject = |code: &'static str, message: String| Rejection {
            record: batch_index,
            code,
            message,
        };
        let change = record
            .change()
            .map_err(|e| reject(e.code.as_str(), e.message.clone()))?;
        let id_field = &self.settings.page_id_field;
        let page_id = |change: &Change| -> Result<String, Rejection> {
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

    /// Runs the whole pipeline over `batch`.
    pub async fn process(&self, batch: &KafkaBatch, deadline: &Deadline) -> Processed {
        let records = batch.as_slice();
        let mut outcomes = vec![Outcome::Failed; records.len()];
        let mut rejections = Vec::new();
        let mut changes = Vec::new();
        for (i, record) in records.iter().enumerate() {
            match self.decode(i, record) {
                Ok(Some((id, change))) => changes.push((i, id, change)),
                Ok(None) => outcomes[i] = Outcome::Skipped,
                Err(r) => {
                    tracing::warn!(
                        topic = %record.topic,
                        offset = record.offset,
                        partition = record.partition,
                        error_code = r.code,
                        "record rejected"
                    );
                    outcomes[i] = Outcome::DeadLettered;
                    rejections.push(r);
                }
            }
        }
        let plans = plan(changes);
        let mut stats = Stats::default();

        let mut deletes: Vec<(String, Vec<usize>)> = Vec::new();
        let mut pages: Vec<PageWork> = Vec::new();
        for p in plans {
            match p.change {
                PageChange::Delete => deletes.push((p.page_id, p.records)),
                PageChange::Upsert { body } => pages.push(PageWork {
                    page_id: p.page_id,
                    body,
                    records: p.records,
                    max_chars: self.settings.limits.max_chars,
                    chunks: Vec::new(),
                    stored: Vec::new(),
                    state: PageState::Pending,
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
                    tracing::warn!(error_code = e.code, error = %e, "reading stored hashes failed");
                    for p in &mut pages {
                        p.fail(e.code);
                    }
                }
            }
        }

        self.embed_pages(&mut pages, deadline, &mut stats).await;
        let mut refreshes = self.write_pages(&mut pages, deadline, &mut stats).await;

        // Deletes: one bulk request.
        if !deletes.is_empty() {
            let ids: Vec<String> = deletes.iter().map(|(id, _)| id.clone()).collect();
            match self.store.delete_pages(deadline, &ids).await {
                Ok(()) => {
                    stats.pages_deleted = ids.len();
                    for (id, recs) in &deletes {
                        refreshes.push(Refresh::deleted(id.clone()));
                        for &r in recs {
                            outcomes[r] = Outcome::Stored;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error_code = e.code, error = %e, pages = ids.len(), "deleting pages failed")
                }
            }
        }

        for page in &pages {
            let last = *page.records.last().expect("a plan has at least one record");
            match &page.state {
                PageState::Done => page
                    .records
                    .iter()
                    .for_each(|&r| outcomes[r] = Outcome::Stored),
                PageState::Pending | PageState::Failed { .. } => page
                    .records
                    .iter()
                    .for_each(|&r| outcomes[r] = Outcome::Failed),
                PageState::Rejected { code, message } => {
                    // Earlier records of the page were superseded by the rejected last one.
                    page.records
                        .iter()
                        .for_each(|&r| outcomes[r] = Outcome::Skipped);
                    outcomes[last] = Outcome::DeadLettered;
                    rejections.push(Rejection {
                        record: last,
                        code,
                        message: format!("page {}: {message}", page.page_id),
                    });
                }
            }
            if let PageState::Failed { code } = page.state {
                tracing::warn!(page_id = %page.page_id, error_code = code, records = page.records.len(), "page failed; its records will be redelivered");
            }
        }

        if !refreshes.is_empty() {
            stats.rag = self.rag.notify(refreshes).await;
        }
        rejections.sort_by_key(|r| r.record);
        Processed {
            outcomes,
            rejections,
            stats,
        }
    }

    /// Chunks, compares hashes and embeds, re-chunking smaller the pages whose chunks the
    /// provider refuses as too long.
    async fn embed_pages(&self, pages: &mut [PageWork], deadline: &Deadline, stats: &mut Stats) {
        let mut to_chunk: Vec<usize> = (0..pages.len())
            .filter(|&i| matches!(pages[i].state, PageState::Pending))
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
                            if matches!(page.state, PageState::Pending) {
                                page.state = PageState::Rejected {
                                    code: e.error_code(),
                                    message: e.to_string(),
                                };
                            }
                        }
                        Err(e) => page.fail(e.error_code()),
                    }
                }
                for pi in too_long {
                    let page = &mut pages[pi];
                    if matches!(page.state, PageState::Pending) {
                        page.max_chars /= 2;
                        tracing::info!(page_id = %page.page_id, max_chars = page.max_chars, "provider refused a chunk as too long; splitting smaller");
                        rechunk.push(pi);
                    }
                }
            }
            for &pi in &to_chunk {
                if matches!(pages[pi].state, PageState::Pending) && !rechunk.contains(&pi) {
                    pages[pi].state = PageState::Done;
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
            .filter(|&i| {
                matches!(pages[i].state, PageState::Done)
                    && pages[i].chunks.iter().any(|c| c.changed)
            })
            .collect();
        let rows: Vec<VectorRow> = writing.iter().flat_map(|&i| rows_of(&pages[i])).collect();
        let upserted = if rows.is_empty() {
            Ok(())
        } else {
            self.store.upsert(deadline, &rows).await
        };
        if let Err(e) = upserted {
            tracing::warn!(error_code = e.code, error = %e, rows = rows.len(), "bulk vector upsert failed");
            if e.blames_input && writing.len() > 1 {
                // Find the page(s) whose rows are refused; the others are written.
                for &i in &writing {
                    let page_rows = rows_of(&pages[i]);
                    if let Err(e) = self.store.upsert(deadline, &page_rows).await {
                        self.mark_store_error(&mut pages[i], &e);
                    }
                }
            } else {
                for &i in &writing {
                    self.mark_store_error(&mut pages[i], &e);
                }
            }
        }
        let mut refreshes = Vec::new();
        for page in pages.iter_mut() {
            if !matches!(page.state, PageState::Done) {
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
            page.state = PageState::Rejected {
                code: e.code,
                message: e.to_string(),
            };
        } else {
            page.fail(e.code);
        }
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
