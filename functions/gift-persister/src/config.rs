//! Configuration of the function, read once at cold start.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `SUPABASE_REST_URL` / `SUPABASE_URL` | required | PostgREST base URL, or project URL + `/rest/v1` |
//! | `SUPABASE_SECRET_KEY` / `SUPABASE_SECRET_KEY_SECRET_ID` (legacy `SUPABASE_SERVICE_ROLE_KEY` / `SUPABASE_KEY_SECRET_ID`) | required | key, or Secrets Manager id/ARN (plain or JSON `key`); [`resolve_key`](lambda_kit::postgrest::resolve_key) |
//! | `GIFTS_TABLE` | `vault` | gifts table |
//! | `DEAD_LETTER_TABLE` | `dead_letters` | dead-letter table |
//! | `WRITE_MAX_ROWS` | 500 | rows per bulk request |
//! | `WRITE_MAX_BYTES` | 1048576 | JSON body bytes per bulk request |
//! | `WRITE_CONCURRENCY` | 4 | bulk requests in flight at once |
//! | `GIFT_MAX_TEXT_CHARS` | 10000 | max characters of `question` / `answer` |
//! | `HTTP_TIMEOUT_MS` | 10000 | one HTTP request |
//! | `HTTP_CONNECT_TIMEOUT_MS` | 2000 | connecting |
//! | `RETRY_MAX_ATTEMPTS` | 5 | attempts per request, first included |
//! | `RETRY_INITIAL_BACKOFF_MS` | 100 | first backoff (doubles, jitter 50 %) |
//! | `RETRY_MAX_BACKOFF_MS` | 5000 | backoff cap |
//! | `DEADLINE_SAFETY_MARGIN_MS` | 2000 | kept before the Lambda deadline |
//! | `DEFAULT_BUDGET_MS` | 60000 | budget when the context has no deadline |
//! | `METRICS_ENABLED` / `METRICS_NAMESPACE` | `true` / `KafkaLambdas` | one EMF metrics line per invocation |
//! | `VALUE_FORMAT` | `json` | `json`, `avro`, `protobuf` or `auto` (Avro, Protobuf and JSON Schema values: [`ValueSettings`]) |
//! | `SCHEMA_REGISTRY_URL`, `SCHEMA_REGISTRY_USERNAME` / `_PASSWORD` or `SCHEMA_REGISTRY_SECRET_ID` | — | the registry writer schemas come from |
//! | `KEY_FORMAT` | `auto` | `auto`: the key is not read; `string`, `json`, `avro`, `protobuf`: each key is checked against its format and own schema (the registry's, or `KEY_AVRO_SCHEMA_FILE` / `KEY_PROTOBUF_DESCRIPTOR_SET` + `KEY_PROTOBUF_MESSAGE`) and a record whose key does not decode is dead-lettered ([`Gifts`]) |

use lambda_kit::config::Env;
use lambda_kit::init::InitError;
use lambda_kit::postgrest::PostgrestClient;
use lambda_kit::runner::RunnerConfig;
use lambda_kit::schema_registry::ValueSettings;

use crate::gift::GiftLimits;
use crate::handler::{FUNCTION_NAME, Gifts, PostgrestHandler};
use crate::store::PostgrestGiftStore;

/// Everything the function needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every function's runner needs (PostgREST, dead letters, write bounds, deadline,
    /// metrics).
    pub runner: RunnerConfig,
    /// Gifts table.
    pub gifts_table: String,
    /// Validation bounds.
    pub gift_limits: GiftLimits,
    /// `VALUE_FORMAT` and the schema registry.
    pub values: ValueSettings,
}

impl Config {
    /// Reads every setting from `env` and resolves the Supabase key (the environment or Secrets
    /// Manager), once at cold start: `main` passes `Env::process()`, tests and benchmarks
    /// `Env::from_pairs(..)`.
    pub async fn load(env: &Env) -> Result<Self, InitError> {
        let d = GiftLimits::default();
        let gifts_table = env.identifier_or("GIFTS_TABLE", "vault")?;
        let gift_limits = GiftLimits {
            max_text_chars: env.positive_or("GIFT_MAX_TEXT_CHARS", d.max_text_chars)?,
            ..d
        };
        Ok(Self {
            runner: RunnerConfig::from_env(env, FUNCTION_NAME).await?,
            gifts_table,
            gift_limits,
            values: ValueSettings::from_env(env).await?,
        })
    }

    /// The handler `main` runs (tests and benchmarks build theirs the same way).
    pub fn build(&self) -> Result<PostgrestHandler, InitError> {
        let client = PostgrestClient::new(self.runner.postgrest.clone())?;
        let gifts =
            PostgrestGiftStore::new(client.clone(), self.gifts_table.clone(), self.runner.limits);
        let values = self
            .values
            .build()
            .map_err(|e| InitError::Client(e.to_string()))?;
        Ok(self.runner.runner(
            Gifts::new(gifts, self.gift_limits).with_values(values),
            client,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn defaults_and_errors_name_the_variable() {
        let env = Env::from_pairs([
            ("SUPABASE_URL", "http://127.0.0.1:9"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
        ]);
        let c = Config::load(&env).await.unwrap();
        assert_eq!(c.runner.postgrest.base_url, "http://127.0.0.1:9/rest/v1");
        assert_eq!(
            (c.gifts_table.as_str(), c.runner.dead_letter_table.as_str()),
            ("vault", "dead_letters")
        );
        assert_eq!(c.runner.limits, lambda_kit::bulk::WriteLimits::default());
        assert_eq!(c.runner.postgrest.key.current().await.expose(), "k");

        let e = Config::load(&Env::from_pairs([("SUPABASE_URL", "https://x")]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SUPABASE_SERVICE_ROLE_KEY"), "{e}");
        let e = Config::load(&Env::from_pairs([("SUPABASE_SERVICE_ROLE_KEY", "k")]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SUPABASE_URL"), "{e}");
        let env = Env::from_pairs([
            ("SUPABASE_URL", "https://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
            ("WRITE_MAX_ROWS", "lots"),
        ]);
        let e = Config::load(&env).await.unwrap_err();
        assert!(e.to_string().contains("WRITE_MAX_ROWS"), "{e}");
        let env = Env::from_pairs([
            ("SUPABASE_URL", "https://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
            ("GIFTS_TABLE", "vault;drop"),
        ]);
        assert!(
            Config::load(&env)
                .await
                .unwrap_err()
                .to_string()
                .contains("GIFTS_TABLE")
        );
    }
}
