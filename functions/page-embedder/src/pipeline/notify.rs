//! Notify: the RAG refresh of each page written (its chunk hashes and chunk 0's vector) or
//! deleted, built by the write step ([`Notifications`]) and sent once the batch is settled, in
//! the trace of the page's record. What the service accepted is remembered in the page states, so
//! a page it did not accept is notified again the next time the function sees it.

use std::collections::HashMap;

use lambda_kit::retry::Deadline;
use lambda_kit::trace::TraceContext;

use super::plan::{PageWork, page_hash};
use super::{PageItem, Pipeline, Stats};
use crate::embed::Embedder;
use crate::rag::{ChunkNote, RagNotifier, Refresh, RefreshStats};
use crate::store::VectorStore;

/// What the write leaves for the runner's `after_settled`: the notifications of the pages it
/// wrote or deleted, each with the trace context of its page's record.
#[derive(Debug, Default)]
pub struct Notifications(Vec<(Refresh, Option<TraceContext>)>);

impl Notifications {
    /// The trace context of each page of the write's `items`, to send its notification in.
    pub(super) fn traces_of(items: &[(String, PageItem)]) -> HashMap<String, TraceContext> {
        items
            .iter()
            .filter_map(|(id, item)| Some((id.clone(), item.trace.clone()?)))
            .collect()
    }

    /// Adds `refreshes`, each with its page's trace context from `traces`.
    pub(super) fn extend(
        &mut self,
        refreshes: Vec<Refresh>,
        mut traces: HashMap<String, TraceContext>,
    ) {
        self.0.extend(refreshes.into_iter().map(|r| {
            let trace = traces.remove(r.page_id());
            (r, trace)
        }));
    }
}

impl<E: Embedder, S: VectorStore, R: RagNotifier> Pipeline<E, S, R> {
    /// The notifications of the pages written (changed, or not yet accepted by the RAG
    /// service) and of the pages left without chunks; counts the pages changed.
    pub(super) fn refreshes(&self, pages: &mut [PageWork], stats: &mut Stats) -> Vec<Refresh> {
        let model = self.embedder.model();
        let mut refreshes = Vec::new();
        for page in pages.iter_mut() {
            if !page.is_done() {
                continue;
            }
            let changed = page.is_changed();
            if changed {
                stats.pages_changed += 1;
            } else if !(self.settings.rag_enabled && page.needs_refresh()) {
                continue;
            }
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

    /// Sends the notifications the write step left (never past the deadline) and records which
    /// the service accepted.
    pub(crate) async fn notify_refreshes(
        &self,
        deadline: &Deadline,
        notifications: Notifications,
        stats: &mut Stats,
    ) {
        let refreshes = notifications.0;
        if refreshes.is_empty() {
            return;
        }
        let n = refreshes.len();
        let hashes: HashMap<String, String> = refreshes
            .iter()
            .filter_map(|(r, _)| match r {
                Refresh::Changed {
                    page_id,
                    content_hash,
                    ..
                } => Some((page_id.clone(), content_hash.clone())),
                _ => None,
            })
            .collect();
        let notify = self.rag.notify_traced(refreshes);
        stats.rag = match tokio::time::timeout(deadline.remaining(), notify).await {
            Ok(sent) => sent,
            Err(_) => {
                tracing::warn!(
                    error_code = "rag_deadline",
                    notifications = n,
                    "RAG notifications cut at the invocation deadline"
                );
                RefreshStats {
                    sent: 0,
                    failed: n,
                    delivered: Vec::new(),
                }
            }
        };
        // Remember what the service accepted; a page it did not is notified again the next time
        // the function sees it. Failing to remember only means one more notification.
        let notified: Vec<(String, String)> = stats
            .rag
            .delivered
            .iter()
            .filter_map(|id| hashes.get(id).map(|h| (id.clone(), h.clone())))
            .collect();
        if let Err(e) = self.states.record_notified(deadline, &notified).await {
            tracing::warn!(error_code = e.code, error = %e, "delivered RAG refreshes not recorded; they will be sent again");
        }
        // Counts stay for the summary line and metrics; the page list would only bloat them.
        stats.rag.delivered.clear();
    }
}
