//! What was last applied to each page: the source version of the change and whether it was a
//! delete. The write step reads it to ignore a change older than what is stored (a replay never
//! rolls a page back, a delete is never undone by an older create) and writes it after a page's
//! vectors are written or deleted. Kept in a PostgREST table whatever the vector store, since the
//! function always has PostgREST (its dead letters).

use std::collections::HashMap;
#[cfg(any(test, feature = "testing"))]
use std::sync::Mutex;

use bytes::Bytes;
use event_decoding::SourceVersion;
use lambda_kit::postgrest::{Duplicates, Filter, PostgrestClient, Upsert};
use lambda_kit::retry::Deadline;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Ids per read: one row per page at most, so a read stays below any row limit of the API
/// (Supabase answers 1000 rows per request by default). Long ids split reads sooner
/// ([`Filter::in_lists`]: the URL stays under 8 KiB).
const IDS_PER_READ: usize = 200;

/// The last change applied to a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageState {
    /// Its source version (`None` for pages fed by plain rows).
    pub version: Option<SourceVersion>,
    /// Whether it was a delete (the page is gone; an older create must not bring it back).
    pub deleted: bool,
    /// The page content hash the RAG service last accepted.
    pub notified_hash: Option<String>,
}

/// Where page states live.
#[derive(Debug)]
#[non_exhaustive]
pub enum PageStates {
    /// A PostgREST table (`PAGE_STATE_TABLE`, default `page_state`).
    Postgrest {
        /// The client (boxed: it is much larger than the in-memory variant).
        client: Box<PostgrestClient>,
        /// The states table (`PAGE_STATE_TABLE`).
        table: String,
    },
    /// In memory (tests and benchmarks; `testing` feature).
    #[cfg(any(test, feature = "testing"))]
    Memory(Mutex<HashMap<String, PageState>>),
}

#[derive(Deserialize)]
struct Row {
    page_id: String,
    version: Option<String>,
    deleted: bool,
    notified_hash: Option<String>,
}

#[derive(Serialize)]
struct VersionRow<'a> {
    page_id: &'a str,
    version: String,
    deleted: bool,
}

#[derive(Serialize)]
struct NotifiedRow<'a> {
    page_id: &'a str,
    notified_hash: &'a str,
}

impl PageStates {
    /// States in `table` through `client`.
    pub fn postgrest(client: PostgrestClient, table: impl Into<String>) -> Self {
        Self::Postgrest {
            client: Box::new(client),
            table: table.into(),
        }
    }

    /// Empty, in memory (`testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub fn memory() -> Self {
        Self::Memory(Mutex::default())
    }

    /// The states of `page_ids` that have one.
    pub async fn read(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<HashMap<String, PageState>, StoreError> {
        let mut out = HashMap::new();
        match self {
            #[cfg(any(test, feature = "testing"))]
            Self::Memory(map) => {
                let map = map.lock().unwrap_or_else(|p| p.into_inner());
                for id in page_ids {
                    if let Some(s) = map.get(id) {
                        out.insert(id.clone(), s.clone());
                    }
                }
            }
            Self::Postgrest { client, table } => {
                for ids in Filter::in_lists("page_id", page_ids, IDS_PER_READ) {
                    let rows: Vec<Row> = client
                        .select(
                            deadline,
                            table,
                            "page_id,version,deleted,notified_hash",
                            &[ids],
                        )
                        .await
                        .map_err(|e| StoreError::from_error(&e))?;
                    for r in rows {
                        // A version this build cannot read is treated as absent: last write
                        // wins for that page, as for plain rows.
                        let version = r.version.as_deref().and_then(SourceVersion::parse);
                        out.insert(
                            r.page_id,
                            PageState {
                                version,
                                deleted: r.deleted,
                                notified_hash: r.notified_hash,
                            },
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// Records the version of each page's last applied change (`deleted` for a delete).
    pub async fn record_versions(
        &self,
        deadline: &Deadline,
        versions: &[(String, SourceVersion, bool)],
    ) -> Result<(), StoreError> {
        if versions.is_empty() {
            return Ok(());
        }
        match self {
            #[cfg(any(test, feature = "testing"))]
            Self::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                for (id, version, deleted) in versions {
                    let state = map.entry(id.clone()).or_default();
                    state.version = Some(*version);
                    state.deleted = *deleted;
                }
                Ok(())
            }
            Self::Postgrest { client, table } => {
                let rows: Vec<VersionRow<'_>> = versions
                    .iter()
                    .map(|(id, version, deleted)| VersionRow {
                        page_id: id,
                        version: version.to_text(),
                        deleted: *deleted,
                    })
                    .collect();
                upsert(client, table, deadline, &rows).await
            }
        }
    }

    /// Records the content hash the RAG service accepted for each page.
    pub async fn record_notified(
        &self,
        deadline: &Deadline,
        notified: &[(String, String)],
    ) -> Result<(), StoreError> {
        if notified.is_empty() {
            return Ok(());
        }
        match self {
            #[cfg(any(test, feature = "testing"))]
            Self::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                for (id, hash) in notified {
                    map.entry(id.clone()).or_default().notified_hash = Some(hash.clone());
                }
                Ok(())
            }
            Self::Postgrest { client, table } => {
                let rows: Vec<NotifiedRow<'_>> = notified
                    .iter()
                    .map(|(id, hash)| NotifiedRow {
                        page_id: id,
                        notified_hash: hash,
                    })
                    .collect();
                upsert(client, table, deadline, &rows).await
            }
        }
    }
}

/// Merges `rows` into the state table on `page_id` (the columns not sent keep their value).
async fn upsert<T: Serialize>(
    client: &PostgrestClient,
    table: &str,
    deadline: &Deadline,
    rows: &[T],
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(rows).expect("page states serialize");
    client
        .upsert(
            deadline,
            table,
            Bytes::from(body),
            &Upsert::on_conflict("page_id", Duplicates::Merge),
        )
        .await
        .map_err(|e| StoreError::from_error(&e))
}
