//! The sink table behind PostgREST: rows upserted on the conflict columns, one request per column
//! set, and PostgREST's errors classified for a table this function knows nothing about.

use std::fmt;
use std::future::Future;

use lambda_kit::bulk::{WriteLimits, write_rows};
use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::fate::{Fate, Fault};
use lambda_kit::postgrest::{PostgrestClient, PostgrestError, Upsert};
use lambda_kit::retry::Deadline;

use crate::row::{Fields, column_set, to_json};

/// Where rows go.
pub trait RowStore: Send + Sync {
    /// Upserts the rows (at most one per key) and returns the fate of each, in order.
    fn write(&self, deadline: &Deadline, rows: &[Fields])
    -> impl Future<Output = Vec<Fate>> + Send;
}

/// Rows upserted into one table through PostgREST.
#[derive(Debug, Clone)]
pub struct PostgrestRows {
    client: PostgrestClient,
    table: String,
    limits: WriteLimits,
    upsert: Upsert,
}

impl PostgrestRows {
    /// Rows of `table` through `client`, upserted with `upsert`, in chunks within `limits`.
    pub fn new(
        client: PostgrestClient,
        table: impl Into<String>,
        limits: WriteLimits,
        upsert: Upsert,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            limits,
            upsert,
        }
    }

    /// The PostgREST client (its request counter is shared with the dead-letter sink's clone).
    pub fn client(&self) -> &PostgrestClient {
        &self.client
    }
}

impl RowStore for PostgrestRows {
    async fn write(&self, deadline: &Deadline, rows: &[Fields]) -> Vec<Fate> {
        let mut fates = vec![Fate::missing(); rows.len()];
        // A fault of the whole table (missing, unauthorized, a conflict target without an
        // index) fails the column sets not yet written without sending them, as `write_rows`
        // does within one; an unknown column concerns only the column sets that carry it.
        let mut table_fault: Option<Fate> = None;
        // PostgREST refuses a request whose objects have different keys (400 PGRST102), and
        // filling the gaps with nulls would overwrite columns a record did not mention.
        for members in by_column_set(rows) {
            if let Some(fate) = &table_fault {
                for i in members {
                    fates[i] = fate.clone();
                }
                continue;
            }
            // Keyed by the row's position: the rows are one per conflict key (the handler folds
            // a key's records into one), so no two chunks in flight share a key.
            let json: Vec<(usize, Vec<u8>)> =
                members.iter().map(|&i| (i, to_json(&rows[i]))).collect();
            let written = write_rows(&json, &self.limits, |body| {
                let call = self
                    .client
                    .upsert(deadline, &self.table, body, &self.upsert);
                async move { call.await.map_err(SinkError) }
            })
            .await;
            table_fault = written
                .iter()
                .find(|f| {
                    matches!(f, Fate::Failed { fault: Fault::Environment, code, .. } if *code != UNKNOWN_COLUMN)
                })
                .cloned();
            for (i, fate) in members.into_iter().zip(written) {
                fates[i] = fate;
            }
        }
        fates
    }
}

/// Indices of `rows` grouped by column set, groups in order of first appearance.
///
/// ```
/// use table_sink::row::Fields;
/// use table_sink::store::by_column_set;
/// let row = |json: &str| serde_json::from_str::<Fields>(json).unwrap();
/// let rows = [row(r#"{"id":1,"a":1}"#), row(r#"{"id":2}"#), row(r#"{"a":3,"id":3}"#)];
/// assert_eq!(by_column_set(&rows), vec![vec![0, 2], vec![1]]);
/// ```
pub fn by_column_set(rows: &[Fields]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let columns = column_set(row);
        match groups.iter_mut().find(|(c, _)| *c == columns) {
            Some((_, members)) => members.push(i),
            None => groups.push((columns, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// The error code of a column the table lacks.
const UNKNOWN_COLUMN: &str = "db_unknown_column";

/// A PostgREST error, classified for a sink that writes whatever table it is given, with a hint
/// naming the setting to check.
///
/// On top of [`PostgrestError`]'s own classification:
/// - a column the table lacks (`PGRST204`, `42703`) is the environment's fault, not the rows'
///   (`db_unknown_column`): it concerns only the rows that carry the column, so the other column
///   sets are still written;
/// - any other schema error (SQLSTATE class `42`, such as `42P10`: no unique index matches
///   `SINK_CONFLICT_COLUMNS`) is the environment's fault too (`db_schema`): every row would fail
///   the same way until the table or the settings change;
/// - the same row twice in one request (`21000`, a 500 that no retry fixes: two keys this
///   function cannot tell apart, such as `1` and `1.0` in a numeric column) is the rows' fault, so
///   the request is bisected until they travel apart.
#[derive(Debug, Clone)]
pub struct SinkError(pub PostgrestError);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RowTwice,
    UnknownColumn,
    Schema,
    Other,
}

impl SinkError {
    fn kind(&self) -> Kind {
        match &self.0 {
            PostgrestError::Api {
                code: Some(code), ..
            } if code == "21000" => Kind::RowTwice,
            PostgrestError::Api {
                status: 400,
                code: Some(code),
                ..
            } if code == "PGRST204" || code == "42703" => Kind::UnknownColumn,
            PostgrestError::Api {
                status: 400,
                code: Some(code),
                ..
            } if code.starts_with("42") => Kind::Schema,
            _ => Kind::Other,
        }
    }

    /// What to check, for errors that an operator must fix.
    fn hint(&self) -> Option<&'static str> {
        match (self.kind(), self.0.status()) {
            (Kind::UnknownColumn, _) => Some(
                "the table lacks a column the request names: a field of the rows (add the column, or keep only known fields with SINK_COLUMNS) or one of SINK_CONFLICT_COLUMNS",
            ),
            (Kind::Schema, _) => Some(
                "check SINK_TABLE and SINK_CONFLICT_COLUMNS (they must match a primary key or unique index) against the table",
            ),
            (_, Some(404)) => Some("check SINK_TABLE: the API does not expose such a table"),
            (_, Some(401 | 403)) => Some(
                "check the key (SUPABASE_SECRET_KEY / SUPABASE_SECRET_KEY_SECRET_ID, or the legacy SUPABASE_SERVICE_ROLE_KEY / SUPABASE_KEY_SECRET_ID) and the table's grants",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hint() {
            Some(hint) => write!(f, "{} ({hint})", self.0),
            None => self.0.fmt(f),
        }
    }
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self.kind() {
            Kind::RowTwice => ErrorClass::Data,
            Kind::UnknownColumn | Kind::Schema => ErrorClass::Environment,
            Kind::Other => self.0.class(),
        }
    }

    fn error_code(&self) -> &'static str {
        match self.kind() {
            Kind::RowTwice => "db_row_twice_in_request",
            Kind::UnknownColumn => UNKNOWN_COLUMN,
            Kind::Schema => "db_schema",
            Kind::Other => self.0.error_code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str) -> SinkError {
        SinkError(PostgrestError::Api {
            status,
            code: Some(code.into()),
            message: message.into(),
            details: None,
            hint: None,
            class: if status >= 500 {
                ErrorClass::TRANSIENT
            } else {
                ErrorClass::Environment
            },
        })
    }

    fn fate(e: &SinkError) -> Fate {
        Fate::from_error(e)
    }

    #[test]
    fn data_errors_dead_letter_the_row() {
        for (code, message) in [
            ("23514", "new row violates check constraint"),
            ("22P02", "invalid input syntax for type bigint"),
            ("23502", "null value in column violates not-null constraint"),
        ] {
            let e = api(400, code, message);
            assert_eq!(fate(&e), Fate::rejected("db_bad_request", e.to_string()));
            assert_eq!(
                e.to_string(),
                format!("PostgREST 400: {message} (code {code})")
            );
        }
    }

    #[test]
    fn schema_and_configuration_errors_fail_without_dead_letters() {
        for (e, code, hint) in [
            (
                api(
                    400,
                    "PGRST204",
                    "Could not find the 'nope' column of 'user_profiles' in the schema cache",
                ),
                "db_unknown_column",
                "SINK_COLUMNS",
            ),
            (
                api(
                    400,
                    "42P10",
                    "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                ),
                "db_schema",
                "SINK_CONFLICT_COLUMNS",
            ),
            (
                api(400, "42703", "column \"nope\" does not exist"),
                "db_unknown_column",
                "SINK_COLUMNS",
            ),
            // The codes of these two are PostgrestError's own.
            (
                api(404, "PGRST205", "Could not find the table 'public.nosuch'"),
                "db_schema",
                "SINK_TABLE",
            ),
            (
                api(401, "42501", "permission denied for table user_profiles"),
                "db_unauthorized",
                "SUPABASE_SECRET_KEY",
            ),
        ] {
            assert_eq!(e.error_code(), code);
            assert!(
                matches!(fate(&e), Fate::Failed { code: c, fault: Fault::Environment, .. } if c == code),
                "{e}: {:?}",
                fate(&e)
            );
            assert!(e.to_string().contains(hint), "{e}");
        }
    }

    #[test]
    fn the_same_row_twice_is_bisected_and_server_errors_stay_transient() {
        let twice = api(
            500,
            "21000",
            "ON CONFLICT DO UPDATE command cannot affect row a second time",
        );
        assert_eq!(twice.class(), ErrorClass::Data);
        assert_eq!(twice.error_code(), "db_row_twice_in_request");

        let down = api(503, "PGRST500", "Service temporarily unavailable");
        assert!(matches!(
            fate(&down),
            Fate::Failed {
                code: "db_server_error",
                fault: Fault::Transient,
                ..
            }
        ));
    }

    #[test]
    fn rows_are_grouped_by_their_columns() {
        let row = |json: &str| serde_json::from_str::<Fields>(json).unwrap();
        let rows = [
            row(r#"{"id":1,"a":1}"#),
            row(r#"{"id":2}"#),
            row(r#"{"a":3,"id":3}"#),
            row(r#"{"id":4,"b":null}"#),
            row(r#"{"id":5}"#),
        ];
        assert_eq!(by_column_set(&rows), vec![vec![0, 2], vec![1, 4], vec![3]]);
        assert!(by_column_set(&[]).is_empty());
    }
}
