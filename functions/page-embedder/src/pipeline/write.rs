//! Write: the write step of the batch. A truncate (`CDC_ON_TRUNCATE=delete-all`) first; then the
//! plan, the embeddings, vector upserts of whole pages within the write limits (a refused page is
//! isolated by bisection), trims of pages that shrank, page deletes, and the source versions of
//! what is now stored. One fate per item, in order.

use event_decoding::SourceVersion;
use lambda_kit::bulk::{Tried, bisect_concurrently};
use lambda_kit::fate::Fate;
use lambda_kit::retry::Deadline;

use super::notify::Notifications;
use super::plan::PageWork;
use super::{PageChange, PageItem, Pipeline, Stats};
use crate::embed::Embedder;
use crate::rag::{RagNotifier, Refresh};
use crate::store::{StoreError, VectorRow, VectorStore};

impl<E: Embedder, S: VectorStore, R: RagNotifier> Pipeline<E, S, R> {
    /// The write step: embeds and stores the batch's last change of each page; returns one fate
    /// per item, in order, and leaves the RAG notifications of what it wrote in `notifications`.
    pub(crate) async fn write_changes(
        &self,
        deadline: &Deadline,
        items: Vec<(String, PageItem)>,
        stats: &mut Stats,
        notifications: &mut Notifications,
    ) -> Vec<Fate> {
        let mut fates: Vec<Fate> = vec![Fate::missing(); items.len()];
        let versions: Vec<Option<SourceVersion>> = items.iter().map(|(_, i)| i.version).collect();
        let traces = Notifications::traces_of(&items);
        let items = match self.truncate(deadline, items, &mut fates, stats).await {
            Some(items) => items,
            None => return fates,
        };
        let (items, mut stored) = match self.drop_stale(deadline, items, &mut fates, stats).await {
            Some(found) => found,
            None => return fates,
        };
        let mut deletes: Vec<(usize, String)> = Vec::new();
        let mut pages: Vec<PageWork> = Vec::new();
        for (item, page_id, change) in items {
            match change {
                PageChange::DeleteAll => unreachable!("applied by truncate()"),
                PageChange::Delete => deletes.push((item, page_id)),
                PageChange::Upsert { body } => pages.push(PageWork {
                    item,
                    notified: stored.remove(&page_id).and_then(|s| s.notified_hash),
                    page_id,
                    body,
                    max_chars: self.settings.limits.max_chars,
                    chunks: Vec::new(),
                    stored: Vec::new(),
                    fate: None,
                }),
            }
        }

        self.read_stored_chunks(&mut pages, deadline).await;

        self.embed_pages(&mut pages, deadline, stats).await;
        let mut refreshes = self.write_pages(&mut pages, deadline, stats).await;

        // Deletes: bulk requests within the write limits, side by side; an id the store refuses
        // is isolated, the others go through.
        if !deletes.is_empty() {
            let ids: Vec<String> = deletes.iter().map(|(_, id)| id.clone()).collect();
            let writes = &self.settings.writes;
            let tried = bisect_concurrently(
                writes.plan(&ids.iter().map(|id| id.len() + 3).collect::<Vec<_>>()),
                writes.concurrency,
                |i| &ids[i],
                |range| self.store.delete_pages(deadline, &ids[range]),
            )
            .await;
            for (range, result) in tried {
                for (item, id) in &deletes[range] {
                    fates[*item] = match &result {
                        Ok(()) => {
                            stats.pages_deleted += 1;
                            refreshes.push(Refresh::deleted(id.clone()));
                            Fate::Stored
                        }
                        Err(e) => Fate::from_error(&**e),
                    };
                }
            }
        }

        let mut ids: Vec<(usize, String, bool)> = deletes
            .into_iter()
            .map(|(item, id)| (item, id, true))
            .collect();
        for page in pages {
            fates[page.item] = page.fate.unwrap_or_else(Fate::missing);
            ids.push((page.item, page.page_id, false));
        }
        self.record_versions(deadline, &ids, &versions, &mut fates)
            .await;
        notifications.extend(refreshes, traces);
        fates
    }

    /// Applies a truncate (`CDC_ON_TRUNCATE=delete-all`) before the page changes: every vector
    /// is deleted, the changes of its partition that came before it are superseded (settled as
    /// stored: they are gone with the table), the others go on. `None` when the delete failed:
    /// then every item failed, to be redelivered.
    async fn truncate(
        &self,
        deadline: &Deadline,
        items: Vec<(String, PageItem)>,
        fates: &mut [Fate],
        stats: &mut Stats,
    ) -> Option<Vec<(usize, String, PageItem)>> {
        let at = items
            .iter()
            .position(|(_, item)| item.change == PageChange::DeleteAll)
            .map(|i| (i, items[i].1.position));
        let indexed = items
            .into_iter()
            .enumerate()
            .map(|(i, (id, item))| (i, id, item));
        let Some(at) = at else {
            return Some(indexed.collect());
        };
        if let Err(e) = self.store.delete_all(deadline).await {
            fates.fill(Fate::failed(&e));
            return None;
        }
        stats.truncates_applied += 1;
        let (truncate, (partition, offset)) = at;
        fates[truncate] = Fate::Stored;
        let mut rest = Vec::new();
        for (i, id, item) in indexed.filter(|(i, _, _)| *i != truncate) {
            if item.position.0 == partition && item.position.1 < offset {
                fates[i] = Fate::Stored;
            } else {
                rest.push((i, id, item));
            }
        }
        Some(rest)
    }

    /// Records the version of every versioned page whose change is now stored (a delete leaves
    /// its state as a tombstone); if that fails, those records are redelivered.
    async fn record_versions(
        &self,
        deadline: &Deadline,
        written: &[(usize, String, bool)],
        versions: &[Option<SourceVersion>],
        fates: &mut [Fate],
    ) {
        let done: Vec<(usize, (String, SourceVersion, bool))> = written
            .iter()
            .filter(|(item, _, _)| fates[*item].is_stored())
            .filter_map(|(item, id, deleted)| {
                versions[*item].map(|version| (*item, (id.clone(), version, *deleted)))
            })
            .collect();
        if done.is_empty() {
            return;
        }
        let states: Vec<(String, SourceVersion, bool)> =
            done.iter().map(|(_, s)| s.clone()).collect();
        if let Err(e) = self.states.record_versions(deadline, &states).await {
            for (item, _) in &done {
                fates[*item] = Fate::failed(&e);
            }
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
        // Bulk upserts of whole pages within the write limits, side by side; when the store
        // refuses the rows, the refused pages are isolated by bisection and the others are
        // written. A request's rows are built when it starts, so at most `WRITE_CONCURRENCY`
        // bodies are in memory.
        let writes = &self.settings.writes;
        let dims = self.embedder.dimensions();
        let plan = writes.plan_groups(writing.iter().map(|&i| {
            let page = &pages[i];
            let changed = page.chunks.iter().filter(|c| c.changed);
            let rows = changed.clone().count();
            let bytes = changed
                .map(|c| {
                    ROW_OVERHEAD
                        + page.page_id.len()
                        + c.hash.len()
                        + model.len()
                        + c.text.len()
                        + dims * VECTOR_BYTES_PER_DIM
                })
                .sum();
            (rows, bytes)
        }));
        let (pages_ref, writing_ref) = (&*pages, &writing);
        let tried = bisect_concurrently(
            plan,
            writes.concurrency,
            |i| pages_ref[writing_ref[i]].page_id.as_str(),
            |range| {
                let rows: Vec<VectorRow> = writing_ref[range]
                    .iter()
                    .flat_map(|&i| rows_of(&pages_ref[i]))
                    .collect();
                async move { self.store.upsert(deadline, &rows).await }
            },
        )
        .await;
        settle_refused(&tried, pages, |w| writing[w]);
        // Pages that shrank lose their stale chunks, side by side, each page once.
        let trims: Vec<(usize, usize)> = (0..pages.len())
            .filter(|&i| pages[i].is_done())
            .filter_map(|i| pages[i].stale_from().map(|from| (i, from)))
            .collect();
        let pages_ref = &*pages;
        let tried = bisect_concurrently(
            (0..trims.len()).map(|t| t..t + 1),
            writes.concurrency,
            |t| pages_ref[trims[t].0].page_id.as_str(),
            |range| {
                let (i, from) = trims[range.start];
                self.store
                    .delete_chunks_from(deadline, &pages_ref[i].page_id, from)
            },
        )
        .await;
        settle_refused(&tried, pages, |t| trims[t].0);
        self.refreshes(pages, stats)
    }
}

/// Bytes of a vector row's JSON besides its values (names, punctuation, the chunk index), to
/// estimate request bodies against `WRITE_MAX_BYTES`.
const ROW_OVERHEAD: usize = 128;
/// Bytes per dimension of a vector in JSON or pgvector's text (`-0.012345678,`).
const VECTOR_BYTES_PER_DIM: usize = 13;

/// Settles the page of every input of a range that failed (`page` of an input's index).
fn settle_refused(
    tried: &Tried<(), StoreError>,
    pages: &mut [PageWork],
    page: impl Fn(usize) -> usize,
) {
    for (range, result) in tried {
        if let Err(e) = result {
            for i in range.clone() {
                pages[page(i)].settle(&**e);
            }
        }
    }
}
