//! The batch's outcome, once the write's fates are known: dead letters for the rejected records,
//! one log line per failure code, then the partial batch response, the summary log line, the
//! metrics line and the batch span's export.

use std::time::{Instant, SystemTime};

use event_decoding::{BatchReport, KafkaBatch, KafkaRecord};

use super::function::BatchFunction;
use super::lifecycle::{Handled, Runner};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::fate::{Fate, Fault};
use crate::metrics::{MetricSet, now_ms};
use crate::otlp::BatchSpan;
use crate::retry::Deadline;
use crate::trace::BatchTrace;

/// A settled batch, to report.
pub(super) struct Summary<'a> {
    pub batch: &'a KafkaBatch,
    /// One fate per record, final.
    pub fates: &'a [Fate],
    pub trace: &'a BatchTrace,
    pub started: Instant,
    pub start_time: SystemTime,
}

impl<F: BatchFunction, D: DeadLetterSink> Runner<F, D> {
    /// Writes a dead letter for every rejected record; a letter that is not stored turns its
    /// record into a failure (redelivered, never acknowledged without its letter).
    pub(super) async fn store_dead_letters(
        &self,
        records: &[KafkaRecord],
        fates: &mut [Fate],
        deadline: &Deadline,
        trace: &BatchTrace,
    ) {
        let rejected: Vec<usize> = (0..fates.len())
            .filter(|&i| matches!(fates[i], Fate::Rejected { .. }))
            .collect();
        if rejected.is_empty() {
            return;
        }
        let letters: Vec<DeadLetter> = rejected
            .iter()
            .map(|&i| {
                let (code, message) = match &fates[i] {
                    Fate::Rejected { code, message } => (*code, message.as_str()),
                    _ => unreachable!("filtered above"),
                };
                let r = &records[i];
                tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, traceparent = trace.record(i), error_code = code, error = message, "record rejected; dead-lettering");
                DeadLetter::new(self.function.name(), r, code, message)
            })
            .collect();
        let mut stored = self
            .dead_letters
            .write(deadline, &letters)
            .await
            .into_iter();
        for i in rejected {
            let fate = stored.next().unwrap_or_else(Fate::missing);
            if fate.is_stored() {
                continue;
            }
            let r = &records[i];
            let record_error = fates[i].code();
            let (code, message) = match &fate {
                Fate::Failed { code, message, .. } | Fate::Rejected { code, message } => {
                    (*code, message.clone())
                }
                Fate::Stored | Fate::Skipped => ("dead_letter_skipped", String::new()),
            };
            tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset, traceparent = trace.record(i), error_code = code, record_error, error = %message, "dead letter not stored; record reported as failed");
            fates[i] = Fate::Failed {
                code,
                message,
                fault: match fate {
                    Fate::Failed { fault, .. } => fault,
                    // A letter the sink refused or skipped: the record is redelivered, and the
                    // error line above names the sink's answer; its summary line stays a warning.
                    Fate::Rejected { .. } | Fate::Skipped | Fate::Stored => Fault::Transient,
                },
            };
        }
    }

    /// The response and counts of a settled batch, with its summary log line, its metrics line
    /// (when enabled) and its span's export (when configured).
    pub(super) async fn report(
        &self,
        summary: Summary<'_>,
        stats: F::Stats,
        deadline: &Deadline,
    ) -> Handled<F::Stats> {
        let Summary {
            batch,
            fates,
            trace,
            started,
            start_time,
        } = summary;
        let records = batch.as_slice();
        let mut report = BatchReport::for_batch(batch);
        for (record, fate) in records.iter().zip(fates) {
            report.record(&record.id(), fate.outcome());
        }
        let counts = report.counts();
        let duration_ms = started.elapsed().as_millis() as u64;
        let failure_code = fates.iter().find_map(|f| match f {
            Fate::Failed { code, .. } => Some(*code),
            _ => None,
        });
        let span = trace.span();
        let (links, linked_traces) = trace.links();
        tracing::info!(
            function = self.function.name(),
            records = records.len(),
            stored = counts.stored,
            skipped = counts.skipped,
            dead_lettered = counts.dead_lettered,
            failed = counts.failed,
            duration_ms,
            failure_code,
            stats = ?stats,
            trace_id = span.map(|s| s.trace_id()),
            span_id = span.map(|s| s.span_id()),
            parent_span_id = trace.parent_span_id(),
            links = (!links.is_empty()).then(|| links.join(",")),
            linked_traces,
            "batch processed"
        );
        if self.metrics.is_enabled() {
            let mut set = MetricSet::for_batch(records, &counts, duration_ms, now_ms());
            self.function.metrics(&stats, &mut set);
            self.metrics.emit(&set);
        }
        if let Some(otlp) = &self.otlp {
            let span = BatchSpan {
                trace,
                records,
                counts: &counts,
                failure_code,
                start: start_time,
                end: SystemTime::now(),
            };
            // Bounded by the export timeout and the deadline; never changes the batch's result.
            if let Err(e) = otlp.export(&span, deadline).await {
                tracing::warn!(error_code = e.code, error = %e.message, trace_id = trace.span().map(|s| s.trace_id()), "OpenTelemetry span export failed; the batch's result is unaffected");
            }
        }
        Handled {
            response: report.into_response(),
            counts,
            stats,
        }
    }
}

/// One line per failure code: environment faults at error level (an operator must act), transient
/// ones as warnings; each with the first record it hit and how many records it failed.
pub(super) fn log_failures(records: &[KafkaRecord], fates: &[Fate], trace: &BatchTrace) {
    let mut seen: Vec<(&'static str, usize, usize)> = Vec::new(); // (code, first record, count)
    for (i, fate) in fates.iter().enumerate() {
        if let Fate::Failed { code, .. } = fate {
            match seen.iter_mut().find(|(c, _, _)| c == code) {
                Some(entry) => entry.2 += 1,
                None => seen.push((code, i, 1)),
            }
        }
    }
    for (code, first, count) in seen {
        let r = &records[first];
        let traceparent = trace.record(first);
        if let Fate::Failed { message, fault, .. } = &fates[first] {
            if *fault == Fault::Environment {
                tracing::error!(error_code = code, records = count, topic = %r.topic, partition = r.partition, offset = r.offset, traceparent, error = %message, "records failed for a reason that is not their data (configuration, schema, credentials); reported for redelivery");
            } else {
                tracing::warn!(error_code = code, records = count, topic = %r.topic, partition = r.partition, offset = r.offset, traceparent, error = %message, "records failed; reported for redelivery");
            }
        }
    }
}
