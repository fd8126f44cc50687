//! The per-process cache of writer schemas both registry clients share (the Confluent-compatible
//! [`SchemaRegistry`](crate::schema_registry::SchemaRegistry) and the Glue
//! [`GlueRegistry`](crate::schema_registry::GlueRegistry)): schemas by id for the life of the
//! execution environment, the failures of the last fetch of each id (bounded), and the
//! concurrent prefetch of the ids a batch needs.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use event_decoding::{SchemaUnavailable, WriterSchema};

use crate::error::Classify;

/// Failures a [`SchemaCache`] remembers at most: a batch naming more distinct ids that all fail
/// (a corrupted or hostile batch) leaves the rest unremembered, so their records fail as
/// `schema_fetch_failed` (redelivered) instead of growing memory. Above the ESM's largest batch
/// (10,000 records), so a real batch never reaches it.
pub(crate) const MAX_REMEMBERED_FAILURES: usize = 10_000;

/// Schema fetches of one batch in flight at once: thousands of distinct ids cost thousands of
/// round trips divided by this, not one after another.
pub(crate) const PREFETCH_CONCURRENCY: usize = 8;

/// Failed ids logged one by one per batch; the others are counted in one line.
const LOGGED_FAILURES: usize = 16;

/// `Debug` of a registry client with a [`SchemaCache`] in its `cache` field: its name, where it
/// reads (`$place`, a field), and how many schemas it holds; nothing else (never a credential).
macro_rules! debug_registry_client {
    ($client:ident, $place:ident) => {
        impl std::fmt::Debug for $client {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($client))
                    .field(stringify!($place), &self.$place)
                    .field("cached", &self.cache.len())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_registry_client;

/// The writer schemas a registry client resolved, by id, for the life of the execution
/// environment (an id always names the same schema), and the failure of each id whose last
/// fetch failed, remembered only until the next [`prefetch`](Self::prefetch) asks again and at
/// most [`MAX_REMEMBERED_FAILURES`] (a batch that needs the room first forgets the failures of
/// ids it does not name).
pub(crate) struct SchemaCache<E> {
    schemas: RwLock<HashMap<String, Arc<WriterSchema>>>,
    failures: RwLock<HashMap<String, E>>,
}

impl<E> Default for SchemaCache<E> {
    fn default() -> Self {
        Self {
            schemas: RwLock::default(),
            failures: RwLock::default(),
        }
    }
}

impl<E> SchemaCache<E>
where
    E: Classify + fmt::Display,
    for<'e> &'e E: Into<SchemaUnavailable>,
{
    /// Schemas cached.
    pub(crate) fn len(&self) -> usize {
        self.schemas.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Failures remembered.
    #[cfg(test)]
    pub(crate) fn failures(&self) -> usize {
        self.failures.read().map(|f| f.len()).unwrap_or(0)
    }

    /// Fetches every id in `ids` that is not cached, [`PREFETCH_CONCURRENCY`] at a time, and
    /// caches the schema or remembers the failure.
    pub(crate) async fn prefetch<F, Fut>(&self, ids: &BTreeSet<String>, fetch: F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Arc<WriterSchema>, E>>,
    {
        use futures_util::stream::{self, StreamExt as _};

        {
            // Room for this batch's failures: those of ids it does not name go first.
            let mut failures = self.failures.write().expect("schema failures");
            if failures.len() + ids.len() > MAX_REMEMBERED_FAILURES {
                failures.retain(|id, _| ids.contains(id));
            }
        }
        let missing: Vec<String> = {
            let schemas = self.schemas.read().expect("schema cache");
            ids.iter()
                .filter(|id| !schemas.contains_key(*id))
                .cloned()
                .collect()
        };
        // Owned ids: a closure over borrowed ones would make the future not `Send` for every
        // lifetime (the handlers' futures must be).
        let mut answers = stream::iter(missing)
            .map(|id| {
                let answer = fetch(id.clone());
                async move { (id, answer.await) }
            })
            .buffer_unordered(PREFETCH_CONCURRENCY);
        let (mut failed, mut forgotten) = (0usize, 0usize);
        while let Some((id, answer)) = answers.next().await {
            match answer {
                Ok(schema) => {
                    self.failures.write().expect("schema failures").remove(&id);
                    self.schemas
                        .write()
                        .expect("schema cache")
                        .insert(id, schema);
                }
                Err(e) => {
                    failed += 1;
                    if failed <= LOGGED_FAILURES {
                        tracing::warn!(schema_id = %id, error_code = e.error_code(), error = %e, "writer schema unavailable");
                    }
                    let mut failures = self.failures.write().expect("schema failures");
                    if failures.len() < MAX_REMEMBERED_FAILURES || failures.contains_key(&id) {
                        failures.insert(id, e);
                    } else {
                        forgotten += 1;
                    }
                }
            }
        }
        if failed > LOGGED_FAILURES {
            tracing::warn!(
                failed,
                forgotten,
                "writer schemas unavailable for {failed} ids of the batch (the first {LOGGED_FAILURES} logged above)"
            );
        }
    }

    /// The schema of `id`, or why it is not at hand.
    pub(crate) fn lookup(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        if let Some(s) = self.schemas.read().expect("schema cache").get(id) {
            return Ok(Arc::clone(s));
        }
        match self.failures.read().expect("schema failures").get(id) {
            Some(e) => Err(e.into()),
            None => Err(SchemaUnavailable::FetchFailed(format!(
                "schema {id} was not fetched before decoding"
            ))),
        }
    }
}
