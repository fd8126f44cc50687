//! From records to the write's items and back: records grouped by key, the items [`Keep`]
//! selects from each group, the write's results judged, and each item's fate fanned out to the
//! records it stands for.

use std::collections::HashMap;

use event_decoding::KafkaRecord;

use super::function::{BatchFunction, Decoded, Keep};
use crate::fate::{Fate, Fault};

/// The batch's records of one key.
struct Group<K, I> {
    key: K,
    /// Record indices in batch order.
    records: Vec<usize>,
    /// The items written, each with its record: the chosen one, or with [`Keep::All`] every one.
    items: Vec<(usize, I)>,
}

/// What the write receives, and where each of its fates goes.
pub(super) struct Plan<K, I> {
    /// The write's items, a key's items adjacent.
    pub items: Vec<(K, I)>,
    /// For each item, in order: the records its fate goes to, and its own record.
    pub shares: Vec<(Vec<usize>, usize)>,
    /// How many keys the items hold (fewer than the items with [`Keep::All`]).
    pub keys: usize,
}

/// Decodes every record: a settled record gets its fate in `fates`, the others are grouped by key
/// into the write's plan, keys in order of their first record.
pub(super) fn plan<F: BatchFunction>(
    function: &F,
    records: &[KafkaRecord],
    fates: &mut [Option<Fate>],
    stats: &mut F::Stats,
) -> Plan<F::Key, F::Item> {
    let keep = function.keep();
    let mut index: HashMap<F::Key, usize> = HashMap::new();
    let mut groups: Vec<Group<F::Key, F::Item>> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let (key, item) = match function.decode(record, stats) {
            Decoded::Settled(fate) => {
                fates[i] = Some(fate);
                continue;
            }
            Decoded::Item { key, item } => (key, item),
        };
        let Some(&g) = index.get(&key) else {
            index.insert(key.clone(), groups.len());
            groups.push(Group {
                key,
                records: vec![i],
                items: vec![(i, item)],
            });
            continue;
        };
        let group = &mut groups[g];
        group.records.push(i);
        match keep {
            Keep::First => {}
            Keep::Last => {
                if function.supersedes(&item, &group.items[0].1) {
                    group.items[0] = (i, item);
                }
            }
            Keep::All => group.items.push((i, item)),
        }
    }

    let mut plan = Plan {
        items: Vec::with_capacity(records.len()),
        shares: Vec::with_capacity(records.len()),
        keys: groups.len(),
    };
    for group in groups {
        let key = group.key;
        if keep == Keep::All {
            let mut items = group.items;
            // Stable: records of one partition and offset (of different topics) keep batch order.
            items.sort_by_key(|(i, _)| (records[*i].partition, records[*i].offset));
            for (i, item) in items {
                plan.items.push((key.clone(), item));
                plan.shares.push((vec![i], i));
            }
        } else {
            let (chosen, item) = group.items.into_iter().next().expect("a group has an item");
            plan.items.push((key, item));
            plan.shares.push((group.records, chosen));
        }
    }
    plan
}

/// The rule "dead letters are for what the record itself causes", applied to a write's results:
/// when every item of a write (two or more, of two keys or more) is rejected with the same code
/// and message, no row is at fault but the target (a column or table missing from the schema, a
/// type the API cannot see, a vector size of another model), and they fail as an environment
/// fault, to be redelivered once it is fixed, instead of being dead-lettered. Items of one key
/// alone ([`Keep::All`]: a bad row and the producer's retry of it) prove nothing about the
/// target: judged as the target's fault they would be redelivered forever.
///
/// Isolation happens once, in the function's write: its rejections are of items tried alone
/// ([`BatchFunction::write`] isolates with [`crate::bulk::bisect`]), so the runner judges what
/// it is given and writes nothing again.
pub(super) fn judge(n: usize, keys: usize, results: Vec<Fate>) -> Vec<Fate> {
    if results.len() != n || keys < 2 || !refused_alike(&results) {
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

/// Gives the fate of a written item to every record it stands for (`group`, holding `written`,
/// the item's own record).
pub(super) fn fan_out(
    keep: Keep,
    group: &[usize],
    written: usize,
    fate: Fate,
    fates: &mut [Option<Fate>],
) {
    for &i in group.iter().filter(|&&i| i != written) {
        fates[i] = Some(match (&fate, keep) {
            (Fate::Stored | Fate::Skipped, Keep::First) => Fate::Skipped,
            (Fate::Rejected { .. }, Keep::Last) => Fate::Skipped,
            (other, _) => other.clone(),
        });
    }
    fates[written] = Some(fate);
}
