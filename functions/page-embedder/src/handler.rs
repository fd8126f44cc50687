//! The invocation: run the [`Pipeline`] over the batch, dead-letter the rejected records through
//! lambda-kit, and answer with the partial batch response (records that failed transiently are
//! listed so the event source mapping redelivers them; a batch where every record failed is an
//! error, so the whole batch is retried).

use event_decoding::{AllFailed, BatchReport, Counts, KafkaBatch, KafkaBatchResponse, Outcome};
use lambda_kit::batch::RowFate;
use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink};
use lambda_kit::error::Classify;
use lambda_kit::retry::{Deadline, DeadlineSettings};
use lambda_runtime::LambdaEvent;

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
    /// Name written in dead letters.
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
                    tracing::warn!(
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
            "batch processed"
        );
        Handled {
            response: report.into_response(),
            counts,
            stats,
        }
    }

    /// The Lambda entry point.
    pub async fn handle(
        &self,
        event: LambdaEvent<KafkaBatch>,
    ) -> Result<KafkaBatchResponse, lambda_runtime::Error> {
        let deadline = Deadline::from_context(&event.context, &self.deadline);
        let handled = self.process(&event.payload, &deadline).await;
        Ok(handled.response?)
    }
}
