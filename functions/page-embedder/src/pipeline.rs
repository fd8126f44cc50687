//! The page steps of the shared batch lifecycle ([`lambda_kit::runner`]): decode each record into
//! a page change (the runner keeps the last change per page), then, as the write step, chunk and
//! hash the new bodies, fetch the stored hashes of the batch's pages in one query, embed only what
//! changed, write vectors in bulk, remove stale chunks and deleted pages, and notify the RAG
//! service. Dead letters, the partial batch response, the summary log and the metrics line are
//! the runner's.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use event_decoding::{Change, KafkaRecord, SourceVersion, json_kind};
use lambda_kit::bulk::{Tried, WriteLimits, bisect, bisect_concurrently};
use lambda_kit::fate::Fate;
use lambda_kit::metrics::MetricSet;
use lambda_kit::retry::Deadline;
use lambda_kit::runner::{BatchFunction, Decoded, Keep};
use lambda_kit::schema_registry::Values;
use lambda_kit::trace::TraceContext;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chunk::{ChunkLimits, chunk_text};
use crate::embed::{EmbedError, Embedder};
use crate::embedding::{EmbedSettings, embed_all};
use crate::hash::content_hash;
use crate::rag::{ChunkNote, RagNotifier, Refresh, RefreshStats};
use crate::state::{PageState, PageStates};
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

impl Settings {
    /// Whether a truncate of `table` (as the event names it) deletes every vector.
    fn truncates_all(&self, table: Option<&str>) -> bool {
        let (Some(wanted), Some(table)) = (self.source_table.as_deref(), table) else {
            return false;
        };
        self.truncate_deletes_all
            && (table == wanted
                || (!wanted.contains('.')
                    && table.rsplit_once('.').is_some_and(|(_, t)| t == wanted)))
    }

    fn is_unavailable(&self, body: Option<&Value>) -> bool {
        let Some(Value::String(body)) = body else {
            return false;
        };
        use base64::Engine as _;
        let b64 = || base64::engine::general_purpose::STANDARD.encode(&self.unavailable_value);
        !self.unavailable_value.is_empty()
            && (*body == self.unavailable_value
                || (body.len() < 4 * self.unavailable_value.len() && *body == b64()))
    }
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
    /// The source table was truncated and `CDC_ON_TRUNCATE=delete-all`: every vector goes.
    DeleteAll,
}

/// The grouping key of a truncate: never a page id (page ids are not empty).
const TRUNCATE_KEY: &str = "";

/// What the write step receives for a page: the change and, for a Debezium event, its source
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageItem {
    /// The change.
    pub change: PageChange,
    /// Where it sits in its source (`None` for plain rows and tombstones: last write wins).
    pub version: Option<SourceVersion>,
    /// The record's partition and offset (what a truncate supersedes).
    pub position: (i32, i64),
}

/// Counters of one batch, for logs and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Notifications of the pages written, sent once the batch is settled.
    pub pending_refreshes: Vec<Refresh>,
    /// With a RAG hook: the W3C trace context of each page's latest record, so its notification
    /// is sent in that record's trace. Taken by `after_settled`, so never in the summary line.
    pub traces: HashMap<String, TraceContext>,
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
    /// Settings.
    pub settings: Settings,
    /// `VALUE_FORMAT` and the schema registry (Debezium Avro or Protobuf envelopes).
    pub values: Values,
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
    /// The content hash the RAG service last accepted for the page.
    notified: Option<String>,
}

impl PageWork {
    fn stale_from(&self) -> Option<usize> {
        let n = self.chunks.len();
        self.stored.iter().any(|c| c.chunk_index >= n).then_some(n)
    }

    /// RAG has not accepted the page's current content (its last refresh failed, or it never
    /// had one).
    fn needs_refresh(&self) -> bool {
        self.notified.as_deref() != Some(page_hash(&self.chunks).as_str())
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

    /// Ends the page with the fate `error` implies ([`Fate::from_error`]) unless it already
    /// ended otherwise. The message does not name the page (its dead letter holds the record):
    /// refusals alike stay alike, so the runner can tell a refusal of every page, a fault of the
    /// environment, from pages at fault.
    fn settle(&mut self, error: &(impl Classify + std::fmt::Display)) {
        if matches!(self.fate, None | Some(Fate::Stored)) {
            self.fate = Some(Fate::from_error(error));
        }
    }
}

/// Longest page id, in UTF-8 bytes. A page id travels in URLs (`in.(...)` reads, deletes) and
/// keys of every store; a longer one is the record's fault (`invalid_page_id`), never a read
/// that fails the whole batch.
pub const MAX_PAGE_ID_BYTES: usize = 512;

/// Page id as text: strings as they are, integers in decimal. Empty, negative, longer than
/// [`MAX_PAGE_ID_BYTES`] or holding a control character (NUL, which PostgreSQL text cannot hold,
/// newlines, ...) is refused: the message says why without echoing the id.
fn page_id_text(v: &Value) -> Result<String, &'static str> {
    match v {
        Value::String(s) if s.len() > MAX_PAGE_ID_BYTES => {
            Err("is longer than 512 bytes (MAX_PAGE_ID_BYTES)")
        }
        Value::String(s) if s.chars().any(char::is_control) => {
            Err("holds a control character (NUL, newline, ...)")
        }
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
    fn decode_change(
        &self,
        record: &KafkaRecord,
        stats: &mut Stats,
    ) -> Result<Option<(String, PageItem)>, Fate> {
        let reject = Fate::rejected;
        let (change, version) = record
            .change_with_version_via(self.values.decoding())
            .map_err(|e| Fate::undecodable(&e))?;
        let item = |change| PageItem {
            change,
            version,
            position: (record.partition, record.offset),
        };
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
            Change::Truncate { table } if self.settings.truncates_all(table.as_deref()) => {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, table = table.as_deref(), "truncate event: every vector is deleted (CDC_ON_TRUNCATE=delete-all)");
                Ok(Some((TRUNCATE_KEY.to_owned(), item(PageChange::DeleteAll))))
            }
            Change::Truncate { table } if self.settings.truncate_deletes_all => {
                // Not the configured table (a topic fed by several tables): acting on it would
                // wipe the vectors of a table that was not emptied. Not a bad record either, so
                // not dead-lettered: a replay of it must not wipe them later.
                stats.truncates_ignored += 1;
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, table = table.as_deref(), source_table = self.settings.source_table.as_deref(), "truncate event of another table than CDC_SOURCE_TABLE (or naming none) ignored: the stored vectors are kept");
                Ok(None)
            }
            Change::Truncate { .. } => {
                stats.truncates_ignored += 1;
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, "truncate event ignored: the stored vectors are kept (never a mass delete); delete the pages' vectors by hand if the source table was emptied for good");
                Ok(None)
            }
            Change::Skip { reason } => {
                tracing::debug!(offset = record.offset, reason, "record skipped");
                Ok(None)
            }
            Change::Delete { .. } | Change::Tombstone { .. } => {
                Ok(Some((page_id(&change)?, item(PageChange::Delete))))
            }
            Change::Upsert { row, unset, .. } => {
                let id = page_id(&change)?;
                let field = &self.settings.body_field;
                if unset.iter().any(|c| c == field) || self.settings.is_unavailable(row.get(field))
                {
                    // The change did not carry the body: the page's text is unchanged, so its
                    // vectors stay as they are (embedding the placeholder would replace them).
                    stats.bodies_unavailable += 1;
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, page_id = %id, "body not sent with this change (unavailable-value placeholder or unset column): vectors kept; set REPLICA IDENTITY FULL on the source table to always receive it");
                    return Ok(None);
                }
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
                Ok(Some((id, item(PageChange::Upsert { body }))))
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
        items: Vec<(String, PageItem)>,
        stats: &mut Stats,
    ) -> Vec<Fate> {
        let mut fates: Vec<Fate> = vec![Fate::missing(); items.len()];
        let versions: Vec<Option<SourceVersion>> = items.iter().map(|(_, i)| i.version).collect();
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

        // One query for the stored hashes of every page to upsert; a refusal that blames the
        // ids (one of them the server cannot take) is bisected to the pages at fault, before
        // anything is embedded.
        if !pages.is_empty() {
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
            for p in &mut pages {
                p.stored = stored.remove(&p.page_id).unwrap_or_default();
            }
        }

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
        stats.pending_refreshes.extend(refreshes);
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

    /// Reads the stored state of the versioned pages and settles the changes older than it as
    /// skipped; returns the others as `(item, page id, change)`, or `None` when the states could
    /// not be read for another reason than their ids (then every item failed: nothing is written
    /// blind). Ids the read refuses are isolated by bisecting the read; their changes are
    /// rejected and the others go on.
    async fn drop_stale(
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
        if let Some((_, e)) = refused.iter().find(|(_, e)| !e.blames_input()) {
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
                let notify =
                    self.settings.rag_enabled && (page.is_changed() || page.needs_refresh());
                for (ci, c) in page.chunks.iter().enumerate() {
                    // Chunk 0 of a page to notify is needed for the RAG notification's `vector`.
                    if c.changed || (ci == 0 && notify) {
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
                                page.settle(&e);
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
}

/// Bytes of a vector row's JSON besides its values (names, punctuation, the chunk index), to
/// estimate request bodies against `WRITE_MAX_BYTES`.
const ROW_OVERHEAD: usize = 128;
/// Bytes per dimension of a vector in JSON or pgvector's text (`-0.012345678,`).
const VECTOR_BYTES_PER_DIM: usize = 13;

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

impl<E: Embedder, S: VectorStore, R: RagNotifier> BatchFunction for Pipeline<E, S, R> {
    /// The page id, as text.
    type Key = String;
    type Item = PageItem;
    type Stats = Stats;

    /// Within a batch the last change of a page (in partition/offset order) wins: an update
    /// followed by a delete ends deleted, a delete followed by a create ends present.
    const KEEP: Keep = Keep::Last;

    fn name(&self) -> &str {
        &self.settings.function_name
    }

    async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        self.values.prepare(records, deadline).await
    }

    fn decode(&self, record: &KafkaRecord, stats: &mut Stats) -> Decoded<String, PageItem> {
        match self.decode_change(record, stats) {
            Ok(Some((key, item))) => {
                if self.settings.rag_enabled {
                    match TraceContext::from_record(record) {
                        Some(cx) => stats.traces.insert(key.clone(), cx),
                        None => stats.traces.remove(&key),
                    };
                }
                Decoded::Item { key, item }
            }
            Ok(None) => Decoded::Settled(Fate::Skipped),
            Err(fate) => Decoded::Settled(fate),
        }
    }

    async fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(String, PageItem)>,
        stats: &mut Stats,
    ) -> Vec<Fate> {
        self.write_changes(deadline, items, stats).await
    }

    /// A change older than the one it would replace (by source version) never replaces it, so a
    /// replay inside one batch does not roll the page back either.
    fn supersedes(&self, new: &PageItem, current: &PageItem) -> bool {
        match (new.version, current.version) {
            (Some(n), Some(c)) => n.is_older_than(&c) != Some(true),
            _ => true,
        }
    }

    /// The RAG notifications, once dead letters are stored and every record's fate is decided
    /// (a slow or absent RAG service never holds the batch), and never past the deadline.
    async fn after_settled(&self, deadline: &Deadline, stats: &mut Stats) {
        let refreshes = std::mem::take(&mut stats.pending_refreshes);
        let mut traces = std::mem::take(&mut stats.traces);
        if refreshes.is_empty() {
            return;
        }
        let n = refreshes.len();
        let hashes: HashMap<String, String> = refreshes
            .iter()
            .filter_map(|r| match r {
                Refresh::Changed {
                    page_id,
                    content_hash,
                    ..
                } => Some((page_id.clone(), content_hash.clone())),
                _ => None,
            })
            .collect();
        let refreshes: Vec<(Refresh, Option<TraceContext>)> = refreshes
            .into_iter()
            .map(|r| {
                let trace = traces.remove(r.page_id());
                (r, trace)
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

    /// `EmbeddingCalls`, `ChunksEmbedded` and `ChunksUnchanged` (chunks skipped because their
    /// stored hash matched), `BodiesUnavailable`, `TruncatesIgnored`, `RagRefreshFailed`.
    fn metrics(&self, stats: &Stats, set: &mut MetricSet) {
        set.count("EmbeddingCalls", stats.embed_requests as u64)
            .count("ChunksEmbedded", stats.chunks_embedded as u64)
            .count("ChunksUnchanged", stats.chunks_unchanged as u64)
            .count("BodiesUnavailable", stats.bodies_unavailable as u64)
            .count("TruncatesIgnored", stats.truncates_ignored as u64)
            .count("TruncatesApplied", stats.truncates_applied as u64)
            .count("RagRefreshFailed", stats.rag.failed as u64)
            .count("StaleChangesIgnored", stats.stale_changes_ignored as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn delete_all_acts_only_on_the_configured_source_table() {
        let settings = |on: bool, table: Option<&str>| Settings {
            page_id_field: "page_id".into(),
            body_field: "body".into(),
            doc_prefix: String::new(),
            limits: ChunkLimits::new(100, 10),
            embed: EmbedSettings {
                batch_size: 1,
                concurrency: 1,
                retry: lambda_kit::retry::RetryPolicy::default(),
            },
            writes: WriteLimits::default(),
            rag_enabled: false,
            function_name: "page-embedder".into(),
            truncate_deletes_all: on,
            source_table: table.map(Into::into),
            unavailable_value: String::new(),
        };
        let s = settings(true, Some("public.pages"));
        assert!(s.truncates_all(Some("public.pages")));
        assert!(!s.truncates_all(Some("public.drafts")));
        assert!(!s.truncates_all(Some("archive.pages")));
        assert!(!s.truncates_all(None), "an event naming no table");
        let any_schema = settings(true, Some("pages"));
        assert!(any_schema.truncates_all(Some("archive.pages")));
        assert!(any_schema.truncates_all(Some("pages")));
        assert!(!any_schema.truncates_all(Some("public.pages_old")));
        assert!(!settings(false, Some("pages")).truncates_all(Some("pages")));
    }

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
        // The poison ids: a NUL, and 10,000 characters.
        assert!(
            page_id_text(&json!("p\u{0}1"))
                .unwrap_err()
                .contains("control")
        );
        assert!(page_id_text(&json!("tab\there")).is_err());
        assert!(
            page_id_text(&json!("x".repeat(10_000)))
                .unwrap_err()
                .contains("512")
        );
        let longest = "é".repeat(MAX_PAGE_ID_BYTES / 2);
        assert_eq!(page_id_text(&json!(longest.clone())), Ok(longest.clone()));
        assert!(page_id_text(&json!(format!("{longest}a"))).is_err());
        assert_eq!(
            page_id_text(&json!("wiki/Ünïcode page")),
            Ok("wiki/Ünïcode page".into())
        );
    }
}
