//! The invocation: run the [`Pipeline`] over the batch, dead-letter the rejected records through
//! lambda-kit, and answer with the partial batch response (records that failed transiently are
//! listed so the event source mapping redelivers them; a batch where every record failed is an
//! error, so the whole batch is retried).

use event_decoding::{AllFailed, BatchReport, Counts, KafkaBatch, KafkaBatchResponse, Outcome};
use lambda_kit::batch::RowFate;
use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink};
use lambda_kit::error::Classify;
use lambda_kit::metrics::{MetricSet, Metrics};
use lambda_kit::retry::{Deadline, DeadlineSettings};
use lambda_runtime::LambdaEvent;
use std::time::Instant;

use crate::embed::Embedder;
use crate::pipeline::{Pipeline, Stats};
use crate::rag::RagNotifier;
use crate::store::VectorStore;

/// The function: pipeline, dead-letter sink and deadline settings.
#[derive(Debug)]
pub struct Handler<E, S, R, D> {
    /// The page pipeline.
    pub pipeline: Pipeline<E, S, R>,
    /// Where rejected records go.
    pub dead_letters: D,
    /// Name written in dead letters: stable across deployments, so a redelivered record that was
    /// already dead-lettered is not written twice.
    pub function_name: String,
    /// Safety margin before the Lambda deadline.
    pub deadline: DeadlineSettings,
}

/// Result of one batch, with counters (tests and benchmarks read them).
#[derive(Debug)]
pub struct Handled {
    /// The partial batch response, or [`AllFailed`] when nothing succeeded.
    pub response: Result<KafkaBatchResponse, AllFailed>,
    /// Outcome counts.
    pub counts: Counts,
    /// Pipeline counters.
    pub stats: Stats,
}

impl<E: Embedder, S: VectorStore, R: RagNotifier, D: DeadLetterSink> Handler<E, S, R, D> {
    /// Processes `batch` within `deadline`.
    pub async fn process(&self, batch: &KafkaBatch, deadline: &Deadline) -> Handled {
        let started = Instant::now();
        let records = batch.as_slice();
        let mut processed = self.pipeline.process(batch, deadline).await;
        if !processed.rejections.is_empty() {
            let letters: Vec<DeadLetter> = processed
                .rejections
                .iter()
                .map(|r| {
                    DeadLetter::new(
                        &self.function_name,
                        &records[r.record],
                        r.code,
                        r.message.clone(),
                    )
                })
                .collect();
            let fates = self.dead_letters.write(deadline, &letters).await;
            for (rejection, fate) in processed.rejections.iter().zip(fates) {
                if let RowFate::Rejected(e) | RowFate::Failed(e) = &fate {
                    let r = &records[rejection.record];
                    tracing::warn!(
                        topic = %r.topic,
                        partition = r.partition,
                        offset = r.offset,
                        error_code = e.error_code(),
                        record_error = rejection.code,
                        "dead letter not written; record will be redelivered"
                    );
                    processed.outcomes[rejection.record] = Outcome::Failed;
                }
            }
        }
        let mut report = BatchReport::for_batch(batch);
        for (record, outcome) in records.iter().zip(&processed.outcomes) {
            report.record(&record.id(), *outcome);
        }
        let counts = report.counts();
        let stats = processed.stats;
        tracing::info!(
            records = records.len(),
            stored = counts.stored,
            skipped = counts.skipped,
            dead_lettered = counts.dead_lettered,
            failed = counts.failed,
            embed_requests = stats.embed_requests,
            chunks_embedded = stats.chunks_embedded,
            chunks_unchanged = stats.chunks_unchanged,
            pages_changed = stats.pages_changed,
            pages_deleted = stats.pages_deleted,
            rag_sent = stats.rag.sent,
            rag_failed = stats.rag.failed,
            duration_ms = started.elapsed().as_millis() as u64,
            "batch processed"
        );
        Handled {
            response: report.into_response(),
            counts,
            stats,
        }
    }

    /// [`process`](Self::process), then one EMF metrics line: the batch metrics of
    /// [`MetricSet::for_batch`] plus `EmbeddingCalls`, `ChunksEmbedded` and `ChunksUnchanged`
    /// (chunks skipped because their stored hash matched).
    pub async fn process_with_metrics(
        &self,
        batch: &KafkaBatch,
        deadline: &Deadline,
        metrics: &Metrics,
    ) -> Handled {
        let started = Instant::now();
        let handled = self.process(batch, deadline).await;
        if metrics.is_enabled() {
            let mut set = MetricSet::for_batch(
                batch.as_slice(),
                &handled.counts,
                started.elapsed().as_millis() as u64,
                lambda_kit::metrics::now_ms(),
            );
            set.count("EmbeddingCalls", handled.stats.embed_requests as u64)
                .count("ChunksEmbedded", handled.stats.chunks_embedded as u64)
                .count("ChunksUnchanged", handled.stats.chunks_unchanged as u64);
            metrics.emit(&set);
        }
        handled
    }

    /// The Lambda entry point.
    pub async fn handle(
        &self,
        event: LambdaEvent<KafkaBatch>,
    ) -> Result<KafkaBatchResponse, lambda_runtime::Error> {
        self.handle_with_metrics(event, &Metrics::disabled()).await
    }

    /// The Lambda entry point, emitting one EMF metrics line per invocation to `metrics`.
    pub async fn handle_with_metrics(
        &self,
        event: LambdaEvent<KafkaBatch>,
        metrics: &Metrics,
    ) -> Result<KafkaBatchResponse, lambda_runtime::Error> {
        let deadline = Deadline::from_context(&event.context, &self.deadline);
        let handled = self
            .process_with_metrics(&event.payload, &deadline, metrics)
            .await;
        Ok(handled.response?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use lambda_kit::metrics::check_emf;
    use lambda_kit::postgrest::PostgrestError;
    use lambda_kit::retry::RetryPolicy;
    use lambda_runtime::Context;

    use super::*;
    use crate::chunk::ChunkLimits;
    use crate::embed::EmbedError;
    use crate::embedding::EmbedSettings;
    use crate::pipeline::Settings;
    use crate::rag::NoRag;
    use crate::store::MemoryStore;

    struct Stub(AtomicUsize);

    impl Embedder for Stub {
        fn model(&self) -> &str {
            "stub"
        }
        fn dimensions(&self) -> usize {
            4
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(texts.iter().map(|t| vec![t.len() as f32; 4]).collect())
        }
    }

    #[derive(Default)]
    struct Letters(Mutex<Vec<String>>);

    impl DeadLetterSink for Letters {
        type Error = PostgrestError;
        async fn write(
            &self,
            _: &Deadline,
            letters: &[DeadLetter],
        ) -> Vec<RowFate<PostgrestError>> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(letters.iter().map(|l| l.error_code.clone()));
            letters.iter().map(|_| RowFate::Stored).collect()
        }
    }

    fn handler() -> Handler<Stub, MemoryStore, NoRag, Letters> {
        handler_with(MemoryStore::new())
    }

    fn handler_with<S: VectorStore>(store: S) -> Handler<Stub, S, NoRag, Letters> {
        Handler {
            pipeline: Pipeline {
                embedder: Stub(AtomicUsize::new(0)),
                store,
                rag: NoRag,
                settings: Settings {
                    page_id_field: "page_id".into(),
                    body_field: "body".into(),
                    doc_prefix: String::new(),
                    limits: ChunkLimits::new(2000, 100),
                    embed: EmbedSettings {
                        batch_size: 16,
                        concurrency: 2,
                        retry: RetryPolicy::default(),
                    },
                    rag_enabled: false,
                },
            },
            dead_letters: Letters::default(),
            function_name: "page-embedder".into(),
            deadline: DeadlineSettings::default(),
        }
    }

    fn fixture(name: &str) -> KafkaBatch {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        KafkaBatch::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn emf_line_counts_the_bad_fixture_and_the_unchanged_redelivery() {
        let (metrics, lines) = Metrics::capture("KafkaLambdas", "page-embedder");
        let h = handler();
        let batch = fixture("pages-bad.json");
        let event = || LambdaEvent::new(batch.clone(), Context::default());
        h.handle_with_metrics(event(), &metrics).await.unwrap();
        let calls = h.pipeline.embedder.0.load(Ordering::Relaxed) as u64;

        let docs = lines.documents();
        assert_eq!(docs.len(), 1, "one EMF line per invocation");
        let doc = &docs[0];
        check_emf(doc).unwrap();
        assert_eq!(doc["FunctionName"], "page-embedder");
        assert_eq!(doc["RecordsReceived"], 14);
        assert_eq!(doc["RecordsStored"], 2, "offsets 0 and 13");
        assert_eq!(doc["RecordsDeadLettered"], 12);
        assert_eq!(doc["RecordsFailed"], 0);
        assert_eq!(h.dead_letters.0.lock().unwrap().len(), 12);
        assert!(calls >= 1);
        assert_eq!(
            doc["EmbeddingCalls"], calls,
            "counts the provider's requests"
        );
        let embedded = doc["ChunksEmbedded"].as_u64().unwrap();
        assert!(embedded >= 2, "{embedded}");
        assert_eq!(doc["ChunksUnchanged"], 0);
        assert!(doc["BatchAge"].as_u64().unwrap() > 0);

        // Redelivery: every chunk is unchanged, nothing is embedded.
        h.handle_with_metrics(event(), &metrics).await.unwrap();
        let docs = lines.documents();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["EmbeddingCalls"], 0);
        assert_eq!(docs[1]["ChunksEmbedded"], 0);
        assert_eq!(docs[1]["ChunksUnchanged"], embedded);
        assert_eq!(docs[1]["RecordsStored"], 2);
    }

    /// The vector table is `vector(768)` but the function embeds with another dimension:
    /// PostgREST answers every upsert with pgvector's 400.
    struct WrongDimensions(MemoryStore);

    impl VectorStore for WrongDimensions {
        async fn stored_hashes(
            &self,
            d: &Deadline,
            ids: &[String],
        ) -> Result<crate::store::StoredHashes, crate::store::StoreError> {
            self.0.stored_hashes(d, ids).await
        }
        async fn upsert(
            &self,
            _: &Deadline,
            _: &[crate::store::VectorRow],
        ) -> Result<(), crate::store::StoreError> {
            let e = PostgrestError::Api {
                status: 400,
                code: Some("22000".into()),
                message: "expected 768 dimensions, not 4".into(),
                details: None,
                hint: None,
                class: lambda_kit::error::ErrorClass::Permanent,
            };
            Err(crate::store::StoreError::from_error(&e))
        }
        async fn delete_pages(
            &self,
            d: &Deadline,
            ids: &[String],
        ) -> Result<(), crate::store::StoreError> {
            self.0.delete_pages(d, ids).await
        }
        async fn delete_chunks_from(
            &self,
            d: &Deadline,
            id: &str,
            from: usize,
        ) -> Result<(), crate::store::StoreError> {
            self.0.delete_chunks_from(d, id, from).await
        }
    }

    #[tokio::test]
    async fn wrong_vector_dimension_fails_records_and_dead_letters_none_of_them() {
        let (metrics, lines) = Metrics::capture("KafkaLambdas", "page-embedder");
        let h = handler_with(WrongDimensions(MemoryStore::new()));
        let response = h
            .handle_with_metrics(
                LambdaEvent::new(fixture("pages-bad.json"), Context::default()),
                &metrics,
            )
            .await
            .unwrap();
        // The two valid pages are reported for redelivery, not dead-lettered.
        let mut failed: Vec<i64> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.offset)
            .collect();
        failed.sort_unstable();
        assert_eq!(failed, vec![0, 13]);
        let letters = h.dead_letters.0.lock().unwrap().clone();
        assert_eq!(letters.len(), 12, "only the bad records: {letters:?}");
        assert!(!letters.iter().any(|c| c.starts_with("db_")), "{letters:?}");
        let doc = &lines.documents()[0];
        assert_eq!(doc["RecordsFailed"], 2);
        assert_eq!(doc["RecordsDeadLettered"], 12);
        assert_eq!(doc["RecordsStored"], 0);
    }
}
