//! The table-sink steps of the shared batch lifecycle ([`lambda_kit::runner`]): decode a record
//! into a row keyed by its conflict columns, then upsert one row per key. Grouping, dead letters,
//! the partial batch response, the summary log and the metrics line are the runner's.
//!
//! What a batch with several records of one key writes, per `SINK_ON_CONFLICT`
//! ([`OnConflictMode`]):
//! - `merge`: what writing the records one by one, in Kafka order, would leave: a field a later
//!   record carries replaces the earlier value, a field it omits is left alone. The runner hands
//!   every record of a key to the write step ([`Keep::All`]: a record it dropped as superseded
//!   would be acknowledged without its fields being written), which folds them, oldest first,
//!   into one row. When the database refuses a folded row for its data, its records are written
//!   again one at a time, in order, so only the bad one is dead-lettered and an earlier good
//!   change of the key is still written.
//! - `ignore`: the first record of a key is inserted if the row does not exist yet; later ones
//!   are duplicates ([`Keep::First`]), as they are across batches.

use std::ops::Range;

use event_decoding::KafkaRecord;
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::fate::Fate;
use lambda_kit::postgrest::Duplicates;
use lambda_kit::retry::Deadline;
use lambda_kit::runner::{BatchFunction, Decoded, Keep, Runner};
use lambda_kit::schema_registry::Values;

use crate::row::{Fields, Shape};
use crate::store::{PostgrestRows, RowStore};

/// Name of the function in dead letters (stable across deployments, so redelivery dedupes).
pub const FUNCTION_NAME: &str = "table-sink";

/// `SINK_ON_CONFLICT`: what a record does to an existing row of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflictMode {
    /// `merge` (the default): update the existing row with the fields a record carries.
    Merge,
    /// `ignore`: keep the existing row.
    Ignore,
}

impl OnConflictMode {
    /// Which records of a key the runner hands to the write step.
    pub fn keep(self) -> Keep {
        match self {
            Self::Merge => Keep::All,
            Self::Ignore => Keep::First,
        }
    }

    /// The PostgREST resolution of an existing key, for the store's upsert.
    pub fn duplicates(self) -> Duplicates {
        match self {
            Self::Merge => Duplicates::Merge,
            Self::Ignore => Duplicates::Ignore,
        }
    }
}

/// Rows of a topic (JSON values, or Avro, Protobuf and JSON Schema ones by `VALUE_FORMAT`) into a
/// [`RowStore`].
#[derive(Debug)]
pub struct TableSink<S> {
    store: S,
    shape: Shape,
    on_conflict: OnConflictMode,
    values: Values,
}

impl<S: RowStore> TableSink<S> {
    /// Rows shaped by `shape`, written to `store` (which must resolve duplicates as
    /// `on_conflict` [says](OnConflictMode::duplicates)); values are JSON.
    pub fn new(store: S, shape: Shape, on_conflict: OnConflictMode) -> Self {
        Self {
            store,
            shape,
            on_conflict,
            values: Values::default(),
        }
    }

    /// Values decoded as `values` says (`VALUE_FORMAT`, the schema registry).
    pub fn with_values(mut self, values: Values) -> Self {
        self.values = values;
        self
    }

    /// The row store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// `SINK_ON_CONFLICT`.
    pub fn on_conflict(&self) -> OnConflictMode {
        self.on_conflict
    }
}

impl<S: RowStore> BatchFunction for TableSink<S> {
    /// The conflict columns' values, canonical ([`Shape::row`]).
    type Key = String;
    type Item = Fields;
    type Stats = ();
    type AfterSettled = ();

    fn keep(&self) -> Keep {
        self.on_conflict.keep()
    }

    fn name(&self) -> &str {
        FUNCTION_NAME
    }

    async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        self.values.prepare(records, deadline).await
    }

    fn decode(&self, record: &KafkaRecord, _: &mut ()) -> Decoded<String, Fields> {
        match self.shape.row_via(record, self.values.decoding()) {
            Err(fate) => Decoded::Settled(fate),
            Ok((key, item)) => Decoded::Item { key, item },
        }
    }

    /// The items of a key come one after another, oldest first (with `ignore`, one per key).
    async fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(String, Fields)>,
        _: &mut (),
        _: &mut (),
    ) -> Vec<Fate> {
        // The items of each key: a run of equal keys.
        let mut keys: Vec<Range<usize>> = Vec::new();
        let mut start = 0;
        for run in items.chunk_by(|(a, _), (b, _)| a == b) {
            keys.push(start..start + run.len());
            start += run.len();
        }
        let rows: Vec<Fields> = items.into_iter().map(|(_, fields)| fields).collect();

        // One row per key (PostgreSQL refuses to upsert a row twice in one statement): the
        // key's items folded oldest first, later fields winning.
        let merged: Vec<Fields> = keys
            .iter()
            .map(|members| fold(rows[members.clone()].iter()))
            .collect();
        let mut fates: Vec<Option<Fate>> = vec![None; rows.len()];
        let mut refused: Vec<Range<usize>> = Vec::new();
        let written = self.store.write(deadline, &merged).await;
        for (members, fate) in keys.iter().zip(results(written)) {
            if members.len() > 1 && matches!(fate, Fate::Rejected { .. }) {
                refused.push(members.clone());
            } else {
                fates[members.clone()].fill(Some(fate.clone()));
            }
        }

        // A folded row refused for its data: its items again, one at a time in Kafka order, so
        // that only the bad ones are dead-lettered. After a failure the key's later items are
        // not written (a newer change must not land ahead of an older one redelivered).
        for layer in 0.. {
            let now: Vec<(usize, usize)> = refused
                .iter()
                .map(|members| (members.start + layer, members.end))
                .filter(|&(i, end)| i < end && fates[i].is_none())
                .collect();
            if now.is_empty() {
                break;
            }
            let again: Vec<Fields> = now.iter().map(|(i, _)| rows[*i].clone()).collect();
            let written = self.store.write(deadline, &again).await;
            for ((i, end), fate) in now.into_iter().zip(results(written)) {
                if matches!(fate, Fate::Failed { .. }) {
                    fates[i + 1..end].fill(Some(fate.clone()));
                }
                fates[i] = Some(fate);
            }
        }
        fates
            .into_iter()
            .map(|f| f.unwrap_or_else(Fate::missing))
            .collect()
    }
}

/// A store's results, a missing one counting as failed.
fn results(fates: Vec<Fate>) -> impl Iterator<Item = Fate> {
    fates
        .into_iter()
        .chain(std::iter::repeat_with(Fate::missing))
}

/// Rows merged in order: a later row's fields replace the earlier ones.
fn fold<'a>(rows: impl Iterator<Item = &'a Fields>) -> Fields {
    let mut merged = Fields::new();
    for fields in rows {
        merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged
}

/// The handler `main` runs: rows and dead letters through PostgREST, in the mode
/// `SINK_ON_CONFLICT` chose.
pub type PostgrestHandler = Runner<TableSink<PostgrestRows>, PostgrestDeadLetters>;
