//! The Lambda handler: the page [`Pipeline`] as the shared batch runner's [`BatchFunction`]
//! (its decode, write, RAG notifications and metrics; the steps themselves are in
//! [`crate::pipeline`]), run by [`Runner`], which dead-letters rejected records and answers with
//! the partial batch response (records that failed are listed so the event source mapping
//! redelivers them; a batch where every record failed is an error, so the whole batch is
//! retried).

use event_decoding::KafkaRecord;
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::fate::Fate;
use lambda_kit::metrics::MetricSet;
use lambda_kit::retry::Deadline;
use lambda_kit::runner::{BatchFunction, Decoded, Keep, Runner};

use crate::embed::{Embedder, ProviderEmbedder};
use crate::pipeline::{Notifications, PageItem, Pipeline, Stats};
use crate::rag::{HttpRag, RagNotifier};
use crate::store::{AnyStore, VectorStore};

/// The handler: the page pipeline with its dead-letter sink.
pub type Handler<E, S, R, D> = Runner<Pipeline<E, S, R>, D>;

/// The handler `main` runs ([`crate::config::Config::build`]).
pub type ConfiguredHandler =
    Handler<ProviderEmbedder, AnyStore, Option<HttpRag>, PostgrestDeadLetters>;

/// What one invocation did, with the pipeline's counters.
pub type Handled = lambda_kit::runner::Handled<Stats>;

impl<E: Embedder, S: VectorStore, R: RagNotifier> BatchFunction for Pipeline<E, S, R> {
    /// The page id, as text.
    type Key = String;
    type Item = PageItem;
    type Stats = Stats;
    /// The RAG notifications of the pages written, sent once the batch is settled.
    type AfterSettled = Notifications;

    /// Within a batch the last change of a page (in partition/offset order) wins: an update
    /// followed by a delete ends deleted, a delete followed by a create ends present.
    fn keep(&self) -> Keep {
        Keep::Last
    }

    fn name(&self) -> &str {
        &self.settings.function_name
    }

    async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        self.values.prepare(records, deadline).await
    }

    fn decode(&self, record: &KafkaRecord, stats: &mut Stats) -> Decoded<String, PageItem> {
        match self.decode_change(record, stats) {
            Ok(Some((key, item))) => Decoded::Item { key, item },
            Ok(None) => Decoded::Settled(Fate::Skipped),
            Err(fate) => Decoded::Settled(fate),
        }
    }

    async fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(String, PageItem)>,
        stats: &mut Stats,
        notifications: &mut Notifications,
    ) -> Vec<Fate> {
        self.write_changes(deadline, items, stats, notifications)
            .await
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
    async fn after_settled(
        &self,
        deadline: &Deadline,
        notifications: Notifications,
        stats: &mut Stats,
    ) {
        self.notify_refreshes(deadline, notifications, stats).await
    }

    /// `EmbeddingCalls`, `ChunksEmbedded` and `ChunksUnchanged` (chunks skipped because their
    /// stored hash matched), `BodiesUnavailable`, `TruncatesIgnored`, `TruncatesApplied`,
    /// `RagRefreshFailed`, `StaleChangesIgnored`.
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
