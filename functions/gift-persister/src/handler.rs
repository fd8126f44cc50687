//! The gift steps of the shared batch lifecycle ([`lambda_kit::runner`]): decode and validate a
//! record into a gifts-table row keyed by `event_id` (the first of a batch's duplicates is
//! written), then write the rows in bulk. Grouping, dead letters, the partial batch response, the
//! summary log and the metrics line are the runner's.

use event_decoding::{KafkaRecord, KeyFormat};
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::fate::Fate;
use lambda_kit::retry::Deadline;
use lambda_kit::runner::{BatchFunction, Decoded, Keep, Runner};
use lambda_kit::schema_registry::Values;

use crate::gift::{Gift, GiftLimits, Provenance};
use crate::store::{GiftStore, PostgrestGiftStore};

/// Name of the function in dead letters (stable across deployments, so redelivery dedupes).
pub const FUNCTION_NAME: &str = "gift-persister";

/// The Lambda handler: the gift steps run by the shared runner.
pub type Handler<S, D> = Runner<Gifts<S>, D>;

/// The handler `main` runs: gifts and dead letters through PostgREST.
pub type PostgrestHandler = Handler<PostgrestGiftStore, PostgrestDeadLetters>;

/// Gift events into a [`GiftStore`].
#[derive(Debug)]
pub struct Gifts<S> {
    store: S,
    limits: GiftLimits,
    values: Values,
}

impl<S: GiftStore> Gifts<S> {
    /// Gifts validated within `limits`, written to `store`; values are JSON.
    pub fn new(store: S, limits: GiftLimits) -> Self {
        Self {
            store,
            limits,
            values: Values::default(),
        }
    }

    /// Values decoded as `values` says (`VALUE_FORMAT`, the schema registry).
    pub fn with_values(mut self, values: Values) -> Self {
        self.values = values;
        self
    }

    /// The gifts store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: GiftStore> BatchFunction for Gifts<S> {
    /// The gift's `event_id`.
    type Key = String;
    /// The gift's row, serialized.
    type Item = Vec<u8>;
    type Stats = ();
    type AfterSettled = ();

    /// The same gift twice in one batch is written once (PostgreSQL refuses to touch a row twice
    /// in one upsert, and the first delivery's provenance is the one kept).
    fn keep(&self) -> Keep {
        Keep::First
    }

    fn name(&self) -> &str {
        FUNCTION_NAME
    }

    async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        self.values.prepare(records, deadline).await
    }

    /// With `KEY_FORMAT` set the key is checked against its schema too (a gift row does not keep
    /// it): a key that does not decode is the record's fault, as the ESM's `KEY` schema
    /// validation would have it.
    fn decode(&self, record: &KafkaRecord, _: &mut ()) -> Decoded<String, Vec<u8>> {
        let decoding = self.values.decoding();
        let key = match self.values.key_format() {
            KeyFormat::Auto => Ok(None),
            _ => record.key_via(decoding),
        };
        let gift = key
            .and_then(|_| record.value_json_via::<serde_json::Value>(decoding))
            .map_err(|e| Fate::undecodable(&e))
            .and_then(|v| {
                Gift::validate(v, record.timestamp, &self.limits)
                    .map_err(|e| Fate::rejected(e.error_code(), e.to_string()))
            });
        match gift {
            Err(fate) => Decoded::Settled(fate),
            Ok(gift) => Decoded::Item {
                item: gift.to_row(Provenance {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                }),
                key: gift.event_id,
            },
        }
    }

    async fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(String, Vec<u8>)>,
        _: &mut (),
        _: &mut (),
    ) -> Vec<Fate> {
        self.store.write(deadline, &items).await
    }
}
