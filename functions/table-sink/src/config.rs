//! Configuration of the function, read once at cold start.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `SINK_TABLE` | required | table the rows are upserted into |
//! | `SINK_CONFLICT_COLUMNS` | required | comma-separated key columns (the primary key or a unique index of the table) |
//! | `SINK_ON_CONFLICT` | `merge` | `merge`: update the row with the fields a record carries; `ignore`: keep the existing row |
//! | `SINK_COLUMNS` | all fields | comma-separated allow-list: other fields are dropped (the conflict columns are always kept) |
//! | `SUPABASE_REST_URL` / `SUPABASE_URL` | required | PostgREST base URL, or project URL + `/rest/v1` |
//! | `SUPABASE_SECRET_KEY` / `SUPABASE_SECRET_KEY_SECRET_ID` (legacy `SUPABASE_SERVICE_ROLE_KEY` / `SUPABASE_KEY_SECRET_ID`) | required | key, or Secrets Manager id/ARN (plain or JSON `key`); [`resolve_key`](lambda_kit::postgrest::resolve_key) |
//! | `DEAD_LETTER_TABLE` | `dead_letters` | dead-letter table |
//! | `WRITE_MAX_ROWS` / `WRITE_MAX_BYTES` | 500 / 1048576 | rows and JSON body bytes per bulk request |
//! | `WRITE_CONCURRENCY` | 4 | bulk requests in flight at once |
//! | `HTTP_TIMEOUT_MS`, `HTTP_CONNECT_TIMEOUT_MS`, `RETRY_*`, `DEADLINE_SAFETY_MARGIN_MS`, `DEFAULT_BUDGET_MS` | as every function | HTTP, retries, deadline |
//! | `METRICS_ENABLED` / `METRICS_NAMESPACE` | `true` / `KafkaLambdas` | one EMF metrics line per invocation |
//! | `VALUE_FORMAT` | `json` | `json`, `avro`, `protobuf` or `auto` (Avro, Protobuf and JSON Schema values: [`ValueSettings`]); such a value's row is the JSON object it maps to |
//! | `SCHEMA_REGISTRY_URL`, `SCHEMA_REGISTRY_USERNAME` / `_PASSWORD` or `SCHEMA_REGISTRY_SECRET_ID` | — | the registry writer schemas come from |
//! | `KEY_FORMAT` | `auto` | `auto`: the key is not read (rows come from values alone); `string`, `json`, `avro`, `protobuf`: the key is decoded in that format, with its own schema (the registry's, or `KEY_AVRO_SCHEMA_FILE` / `KEY_PROTOBUF_DESCRIPTOR_SET` + `KEY_PROTOBUF_MESSAGE`) and its fields join the row where the value lacks them ([`Shape::row_via`](crate::row::Shape::row_via)) |

use lambda_kit::config::{ConfigError, Env};
use lambda_kit::init::InitError;
use lambda_kit::postgrest::{PostgrestClient, Upsert};
use lambda_kit::runner::RunnerConfig;
use lambda_kit::schema_registry::ValueSettings;

pub use crate::handler::OnConflictMode;
use crate::handler::{FUNCTION_NAME, PostgrestHandler, TableSink};
use crate::row::{Shape, is_identifier};
use crate::store::PostgrestRows;

/// The table and the shape of its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// `SINK_TABLE`.
    pub table: String,
    /// `SINK_CONFLICT_COLUMNS`.
    pub conflict_columns: Vec<String>,
    /// `SINK_ON_CONFLICT`.
    pub on_conflict: OnConflictMode,
    /// `SINK_COLUMNS`, when set.
    pub columns: Option<Vec<String>>,
}

impl SinkSettings {
    /// Reads the `SINK_*` variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let table = env.required("SINK_TABLE")?;
        if !is_identifier(&table) {
            return Err(ConfigError::new(
                "SINK_TABLE",
                "must be a table name made of letters, digits and '_' (at most 63 bytes)",
            ));
        }
        let conflict_columns = column_list(env, "SINK_CONFLICT_COLUMNS")?
            .ok_or_else(|| ConfigError::new("SINK_CONFLICT_COLUMNS", "is required but not set"))?;
        let on_conflict = match env.get("SINK_ON_CONFLICT").as_deref() {
            None | Some("merge") => OnConflictMode::Merge,
            Some("ignore") => OnConflictMode::Ignore,
            Some(_) => {
                return Err(ConfigError::new(
                    "SINK_ON_CONFLICT",
                    "expected merge or ignore",
                ));
            }
        };
        Ok(Self {
            table,
            conflict_columns,
            on_conflict,
            columns: column_list(env, "SINK_COLUMNS")?,
        })
    }

    /// The rows' shape.
    pub fn shape(&self) -> Shape {
        Shape::new(self.conflict_columns.clone(), self.columns.clone())
    }
}

/// A comma-separated list of distinct column names; `None` when unset.
fn column_list(env: &Env, var: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(text) = env.get(var) else {
        return Ok(None);
    };
    let mut columns: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim) {
        if !is_identifier(name) {
            return Err(ConfigError::new(
                var,
                format!(
                    "{name:?} is not a column name (letters, digits and '_', at most 63 bytes, comma separated)"
                ),
            ));
        }
        if columns.iter().any(|c| c == name) {
            return Err(ConfigError::new(var, format!("{name:?} is listed twice")));
        }
        columns.push(name.to_owned());
    }
    Ok(Some(columns))
}

/// Everything the function needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every function's runner needs (PostgREST, dead letters, write bounds, deadline,
    /// metrics).
    pub runner: RunnerConfig,
    /// The table and its rows.
    pub sink: SinkSettings,
    /// `VALUE_FORMAT` and the schema registry.
    pub values: ValueSettings,
}

impl Config {
    /// Reads every setting from `env` and resolves the Supabase key (the environment or Secrets
    /// Manager), once at cold start: `main` passes `Env::process()`, tests `Env::from_pairs(..)`.
    pub async fn load(env: &Env) -> Result<Self, InitError> {
        // The sink's own settings first, so a typo fails fast without an AWS call.
        let sink = SinkSettings::from_env(env)?;
        if env.identifier_or("DEAD_LETTER_TABLE", "dead_letters")? == sink.table {
            return Err(ConfigError::new("SINK_TABLE", "must not be the DEAD_LETTER_TABLE").into());
        }
        Ok(Self {
            runner: RunnerConfig::from_env(env, FUNCTION_NAME).await?,
            sink,
            values: ValueSettings::from_env(env).await?,
        })
    }

    /// The handler `main` runs (tests build theirs the same way).
    pub fn build(&self) -> Result<PostgrestHandler, InitError> {
        let client = PostgrestClient::new(self.runner.postgrest.clone())?;
        let values = self
            .values
            .build()
            .map_err(|e| InitError::Client(e.to_string()))?;
        let on_conflict = self.sink.on_conflict;
        let upsert = Upsert::on_conflict(
            self.sink.conflict_columns.join(","),
            on_conflict.duplicates(),
        );
        let rows = PostgrestRows::new(
            client.clone(),
            self.sink.table.clone(),
            self.runner.limits,
            upsert,
        );
        Ok(self.runner.runner(
            TableSink::new(rows, self.sink.shape(), on_conflict).with_values(values),
            client,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 4] = [
        ("SUPABASE_URL", "http://127.0.0.1:9"),
        ("SUPABASE_SERVICE_ROLE_KEY", "k"),
        ("SINK_TABLE", "user_profiles"),
        ("SINK_CONFLICT_COLUMNS", "user_id"),
    ];

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs: Vec<(&str, &str)> = BASE
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        Env::from_pairs(pairs)
    }

    async fn error(extra: &[(&str, &str)]) -> String {
        Config::load(&env(extra)).await.unwrap_err().to_string()
    }

    #[tokio::test]
    async fn defaults() {
        let c = Config::load(&env(&[])).await.unwrap();
        assert_eq!(c.runner.postgrest.base_url, "http://127.0.0.1:9/rest/v1");
        assert_eq!(c.runner.postgrest.key.current().await.expose(), "k");
        assert_eq!(
            c.sink,
            SinkSettings {
                table: "user_profiles".into(),
                conflict_columns: vec!["user_id".into()],
                on_conflict: OnConflictMode::Merge,
                columns: None,
            }
        );
        assert_eq!(c.runner.dead_letter_table, "dead_letters");
        assert_eq!(c.runner.limits, lambda_kit::bulk::WriteLimits::default());
        assert_eq!(
            c.build().unwrap().function().on_conflict(),
            OnConflictMode::Merge
        );
    }

    #[tokio::test]
    async fn value_format_and_registry() {
        let c = Config::load(&env(&[])).await.unwrap();
        assert_eq!(c.values.format, event_decoding::ValueFormat::Json);
        let c = Config::load(&env(&[
            ("VALUE_FORMAT", "auto"),
            ("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/registry"),
        ]))
        .await
        .unwrap();
        assert_eq!(c.values.format, event_decoding::ValueFormat::Auto);
        assert!(c.values.registry.is_some());
        assert_eq!(
            c.build().unwrap().function().on_conflict(),
            OnConflictMode::Merge
        );
    }

    #[tokio::test]
    async fn lists_and_modes() {
        let c = Config::load(&env(&[
            ("SINK_CONFLICT_COLUMNS", " tenant_id , user_id "),
            ("SINK_COLUMNS", "email,display_name"),
            ("SINK_ON_CONFLICT", "ignore"),
        ]))
        .await
        .unwrap();
        assert_eq!(c.sink.conflict_columns, ["tenant_id", "user_id"]);
        assert_eq!(
            c.sink.columns.as_deref(),
            Some(&["email".to_string(), "display_name".to_string()][..])
        );
        assert_eq!(
            c.build().unwrap().function().on_conflict(),
            OnConflictMode::Ignore
        );
    }

    #[tokio::test]
    async fn errors_name_the_variable() {
        for (extra, var) in [
            (&[("SINK_TABLE", "")][..], "SINK_TABLE"),
            (&[("SINK_TABLE", "public.users")], "SINK_TABLE"),
            (&[("SINK_TABLE", "users?select=x")], "SINK_TABLE"),
            (&[("SINK_TABLE", "dead_letters")], "SINK_TABLE"),
            (&[("SINK_CONFLICT_COLUMNS", "")], "SINK_CONFLICT_COLUMNS"),
            (
                &[("SINK_CONFLICT_COLUMNS", "a,,b")],
                "SINK_CONFLICT_COLUMNS",
            ),
            (&[("SINK_CONFLICT_COLUMNS", "a,a")], "SINK_CONFLICT_COLUMNS"),
            (
                &[("SINK_CONFLICT_COLUMNS", "user id")],
                "SINK_CONFLICT_COLUMNS",
            ),
            (&[("SINK_COLUMNS", "email;drop")], "SINK_COLUMNS"),
            (&[("SINK_ON_CONFLICT", "replace")], "SINK_ON_CONFLICT"),
            (&[("DEAD_LETTER_TABLE", "a-b")], "DEAD_LETTER_TABLE"),
            (&[("WRITE_MAX_ROWS", "0")], "WRITE_MAX_ROWS"),
            (&[("SUPABASE_URL", "")], "SUPABASE_URL"),
            (
                &[("SUPABASE_SERVICE_ROLE_KEY", "")],
                "SUPABASE_SERVICE_ROLE_KEY",
            ),
            (&[("METRICS_ENABLED", "perhaps")], "METRICS_ENABLED"),
            (&[("VALUE_FORMAT", "xml")], "VALUE_FORMAT"),
            (&[("VALUE_FORMAT", "avro")], "SCHEMA_REGISTRY_URL"),
            (&[("KEY_FORMAT", "xml")], "KEY_FORMAT"),
            (&[("KEY_FORMAT", "protobuf")], "SCHEMA_REGISTRY_URL"),
            (
                &[
                    ("KEY_FORMAT", "avro"),
                    ("KEY_AVRO_SCHEMA_FILE", "/nonexistent.avsc"),
                ],
                "KEY_AVRO_SCHEMA_FILE",
            ),
        ] {
            let e = error(extra).await;
            assert!(e.contains(var), "{extra:?}: {e}");
        }
        let e = error(&[("SINK_CONFLICT_COLUMNS", "")]).await;
        assert!(e.contains("required"), "{e}");
    }

    #[tokio::test]
    async fn the_key_is_never_printed() {
        let c = Config::load(&env(&[("SUPABASE_SERVICE_ROLE_KEY", "sekret-123")]))
            .await
            .unwrap();
        let printed = format!("{c:?} {:?}", c.build().unwrap());
        assert!(!printed.contains("sekret-123"), "{printed}");
    }
}
