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
//! | `GIFT_MAX_TEXT_CHARS` | 10000 | max characters of `question` / `answer` |
//! | `HTTP_TIMEOUT_MS` | 10000 | one HTTP request |
//! | `HTTP_CONNECT_TIMEOUT_MS` | 2000 | connecting |
//! | `RETRY_MAX_ATTEMPTS` | 5 | attempts per request, first included |
//! | `RETRY_INITIAL_BACKOFF_MS` | 100 | first backoff (doubles, jitter 50 %) |
//! | `RETRY_MAX_BACKOFF_MS` | 5000 | backoff cap |
//! | `DEADLINE_SAFETY_MARGIN_MS` | 2000 | kept before the Lambda deadline |
//! | `DEFAULT_BUDGET_MS` | 60000 | budget when the context has no deadline |
//! | `METRICS_ENABLED` / `METRICS_NAMESPACE` | `true` / `KafkaLambdas` | one EMF metrics line per invocation |

use lambda_kit::batch::WriteLimits;
use lambda_kit::config::{Env, InitError};
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::metrics::Metrics;
use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig};
use lambda_kit::retry::DeadlineSettings;
use lambda_kit::runner::Runner;

use crate::gift::GiftLimits;
use crate::handler::{Gifts, PostgrestHandler};
use crate::store::PostgrestGiftStore;

/// Name of the function in dead letters (stable across deployments, so redelivery dedupes).
pub const FUNCTION_NAME: &str = "gift-persister";

/// Everything the function needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgREST connection.
    pub postgrest: PostgrestConfig,
    /// Gifts table.
    pub gifts_table: String,
    /// Dead-letter table.
    pub dead_letter_table: String,
    /// Bulk write bounds.
    pub limits: WriteLimits,
    /// Validation bounds.
    pub gift_limits: GiftLimits,
    /// Deadline derivation.
    pub deadline: DeadlineSettings,
    /// The EMF metrics line (`METRICS_ENABLED`, `METRICS_NAMESPACE`).
    pub metrics: Metrics,
}

impl Config {
    /// Reads the process environment (and Secrets Manager for the key).
    pub async fn from_env() -> Result<Self, InitError> {
        Self::from(&Env::process()).await
    }

    /// Reads `env`.
    pub async fn from(env: &Env) -> Result<Self, InitError> {
        // Check the URL before fetching the key, so a typo fails fast without an AWS call.
        let probe = PostgrestConfig::from_env(env, lambda_kit::postgrest::Secret::new(""))?;
        let key = lambda_kit::postgrest::resolve_key(env).await?;
        let d = GiftLimits::default();
        Ok(Self {
            postgrest: PostgrestConfig { key, ..probe },
            gifts_table: env.identifier_or("GIFTS_TABLE", "vault")?,
            dead_letter_table: env.identifier_or("DEAD_LETTER_TABLE", "dead_letters")?,
            limits: WriteLimits::from_env(env)?,
            gift_limits: GiftLimits {
                max_text_chars: env.positive_or("GIFT_MAX_TEXT_CHARS", d.max_text_chars)?,
                ..d
            },
            deadline: DeadlineSettings::from_env(env)?,
            metrics: Metrics::from_env(env, FUNCTION_NAME)?,
        })
    }

    /// The handler `main` runs (tests and benchmarks build theirs the same way).
    pub fn build(&self) -> Result<PostgrestHandler, InitError> {
        let client = PostgrestClient::new(self.postgrest.clone())?;
        let gifts = PostgrestGiftStore::new(client.clone(), self.gifts_table.clone(), self.limits);
        let dead_letters =
            PostgrestDeadLetters::new(client, self.dead_letter_table.clone(), self.limits);
        Ok(Runner::new(
            Gifts::new(gifts, self.gift_limits),
            dead_letters,
            self.deadline.clone(),
        )
        .with_metrics(self.metrics.clone()))
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
        let c = Config::from(&env).await.unwrap();
        assert_eq!(c.postgrest.base_url, "http://127.0.0.1:9/rest/v1");
        assert_eq!(
            (c.gifts_table.as_str(), c.dead_letter_table.as_str()),
            ("vault", "dead_letters")
        );
        assert_eq!(c.limits, WriteLimits::default());
        assert_eq!(c.postgrest.key.expose(), "k");

        let e = Config::from(&Env::from_pairs([("SUPABASE_URL", "http://x")]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SUPABASE_SERVICE_ROLE_KEY"), "{e}");
        let e = Config::from(&Env::from_pairs([("SUPABASE_SERVICE_ROLE_KEY", "k")]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SUPABASE_URL"), "{e}");
        let env = Env::from_pairs([
            ("SUPABASE_URL", "http://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
            ("WRITE_MAX_ROWS", "lots"),
        ]);
        let e = Config::from(&env).await.unwrap_err();
        assert!(e.to_string().contains("WRITE_MAX_ROWS"), "{e}");
        let env = Env::from_pairs([
            ("SUPABASE_URL", "http://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
            ("GIFTS_TABLE", "vault;drop"),
        ]);
        assert!(
            Config::from(&env)
                .await
                .unwrap_err()
                .to_string()
                .contains("GIFTS_TABLE")
        );
    }
}
