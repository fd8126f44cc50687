//! What a function supplies to the runner: the [`BatchFunction`] trait, what its decode makes of
//! a record ([`Decoded`]) and which records of a key its write receives ([`Keep`]).

use std::fmt;
use std::future::Future;
use std::hash::Hash;

use event_decoding::KafkaRecord;

use crate::fate::Fate;
use crate::metrics::MetricSet;
use crate::retry::Deadline;

/// Which records of a key the write receives, and how their fates relate.
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
    /// Every record of a key is written: the write receives a key's items one after another, in
    /// partition/offset order, and each record gets its own item's fate (the runner fans nothing
    /// out). For a write that folds a key's changes itself, such as partial rows merged field by
    /// field, where a change the runner dropped would be acknowledged without being written.
    /// After a key's item fails, the write must not store its later items (give them the same
    /// failure): redelivery starts again at the failed record, and a newer change must not land
    /// ahead of the older one.
    All,
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

/// A Kafka-triggered function, as the [`Runner`](super::Runner) drives it.
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
///     type AfterSettled = ();
///     fn keep(&self) -> Keep { Keep::First }
///     fn name(&self) -> &str { "words" }
///     fn decode(&self, record: &KafkaRecord, _: &mut usize) -> Decoded<i64, usize> {
///         match record.value_str() {
///             Ok(Some(text)) => Decoded::Item { key: record.offset, item: text.split_whitespace().count() },
///             _ => Decoded::Settled(Fate::rejected("not_text", "the value is not UTF-8 text")),
///         }
///     }
///     async fn write(&self, _: &Deadline, items: Vec<(i64, usize)>, words: &mut usize, _: &mut ()) -> Vec<Fate> {
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
    /// What the write leaves for [`after_settled`](Self::after_settled): work that must wait
    /// until every record's fate is decided, such as the notifications of what was written.
    /// `()` when there is none.
    type AfterSettled: Default + Send;

    /// Which records of a key the write receives. A value, not a type, so a setting can choose
    /// it.
    fn keep(&self) -> Keep;

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

    /// Writes the items [`keep`](Self::keep) selects (one per key, or with [`Keep::All`] every
    /// record's, a key's items adjacent) and returns one fate per item, in order; what must
    /// happen once the batch is settled goes into `after`. A missing fate counts as
    /// [`Fate::Failed`]. Called once per batch: isolating the items at fault is the write's own
    /// job, done once, where the requests are made. A [`Fate::Rejected`] must be of an item
    /// refused alone or with items refused for their own reasons, never of one refused only
    /// because it shared a request (or a read of the batch's ids) with a bad one: bisect such a
    /// refusal with [`crate::bulk::bisect`] ([`crate::bulk::write_rows`] does). When every item
    /// (two or more, of two keys or more) comes back rejected alike, the runner judges the target
    /// at fault, not the items: they fail as an environment fault instead of being dead-lettered.
    fn write(
        &self,
        deadline: &Deadline,
        items: Vec<(Self::Key, Self::Item)>,
        stats: &mut Self::Stats,
        after: &mut Self::AfterSettled,
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
    /// the response is returned, with what the write left in `after` (the default when nothing
    /// was written): side effects that must never hold or fail the batch, such as notifications.
    /// Stop at `deadline`.
    fn after_settled(
        &self,
        deadline: &Deadline,
        after: Self::AfterSettled,
        stats: &mut Self::Stats,
    ) -> impl Future<Output = ()> + Send {
        let _ = (deadline, after, stats);
        async {}
    }

    /// Adds the function's counters to the invocation's metrics line.
    fn metrics(&self, stats: &Self::Stats, set: &mut MetricSet) {
        let _ = (stats, set);
    }
}
