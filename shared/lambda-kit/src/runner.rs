//! One batch lifecycle for every Kafka-triggered function: a function supplies its decode and its
//! write ([`BatchFunction`]); the [`Runner`] owns everything else — grouping records by key,
//! fanning each group's fate back to all its records, dead letters, the partial batch response,
//! the summary log line and the metrics line.
//!
//! ```text
//!  records ──decode──▶ items by key ──write──▶ one fate per item ──fan out──▶ fate per record
//!                                                                  │
//!   response ◀── report ◀── dead letters (not stored: the record fails) ◀┘
//! ```
//!
//! What the runner guarantees, whatever the function does:
//! - every record ends with exactly one [`Fate`]; a result the function does not return counts as
//!   [`Fate::Failed`], never as acknowledged;
//! - a rejected record is acknowledged only once its dead letter is stored;
//! - each rejected record is logged with its topic, partition and offset; environment faults are
//!   logged once per invocation and error code, at error level, with the message naming what to
//!   fix;
//! - every invocation ends with one summary log line and, when enabled, one EMF metrics line;
//! - a record's W3C `traceparent` header is logged with each line about that record, and the
//!   batch's work runs in a span child of the first traced record's, whose context every
//!   outbound request carries (see [`crate::trace`]); with `OTEL_TRACES_EXPORTER=otlp` that span
//!   is exported to an OpenTelemetry collector after the batch (see [`crate::otlp`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::time::{Instant, SystemTime};

use event_decoding::{AllFailed, BatchReport, Counts, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use lambda_runtime::LambdaEvent;

use crate::bulk::WriteLimits;
use crate::config::Env;
use crate::dead_letter::{DeadLetter, DeadLetterSink, PostgrestDeadLetters};
use crate::fate::{Fate, Fault};
use crate::init::InitError;
use crate::metrics::{MetricSet, Metrics, now_ms};
use crate::otlp::{BatchSpan, OtlpExporter};
use crate::postgrest::{PostgrestClient, PostgrestConfig, Secret, resolve_key};
use crate::retry::{Deadline, DeadlineSettings};
use crate::trace::BatchTrace;

/// Which item of a key's records is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Keep {
    /// The first record of a key is written; the later ones are duplicates. A duplicate follows
    /// the first record: [`Fate::Skipped`] when it was stored, the same rejection or failure
    /// otherwise (so a redelivered bad event is dead-lettered, not silently acknowledged).
    First,
    /// The last record of a key (in partition/offset order, unless
    /// [`BatchFunction::supersedes`] says otherwise) is written; the others are superseded
    /// changes. They share a stored or failed fate with it (none is acknowledged ahead of the
    /// change that replaces it); when the written one is rejected they are [`Fate::Skipped`] and
    /// only the written one is dead-lettered.
    Last,
}

/// What a function makes of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<K, I> {
    /// Write `item`, grouped with the batch's other items of the same `key`.
    Item {
        /// The grouping key (an event id, a page id).
        key: K,
        /// What the write step receives.
        item: I,
    },
    /// Nothing to write: the record's fate is already known ([`Fate::Skipped`] or
    /// [`Fate::Rejected`]).
    Settled(Fate),
}

/// A Kafka-triggered function, as the [`Runner`] drives it.
///
/// ```
/// use event_decoding::{KafkaBatch, KafkaRecord, EventSource};
/// use lambda_kit::fate::Fate;
/// use lambda_kit::retry::Deadline;
/// use lambda_kit::runner::{BatchFunction, Decoded, Keep, Runner};
/// # use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink};
/// # struct NoLetters;
/// # impl DeadLetterSink for NoLetters {
/// #     async fn write(&self, _: &Deadline, l: &[DeadLetter]) -> Vec<Fate> { vec![Fate::Stored; l.len()] }
/// # }
///
/// /// Counts words; values that are not UTF-8 are rejected.
/// struct Words;
/// impl BatchFunction for Words {
///     type Key = i64;
///     type Item = usize;
///     type Stats = usize;
///     const KEEP: Keep = Keep::First;
///     fn name(&self) -> &str { "words" }
///     fn decode(&self, record: &KafkaRecord, _: &mut usize) -> Decoded<i64, usize> {
///         match record.value_str() {
///             Ok(Some(text)) => Decoded::Item { key: record.offset, item: text.split_whitespace().count() },
///             _ => Decoded::Settled(Fate::rejected("not_text", "the value is not UTF-8 text")),
///         }
///     }
///     async fn write(&self, _: &Deadline, items: Vec<(i64, usize)>, words: &mut usize) -> Vec<Fate> {
///         *words += items.iter().map(|(_, n)| n).sum::<usize>();
///         vec![Fate::Stored; items.len()]
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let batch = KafkaBatch::builder(EventSource::Msk)
///     .record(KafkaRecord::new("t", 0, 0, 0).with_value("two words"))
///     .record(KafkaRecord::new("t", 0, 1, 0).with_value([0xff]))
///     .build();
/// let runner = Runner::new(Words, NoLetters, Default::default());
/// let handled = runner.process(&batch, &Deadline::after(std::time::Duration::from_secs(1))).await;
/// assert_eq!(handled.stats, 2);
/// assert_eq!((handled.counts.stored, handled.counts.dead_lettered), (1, 1));
/// assert!(handled.response.unwrap().batch_item_failures.is_empty());
/// # }
/// ```
pub trait BatchFunction: Send + Sync {
    /// Groups the records that write the same thing.
    type Key: Eq + Hash + Clone + Send;
    /// One decoded record, ready to write (moved to the write step, never copied).
    type Item: Send;
    /// The function's own counters of one invocation (logged in the summary line, added to the
    /// metrics line by [`metrics`](Self::metrics)).
    type Stats: Default + fmt::Debug + Send;

    /// Which record of a key is written.
    const KEEP: Keep;

    /// The function's name in dead letters: stable across deployments, so a redelivered record
    /// that was already dead-lettered is not written twice.
    fn name(&self) -> &str;

    /// Runs once per batch before any record is decoded: asynchronous work that decoding needs,
    /// such as fetching the writer schemas of Avro values
    /// ([`Values::prepare`](crate::schema_registry::Values::prepare)). Stop at `deadline`;
    /// what is not ready by then is decided per record by [`decode`](Self::decode).
    fn prepare(
        &self,
        records: &[KafkaRecord],
        deadline: &Deadline,
    ) -> impl Future<Output = ()> + Send {
        let _ = (records, deadline);
        async {}
    }

    /// Decodes and validates one record. Never fails the batch: a bad record is
    /// [`Decoded::Settled`] with [`Fate::Rejected`]. `stats` counts what decoding alone decides
    /// (records skipped on purpose, for instance).
    fn decode(
        &self,
        record: &KafkaRecord,
        stats: &mut Self::Stats,
    ) -> Decoded<Self::Key, Self::Item>;

    /// Writes one item per key and returns one fate per item, in order. A missing fate counts as
    /// [`Fate::Failed`]. Called once per batch: isolating the items at fault is the write's own
    /// job, done once, where the requests are made. A [`Fate::Rejected`] must be of an item
    /// refused alone or with items refused for their own reasons, never of one refused only
    /// because it shared a request (or a read of the batch's ids) with a bad one: bisect such a
    /// refusal with [`crate::bulk::bisect`] ([`crate::bulk::write_rows`] does). When every item
    /// (two or more) comes back rejected alike, the runner judges the target at fault, not the
    /// items: they fail as an environment fault instead of being dead-lettered.
    fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(Self::Key, Self::Item)>,
        stats: &mut Self::Stats,
    ) -> impl Future<Output = Vec<Fate>> + Send;

    /// With [`Keep::Last`]: whether `new` (a later record of the key) replaces `current` as the
    /// item to write. Defaults to `true` (partition/offset order); a function whose items carry a
    /// source version (a CDC position) keeps the newest change even when an older one was
    /// re-delivered after it.
    fn supersedes(&self, new: &Self::Item, current: &Self::Item) -> bool {
        let _ = (new, current);
        true
    }

    /// Runs once the batch is settled (dead letters stored, every record's fate decided), before
    /// the response is returned: side effects that must never hold or fail the batch, such as
    /// notifications. Stop at `deadline`.
    fn after_settled(
        &self,
        deadline: &Deadline,
        stats: &mut Self::Stats,
    ) -> impl Future<Output = ()> + Send {
        let _ = (deadline, stats);
        async {}
    }

    /// Adds the function's counters to the invocation's metrics line.
    fn metrics(&self, stats: &Self::Stats, set: &mut MetricSet) {
        let _ = (stats, set);
    }
}

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
    function: F,
    dead_letters: D,
    deadline: DeadlineSettings,
    metrics: Metrics,
    otlp: Option<OtlpExporter>,
}

/// What every function's runner needs, read once at cold start by
/// [`RunnerConfig::from_env`]: the PostgREST connection with the Supabase key (dead letters, and
/// the tables the function writes), `DEAD_LETTER_TABLE`, `WRITE_MAX_ROWS` / `WRITE_MAX_BYTES` /
/// `WRITE_CONCURRENCY`, the deadline settings and the metrics line. A function's own `Config`
/// holds one beside its own settings, and its `build()` hands its [`BatchFunction`] to
/// [`RunnerConfig::runner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// PostgREST connection (`SUPABASE_URL` / `SUPABASE_REST_URL`, the key, timeouts, retries).
    pub postgrest: PostgrestConfig,
    /// `DEAD_LETTER_TABLE` (default `dead_letters`).
    pub dead_letter_table: String,
    /// `WRITE_MAX_ROWS`, `WRITE_MAX_BYTES`, `WRITE_CONCURRENCY`: bounds of bulk writes.
    pub limits: WriteLimits,
    /// `DEADLINE_SAFETY_MARGIN_MS`, `DEFAULT_BUDGET_MS`.
    pub deadline: DeadlineSettings,
    /// `METRICS_ENABLED`, `METRICS_NAMESPACE`.
    pub metrics: Metrics,
    /// `OTEL_TRACES_EXPORTER=otlp` and the `OTEL_EXPORTER_OTLP_*` settings: the batch span's
    /// export, off by default.
    pub otlp: Option<OtlpExporter>,
}

impl RunnerConfig {
    /// Reads `env` for the function `function_name` (its metrics' `FunctionName` when
    /// `AWS_LAMBDA_FUNCTION_NAME` is unset). Every setting is checked before the key is resolved
    /// (from the environment or Secrets Manager), so a typo fails fast without an AWS call.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use lambda_kit::runner::RunnerConfig;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let env = Env::from_pairs([("SUPABASE_REST_URL", "http://127.0.0.1:3000"), ("SUPABASE_SECRET_KEY", "sb_secret_x")]);
    /// let c = RunnerConfig::from_env(&env, "my-function").await.unwrap();
    /// assert_eq!(c.dead_letter_table, "dead_letters");
    /// let e = RunnerConfig::from_env(&Env::from_pairs([("WRITE_MAX_ROWS", "0")]), "f").await.unwrap_err();
    /// assert!(e.to_string().contains("WRITE_MAX_ROWS"));
    /// # }
    /// ```
    pub async fn from_env(env: &Env, function_name: &str) -> Result<Self, InitError> {
        let dead_letter_table = env.identifier_or("DEAD_LETTER_TABLE", "dead_letters")?;
        let limits = WriteLimits::from_env(env)?;
        let deadline = DeadlineSettings::from_env(env)?;
        let metrics = Metrics::from_env(env, function_name)?;
        let otlp = OtlpExporter::from_env(env, function_name)?;
        let probe = PostgrestConfig::from_env(env, Secret::new(""))?;
        let key = resolve_key(env).await?;
        Ok(Self {
            postgrest: PostgrestConfig { key, ..probe },
            dead_letter_table,
            limits,
            deadline,
            metrics,
            otlp,
        })
    }

    /// `function` run with its dead letters written through `client`, the deadline settings and
    /// the metrics line.
    pub fn runner<F: BatchFunction>(
        &self,
        function: F,
        client: PostgrestClient,
    ) -> Runner<F, PostgrestDeadLetters> {
        let dead_letters =
            PostgrestDeadLetters::new(client, self.dead_letter_table.clone(), self.limits);
        Runner::new(function, dead_letters, self.deadline.clone())
            .with_metrics(self.metrics.clone())
            .with_otlp(self.otlp.clone())
    }
}

/// One group of records with the same key.
struct Group<I> {
    /// Record indices in batch order.
    records: Vec<usize>,
    item: I,
    /// The record whose item is written.
    chosen: usize,
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
        let mut fates: Vec<Option<Fate>> = vec![None; records.len()];
        let mut stats = F::Stats::default();
        let trace = BatchTrace::of(records);
        trace.scope(self.function.prepare(records, deadline)).await;
        let (keys, groups) = self.decode(records, &mut fates, &mut stats);

        let mut written: Vec<(Vec<usize>, usize)> = Vec::with_capacity(groups.len());
        let mut items = Vec::with_capacity(groups.len());
        for (key, g) in keys.into_iter().zip(groups) {
            written.push((g.records, g.chosen));
            items.push((key, g.item));
        }
        let results = if items.is_empty() {
            Vec::new()
        } else {
            let n = items.len();
            let results = trace
                .scope(self.function.write(deadline, items, &mut stats))
                .await;
            judge(n, results)
        };
        let mut results = results.into_iter();
        for (group, chosen) in &written {
            let fate = results.next().unwrap_or_else(Fate::missing);
            fan_out(F::KEEP, group, *chosen, fate, &mut fates);
        }

        let mut fates: Vec<Fate> = fates
            .into_iter()
            .map(|f| f.unwrap_or_else(Fate::missing))
            .collect();
        trace
            .scope(self.store_dead_letters(records, &mut fates, deadline, &trace))
            .await;
        log_failures(records, &fates, &trace);
        trace
            .scope(self.function.after_settled(deadline, &mut stats))
            .await;

        let mut report = BatchReport::for_batch(batch);
        for (record, fate) in records.iter().zip(&fates) {
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
                trace: &trace,
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

    /// Decodes every record; settled records get their fate, the others are grouped by key.
    fn decode(
        &self,
        records: &[KafkaRecord],
        fates: &mut [Option<Fate>],
        stats: &mut F::Stats,
    ) -> (Vec<F::Key>, Vec<Group<F::Item>>) {
        let mut index: HashMap<F::Key, usize> = HashMap::new();
        let mut groups: Vec<Group<F::Item>> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            match self.function.decode(record, stats) {
                Decoded::Settled(fate) => fates[i] = Some(fate),
                Decoded::Item { key, item } => match index.get(&key) {
                    Some(&g) => {
                        let group = &mut groups[g];
                        group.records.push(i);
                        if F::KEEP == Keep::Last && self.function.supersedes(&item, &group.item) {
                            group.item = item;
                            group.chosen = i;
                        }
                    }
                    None => {
                        index.insert(key, groups.len());
                        groups.push(Group {
                            records: vec![i],
                            item,
                            chosen: i,
                        });
                    }
                },
            }
        }
        let mut keys: Vec<Option<F::Key>> = (0..groups.len()).map(|_| None).collect();
        for (key, g) in index {
            keys[g] = Some(key);
        }
        let keys = keys
            .into_iter()
            .map(|k| k.expect("every group has its key"))
            .collect();
        (keys, groups)
    }

    /// Writes a dead letter for every rejected record; a letter that is not stored turns its
    /// record into a failure (redelivered, never acknowledged without its letter).
    async fn store_dead_letters(
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
                    _ => Fault::Transient,
                },
            };
        }
    }
}

/// The rule "dead letters are for what the record itself causes", applied to a write's results:
/// when every item of a write (two or more) is rejected with the same code and message, no row
/// is at fault but the target (a column or table missing from the schema, a type the API cannot
/// see, a vector size of another model), and they fail as an environment fault, to be
/// redelivered once it is fixed, instead of being dead-lettered.
///
/// Isolation happens once, in the function's write: its rejections are of items tried alone
/// ([`BatchFunction::write`] isolates with [`crate::bulk::bisect`]), so the runner judges what
/// it is given and writes nothing again.
fn judge(n: usize, results: Vec<Fate>) -> Vec<Fate> {
    if results.len() != n || !refused_alike(&results) {
        return results;
    }
    results
        .into_iter()
        .map(|f| match f {
            Fate::Rejected { code, message } => Fate::Failed {
                code,
                message: format!(
                    "every item, written alone, was refused with the same error, so the target (schema, table, configuration) is at fault, not the records: {message}"
                ),
                fault: Fault::Environment,
            },
            other => other,
        })
        .collect()
}

/// Whether every fate (two or more) is a rejection with the same code and message.
fn refused_alike(fates: &[Fate]) -> bool {
    match fates.first() {
        Some(Fate::Rejected { code, message }) if fates.len() >= 2 => fates.iter().all(
            |f| matches!(f, Fate::Rejected { code: c, message: m } if c == code && m == message),
        ),
        _ => false,
    }
}

/// Gives the fate of a group's written item to every record of the group.
fn fan_out(keep: Keep, group: &[usize], written: usize, fate: Fate, fates: &mut [Option<Fate>]) {
    for &i in group.iter().filter(|&&i| i != written) {
        fates[i] = Some(match (&fate, keep) {
            (Fate::Stored | Fate::Skipped, Keep::First) => Fate::Skipped,
            (Fate::Rejected { .. }, Keep::Last) => Fate::Skipped,
            (other, _) => other.clone(),
        });
    }
    fates[written] = Some(fate);
}

/// One line per failure code: environment faults at error level (an operator must act), transient
/// ones as warnings; each with the first record it hit and how many records it failed.
fn log_failures(records: &[KafkaRecord], fates: &[Fate], trace: &BatchTrace) {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use event_decoding::EventSource;

    use super::*;

    /// Values are `"<key>:<what>"`; `what` is `ok`, `bad` (rejected at write), `down` (failed
    /// transiently at write), `junk` (rejected at decode) or `poison` (refuses the whole write:
    /// every item of a write holding it is rejected alike, as a read of all the batch's ids
    /// refused for one of them). `short` makes write return one fate too few.
    struct Fake {
        short: bool,
        written: Mutex<Vec<String>>,
    }

    impl BatchFunction for Fake {
        type Key = String;
        type Item = String;
        type Stats = usize;
        const KEEP: Keep = Keep::First;
        fn name(&self) -> &str {
            "fake"
        }
        fn decode(&self, record: &KafkaRecord, _: &mut usize) -> Decoded<String, String> {
            let text = record.value_str().unwrap().unwrap_or_default();
            match text.split_once(':') {
                Some((_, "junk")) | None => {
                    Decoded::Settled(Fate::rejected("junk", "not a key:what pair"))
                }
                Some((key, _)) => Decoded::Item {
                    key: key.to_owned(),
                    item: text,
                },
            }
        }
        async fn write(
            &self,
            _: &Deadline,
            items: Vec<(String, String)>,
            calls: &mut usize,
        ) -> Vec<Fate> {
            *calls += 1;
            if items.iter().any(|(_, item)| item.ends_with(":poison")) {
                return vec![Fate::rejected("db_bad_request", "batch read refused"); items.len()];
            }
            let mut fates: Vec<Fate> = items
                .iter()
                .map(|(_, item)| {
                    self.written.lock().unwrap().push(item.clone());
                    match item.split_once(':').unwrap().1 {
                        "bad" => Fate::rejected("bad_item", "refused"),
                        "down" => Fate::Failed {
                            code: "down",
                            message: "503".into(),
                            fault: Fault::Transient,
                        },
                        _ => Fate::Stored,
                    }
                })
                .collect();
            if self.short {
                fates.pop();
            }
            fates
        }
    }

    /// The same function keeping the last item of a key.
    struct LastFake(Fake);

    impl BatchFunction for LastFake {
        type Key = String;
        type Item = String;
        type Stats = usize;
        const KEEP: Keep = Keep::Last;
        fn name(&self) -> &str {
            "fake"
        }
        fn decode(&self, record: &KafkaRecord, stats: &mut usize) -> Decoded<String, String> {
            self.0.decode(record, stats)
        }
        /// A change marked `old` (a replay of an earlier version) never replaces another.
        fn supersedes(&self, new: &String, _: &String) -> bool {
            !new.ends_with(":old")
        }
        async fn write(
            &self,
            d: &Deadline,
            items: Vec<(String, String)>,
            calls: &mut usize,
        ) -> Vec<Fate> {
            self.0.write(d, items, calls).await
        }
    }

    /// Stores letters, except those of the given offsets (refused) and past `limit` (missing).
    #[derive(Default)]
    struct Letters {
        refuse: Vec<i64>,
        limit: Option<usize>,
        seen: Mutex<Vec<(i64, String)>>,
    }

    impl DeadLetterSink for Letters {
        async fn write(&self, _: &Deadline, letters: &[DeadLetter]) -> Vec<Fate> {
            let mut seen = self.seen.lock().unwrap();
            let mut out = Vec::new();
            for l in letters.iter().take(self.limit.unwrap_or(usize::MAX)) {
                seen.push((l.record.offset, l.error_code.clone()));
                out.push(if self.refuse.contains(&l.record.offset) {
                    Fate::Failed {
                        code: "db_unavailable",
                        message: "503".into(),
                        fault: Fault::Transient,
                    }
                } else {
                    Fate::Stored
                });
            }
            out
        }
    }

    fn fake(short: bool) -> Fake {
        Fake {
            short,
            written: Mutex::default(),
        }
    }

    fn batch(values: &[&str]) -> KafkaBatch {
        KafkaBatch::builder(EventSource::Msk)
            .records(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| KafkaRecord::new("t", 0, i as i64, 0).with_value(*v)),
            )
            .build()
    }

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    fn failed_offsets(h: &Handled<usize>) -> Vec<i64> {
        let mut v: Vec<i64> = h
            .response
            .as_ref()
            .unwrap()
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.offset)
            .collect();
        v.sort_unstable();
        v
    }

    #[tokio::test]
    async fn first_wins_duplicates_follow_the_first_record() {
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
        let b = batch(&["a:ok", "b:bad", "a:ok", "b:bad", "c:junk", "d:down", "d:ok"]);
        let h = r.process(&b, &deadline()).await;
        assert_eq!(h.stats, 1, "one write call");
        assert_eq!(
            *r.function().written.lock().unwrap(),
            ["a:ok", "b:bad", "d:down"],
            "one item per key, the first"
        );
        assert_eq!(h.counts.stored, 1);
        assert_eq!(h.counts.skipped, 1, "the duplicate of a stored record");
        assert_eq!(h.counts.dead_lettered, 3, "b twice and the junk record");
        assert_eq!(
            failed_offsets(&h),
            [5, 6],
            "d failed, its duplicate with it"
        );
        let letters = r.dead_letters().seen.lock().unwrap().clone();
        assert_eq!(
            letters,
            [
                (1, "bad_item".into()),
                (3, "bad_item".into()),
                (4, "junk".into())
            ]
        );
    }

    #[tokio::test]
    async fn last_wins_superseded_records_share_the_fate_or_are_skipped() {
        let r = Runner::new(
            LastFake(fake(false)),
            Letters::default(),
            DeadlineSettings::default(),
        );
        let b = batch(&["a:bad", "a:ok", "b:ok", "b:bad", "c:ok", "c:down"]);
        let h = r.process(&b, &deadline()).await;
        assert_eq!(
            *r.function().0.written.lock().unwrap(),
            ["a:ok", "b:bad", "c:down"]
        );
        assert_eq!(h.counts.stored, 2, "a's two records");
        assert_eq!(h.counts.skipped, 1, "b's superseded record");
        assert_eq!(h.counts.dead_lettered, 1, "only b's last record");
        assert_eq!(failed_offsets(&h), [4, 5]);
        assert_eq!(
            *r.dead_letters().seen.lock().unwrap(),
            [(3, "bad_item".to_string())]
        );
    }

    #[tokio::test]
    async fn every_item_refused_alike_is_an_environment_fault_not_dead_letters() {
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
        let h = r
            .process(&batch(&["a:bad", "b:bad", "c:junk"]), &deadline())
            .await;
        assert_eq!(failed_offsets(&h), [0, 1], "redelivered, not dead-lettered");
        assert_eq!(
            h.counts.dead_lettered, 1,
            "only the record that failed to decode"
        );
        assert_eq!(
            *r.dead_letters().seen.lock().unwrap(),
            [(2, "junk".to_string())]
        );

        // One item alone, or refusals that differ, are the rows' own fault.
        let h = r.process(&batch(&["a:bad", "b:ok"]), &deadline()).await;
        assert_eq!(h.counts.dead_lettered, 1);
        let h = r.process(&batch(&["d:bad"]), &deadline()).await;
        assert_eq!(h.counts.dead_lettered, 1);
    }

    #[tokio::test]
    async fn a_write_is_made_once_and_a_refusal_of_every_item_judged_without_writing_again() {
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
        // Every item refused alike: the target is at fault, nothing is dead-lettered, and the
        // items are not written again (isolating is the write's own job, done where the requests
        // are made: a function whose write embeds first would embed them all again).
        let h = r
            .process(&batch(&["x:poison", "y:poison", "z:poison"]), &deadline())
            .await;
        assert_eq!(h.stats, 1, "one write call");
        assert_eq!(h.counts.dead_lettered, 0);
        assert_eq!(h.response.unwrap_err().failed, 3, "redelivered");

        let values: Vec<String> = (0..8).map(|i| format!("k{i}:bad")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let h = r.process(&batch(&values), &deadline()).await;
        assert_eq!(h.stats, 1, "one write call");
        assert_eq!(h.counts.dead_lettered, 0);
        assert_eq!(h.response.unwrap_err().failed, 8);
    }

    #[tokio::test]
    async fn a_replayed_older_change_does_not_replace_the_newer_one() {
        let r = Runner::new(
            LastFake(fake(false)),
            Letters::default(),
            DeadlineSettings::default(),
        );
        let h = r
            .process(&batch(&["a:ok", "a:old", "b:down", "b:old"]), &deadline())
            .await;
        assert_eq!(*r.function().0.written.lock().unwrap(), ["a:ok", "b:down"]);
        assert_eq!(
            h.counts.stored, 2,
            "a's newer change and the replay it supersedes"
        );
        assert_eq!(
            failed_offsets(&h),
            [2, 3],
            "b failed: its replay is not acknowledged ahead of it"
        );
    }

    #[tokio::test]
    async fn a_missing_write_result_is_a_failure_not_an_acknowledgement() {
        let r = Runner::new(fake(true), Letters::default(), DeadlineSettings::default());
        let h = r.process(&batch(&["a:ok", "b:ok"]), &deadline()).await;
        assert_eq!(h.counts.stored, 1);
        assert_eq!(failed_offsets(&h), [1]);
    }

    #[tokio::test]
    async fn a_dead_letter_not_stored_or_not_answered_fails_its_record() {
        let letters = Letters {
            refuse: vec![0],
            limit: Some(2),
            ..Letters::default()
        };
        let r = Runner::new(fake(false), letters, DeadlineSettings::default());
        let h = r
            .process(&batch(&["x", "y", "z", "a:ok"]), &deadline())
            .await;
        // 0 refused, 1 stored, 2 never answered by the sink.
        assert_eq!(h.counts.dead_lettered, 1);
        assert_eq!(failed_offsets(&h), [0, 2]);
    }

    #[tokio::test]
    async fn every_record_failed_is_all_failed_and_empty_batch_writes_nothing() {
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
        let h = r.process(&batch(&["a:down", "b:down"]), &deadline()).await;
        assert_eq!(h.response.unwrap_err().failed, 2);

        let h = r.process(&batch(&[]), &deadline()).await;
        assert_eq!(h.stats, 0, "no write call for an empty batch");
        assert!(h.response.unwrap().batch_item_failures.is_empty());
    }

    fn traced(values: &[&str]) -> KafkaBatch {
        let tps = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ];
        KafkaBatch::builder(EventSource::Msk)
            .records(values.iter().enumerate().map(|(i, v)| {
                KafkaRecord::new("gifts", 0, i as i64, 0)
                    .with_value(*v)
                    .with_header(crate::trace::TRACEPARENT, tps[i % 2])
            }))
            .build()
    }

    fn otlp_to(url: &str) -> OtlpExporter {
        let env = crate::config::Env::from_pairs([
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
        ]);
        OtlpExporter::from_env(&env, "fake").unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_traced_batch_exports_one_span_when_enabled() {
        let server = crate::testing::MockServer::start(vec![(200, vec![], "{}".into())]).await;
        let b = traced(&["a:ok", "b:down", "c:ok"]);

        // Off (the default): nothing is sent.
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
        r.process(&b, &deadline()).await;
        assert!(server.requests().is_empty());

        let r = r.with_otlp(Some(otlp_to(&server.url())));
        let before = std::time::SystemTime::now();
        let h = r.process(&b, &deadline()).await;
        assert_eq!(failed_offsets(&h), [1]);
        let seen = server.requests();
        assert_eq!(seen.len(), 1, "one request per batch");
        assert!(seen[0].head.starts_with("POST /v1/traces "));
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans.as_array().unwrap().len(), 1);
        let span = &spans[0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["kind"], 5);
        assert_eq!(span["status"]["code"], 2, "a record failed");
        assert_eq!(span["links"][0]["spanId"], "b7ad6b7169203331");
        let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let before = before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(before <= start && start <= end, "{before} {start} {end}");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "fake"
        );

        // An untraced batch sends nothing.
        r.process(&batch(&["z:ok"]), &deadline()).await;
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_collector_down_or_failing_does_not_change_the_result() {
        let b = traced(&["a:ok", "b:bad", "c:down"]);
        let plain = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
        let expected = failed_offsets(&plain.process(&b, &deadline()).await);
        assert_eq!(expected, [2]);

        let failing = crate::testing::MockServer::start(vec![(500, vec![], "no".into())]).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for url in [failing.url(), format!("http://127.0.0.1:{port}")] {
            let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default())
                .with_otlp(Some(otlp_to(&url)));
            let h = r.process(&b, &deadline()).await;
            assert_eq!(failed_offsets(&h), expected, "{url}");
            assert_eq!((h.counts.stored, h.counts.dead_lettered), (1, 1));
        }
        assert_eq!(failing.requests().len(), 1, "no retry");
    }

    #[tokio::test]
    async fn metrics_line_has_the_batch_counts() {
        let (metrics, lines) = Metrics::capture("KafkaLambdas", "fake");
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default())
            .with_metrics(metrics);
        r.process(&batch(&["a:ok", "b:bad", "c:down"]), &deadline())
            .await;
        let docs = lines.documents();
        assert_eq!(docs.len(), 1);
        crate::metrics::check_emf(&docs[0]).unwrap();
        assert_eq!(docs[0]["RecordsReceived"], 3);
        assert_eq!(docs[0]["RecordsStored"], 1);
        assert_eq!(docs[0]["RecordsDeadLettered"], 1);
        assert_eq!(docs[0]["RecordsFailed"], 1);
    }
}
