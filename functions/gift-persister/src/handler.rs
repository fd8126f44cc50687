//! decode -> plan -> write -> report, for one ESM batch of gift events.

use std::collections::HashMap;
use std::time::Instant;

use event_decoding::{BatchReport, KafkaBatch, KafkaBatchResponse, KafkaRecord, Outcome};
use lambda_kit::batch::RowFate;
use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink};
use lambda_kit::error::Classify;
use lambda_kit::metrics::{MetricSet, Metrics};
use lambda_kit::retry::{Deadline, DeadlineSettings};
use lambda_runtime::{Error, LambdaEvent};

use crate::config::FUNCTION_NAME;
use crate::gift::{Gift, GiftLimits, Provenance};
use crate::store::GiftStore;

/// What the handler needs besides its stores.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Validation bounds.
    pub gift_limits: GiftLimits,
    /// Deadline derivation.
    pub deadline: DeadlineSettings,
}

/// The handler with its dependencies; built once in `main`.
#[derive(Debug)]
pub struct Handler<S, D> {
    store: S,
    dead_letters: D,
    settings: Settings,
    metrics: Metrics,
}

enum Fate {
    Stored,
    Skipped,
    Dead { code: String, message: String },
    Failed { code: &'static str },
}

impl<S: GiftStore, D: DeadLetterSink> Handler<S, D> {
    /// A handler writing gifts to `store` and dead letters to `dead_letters`.
    pub fn new(store: S, dead_letters: D, settings: Settings) -> Self {
        Self {
            store,
            dead_letters,
            settings,
            metrics: Metrics::disabled(),
        }
    }

    /// Emits one EMF metrics line per invocation to `metrics` (disabled by default).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The gifts store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The dead-letter sink.
    pub fn dead_letters(&self) -> &D {
        &self.dead_letters
    }

    /// Handles one invocation: returns the partial batch response, or an error when every
    /// record failed transiently (so Lambda retries the whole batch).
    pub async fn handle(
        &self,
        event: LambdaEvent<KafkaBatch>,
    ) -> Result<KafkaBatchResponse, Error> {
        let started = Instant::now();
        let deadline = Deadline::from_context(&event.context, &self.settings.deadline);
        let batch = event.payload;
        let records: Vec<&KafkaRecord> = batch.records().collect();
        let mut fates: Vec<Option<Fate>> = records.iter().map(|_| None).collect();

        // decode + validate
        let mut planned: Vec<usize> = Vec::with_capacity(records.len()); // record index per row
        let mut rows: Vec<Vec<u8>> = Vec::with_capacity(records.len());
        let mut first_by_id: HashMap<String, usize> = HashMap::new();
        let mut duplicates: Vec<(usize, usize)> = Vec::new(); // (record, planned index of the first)
        for (i, record) in records.iter().enumerate() {
            let gift = record
                .value_json::<serde_json::Value>()
                .map_err(|e| (e.error_code(), e.message))
                .and_then(|v| {
                    Gift::validate(v, record.timestamp, &self.settings.gift_limits)
                        .map_err(|e| (e.error_code(), e.to_string()))
                });
            match gift {
                Err((code, message)) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error_code = code, "invalid gift; dead-lettering");
                    fates[i] = Some(Fate::Dead {
                        code: code.to_owned(),
                        message,
                    });
                }
                Ok(gift) => {
                    // The same gift twice in one batch is written once (PostgreSQL refuses to
                    // touch a row twice in one upsert).
                    if let Some(&first) = first_by_id.get(&gift.event_id) {
                        duplicates.push((i, first));
                        continue;
                    }
                    rows.push(gift.to_row(Provenance {
                        topic: &record.topic,
                        partition: record.partition,
                        offset: record.offset,
                    }));
                    first_by_id.insert(gift.event_id, planned.len());
                    planned.push(i);
                }
            }
        }

        // write
        let written = if rows.is_empty() {
            Vec::new()
        } else {
            self.store.write(&deadline, &rows).await
        };
        drop(rows);
        let mut planned_fates: Vec<Fate> = Vec::with_capacity(planned.len());
        for (&p, fate) in planned.iter().zip(written) {
            let record = records[p];
            let f = match fate {
                RowFate::Stored => Fate::Stored,
                RowFate::Rejected(e) => {
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error_code = e.error_code(), "gift rejected by the database; dead-lettering");
                    Fate::Dead {
                        code: e.error_code().to_owned(),
                        message: e.to_string(),
                    }
                }
                RowFate::Failed(e) => {
                    if !e.class().is_transient() {
                        tracing::error!(error_code = e.error_code(), error = %e, "gifts table refused the write for a reason that is not the data (credentials, table): records reported as failed");
                    }
                    Fate::Failed {
                        code: e.error_code(),
                    }
                }
                _ => Fate::Failed { code: "unknown" },
            };
            planned_fates.push(f);
        }
        for (&p, f) in planned.iter().zip(planned_fates) {
            fates[p] = Some(f);
        }
        for (i, first) in duplicates {
            let first_fate = fates[planned[first]]
                .as_ref()
                .expect("planned rows have a fate");
            fates[i] = Some(match first_fate {
                Fate::Stored | Fate::Skipped => Fate::Skipped,
                Fate::Dead { code, message } => Fate::Dead {
                    code: code.clone(),
                    message: message.clone(),
                },
                Fate::Failed { code } => Fate::Failed { code },
            });
        }

        // dead letters
        let mut letter_records = Vec::new();
        let mut letters = Vec::new();
        for (i, fate) in fates.iter().enumerate() {
            if let Some(Fate::Dead { code, message }) = fate {
                letter_records.push(i);
                letters.push(DeadLetter::new(
                    FUNCTION_NAME,
                    records[i],
                    code,
                    message.clone(),
                ));
            }
        }
        if !letters.is_empty() {
            let results = self.dead_letters.write(&deadline, &letters).await;
            for (i, result) in letter_records.into_iter().zip(results) {
                if let RowFate::Stored = result {
                    continue;
                }
                let code = match &result {
                    RowFate::Rejected(e) | RowFate::Failed(e) => e.error_code(),
                    _ => "unknown",
                };
                let r = records[i];
                tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset, error_code = code, "dead letter not stored; record reported as failed");
                fates[i] = Some(Fate::Failed { code });
            }
        }

        // report
        let mut report = BatchReport::for_batch(&batch);
        for (record, fate) in records.iter().zip(&fates) {
            let outcome = match fate {
                Some(Fate::Stored) => Outcome::Stored,
                Some(Fate::Skipped) => Outcome::Skipped,
                Some(Fate::Dead { .. }) => Outcome::DeadLettered,
                Some(Fate::Failed { .. }) | None => Outcome::Failed,
            };
            report.record(&record.id(), outcome);
        }
        let counts = report.counts();
        let failure_code = fates.iter().find_map(|f| match f {
            Some(Fate::Failed { code }) => Some(*code),
            _ => None,
        });
        let duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            records = records.len(),
            stored = counts.stored,
            skipped = counts.skipped,
            dead_lettered = counts.dead_lettered,
            failed = counts.failed,
            duration_ms,
            failure_code,
            "gift batch processed"
        );
        if self.metrics.is_enabled() {
            self.metrics.emit(&MetricSet::for_batch(
                batch.as_slice(),
                &counts,
                duration_ms,
                lambda_kit::metrics::now_ms(),
            ));
        }
        report.into_response().map_err(Error::from)
    }
}
