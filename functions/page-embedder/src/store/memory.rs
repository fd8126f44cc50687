//! An in-memory [`VectorStore`] for unit tests and benchmarks, with call counters and injectable
//! failures.

use std::collections::BTreeMap;
use std::sync::Mutex;

use lambda_kit::error::ErrorClass;
use lambda_kit::retry::Deadline;

use super::{StoreError, StoredChunk, StoredHashes, VectorRow, VectorStore};

/// Rows in a map keyed by `(page_id, chunk_index)`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<BTreeMap<(String, usize), VectorRow>>,
    calls: Mutex<Vec<&'static str>>,
    fail_next: Mutex<Option<ErrorClass>>,
    refused: Mutex<Vec<String>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows of `page_id`, by chunk index.
    pub fn page(&self, page_id: &str) -> Vec<VectorRow> {
        self.rows
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.page_id == page_id)
            .cloned()
            .collect()
    }

    /// Names of the calls made so far.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    /// Makes the next call fail with `class`.
    pub fn fail_next(&self, class: ErrorClass) {
        *self.fail_next.lock().unwrap() = Some(class);
    }

    /// Makes every `delete_pages` call that includes `page_id` fail as the store refusing that
    /// id ([`ErrorClass::Data`]), as a database refuses one bad row of a bulk statement.
    pub fn refuse_delete_of(&self, page_id: &str) {
        self.refused.lock().unwrap().push(page_id.to_owned());
    }

    fn enter(&self, name: &'static str) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push(name);
        match self.fail_next.lock().unwrap().take() {
            Some(class) => Err(StoreError {
                class,
                code: "injected",
                message: "injected failure".into(),
            }),
            None => Ok(()),
        }
    }
}

impl VectorStore for MemoryStore {
    async fn stored_hashes(
        &self,
        _: &Deadline,
        page_ids: &[String],
    ) -> Result<StoredHashes, StoreError> {
        self.enter("stored_hashes")?;
        let rows = self.rows.lock().unwrap();
        let mut out = StoredHashes::new();
        for ((page, index), row) in rows.iter() {
            if page_ids.contains(page) {
                out.entry(page.clone()).or_default().push(StoredChunk {
                    chunk_index: *index,
                    content_hash: row.content_hash.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn upsert(&self, _: &Deadline, rows: &[VectorRow]) -> Result<(), StoreError> {
        self.enter("upsert")?;
        let mut map = self.rows.lock().unwrap();
        for row in rows {
            map.insert((row.page_id.clone(), row.chunk_index), row.clone());
        }
        Ok(())
    }

    async fn delete_pages(&self, _: &Deadline, page_ids: &[String]) -> Result<(), StoreError> {
        self.enter("delete_pages")?;
        if page_ids
            .iter()
            .any(|id| self.refused.lock().unwrap().contains(id))
        {
            return Err(StoreError {
                class: ErrorClass::Data,
                code: "refused",
                message: "the store refuses this page id".into(),
            });
        }
        self.rows
            .lock()
            .unwrap()
            .retain(|(page, _), _| !page_ids.contains(page));
        Ok(())
    }

    async fn delete_all(&self, _: &Deadline) -> Result<(), StoreError> {
        self.enter("delete_all")?;
        self.rows.lock().unwrap().clear();
        Ok(())
    }

    fn supports_delete_all(&self) -> bool {
        true
    }

    async fn delete_chunks_from(
        &self,
        _: &Deadline,
        page_id: &str,
        from: usize,
    ) -> Result<(), StoreError> {
        self.enter("delete_chunks_from")?;
        self.rows
            .lock()
            .unwrap()
            .retain(|(page, index), _| !(page == page_id && *index >= from));
        Ok(())
    }
}
