//! What every function's runner needs from the environment ([`RunnerConfig`]), read once at cold
//! start, and the runner it builds.

use super::function::BatchFunction;
use super::lifecycle::Runner;
use crate::bulk::WriteLimits;
use crate::config::Env;
use crate::dead_letter::PostgrestDeadLetters;
use crate::init::InitError;
use crate::metrics::Metrics;
use crate::otlp::OtlpExporter;
use crate::postgrest::{PostgrestClient, PostgrestConfig, Secret, resolve_key};
use crate::retry::DeadlineSettings;

/// What every function's runner needs, read once at cold start by
/// [`RunnerConfig::from_env`]: the PostgREST connection with the Supabase key (dead letters, and
/// the tables the function writes), `DEAD_LETTER_TABLE`, `WRITE_MAX_ROWS` / `WRITE_MAX_BYTES` /
/// `WRITE_CONCURRENCY`, the deadline settings and the metrics line. A function's own `Config`
/// holds one beside its own settings, and its `build()` hands its [`BatchFunction`] to
/// [`RunnerConfig::runner`].
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// PostgREST connection (`SUPABASE_URL` / `SUPABASE_REST_URL`, the key, timeouts, retries).
    pub postgrest: PostgrestConfig,
    /// `DEAD_LETTER_TABLE` (default `dead_letters`).
    pub dead_letter_table: String,
    /// `WRITE_MAX_ROWS`, `WRITE_MAX_BYTES`, `WRITE_CONCURRENCY`: bounds of bulk writes.
    pub limits: WriteLimits,
    /// `DEADLINE_SAFETY_MARGIN_MS`, `DEFAULT_BUDGET_MS`.
    pub deadline: DeadlineSettings,
    /// `METRICS_ENABLED`, `METRICS_NAMESPACE`.
    pub metrics: Metrics,
    /// `OTEL_TRACES_EXPORTER=otlp` and the `OTEL_EXPORTER_OTLP_*` settings: the batch span's
    /// export, off by default.
    pub otlp: Option<OtlpExporter>,
}

impl RunnerConfig {
    /// Reads `env` for the function `function_name` (its metrics' `FunctionName` when
    /// `AWS_LAMBDA_FUNCTION_NAME` is unset). Every setting is checked before the key is resolved
    /// (from the environment or Secrets Manager), so a typo fails fast without an AWS call.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use lambda_kit::runner::RunnerConfig;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let env = Env::from_pairs([("SUPABASE_REST_URL", "http://127.0.0.1:3000"), ("SUPABASE_SECRET_KEY", "sb_secret_x")]);
    /// let c = RunnerConfig::from_env(&env, "my-function").await.unwrap();
    /// assert_eq!(c.dead_letter_table, "dead_letters");
    /// let e = RunnerConfig::from_env(&Env::from_pairs([("WRITE_MAX_ROWS", "0")]), "f").await.unwrap_err();
    /// assert!(e.to_string().contains("WRITE_MAX_ROWS"));
    /// # }
    /// ```
    pub async fn from_env(env: &Env, function_name: &str) -> Result<Self, InitError> {
        let dead_letter_table = env.identifier_or("DEAD_LETTER_TABLE", "dead_letters")?;
        let limits = WriteLimits::from_env(env)?;
        let deadline = DeadlineSettings::from_env(env)?;
        let metrics = Metrics::from_env(env, function_name)?;
        let otlp = OtlpExporter::from_env(env, function_name)?;
        let probe = PostgrestConfig::from_env(env, Secret::new(""))?;
        let key = resolve_key(env).await?;
        Ok(Self {
            postgrest: PostgrestConfig { key, ..probe },
            dead_letter_table,
            limits,
            deadline,
            metrics,
            otlp,
        })
    }

    /// `function` run with its dead letters written through `client`, the deadline settings and
    /// the metrics line.
    pub fn runner<F: BatchFunction>(
        &self,
        function: F,
        client: PostgrestClient,
    ) -> Runner<F, PostgrestDeadLetters> {
        let dead_letters =
            PostgrestDeadLetters::new(client, self.dead_letter_table.clone(), self.limits);
        Runner::new(function, dead_letters, self.deadline.clone())
            .with_metrics(self.metrics.clone())
            .with_otlp(self.otlp.clone())
    }
}
