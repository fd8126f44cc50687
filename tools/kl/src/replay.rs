//! `kl dead-letters replay`: the selected dead letters are rebuilt into their records, sent to the
//! function in ESM events (partition/offset order, at most `batch_size` records and 6 MB per
//! event), and each is marked with the replay time and what the function did with it.
//!
//! The function's answer decides the outcome: a record it reports for redelivery (partial batch
//! response, function error, crash) is `failed`; of the others, one the function dead-lettered
//! again is `dead_lettered` (the table's trigger stamps the existing row, which stays the only
//! one: writers upsert on function, topic, partition and offset with ignore-duplicates), and the
//! rest are `stored`. A page-embedder dead letter whose page has a newer version in `page_state`
//! is `superseded` and not sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use esm_local::kafka::TopicPartition;
use esm_local::payload::EventBuilder;
use event_decoding::{Change, SourceVersion};
use lambda_kit::postgrest::{Filter, PostgrestClient, PostgrestError};
use lambda_kit::retry::Deadline;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::letters::{DeadLetterRow, DeadLetters, ReplayOutcome, Selection};
use crate::rebuild::Rebuilt;
use crate::target::{Target, TargetError};

/// `bootstrapServers` of a replayed event (the functions do not read it).
const BOOTSTRAP: &str = "kl-replay";

/// Page ids per `page_state` read.
const PAGES_PER_READ: usize = 200;

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// Records per event at most (the ESM's batch size; 6 MB caps it too).
    pub batch_size: usize,
    /// Replay rows already settled by an earlier replay (stored or superseded) too.
    pub include_resolved: bool,
    /// Count and check only: nothing is sent or marked.
    pub dry_run: bool,
    /// For page-embedder dead letters: where page versions are and how pages are identified.
    pub pages: Option<PageCheck>,
}

/// page-embedder's settings a replay needs to find a record's page and its stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCheck {
    /// `PAGE_ID_FIELD`.
    pub page_id_field: String,
    /// `PAGE_STATE_TABLE`.
    pub state_table: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows the selection matched.
    pub selected: usize,
    /// Rows left alone because an earlier replay settled them.
    pub already_resolved: usize,
    /// Events sent.
    pub invocations: usize,
    /// Rows per outcome (in a dry run: `Superseded`, and `Stored` for "would be sent").
    pub outcomes: BTreeMap<ReplayOutcome, usize>,
    /// Rows that cannot be rebuilt, with the reason; never sent, never marked.
    pub unrebuildable: Vec<(i64, String)>,
}

impl Summary {
    /// Rows with `outcome`.
    pub fn count(&self, outcome: ReplayOutcome) -> usize {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }
}

/// Faults that stop a replay; rows marked before it stay marked, so running it again resumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The dead-letter or page-state table could not be read or written.
    #[error("PostgREST: {0}")]
    Store(#[from] PostgrestError),
    /// The function could not be invoked at all.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Replays the dead letters of `selection` through `target`.
pub async fn replay(
    letters: &DeadLetters,
    client: &PostgrestClient,
    selection: &Selection,
    target: &mut Target,
    settings: &ReplaySettings,
) -> Result<Summary, ReplayError> {
    let mut summary = Summary::default();
    let rows = letters.list(selection).await?;
    summary.selected = rows.len();
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        if row.is_resolved() && !settings.include_resolved {
            summary.already_resolved += 1;
            continue;
        }
        match Rebuilt::of(&row) {
            Ok(r) => pending.push((row, r)),
            Err(e) => summary.unrebuildable.push((row.id, e.to_string())),
        }
    }

    if let Some(check) = &settings.pages {
        let superseded = superseded_pages(client, check, &pending).await?;
        if !superseded.is_empty() {
            pending.retain(|(row, _)| !superseded.contains(&row.id));
            let ids: Vec<i64> = superseded.into_iter().collect();
            tracing::info!(
                rows = ids.len(),
                "page dead letters superseded by a newer page version: not replayed"
            );
            if !settings.dry_run {
                letters
                    .mark(&ids, ReplayOutcome::Superseded, OffsetDateTime::now_utc())
                    .await?;
            }
            *summary
                .outcomes
                .entry(ReplayOutcome::Superseded)
                .or_default() += ids.len();
        }
    }

    pending.sort_by(|a, b| {
        (&a.1.tp.topic, a.1.tp.partition, a.1.offset).cmp(&(
            &b.1.tp.topic,
            b.1.tp.partition,
            b.1.offset,
        ))
    });
    if settings.dry_run {
        *summary.outcomes.entry(ReplayOutcome::Stored).or_default() += pending.len();
        return Ok(summary);
    }

    let mut rest = pending.as_slice();
    while !rest.is_empty() {
        let mut builder = EventBuilder::new(BOOTSTRAP);
        let mut n = 0;
        while n < rest.len() && n < settings.batch_size.max(1) {
            let r = &rest[n].1;
            if !r.push_to(&mut builder) {
                break;
            }
            n += 1;
        }
        let (event, tail) = rest.split_at(n);
        rest = tail;
        summary.invocations += 1;
        let outcomes = replay_event(letters, target, event, builder.build()).await?;
        for (outcome, ids) in outcomes {
            *summary.outcomes.entry(outcome).or_default() += ids.len();
        }
    }
    Ok(summary)
}

/// Sends one event and marks its rows.
async fn replay_event(
    letters: &DeadLetters,
    target: &mut Target,
    event: &[(DeadLetterRow, Rebuilt)],
    payload: Vec<u8>,
) -> Result<BTreeMap<ReplayOutcome, Vec<i64>>, ReplayError> {
    let sent: Vec<(TopicPartition, i64)> = event
        .iter()
        .map(|(_, r)| (r.tp.clone(), r.offset))
        .collect();
    let failed_records = target.invoke(payload).await?.failed(&sent);
    let failed: HashSet<i64> = event
        .iter()
        .filter(|(_, r)| failed_records.contains(&(r.tp.clone(), r.offset)))
        .map(|(row, _)| row.id)
        .collect();
    // Stamped by the table's trigger when the function dead-lettered the record again.
    let before: HashMap<i64, Option<String>> = event
        .iter()
        .map(|(row, _)| (row.id, row.last_dead_lettered_at.clone()))
        .collect();
    let settled: Vec<i64> = event
        .iter()
        .map(|(row, _)| row.id)
        .filter(|id| !failed.contains(id))
        .collect();
    let now: HashMap<i64, Option<String>> = letters
        .by_ids(&settled)
        .await?
        .into_iter()
        .map(|row| (row.id, row.last_dead_lettered_at))
        .collect();
    let mut outcomes: BTreeMap<ReplayOutcome, Vec<i64>> = BTreeMap::new();
    for (row, _) in event {
        let outcome = if failed.contains(&row.id) {
            ReplayOutcome::Failed
        } else if now.get(&row.id).is_some_and(|t| *t != before[&row.id]) {
            ReplayOutcome::DeadLettered
        } else {
            ReplayOutcome::Stored
        };
        outcomes.entry(outcome).or_default().push(row.id);
    }
    let at = OffsetDateTime::now_utc();
    for (outcome, ids) in &outcomes {
        letters.mark(ids, *outcome, at).await?;
    }
    tracing::info!(
        records = event.len(),
        stored = outcomes.get(&ReplayOutcome::Stored).map_or(0, Vec::len),
        dead_lettered = outcomes
            .get(&ReplayOutcome::DeadLettered)
            .map_or(0, Vec::len),
        failed = outcomes.get(&ReplayOutcome::Failed).map_or(0, Vec::len),
        "event replayed"
    );
    Ok(outcomes)
}

#[derive(Debug, Deserialize)]
struct StateRow {
    page_id: String,
    version: Option<String>,
    updated_at: String,
}

/// The ids of page dead letters whose page has a newer version than the record: by source
/// version when both have one of the same kind, else by time (the page's state was written
/// after the record was dead-lettered). Records that name no page are not superseded (the
/// function decides them).
async fn superseded_pages(
    client: &PostgrestClient,
    check: &PageCheck,
    pending: &[(DeadLetterRow, Rebuilt)],
) -> Result<HashSet<i64>, PostgrestError> {
    let pages: Vec<(i64, String, Option<SourceVersion>, &str)> = pending
        .iter()
        .filter_map(|(row, r)| {
            let (id, version) = page_of(r, &check.page_id_field)?;
            Some((row.id, id, version, row.created_at.as_str()))
        })
        .collect();
    let mut ids: Vec<String> = pages.iter().map(|p| p.1.clone()).collect();
    ids.sort();
    ids.dedup();
    let deadline = Deadline::after(Duration::from_secs(300));
    let mut states: HashMap<String, StateRow> = HashMap::new();
    // Split by count and by URL length: a dead-lettered page may have a very long id.
    for ids in Filter::in_lists("page_id", &ids, PAGES_PER_READ) {
        let rows: Vec<StateRow> = client
            .select(
                &deadline,
                &check.state_table,
                "page_id,version,updated_at",
                &[ids],
            )
            .await?;
        states.extend(rows.into_iter().map(|s| (s.page_id.clone(), s)));
    }
    Ok(pages
        .into_iter()
        .filter(|(_, page, version, created_at)| {
            let Some(state) = states.get(page) else {
                return false;
            };
            let stored = state.version.as_deref().and_then(SourceVersion::parse);
            match (version, stored) {
                (Some(v), Some(s)) if v.is_older_than(&s).is_some() => {
                    v.is_older_than(&s) == Some(true)
                }
                _ => is_later(&state.updated_at, created_at),
            }
        })
        .map(|(id, ..)| id)
        .collect())
}

/// Whether RFC 3339 time `a` is after `b`; `false` when either does not parse.
fn is_later(a: &str, b: &str) -> bool {
    match (
        OffsetDateTime::parse(a, &Rfc3339),
        OffsetDateTime::parse(b, &Rfc3339),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

/// The page a record changes and the change's source version, as page-embedder reads them: the
/// id field of the row, or a scalar record key for a delete or tombstone.
fn page_of(r: &Rebuilt, id_field: &str) -> Option<(String, Option<SourceVersion>)> {
    let record = r.to_decoded();
    let (change, version) = record.change_with_version().ok()?;
    let value = change.field(id_field).or_else(|| {
        matches!(change, Change::Delete { .. } | Change::Tombstone { .. })
            .then(|| change.key())
            .flatten()
    })?;
    let id = match value {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    Some((id, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use esm_local::kafka::TopicPartition;

    fn rebuilt(value: &str, key: Option<&str>) -> Rebuilt {
        Rebuilt {
            id: 1,
            tp: TopicPartition::new("cdc.pages", 0),
            offset: 5,
            timestamp: 0,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
            key_schema_metadata: None,
            value_schema_metadata: None,
        }
    }

    #[test]
    fn page_and_version_of_debezium_and_plain_records() {
        let debezium = r#"{"op":"u","before":null,"after":{"page_id":"p1","body":"x"},
            "source":{"connector":"postgresql","lsn":1234,"ts_ms":1},"ts_ms":2}"#;
        let (id, version) = page_of(&rebuilt(debezium, None), "page_id").unwrap();
        assert_eq!(id, "p1");
        assert_eq!(version, Some(SourceVersion::Lsn(1234)));

        let plain = r#"{"page_id":42,"body":"x"}"#;
        assert_eq!(
            page_of(&rebuilt(plain, None), "page_id").unwrap(),
            ("42".to_owned(), None)
        );
        // No page id, or not JSON: the function decides (never superseded here).
        assert_eq!(page_of(&rebuilt(r#"{"body":"x"}"#, None), "page_id"), None);
        assert_eq!(page_of(&rebuilt("{oops", None), "page_id"), None);
    }

    #[test]
    fn times_compare() {
        assert!(is_later(
            "2026-11-29T10:00:00.5+00:00",
            "2026-11-29T10:00:00.4+00:00"
        ));
        assert!(!is_later(
            "2026-11-29T10:00:00+00:00",
            "2026-11-29T11:00:00+01:00"
        ));
        assert!(!is_later("garbage", "2026-11-29T10:00:00+00:00"));
    }
}
