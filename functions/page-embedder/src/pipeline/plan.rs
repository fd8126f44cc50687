//! Plan: what the write step must do for the batch's pages. Changes older than the version
//! already applied to their page are dropped ([`Pipeline::drop_stale`]), the stored chunk hashes
//! of the pages to upsert are read in one query, and each page's body is chunked and hashed so
//! that only the chunks whose hash changed are embedded and written ([`PageWork`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use lambda_kit::bulk::bisect;
use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::fate::Fate;
use lambda_kit::retry::Deadline;
use sha2::{Digest, Sha256};

use super::{PageChange, PageItem, Pipeline, Stats};
use crate::chunk::{ChunkLimits, chunk_text};
use crate::embed::Embedder;
use crate::hash::content_hash;
use crate::page_state::PageState;
use crate::rag::RagNotifier;
use crate::store::{StoreError, StoredChunk, VectorStore};

/// One chunk of a page: its text, the text sent to the model (prefix included), its content
/// hash, whether that differs from the stored one, and its vector once embedded.
#[derive(Debug)]
pub(super) struct ChunkWork {
    pub(super) text: String,
    pub(super) embedded: String,
    pub(super) hash: String,
    pub(super) changed: bool,
    pub(super) vector: Option<Vec<f32>>,
}

/// A page to upsert, as the write step works on it: its chunks, what is stored of it, its fate.
#[derive(Debug)]
pub(super) struct PageWork {
    /// Index of the page's item in the write step's input.
    pub(super) item: usize,
    pub(super) page_id: String,
    pub(super) body: String,
    pub(super) max_chars: usize,
    pub(super) chunks: Vec<ChunkWork>,
    pub(super) stored: Vec<StoredChunk>,
    /// `None` while in progress; [`Fate::Stored`] once its vectors are ready or written.
    pub(super) fate: Option<Fate>,
    /// The content hash the RAG service last accepted for the page.
    pub(super) notified: Option<String>,
}

impl PageWork {
    pub(super) fn stale_from(&self) -> Option<usize> {
        let n = self.chunks.len();
        self.stored.iter().any(|c| c.chunk_index >= n).then_some(n)
    }

    /// RAG has not accepted the page's current content (its last refresh failed, or it never
    /// had one).
    pub(super) fn needs_refresh(&self) -> bool {
        self.notified.as_deref() != Some(page_hash(&self.chunks).as_str())
    }

    pub(super) fn is_changed(&self) -> bool {
        self.chunks.iter().any(|c| c.changed) || self.stale_from().is_some()
    }

    pub(super) fn is_pending(&self) -> bool {
        self.fate.is_none()
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self.fate, Some(Fate::Stored))
    }

    /// Fails the page for `error` unless it is already failed or rejected.
    pub(super) fn fail(&mut self, error: &(impl Classify + std::fmt::Display)) {
        if matches!(self.fate, None | Some(Fate::Stored)) {
            self.fate = Some(Fate::failed(error));
        }
    }

    /// Ends the page with the fate `error` implies ([`Fate::from_error`]) unless it already
    /// ended otherwise. The message does not name the page (its dead letter holds the record):
    /// refusals alike stay alike, so the runner can tell a refusal of every page, a fault of the
    /// environment, from pages at fault.
    pub(super) fn settle(&mut self, error: &(impl Classify + std::fmt::Display)) {
        if matches!(self.fate, None | Some(Fate::Stored)) {
            self.fate = Some(Fate::from_error(error));
        }
    }
}

/// Hash of a whole page: over its chunk hashes in order.
pub(super) fn page_hash(chunks: &[ChunkWork]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c.hash.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl<E: Embedder, S: VectorStore, R: RagNotifier> Pipeline<E, S, R> {
    /// Reads the stored state of the versioned pages and settles the changes older than it as
    /// skipped; returns the others as `(item, page id, change)`, or `None` when the states could
    /// not be read for another reason than their ids (then every item failed: nothing is written
    /// blind). Ids the read refuses are isolated by bisecting the read; their changes are
    /// rejected and the others go on.
    pub(super) async fn drop_stale(
        &self,
        deadline: &Deadline,
        items: Vec<(usize, String, PageItem)>,
        fates: &mut [Fate],
        stats: &mut Stats,
    ) -> Option<(Vec<(usize, String, PageChange)>, HashMap<String, PageState>)> {
        // States matter for versioned changes, and for every page when RAG is on (which page
        // content the service last accepted).
        let wanted: Vec<String> = items
            .iter()
            .filter(|(_, _, i)| i.version.is_some() || self.settings.rag_enabled)
            .map(|(_, id, _)| id.clone())
            .collect();
        let (stored, refused) = read_isolated(wanted.len(), |range| {
            self.states.read(deadline, &wanted[range])
        })
        .await;
        // A read that failed for another reason than its ids: nothing is written blind.
        if let Some((_, e)) = refused.iter().find(|(_, e)| e.class() != ErrorClass::Data) {
            fates.fill(Fate::from_error(&**e));
            return None;
        }
        // The ids the read refuses, isolated: their pages' changes are rejected, the others go on.
        let refused: HashMap<&str, Fate> = refused
            .iter()
            .flat_map(|(range, e)| {
                wanted[range.clone()]
                    .iter()
                    .map(|id| (id.as_str(), Fate::from_error(&**e)))
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for (i, id, item) in items {
            if let Some(fate) = refused.get(id.as_str()) {
                fates[i] = fate.clone();
                continue;
            }
            let older = match (item.version, stored.get(&id).and_then(|s| s.version)) {
                (Some(v), Some(s)) => v.is_older_than(&s) == Some(true),
                _ => false,
            };
            if older {
                stats.stale_changes_ignored += 1;
                tracing::warn!(page_id = %id, version = %item.version.map(|v| v.to_text()).unwrap_or_default(), "change older than the version already applied to the page (a replay): ignored");
                fates[i] = Fate::Skipped;
            } else {
                out.push((i, id, item.change));
            }
        }
        Some((out, stored))
    }

    /// Chunks the page's body and marks the chunks whose stored hash differs as changed.
    pub(super) fn chunk_page(&self, page: &mut PageWork) {
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

    /// One query for the stored hashes of every page to upsert; a refusal that blames the ids
    /// (one of them the server cannot take) is bisected to the pages at fault, before anything
    /// is embedded.
    pub(super) async fn read_stored_chunks(&self, pages: &mut [PageWork], deadline: &Deadline) {
        if pages.is_empty() {
            return;
        }
        let ids: Vec<String> = pages.iter().map(|p| p.page_id.clone()).collect();
        let (mut stored, refused) = read_isolated(ids.len(), |range| {
            self.store.stored_hashes(deadline, &ids[range])
        })
        .await;
        for (range, e) in refused {
            for p in &mut pages[range] {
                p.settle(&*e);
            }
        }
        for p in pages {
            p.stored = stored.remove(&p.page_id).unwrap_or_default();
        }
    }
}

/// Reads `n` ids (`read` of a range of them), bisecting a refusal that blames the ids until the
/// ids at fault stand alone: what the ranges read returned, merged, and the ranges that failed
/// with their error. The read of a batch's ids isolates its bad ids itself, before anything is
/// embedded (the runner never writes the batch again to isolate them).
async fn read_isolated<V, F, Fut>(n: usize, read: F) -> (HashMap<String, V>, Refused)
where
    F: FnMut(std::ops::Range<usize>) -> Fut,
    Fut: Future<Output = Result<HashMap<String, V>, StoreError>>,
{
    let mut out = HashMap::new();
    let mut refused = Vec::new();
    if n == 0 {
        return (out, refused);
    }
    for (range, result) in bisect(std::iter::once(0..n), read).await {
        match result {
            Ok(found) => out.extend(found),
            Err(e) => refused.push((range, e)),
        }
    }
    (out, refused)
}

/// Ranges of a read that failed, with their error.
type Refused = Vec<(std::ops::Range<usize>, Arc<StoreError>)>;
