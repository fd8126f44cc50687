//! The [`Runner`]: one invocation's steps in order, from the batch to [`Handled`].

use std::time::{Instant, SystemTime};

use event_decoding::{AllFailed, Counts, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use lambda_runtime::LambdaEvent;

use super::function::BatchFunction;
use super::group::{fan_out, judge, plan};
use super::report::{Summary, log_failures};
use crate::dead_letter::DeadLetterSink;
use crate::fate::Fate;
use crate::metrics::Metrics;
use crate::otlp::OtlpExporter;
use crate::retry::{Deadline, DeadlineSettings};
use crate::trace::BatchTrace;

/// What one invocation did, for the caller (the Lambda entry point, tests, benchmarks).
#[derive(Debug)]
pub struct Handled<S> {
    /// The partial batch response, or [`AllFailed`] when every record failed.
    pub response: Result<KafkaBatchResponse, AllFailed>,
    /// Outcome counts.
    pub counts: Counts,
    /// The function's own counters.
    pub stats: S,
}

/// A [`BatchFunction`] with its dead-letter sink, deadline settings and metrics: the Lambda
/// handler of a Kafka-triggered function.
#[derive(Debug)]
pub struct Runner<F, D> {
    pub(super) function: F,
    pub(super) dead_letters: D,
    pub(super) deadline: DeadlineSettings,
    pub(super) metrics: Metrics,
    pub(super) otlp: Option<OtlpExporter>,
}

impl<F: BatchFunction, D: DeadLetterSink> Runner<F, D> {
    /// `function` with its dead letters in `dead_letters`; metrics disabled.
    pub fn new(function: F, dead_letters: D, deadline: DeadlineSettings) -> Self {
        Self {
            function,
            dead_letters,
            deadline,
            metrics: Metrics::disabled(),
            otlp: None,
        }
    }

    /// Exports each traced batch's span to an OpenTelemetry collector (`None`: no export).
    pub fn with_otlp(mut self, otlp: Option<OtlpExporter>) -> Self {
        self.otlp = otlp;
        self
    }

    /// Emits one EMF metrics line per invocation to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The function.
    pub fn function(&self) -> &F {
        &self.function
    }

    /// The function, to adjust a built handler (tests give each run a function name of its
    /// own, so their dead letters do not mix).
    pub fn function_mut(&mut self) -> &mut F {
        &mut self.function
    }

    /// The function, taking the runner apart.
    pub fn into_function(self) -> F {
        self.function
    }

    /// The dead-letter sink.
    pub fn dead_letters(&self) -> &D {
        &self.dead_letters
    }

    /// The Lambda entry point: the partial batch response, or an error when every record failed
    /// (so Lambda retries the whole batch and counts an error).
    pub async fn handle(
        &self,
        event: LambdaEvent<KafkaBatch>,
    ) -> Result<KafkaBatchResponse, lambda_runtime::Error> {
        let deadline = Deadline::from_context(&event.context, &self.deadline);
        Ok(self.process(&event.payload, &deadline).await.response?)
    }

    /// Runs the whole lifecycle over `batch` within `deadline`.
    pub async fn process(&self, batch: &KafkaBatch, deadline: &Deadline) -> Handled<F::Stats> {
        let started = Instant::now();
        let start_time = SystemTime::now();
        let records = batch.as_slice();
        let mut stats = F::Stats::default();
        let mut after = F::AfterSettled::default();
        let trace = BatchTrace::of(records);
        trace.scope(self.function.prepare(records, deadline)).await;
        let fates = self
            .write(records, deadline, &trace, &mut stats, &mut after)
            .await;

        let mut fates: Vec<Fate> = fates
            .into_iter()
            .map(|f| f.unwrap_or_else(Fate::missing))
            .collect();
        trace
            .scope(self.store_dead_letters(records, &mut fates, deadline, &trace))
            .await;
        log_failures(records, &fates, &trace);
        trace
            .scope(self.function.after_settled(deadline, after, &mut stats))
            .await;

        let summary = Summary {
            batch,
            fates: &fates,
            trace: &trace,
            started,
            start_time,
        };
        self.report(summary, stats, deadline).await
    }

    /// Decodes the records, writes the items of each key that [`BatchFunction::keep`] selects
    /// (once, and not at all for a batch with nothing to write) and gives each record its fate:
    /// `None` for a record that neither its decode nor the write's results settled.
    async fn write(
        &self,
        records: &[KafkaRecord],
        deadline: &Deadline,
        trace: &BatchTrace,
        stats: &mut F::Stats,
        after: &mut F::AfterSettled,
    ) -> Vec<Option<Fate>> {
        let mut fates: Vec<Option<Fate>> = vec![None; records.len()];
        let plan = plan(&self.function, records, &mut fates, stats);
        let results = if plan.items.is_empty() {
            Vec::new()
        } else {
            let n = plan.items.len();
            let written = self.function.write(deadline, plan.items, stats, after);
            judge(n, plan.keys, trace.scope(written).await)
        };
        let keep = self.function.keep();
        let mut results = results.into_iter();
        for (group, chosen) in &plan.shares {
            let fate = results.next().unwrap_or_else(Fate::missing);
            fan_out(keep, group, *chosen, fate, &mut fates);
        }
        fates
    }
}
