//! One batch lifecycle for every Kafka-triggered function: a function supplies its decode and its
//! write ([`BatchFunction`]); the [`Runner`] owns everything else — grouping records by key,
//! handing the write the items its [`Keep`] selects, fanning each item's fate back to the records
//! it stands for, dead letters, the partial batch response, the summary log line and the metrics
//! line.
//!
//! ```text
//!                            ┌─ Settled(fate) ────────────────────────────────────────┐
//!                            │                                                        ▼
//! records ─prepare─▶ decode ─┴─ items by key ─keep()─▶ write ─judge─▶ fan out ─▶ fate per record
//!                                                        │                            │
//!                                                        │ AfterSettled               ▼
//!                                                        └──▶ after_settled ◀──── dead letters
//!                                                                   │
//! Handled ◀── report: response, summary log, metrics, span export ◀─┘
//! ```
//!
//! What the runner guarantees, whatever the function does:
//! - every record ends with exactly one [`Fate`](crate::fate::Fate); a result the function does
//!   not return counts as [`Fate::Failed`](crate::fate::Fate::Failed), never as acknowledged;
//! - a rejected record is acknowledged only once its dead letter is stored;
//! - each rejected record is logged with its topic, partition and offset; environment faults are
//!   logged once per invocation and error code, at error level, with the message naming what to
//!   fix;
//! - every invocation ends with one summary log line and, when enabled, one EMF metrics line;
//! - a record's W3C `traceparent` header is logged with each line about that record, and the
//!   batch's work runs in a span child of the first traced record's, whose context every
//!   outbound request carries (see [`crate::trace`]); with `OTEL_TRACES_EXPORTER=otlp` that span
//!   is exported to an OpenTelemetry collector after the batch (see [`crate::otlp`]).
//!
//! The files: `function` (the trait, [`Decoded`], [`Keep`]), `group` (records grouped by key,
//! the write's results judged and fanned out), `lifecycle` (the [`Runner`] and its steps in
//! order), `report` (dead letters, failure logs, response, summary, metrics, span export),
//! `config` ([`RunnerConfig`]).

mod config;
mod function;
mod group;
mod lifecycle;
mod report;

#[cfg(test)]
mod tests;

pub use config::RunnerConfig;
pub use function::{BatchFunction, Decoded, Keep};
pub use lifecycle::{Handled, Runner};
