//! The dead-letter table as an operator reads it: which rows a command works on, the rows
//! themselves, counts by error code, and the replay marks.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use event_decoding::SchemaMetadata;
use lambda_kit::dead_letter::{HeaderRow, ValueEncoding};
use lambda_kit::postgrest::{Filter, PostgrestClient, PostgrestError};
use lambda_kit::retry::Deadline;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Budget of one table operation (paged reads of many rows included).
const TABLE_BUDGET: Duration = Duration::from_secs(300);

/// Ids per `id=in.(...)` filter: short URLs, and far below the API's row limit.
const IDS_PER_REQUEST: usize = 200;

/// One row of the dead-letter table (`supabase/migrations/*dead_letter*.sql`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeadLetterRow {
    /// Primary key.
    pub id: i64,
    /// The function that gave up on the record.
    pub function_name: String,
    /// Where the record came from.
    pub topic: Option<String>,
    /// Its partition.
    pub kafka_partition: Option<i32>,
    /// Its offset.
    pub kafka_offset: Option<i64>,
    /// The record's own timestamp (milliseconds); absent in rows written before it was kept.
    #[serde(default)]
    pub kafka_timestamp: Option<i64>,
    /// The key as text (UTF-8 when it was, else base64 as delivered, see `key_encoding`).
    pub record_key: Option<String>,
    /// How `record_key` is stored; absent in rows written before it was kept.
    #[serde(default)]
    pub key_encoding: Option<ValueEncoding>,
    /// The value, see `value_encoding`.
    pub raw_value: Option<String>,
    /// How `raw_value` is stored.
    pub value_encoding: Option<ValueEncoding>,
    /// The record's headers, in order.
    pub record_headers: Option<Vec<HeaderRow>>,
    /// `keySchemaMetadata` as the ESM delivered it.
    #[serde(default)]
    pub key_schema_metadata: Option<SchemaMetadata>,
    /// `valueSchemaMetadata` as the ESM delivered it.
    #[serde(default)]
    pub value_schema_metadata: Option<SchemaMetadata>,
    /// Why it was dead-lettered first.
    pub error_code: String,
    /// The first reason, readable.
    pub error_message: Option<String>,
    /// When it was dead-lettered first (RFC 3339).
    pub created_at: String,
    /// When `kl` last replayed it.
    #[serde(default)]
    pub replayed_at: Option<String>,
    /// What that replay did ([`ReplayOutcome`] as text).
    #[serde(default)]
    pub replay_outcome: Option<String>,
    /// When a writer last dead-lettered it again.
    #[serde(default)]
    pub last_dead_lettered_at: Option<String>,
    /// The reason of that last dead letter.
    #[serde(default)]
    pub last_error_code: Option<String>,
}

impl DeadLetterRow {
    /// `topic-partition@offset`, or `-` for a row without a position.
    pub fn position(&self) -> String {
        match (&self.topic, self.kafka_partition, self.kafka_offset) {
            (Some(t), Some(p), Some(o)) => format!("{t}-{p}@{o}"),
            _ => "-".to_owned(),
        }
    }

    /// Whether a replay already settled it for good (stored, or superseded by a newer page
    /// version); rows never replayed, refused again or failed are still pending.
    pub fn is_resolved(&self) -> bool {
        matches!(
            self.replay_outcome.as_deref(),
            Some(o) if o == ReplayOutcome::Stored.as_str() || o == ReplayOutcome::Superseded.as_str()
        )
    }
}

/// What a replay did with a dead letter (`replay_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplayOutcome {
    /// The function accepted the record.
    Stored,
    /// The function refused it again; the row stays, stamped.
    DeadLettered,
    /// The function reported it for redelivery (environment fault): replay it later.
    Failed,
    /// A page dead letter whose page has a newer version: not sent.
    Superseded,
}

impl ReplayOutcome {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::DeadLettered => "dead_lettered",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
        }
    }
}

/// Which dead letters a command works on; every field narrows the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `function_name`.
    pub function: Option<String>,
    /// `error_code`.
    pub error_code: Option<String>,
    /// `topic`.
    pub topic: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<OffsetDateTime>,
    /// Dead-lettered before.
    pub until: Option<OffsetDateTime>,
    /// Only these ids.
    pub ids: Vec<i64>,
}

impl Selection {
    /// The PostgREST filters (timestamps in RFC 3339, percent-encoded by [`Filter`]).
    pub fn filters(&self) -> Vec<Filter> {
        let mut f = Vec::new();
        if let Some(v) = &self.function {
            f.push(Filter::eq("function_name", v));
        }
        if let Some(v) = &self.error_code {
            f.push(Filter::eq("error_code", v));
        }
        if let Some(v) = &self.topic {
            f.push(Filter::eq("topic", v));
        }
        let rfc = |t: &OffsetDateTime| t.format(&Rfc3339).expect("a UTC time formats");
        if let Some(t) = &self.since {
            f.push(Filter::gte("created_at", rfc(t)));
        }
        if let Some(t) = &self.until {
            f.push(Filter::lt("created_at", rfc(t)));
        }
        if !self.ids.is_empty() {
            f.push(Filter::in_list(
                "id",
                self.ids.iter().map(ToString::to_string),
            ));
        }
        f
    }
}

/// The dead-letter table through PostgREST.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    client: PostgrestClient,
    table: String,
}

impl DeadLetters {
    /// The table `table` through `client`.
    pub fn new(client: PostgrestClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Every row of the selection, oldest first, read in pages (the API answers at most 1000
    /// rows per request).
    pub async fn list(&self, selection: &Selection) -> Result<Vec<DeadLetterRow>, PostgrestError> {
        let deadline = Deadline::after(TABLE_BUDGET);
        self.client
            .select_all(&deadline, &self.table, "*", &selection.filters(), "id")
            .await
    }

    /// The rows with these ids, as they are now.
    pub async fn by_ids(&self, ids: &[i64]) -> Result<Vec<DeadLetterRow>, PostgrestError> {
        let deadline = Deadline::after(TABLE_BUDGET);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let filter = Filter::in_list("id", chunk.iter().map(ToString::to_string));
            out.extend(
                self.client
                    .select::<DeadLetterRow>(&deadline, &self.table, "*", &[filter])
                    .await?,
            );
        }
        Ok(out)
    }

    /// Marks `ids` as replayed at `at` with `outcome`.
    pub async fn mark(
        &self,
        ids: &[i64],
        outcome: ReplayOutcome,
        at: OffsetDateTime,
    ) -> Result<(), PostgrestError> {
        let deadline = Deadline::after(TABLE_BUDGET);
        let body = serde_json::json!({
            "replayed_at": at.format(&Rfc3339).expect("a UTC time formats"),
            "replay_outcome": outcome.as_str(),
        });
        let body = Bytes::from(body.to_string());
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let filter = Filter::in_list("id", chunk.iter().map(ToString::to_string));
            self.client
                .update(&deadline, &self.table, &[filter], body.clone())
                .await?;
        }
        Ok(())
    }
}

/// Rows per error code, most frequent first (ties by code).
pub fn counts_by_code(rows: &[DeadLetterRow]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *counts.entry(r.error_code.as_str()).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> =
        counts.into_iter().map(|(c, n)| (c.to_owned(), n)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A time argument: RFC 3339 (`2026-11-29T08:00:00Z`) or an age (`90m`, `6h`, `2d` ago from
/// `now`).
pub fn parse_time(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected an RFC 3339 time or an age like 90m, 6h, 2d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}; expected s, m, h or d"
            ));
        }
    };
    n.checked_mul(secs)
        .and_then(|s| now.checked_sub(time::Duration::seconds(s)))
        .ok_or_else(|| format!("{s:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, code: &str) -> DeadLetterRow {
        serde_json::from_value(serde_json::json!({
            "id": id, "function_name": "f", "topic": "t", "kafka_partition": 0, "kafka_offset": id,
            "record_key": null, "raw_value": "x", "value_encoding": "utf8", "record_headers": null,
            "error_code": code, "error_message": "m", "created_at": "2026-11-29T08:00:00+00:00"
        }))
        .unwrap()
    }

    #[test]
    fn counts_most_frequent_first() {
        let rows = [row(1, "b"), row(2, "a"), row(3, "b"), row(4, "c")];
        assert_eq!(
            counts_by_code(&rows),
            [("b".into(), 2), ("a".into(), 1), ("c".into(), 1)]
        );
        assert!(counts_by_code(&[]).is_empty());
    }

    #[test]
    fn selection_filters_are_encoded() {
        let now = OffsetDateTime::parse("2026-11-29T10:00:00Z", &Rfc3339).unwrap();
        let s = Selection {
            function: Some("gift persister".into()),
            error_code: Some("invalid_json".into()),
            since: Some(parse_time("2h", now).unwrap()),
            until: Some(parse_time("2026-11-29T09:30:00+01:00", now).unwrap()),
            ids: vec![3, 4],
            ..Selection::default()
        };
        let q: Vec<String> = s.filters().iter().map(Filter::to_query).collect();
        assert_eq!(
            q,
            [
                "function_name=eq.gift%20persister",
                "error_code=eq.invalid_json",
                "created_at=gte.2026-11-29T08%3A00%3A00Z",
                "created_at=lt.2026-11-29T09%3A30%3A00%2B01%3A00",
                "id=in.(%223%22,%224%22)",
            ]
        );
    }

    #[test]
    fn time_arguments() {
        let now = OffsetDateTime::parse("2026-11-29T10:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            parse_time("90m", now).unwrap(),
            OffsetDateTime::parse("2026-11-29T08:30:00Z", &Rfc3339).unwrap()
        );
        assert_eq!(
            parse_time("1d", now).unwrap(),
            OffsetDateTime::parse("2026-11-28T10:00:00Z", &Rfc3339).unwrap()
        );
        for bad in ["", "h", "5y", "yesterday", "99999999999999999999d"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolved_rows() {
        let mut r = row(1, "x");
        assert!(!r.is_resolved());
        for (o, resolved) in [
            ("stored", true),
            ("superseded", true),
            ("dead_lettered", false),
            ("failed", false),
        ] {
            r.replay_outcome = Some(o.into());
            assert_eq!(r.is_resolved(), resolved, "{o}");
        }
    }
}
