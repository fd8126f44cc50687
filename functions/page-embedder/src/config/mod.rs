//! The function's configuration, read once at cold start from environment variables; a bad
//! setting fails the start with an error naming the variable. [`Config::load`] reads everything
//! (and resolves the keys); [`Config::build`] reads nothing and makes the handler.

mod embed;
mod page;
mod store;
#[cfg(test)]
mod tests;

use std::time::Duration;

use lambda_kit::config::{ConfigError, Env};
use lambda_kit::init::InitError;
use lambda_kit::postgrest::PostgrestClient;
use lambda_kit::runner::RunnerConfig;
use lambda_kit::schema_registry::ValueSettings;
use lambda_kit::secrets::Credential;

pub use self::embed::{EmbedConfig, Provider};
pub use self::page::{PageSettings, RagConfig};
use crate::handler::ConfiguredHandler;
pub use crate::keys::KeySource;
use crate::page_state::PageStates;
use crate::pipeline::{Pipeline, Settings};
use crate::rag::HttpRag;
pub use crate::store::StoreConfig;
use crate::store::{AnyStore, VectorStore};

/// Name of the function in dead letters and metrics: the package name, not
/// `AWS_LAMBDA_FUNCTION_NAME`: dead letters are keyed by function name, topic, partition and
/// offset, and a redeploy under a new name must still dedupe a redelivered record.
pub const FUNCTION_NAME: &str = "page-embedder";

/// Everything the function needs, read at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every function's runner needs (PostgREST and the Supabase key, dead letters, write
    /// bounds, deadline, metrics).
    pub runner: RunnerConfig,
    /// `VALUE_FORMAT` and the schema registry.
    pub values: ValueSettings,
    /// The function's own settings.
    pub settings: PageSettings,
    /// The embedding provider's key, when it is sent one.
    pub embed_key: Option<Credential>,
    /// The vector store's key, when it is sent one.
    pub store_key: Option<Credential>,
}

impl Config {
    /// Reads every setting from `env` and resolves the keys (the environment or Secrets
    /// Manager): `main` passes the process environment, tests and benchmarks
    /// `Env::from_pairs(..)`.
    pub async fn load(env: &Env) -> Result<Self, InitError> {
        // The function's own settings first, so a typo fails fast without an AWS call.
        let settings = PageSettings::from_env(env)?;
        let runner = RunnerConfig::from_env(env, FUNCTION_NAME).await?;
        let embed_key = settings.embed.credential(env).await?;
        let store_key = AnyStore::credential(&settings.store, env).await?;
        Ok(Self {
            runner,
            values: ValueSettings::from_env(env).await?,
            settings,
            embed_key,
            store_key,
        })
    }

    /// The handler `main` runs: one HTTP client for PostgREST, the provider, the vector store
    /// and RAG (one connection pool, one load of the TLS roots), the in-process model when
    /// chosen. Tests and benchmarks build their handlers the same way.
    pub fn build(&self) -> Result<ConfiguredHandler, InitError> {
        let postgrest_config = self.runner.postgrest.clone();
        // Connect within HTTP_CONNECT_TIMEOUT_MS; every request sets its own timeout.
        let http = lambda_kit::http::client_builder()
            .connect_timeout(postgrest_config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| InitError::Client(format!("HTTP client: {e}")))?;
        let s = &self.settings;
        let embedder = s.embed.embedder(self.embed_key.clone(), &http)?;
        let postgrest = PostgrestClient::with_http(postgrest_config, http.clone())
            .map_err(|e| InitError::Client(e.to_string()))?;
        let store =
            AnyStore::from_config(&s.store, self.store_key.clone(), postgrest.clone(), &http)
                .map_err(|e| InitError::Client(e.to_string()))?;
        self.check_truncate(&store)?;
        let rag = s
            .rag
            .as_ref()
            .map(|r| HttpRag::new(http.clone(), r.url.clone(), r.timeout, r.concurrency));
        let values = self
            .values
            .build_on(&http)
            .map_err(|e| InitError::Client(e.to_string()))?;
        let pipeline = Pipeline {
            embedder,
            store,
            rag,
            states: PageStates::postgrest(postgrest.clone(), s.page_state_table.clone()),
            settings: self.pipeline_settings(),
            values,
        };
        Ok(self.runner.runner(pipeline, postgrest))
    }

    /// `CDC_ON_TRUNCATE=delete-all` names its source table and has a store that can do it.
    fn check_truncate(&self, store: &AnyStore) -> Result<(), ConfigError> {
        let s = &self.settings;
        if s.truncate_deletes_all && s.source_table.is_none() {
            return Err(ConfigError::new(
                "CDC_SOURCE_TABLE",
                "required with CDC_ON_TRUNCATE=delete-all: the source table whose truncate deletes every vector (schema.table, e.g. public.pages); a truncate of any other table is ignored",
            ));
        }
        if s.truncate_deletes_all && !store.supports_delete_all() {
            return Err(ConfigError::new(
                "CDC_ON_TRUNCATE",
                "delete-all needs VECTOR_STORE=supabase (this store cannot delete every vector)",
            ));
        }
        Ok(())
    }

    fn pipeline_settings(&self) -> Settings {
        let s = &self.settings;
        let e = &s.embed;
        Settings {
            page_id_field: s.page_id_field.clone(),
            body_field: s.body_field.clone(),
            doc_prefix: e.doc_prefix.clone(),
            limits: e.limits,
            embed: e.settings(),
            writes: self.runner.limits,
            rag_enabled: s.rag.is_some(),
            function_name: FUNCTION_NAME.to_owned(),
            unavailable_value: s.cdc_unavailable_value.clone(),
            truncate_deletes_all: s.truncate_deletes_all,
            source_table: s.source_table.clone(),
        }
    }
}
