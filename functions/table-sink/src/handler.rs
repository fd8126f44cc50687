//! The table-sink steps of the shared batch lifecycle ([`lambda_kit::runner`]): decode a record
//! into a row keyed by its conflict columns, then upsert one row per key. Grouping, dead letters,
//! the partial batch response, the summary log and the metrics line are the runner's.
//!
//! What a batch with several records of one key writes, per `SINK_ON_CONFLICT`:
//! - `merge` ([`Merge`]): what writing the records one by one, in Kafka order, would leave: a
//!   field a later record carries replaces the earlier value, a field it omits is left alone.
//!   The runner hands every record to the write step (each is its own group), which folds the
//!   records of a key, oldest first, into one row. When the database refuses a folded row for
//!   its data, its records are written again one at a time, in order, so only the bad one is
//!   dead-lettered and an earlier good change of the key is still written.
//! - `ignore` ([`Ignore`]): the first record of a key is inserted if the row does not exist yet;
//!   later ones are duplicates ([`Keep::First`]), as they are across batches.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use event_decoding::{KafkaBatch, KafkaBatchResponse, KafkaRecord};
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::fate::Fate;
use lambda_kit::postgrest::Duplicates;
use lambda_kit::retry::Deadline;
use lambda_kit::runner::{BatchFunction, Decoded, Handled, Keep, Runner};
use lambda_kit::schema_registry::Values;
use lambda_runtime::LambdaEvent;

use crate::row::{Fields, Shape};
use crate::store::{PostgrestRows, RowStore};

/// Name of the function in dead letters (stable across deployments, so redelivery dedupes).
pub const FUNCTION_NAME: &str = "table-sink";

/// What a record does to an existing row of its key (`SINK_ON_CONFLICT`). The runner's
/// [`Keep`] is a constant of the function's type, so each choice is a type.
pub trait OnConflict: fmt::Debug + Send + Sync + 'static {
    /// Which records of a key the runner hands to the write step.
    const KEEP: Keep;
    /// The PostgREST resolution of an existing key.
    const DUPLICATES: Duplicates;
}

/// `SINK_ON_CONFLICT=merge`: later records update the row.
#[derive(Debug, Clone, Copy)]
pub struct Merge;

impl OnConflict for Merge {
    const KEEP: Keep = Keep::Last;
    const DUPLICATES: Duplicates = Duplicates::Merge;
}

/// `SINK_ON_CONFLICT=ignore`: the first row of a key stays.
#[derive(Debug, Clone, Copy)]
pub struct Ignore;

impl OnConflict for Ignore {
    const KEEP: Keep = Keep::First;
    const DUPLICATES: Duplicates = Duplicates::Ignore;
}

/// What the runner groups records by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    /// The conflict columns' values, canonical ([`Shape::row`]).
    pub key: String,
    /// Merge: the record's partition and offset, so the runner groups nothing and the write step
    /// folds a key's records itself (a record superseded in the runner would be acknowledged
    /// without being written if the later one were refused). Ignore: `None`, one group per key.
    pub at: Option<(i32, i64)>,
}

/// One decoded record.
#[derive(Debug, Clone)]
pub struct Row {
    /// Where the record is in its partition, to fold a key's records in Kafka order.
    pub at: (i32, i64),
    /// The row's fields.
    pub fields: Fields,
}

/// Rows of a topic (JSON values, or Avro, Protobuf and JSON Schema ones by `VALUE_FORMAT`) into a
/// [`RowStore`].
#[derive(Debug)]
pub struct TableSink<S, C> {
    store: S,
    shape: Shape,
    values: Values,
    on_conflict: PhantomData<C>,
}

impl<S: RowStore, C: OnConflict> TableSink<S, C> {
    /// Rows shaped by `shape`, written to `store` (which must resolve duplicates as
    /// `C::DUPLICATES`); values are JSON.
    pub fn new(store: S, shape: Shape) -> Self {
        Self {
            store,
            shape,
            values: Values::default(),
            on_conflict: PhantomData,
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
}

impl<S: RowStore, C: OnConflict> BatchFunction for TableSink<S, C> {
    type Key = RowKey;
    type Item = Row;
    type Stats = ();

    const KEEP: Keep = C::KEEP;

    fn name(&self) -> &str {
        FUNCTION_NAME
    }

    async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        self.values.prepare(records, deadline).await
    }

    fn decode(&self, record: &KafkaRecord, _: &mut ()) -> Decoded<RowKey, Row> {
        match self.shape.row_via(record, self.values.decoding()) {
            Err(fate) => Decoded::Settled(fate),
            Ok((key, fields)) => Decoded::Item {
                key: RowKey {
                    at: (C::KEEP == Keep::Last).then_some((record.partition, record.offset)),
                    key,
                },
                item: Row {
                    at: (record.partition, record.offset),
                    fields,
                },
            },
        }
    }

    async fn write(&self, deadline: &Deadline, items: Vec<(RowKey, Row)>, _: &mut ()) -> Vec<Fate> {
        // The items of each key, oldest first.
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut keys: Vec<Vec<usize>> = Vec::new();
        let mut rows: Vec<Row> = Vec::with_capacity(items.len());
        for (i, (key, row)) in items.into_iter().enumerate() {
            let next = keys.len();
            let k = *index.entry(key.key).or_insert(next);
            if k == next {
                keys.push(Vec::new());
            }
            keys[k].push(i);
            rows.push(row);
        }
        for members in &mut keys {
            members.sort_by_key(|&i| rows[i].at);
        }

        // One row per key (PostgreSQL refuses to upsert a row twice in one statement): the
        // key's items folded oldest first, later fields winning.
        let merged: Vec<Fields> = keys
            .iter()
            .map(|members| fold(members.iter().map(|&i| &rows[i].fields)))
            .collect();
        let mut fates: Vec<Option<Fate>> = vec![None; rows.len()];
        let mut refused: Vec<&[usize]> = Vec::new();
        let written = self.store.write(deadline, &merged).await;
        for (members, fate) in keys.iter().zip(results(written)) {
            if members.len() > 1 && matches!(fate, Fate::Rejected { .. }) {
                refused.push(members);
            } else {
                for &i in members {
                    fates[i] = Some(fate.clone());
                }
            }
        }

        // A folded row refused for its data: its items again, one at a time in Kafka order, so
        // that only the bad ones are dead-lettered. After a failure the key's later items are
        // not written (a newer change must not land ahead of an older one redelivered).
        for layer in 0.. {
            let now: Vec<(usize, &[usize])> = refused
                .iter()
                .filter_map(|members| members.get(layer).map(|&i| (i, *members)))
                .filter(|(i, _)| fates[*i].is_none())
                .collect();
            if now.is_empty() {
                break;
            }
            let again: Vec<Fields> = now.iter().map(|(i, _)| rows[*i].fields.clone()).collect();
            let written = self.store.write(deadline, &again).await;
            for ((i, members), fate) in now.into_iter().zip(results(written)) {
                if matches!(fate, Fate::Failed { .. }) {
                    for &later in &members[layer + 1..] {
                        fates[later] = Some(fate.clone());
                    }
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

/// A runner over PostgREST for one `SINK_ON_CONFLICT` choice.
pub type PostgrestRunner<C> = Runner<TableSink<PostgrestRows, C>, PostgrestDeadLetters>;

/// The handler `main` runs: rows and dead letters through PostgREST, in the mode
/// `SINK_ON_CONFLICT` chose.
#[derive(Debug)]
pub enum PostgrestHandler {
    /// `SINK_ON_CONFLICT=merge`.
    Merge(PostgrestRunner<Merge>),
    /// `SINK_ON_CONFLICT=ignore`.
    Ignore(PostgrestRunner<Ignore>),
}

impl PostgrestHandler {
    /// The Lambda entry point ([`Runner::handle`]).
    pub async fn handle(
        &self,
        event: LambdaEvent<KafkaBatch>,
    ) -> Result<KafkaBatchResponse, lambda_runtime::Error> {
        match self {
            Self::Merge(r) => r.handle(event).await,
            Self::Ignore(r) => r.handle(event).await,
        }
    }

    /// One batch within `deadline` ([`Runner::process`]).
    pub async fn process(&self, batch: &KafkaBatch, deadline: &Deadline) -> Handled<()> {
        match self {
            Self::Merge(r) => r.process(batch, deadline).await,
            Self::Ignore(r) => r.process(batch, deadline).await,
        }
    }

    /// The row store.
    pub fn store(&self) -> &PostgrestRows {
        match self {
            Self::Merge(r) => r.function().store(),
            Self::Ignore(r) => r.function().store(),
        }
    }
}
