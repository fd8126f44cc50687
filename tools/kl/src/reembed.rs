//! `kl pages reembed`: after a model, dimension or prefix change, the stored vectors are
//! refreshed without waiting for each page to change. A chunk is stale when its stored
//! `content_hash` differs from page-embedder's hash of (current model, dimension, prefix + its
//! stored `chunk_text`): exactly the test the function applies on the page's next change, so the
//! function and this command agree on what is current. Stale chunks are embedded with the
//! function's own embedder (batches, concurrency, retries and `Retry-After` from its `EMBED_*`
//! settings) and written with its own store, in batches of pages; a chunk whose page changed
//! meanwhile is not overwritten. Nothing is remembered between runs: a run that is stopped (or
//! killed) resumes by running again, the chunks already written being current.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use indicatif::ProgressBar;
use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::postgrest::{Filter, PostgrestClient, PostgrestError};
use lambda_kit::retry::Deadline;
use page_embedder::embed::{EmbedSettings, Embedder, embed_all};
use page_embedder::hash::content_hash;
use page_embedder::store::{StoreError, VectorRow, VectorStore};
use serde::Deserialize;

/// Budget of one batch of pages (reads, embedding, write).
const BATCH_BUDGET: Duration = Duration::from_secs(600);

/// How a re-embed runs.
#[derive(Debug, Clone)]
pub struct ReembedSettings {
    /// Pages per batch (one read of their chunks, one embedding pass, one write).
    pub pages_per_batch: usize,
    /// Count and estimate only: nothing is embedded or written.
    pub dry_run: bool,
    /// Wait between batches (on top of the provider's own `Retry-After`).
    pub pause: Duration,
    /// Only pages whose id starts with this.
    pub page_prefix: Option<String>,
}

/// What the embedding side needs to know.
#[derive(Debug, Clone)]
pub struct EmbedPlan {
    /// Prefix put before every chunk (`EMBED_DOC_PREFIX`).
    pub prefix: String,
    /// Longest chunk the current limits allow (`EMBED_MAX_CHARS` minus the prefix).
    pub max_chars: usize,
    /// Batching, concurrency, retries (`EMBED_BATCH_SIZE`, `EMBED_CONCURRENCY`, `EMBED_RETRY_*`).
    pub settings: EmbedSettings,
}

/// Counts of a run (or, in a dry run, of what a run would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReembedSummary {
    /// Pages in the table (within the prefix).
    pub pages: usize,
    /// Chunks in the table.
    pub chunks: usize,
    /// Pages with at least one stale chunk.
    pub stale_pages: usize,
    /// Stale chunks.
    pub stale_chunks: usize,
    /// Characters sent to the model for the stale chunks (prefix included).
    pub stale_chars: u64,
    /// Embedding calls the stale chunks take, batch by batch (`EMBED_BATCH_SIZE` texts per
    /// call), retries excluded.
    pub planned_calls: usize,
    /// Stale chunks without a stored `chunk_text`, or longer than the current limit: only the
    /// page's next change (or touching it in the source) refreshes them.
    pub needs_source: usize,
    /// Chunks written.
    pub chunks_written: usize,
    /// Pages written.
    pub pages_written: usize,
    /// Pages skipped because they changed while being re-embedded (the function wrote them).
    pub changed_meanwhile: usize,
    /// Pages the provider refused (`page id`, error code); left as they are.
    pub refused: Vec<(String, String)>,
    /// Provider calls made (retries included).
    pub embed_requests: usize,
}

/// Faults that stop a run (environment: provider down after retries, key refused, store
/// refusing writes); what was written stays written, so running again resumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReembedError {
    /// The vectors table could not be read.
    #[error("reading the vectors: {0}")]
    Read(#[from] PostgrestError),
    /// The provider failed for a reason that is not the text.
    #[error("embedding ({code}): {message}")]
    Embed {
        /// Error code.
        code: &'static str,
        /// Description (no secret).
        message: String,
    },
    /// The store refused the write.
    #[error("writing the vectors ({}): {}", .0.code, .0.message)]
    Store(StoreError),
    /// `--page-prefix` holds a character a PostgREST `like` filter cannot take literally.
    #[error("--page-prefix: {0}")]
    Prefix(String),
}

/// Checks a `--page-prefix`: PostgREST's `like` reads every `*` as SQL's `%` (any text) and has
/// no escape for it, so a `*` in the prefix would select pages that do not start with it; it is
/// refused. LIKE's own wildcards (`%`, `_`) and `\` are escaped and match themselves.
///
/// ```
/// assert!(kl::reembed::check_page_prefix("wiki_100%").is_ok());
/// assert!(kl::reembed::check_page_prefix("wiki*").unwrap_err().contains('*'));
/// ```
pub fn check_page_prefix(prefix: &str) -> Result<String, String> {
    if prefix.contains('*') {
        return Err(format!(
            "{prefix:?} holds `*`, which PostgREST's like filter reads as a wildcard (any text) and cannot escape; give the prefix up to the `*`"
        ));
    }
    Ok(prefix.to_owned())
}

#[derive(Debug, Deserialize)]
struct IndexRow {
    page_id: String,
}

#[derive(Debug, Deserialize)]
struct ChunkRow {
    page_id: String,
    chunk_index: usize,
    content_hash: String,
    chunk_text: Option<String>,
}

/// A stale chunk on its way.
#[derive(Debug)]
struct Work {
    page_id: String,
    chunk_index: usize,
    old_hash: String,
    text: String,
    embedded: String,
    hash: String,
}

/// A batch's vectors, in `Work` order (`None` where the text was refused), and the pages
/// refused with their error code.
type Embedded = (Vec<Option<Vec<f32>>>, HashMap<String, &'static str>);

/// Re-embeds the stale chunks of a Supabase vectors table.
#[derive(Debug)]
pub struct Reembedder<'a, E, S> {
    /// Reads the table.
    pub client: &'a PostgrestClient,
    /// The vectors table (`VECTORS_TABLE`).
    pub table: &'a str,
    /// The current model.
    pub embedder: &'a E,
    /// Where vectors are written.
    pub store: &'a S,
    /// Prefix, limit, batching.
    pub plan: &'a EmbedPlan,
}

impl<E: Embedder, S: VectorStore> Reembedder<'_, E, S> {
    /// Walks the table's pages in id order and refreshes their stale chunks; `progress` counts
    /// pages (its length is set once they are counted).
    pub async fn run(
        &self,
        settings: &ReembedSettings,
        progress: &ProgressBar,
    ) -> Result<ReembedSummary, ReembedError> {
        let mut summary = ReembedSummary::default();
        let pages = self.page_ids(settings).await?;
        summary.pages = pages.len();
        progress.set_length(pages.len() as u64);
        for (n, batch) in pages.chunks(settings.pages_per_batch.max(1)).enumerate() {
            if n > 0 && !settings.pause.is_zero() && !settings.dry_run {
                tokio::time::sleep(settings.pause).await;
            }
            self.batch(batch, settings.dry_run, &mut summary).await?;
            progress.inc(batch.len() as u64);
        }
        Ok(summary)
    }

    /// Distinct page ids, in order (the API's row limit respected by paged reads).
    async fn page_ids(&self, settings: &ReembedSettings) -> Result<Vec<String>, ReembedError> {
        let deadline = Deadline::after(BATCH_BUDGET);
        let filter = match &settings.page_prefix {
            // LIKE's own wildcards in the prefix match themselves only (`_` would match any
            // character: `kl_re` would take `klXre` pages too); PostgREST's `*` cannot.
            Some(p) => {
                check_page_prefix(p).map_err(ReembedError::Prefix)?;
                Filter::like("page_id", format!("{}*", like_literal(p)))
            }
            None => Filter::not_null("page_id"),
        };
        let rows: Vec<IndexRow> = self
            .client
            .select_all(
                &deadline,
                self.table,
                "page_id",
                &[filter, Filter::eq("chunk_index", 0)],
                "page_id",
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.page_id).collect())
    }

    /// Re-embeds the stale chunks of `page_ids` (or, in a dry run, counts them).
    async fn batch(
        &self,
        page_ids: &[String],
        dry_run: bool,
        summary: &mut ReembedSummary,
    ) -> Result<(), ReembedError> {
        let deadline = Deadline::after(BATCH_BUDGET);
        let rows = self.read_chunks(page_ids, &deadline).await?;
        summary.chunks += rows.len();
        let work = self.stale_work(rows, summary);
        summary.planned_calls += work.len().div_ceil(self.plan.settings.batch_size.max(1));
        if dry_run || work.is_empty() {
            return Ok(());
        }
        let (vectors, refused) = self.embed(&work, &deadline, summary).await?;
        let changed = self.changed_meanwhile(&work, &deadline).await?;
        summary.changed_meanwhile += changed.len();
        let model = self.embedder.model();
        let rows: Vec<VectorRow> = work
            .iter()
            .zip(vectors)
            .filter(|(w, _)| {
                !changed.contains(w.page_id.as_str()) && !refused.contains_key(&w.page_id)
            })
            .filter_map(|(w, v)| {
                Some(VectorRow {
                    page_id: w.page_id.clone(),
                    chunk_index: w.chunk_index,
                    embedding: v?,
                    content_hash: w.hash.clone(),
                    model: model.to_owned(),
                    chunk_text: w.text.clone(),
                })
            })
            .collect();
        if !rows.is_empty() {
            self.store
                .upsert(&deadline, &rows)
                .await
                .map_err(ReembedError::Store)?;
        }
        summary.chunks_written += rows.len();
        let mut written: Vec<&str> = rows.iter().map(|r| r.page_id.as_str()).collect();
        written.dedup();
        summary.pages_written += written.len();
        let mut refused: Vec<(String, String)> = refused
            .into_iter()
            .map(|(p, c)| (p, c.to_owned()))
            .collect();
        refused.sort();
        summary.refused.extend(refused);
        Ok(())
    }

    /// The chunks of `page_ids`, in page and chunk order.
    async fn read_chunks(
        &self,
        page_ids: &[String],
        deadline: &Deadline,
    ) -> Result<Vec<ChunkRow>, ReembedError> {
        let mut rows: Vec<ChunkRow> = Vec::new();
        // Long page ids split the read: its URL stays under 8 KiB.
        for ids in Filter::in_lists("page_id", page_ids, page_ids.len()) {
            rows.extend(
                self.client
                    .select_all::<ChunkRow>(
                        deadline,
                        self.table,
                        "page_id,chunk_index,content_hash,chunk_text",
                        &[ids],
                        "page_id,chunk_index",
                    )
                    .await?,
            );
        }
        Ok(rows)
    }

    /// The stale chunks of `rows` that can be re-embedded here; every stale chunk is counted,
    /// those that need their source (no stored text, or too long now) apart.
    fn stale_work(&self, rows: Vec<ChunkRow>, summary: &mut ReembedSummary) -> Vec<Work> {
        let model = self.embedder.model();
        let dims = self.embedder.dimensions();
        let mut work: Vec<Work> = Vec::new();
        let mut stale_pages: HashSet<String> = HashSet::new();
        for row in rows {
            let Some(text) = row.chunk_text else {
                // Without its text the chunk cannot be current by any hash: stale, not fixable here.
                summary.stale_chunks += 1;
                summary.needs_source += 1;
                stale_pages.insert(row.page_id);
                continue;
            };
            let embedded = format!("{}{text}", self.plan.prefix);
            let hash = content_hash(model, dims, &embedded);
            if hash == row.content_hash {
                continue;
            }
            summary.stale_chunks += 1;
            stale_pages.insert(row.page_id.clone());
            if text.chars().count() > self.plan.max_chars {
                summary.needs_source += 1;
                continue;
            }
            summary.stale_chars += embedded.chars().count() as u64;
            work.push(Work {
                page_id: row.page_id,
                chunk_index: row.chunk_index,
                old_hash: row.content_hash,
                text,
                embedded,
                hash,
            });
        }
        summary.stale_pages += stale_pages.len();
        work
    }

    /// Embeds every chunk of `work`: a vector per chunk (`None` where the provider refused the
    /// text), and the pages refused with their error code. A fault that is not the text's stops
    /// the run.
    async fn embed(
        &self,
        work: &[Work],
        deadline: &Deadline,
        summary: &mut ReembedSummary,
    ) -> Result<Embedded, ReembedError> {
        let texts: Vec<String> = work.iter().map(|w| w.embedded.clone()).collect();
        let embedded = embed_all(self.embedder, &texts, &self.plan.settings, deadline).await;
        summary.embed_requests += embedded.requests;
        let mut refused: HashMap<String, &'static str> = HashMap::new();
        let mut vectors: Vec<Option<Vec<f32>>> = Vec::with_capacity(work.len());
        for (w, result) in work.iter().zip(embedded.results) {
            match result {
                Ok(v) => vectors.push(Some(v)),
                // The text itself is refused (too long for the model, rejected): that page stays.
                Err(e) if e.class() == ErrorClass::Data => {
                    refused.entry(w.page_id.clone()).or_insert(e.error_code());
                    vectors.push(None);
                }
                Err(e) => {
                    return Err(ReembedError::Embed {
                        code: e.error_code(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok((vectors, refused))
    }

    /// The pages of `work` the function rewrote since they were read: they keep the function's
    /// vectors.
    async fn changed_meanwhile<'w>(
        &self,
        work: &'w [Work],
        deadline: &Deadline,
    ) -> Result<HashSet<&'w str>, ReembedError> {
        let ids: Vec<String> = {
            let mut ids: Vec<String> = work.iter().map(|w| w.page_id.clone()).collect();
            ids.dedup();
            ids
        };
        let now = self
            .store
            .stored_hashes(deadline, &ids)
            .await
            .map_err(ReembedError::Store)?;
        Ok(work
            .iter()
            .filter(|w| {
                now.get(&w.page_id)
                    .and_then(|chunks| chunks.iter().find(|c| c.chunk_index == w.chunk_index))
                    .is_none_or(|c| c.content_hash != w.old_hash)
            })
            .map(|w| w.page_id.as_str())
            .collect())
    }
}

/// Price of an OpenAI embedding model in US dollars per million input tokens, as OpenAI's model
/// pages list it (developers.openai.com/api/docs/models/<model>, read 2026-11-29):
/// text-embedding-3-small $0.02, text-embedding-3-large $0.13, text-embedding-ada-002 $0.10.
pub fn openai_price_per_million_tokens(model: &str) -> Option<f64> {
    match model {
        "text-embedding-3-small" => Some(0.02),
        "text-embedding-3-large" => Some(0.13),
        "text-embedding-ada-002" => Some(0.10),
        _ => None,
    }
}

/// What a run would cost: provider calls and, for OpenAI models, tokens and dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Embedding requests ([`ReembedSummary::planned_calls`]).
    pub calls: usize,
    /// Input tokens, estimated at four characters a token (OpenAI's rule of thumb for English
    /// text; other languages and code take more tokens).
    pub tokens: u64,
    /// Dollars, for a model with a known price.
    pub cost_usd: Option<f64>,
}

/// The estimate of `summary`'s stale chunks for `model` (`openai`: the provider is OpenAI's API).
pub fn estimate(summary: &ReembedSummary, model: &str, openai: bool) -> Estimate {
    let tokens = summary.stale_chars.div_ceil(4);
    Estimate {
        calls: summary.planned_calls,
        tokens,
        cost_usd: openai
            .then(|| openai_price_per_million_tokens(model))
            .flatten()
            .map(|p| tokens as f64 / 1e6 * p),
    }
}

/// `text` as a literal in a SQL LIKE pattern: `\`, `%` and `_` escaped (PostgreSQL's default
/// escape character). PostgREST turns every `*` into `%`, so a `*` cannot be matched literally.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_prefix_with_postgrest_s_unescapable_wildcard_is_refused() {
        assert_eq!(check_page_prefix("wiki_10%"), Ok("wiki_10%".into()));
        let e = check_page_prefix("wiki*old").unwrap_err();
        assert!(e.contains("`*`") && e.contains("wildcard"), "{e}");
    }

    #[test]
    fn estimates_calls_tokens_and_openai_cost() {
        let s = ReembedSummary {
            stale_chunks: 130,
            stale_chars: 4_000_001,
            planned_calls: 3,
            ..ReembedSummary::default()
        };
        let e = estimate(&s, "text-embedding-3-small", true);
        assert_eq!(e.calls, 3);
        assert_eq!(e.tokens, 1_000_001);
        assert!((e.cost_usd.unwrap() - 0.02000002).abs() < 1e-9);
        let large = estimate(&s, "text-embedding-3-large", true)
            .cost_usd
            .unwrap();
        assert!((large - 0.13000013).abs() < 1e-9);
        assert_eq!(estimate(&s, "nomic-embed-text", false).cost_usd, None);
        // A compatible server with OpenAI's protocol but not OpenAI's model: no price.
        assert_eq!(estimate(&s, "bge-m3", true).cost_usd, None);
        // An OpenAI model name served by another provider (Ollama) is not billed by OpenAI.
        assert_eq!(estimate(&s, "text-embedding-3-small", false).cost_usd, None);
    }
}
