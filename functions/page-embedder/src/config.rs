//! The function's configuration, read once at cold start from environment variables; a bad
//! setting fails the start with an error naming the variable.

use std::time::Duration;

use lambda_kit::config::{ConfigError, Env};
use lambda_kit::init::InitError;
use lambda_kit::postgrest::PostgrestClient;
use lambda_kit::retry::RetryPolicy;
use lambda_kit::runner::RunnerConfig;
use lambda_kit::schema_registry::ValueSettings;
use lambda_kit::secrets::{Credential, SecretSpec};

use crate::chunk::ChunkLimits;
use crate::embed::{EmbedSettings, OllamaEmbedder, OpenAiEmbedder, ProviderEmbedder};
use crate::handler::ConfiguredHandler;
pub use crate::keys::KeySource;
use crate::keys::key_source;
use crate::page_state::PageStates;
use crate::pipeline::{Pipeline, Settings};
use crate::rag::HttpRag;
pub use crate::store::StoreConfig;
use crate::store::{AnyStore, VectorStore};

/// Embedding provider (`EMBED_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// Ollama's native `POST /api/embed`.
    Ollama,
    /// OpenAI `POST /v1/embeddings` and compatible servers (vLLM, TEI, LM Studio, LiteLLM,
    /// Ollama's `/v1`).
    OpenAi,
    /// In process, no server: a sentence-transformers BERT model loaded from `LOCAL_MODEL_DIR`
    /// (default all-MiniLM-L6-v2, 384 dimensions; `scripts/model` fetches it). Needs the
    /// `local-embedder` cargo feature.
    Local,
}

impl Provider {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "ollama" => Ok(Provider::Ollama),
            "openai" => Ok(Provider::OpenAi),
            "local" => Ok(Provider::Local),
            other => Err(ConfigError::new(
                "EMBED_PROVIDER",
                format!("unknown provider {other:?}; expected ollama, openai or local"),
            )),
        }
    }

    fn default_model(self) -> &'static str {
        match self {
            Provider::Ollama => "nomic-embed-text",
            Provider::OpenAi => "text-embedding-3-small",
            Provider::Local => "all-MiniLM-L6-v2",
        }
    }

    fn default_base_url(self) -> &'static str {
        match self {
            Provider::Ollama => "http://localhost:11434",
            Provider::OpenAi => "https://api.openai.com",
            // Not used: the model runs in process.
            Provider::Local => "http://localhost",
        }
    }
}

/// The OpenAI key's variables: the key itself, or a Secrets Manager id.
const OPENAI_KEY_VARS: (&str, &str) = ("OPENAI_API_KEY", "OPENAI_API_KEY_SECRET_ID");

/// Everything about the embedding calls.
#[derive(Debug, Clone)]
pub struct EmbedConfig {
    /// `EMBED_PROVIDER` (default `ollama`).
    pub provider: Provider,
    /// `EMBED_BASE_URL`.
    pub base_url: String,
    /// `EMBED_MODEL` (default `nomic-embed-text`).
    pub model: String,
    /// `EMBED_DIM` (default 768).
    pub dimensions: usize,
    /// Whether `EMBED_DIM` was set explicitly (then `dimensions` is sent to the provider).
    pub dimensions_explicit: bool,
    /// `EMBED_DOC_PREFIX` (default `search_document: ` for nomic models, empty otherwise).
    pub doc_prefix: String,
    /// `EMBED_MAX_CHARS` (default 4000) and `EMBED_OVERLAP_CHARS` (default 200), prefix included.
    pub limits: ChunkLimits,
    /// `EMBED_BATCH_SIZE`: texts per request (default 64).
    pub batch_size: usize,
    /// `EMBED_CONCURRENCY`: requests in flight (default 4).
    pub concurrency: usize,
    /// `EMBED_TIMEOUT_MS`: one request (default 30 s).
    pub timeout: Duration,
    /// `EMBED_KEEP_ALIVE` (Ollama only, e.g. `10m`).
    pub keep_alive: Option<String>,
    /// `EMBED_RETRY_MAX_ATTEMPTS`, `EMBED_RETRY_INITIAL_BACKOFF_MS`, `EMBED_RETRY_MAX_BACKOFF_MS`.
    pub retry: RetryPolicy,
    /// `OPENAI_API_KEY` or `OPENAI_API_KEY_SECRET_ID`.
    pub api_key: KeySource,
    /// `LOCAL_MODEL_DIR`, required with `EMBED_PROVIDER=local`.
    pub local_model_dir: Option<String>,
}

/// RAG refresh hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RagConfig {
    /// `RAG_REFRESH_URL`.
    pub url: String,
    /// `RAG_REFRESH_TIMEOUT_MS` (default 5000).
    pub timeout: Duration,
    /// `RAG_REFRESH_CONCURRENCY` (default 8).
    pub concurrency: usize,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PAGE_ID_FIELD` (default `page_id`).
    pub page_id_field: String,
    /// `BODY_FIELD` (default `body`).
    pub body_field: String,
    /// Embedding settings.
    pub embed: EmbedConfig,
    /// `VECTOR_STORE` (default `supabase`) and its settings.
    pub store: StoreConfig,
    /// `RAG_REFRESH_URL` and friends, when set.
    pub rag: Option<RagConfig>,
    /// `PAGE_STATE_TABLE` (default `page_state`): the source version last applied per page.
    pub page_state_table: String,
    /// `CDC_UNAVAILABLE_VALUE` (default Debezium's `__debezium_unavailable_value`; `none` turns
    /// the check off): a body equal to it means "unchanged", see
    /// [`Settings::unavailable_value`](crate::pipeline::Settings::unavailable_value).
    pub cdc_unavailable_value: String,
    /// `CDC_ON_TRUNCATE`: `ignore` (default) or `delete-all` (every vector goes when the source
    /// table is truncated; for a vector table that mirrors one source table).
    pub truncate_deletes_all: bool,
    /// `CDC_SOURCE_TABLE` (required with `CDC_ON_TRUNCATE=delete-all`): the source table, as
    /// `schema.table` (or `table`), whose truncate deletes every vector; a truncate event of any
    /// other table, or of one it does not name, is ignored.
    pub source_table: Option<String>,
}

/// Name of the function in dead letters and metrics: the package name, not
/// `AWS_LAMBDA_FUNCTION_NAME`: dead letters are keyed by function name, topic, partition and
/// offset, and a redeploy under a new name must still dedupe a redelivered record.
pub const FUNCTION_NAME: &str = "page-embedder";

impl From<crate::store::BuildStoreError> for InitError {
    fn from(e: crate::store::BuildStoreError) -> Self {
        match e {
            crate::store::BuildStoreError::Secret(e) => e,
            other => Self::Client(other.to_string()),
        }
    }
}

impl Config {
    /// Reads and validates every setting.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::config::{Config, Provider};
    /// let c = Config::from_env(&Env::from_pairs([("EMBED_PROVIDER", "openai"), ("EMBED_MODEL", "text-embedding-3-small"), ("EMBED_DIM", "1536")])).unwrap();
    /// assert_eq!(c.embed.provider, Provider::OpenAi);
    /// assert_eq!(c.embed.base_url, "https://api.openai.com");
    /// assert!(c.embed.dimensions_explicit && c.embed.doc_prefix.is_empty());
    /// let err = Config::from_env(&Env::from_pairs([("EMBED_DIM", "zero")])).unwrap_err();
    /// assert_eq!(err.var, "EMBED_DIM");
    /// ```
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let provider = Provider::parse(&env.string_or("EMBED_PROVIDER", "ollama"))?;
        let base_url = env
            .string_or("EMBED_BASE_URL", provider.default_base_url())
            .trim_end_matches('/')
            .to_owned();
        let api_key = key_source(env, OPENAI_KEY_VARS)?;
        // Only the OpenAI-compatible API is sent a key (`Authorization: Bearer`).
        let sends_key = provider == Provider::OpenAi && api_key != KeySource::None;
        lambda_kit::config::check_url("EMBED_BASE_URL", &base_url, sends_key)?;
        let local = provider == Provider::Local;
        let model = env.string_or("EMBED_MODEL", provider.default_model());
        // text-embedding-3 models answer 1536 or 3072 dimensions unless asked for fewer: with the
        // default model, `dimensions` = EMBED_DIM (768) is always sent so the vectors fit the
        // default `vector(768)` table.
        let dimensions_explicit = env.get("EMBED_DIM").is_some()
            || (provider == Provider::OpenAi && env.get("EMBED_MODEL").is_none());
        let dimensions = env.positive_or("EMBED_DIM", if local { 384 } else { 768 })?;
        let doc_prefix = match env.get("EMBED_DOC_PREFIX") {
            // Values are trimmed; the usual `task: ` prefixes get their space back.
            Some(p) if p.eq_ignore_ascii_case("none") => String::new(),
            Some(p) if p.ends_with(':') => format!("{p} "),
            Some(p) => p,
            None if model.to_ascii_lowercase().contains("nomic") => "search_document: ".to_owned(),
            None => String::new(),
        };
        // all-MiniLM-L6-v2 reads 256 tokens (about 1000 characters of English) and truncates the
        // rest, so local chunks are smaller.
        let max_chars = env.positive_or("EMBED_MAX_CHARS", if local { 1000 } else { 4000 })?;
        let prefix_len = doc_prefix.chars().count();
        if max_chars < prefix_len + 64 {
            return Err(ConfigError::new(
                "EMBED_MAX_CHARS",
                format!("must be at least {} (prefix + 64)", prefix_len + 64),
            ));
        }
        let overlap = env.parse_or("EMBED_OVERLAP_CHARS", if local { 100 } else { 200 })?;
        if overlap * 2 > max_chars - prefix_len {
            return Err(ConfigError::new(
                "EMBED_OVERLAP_CHARS",
                "must be at most half of EMBED_MAX_CHARS",
            ));
        }
        let store = match env
            .string_or("VECTOR_STORE", "supabase")
            .to_ascii_lowercase()
            .as_str()
        {
            "supabase" => StoreConfig::Supabase {
                table: env.identifier_or(
                    "VECTORS_TABLE",
                    if local {
                        "page_vectors_minilm"
                    } else {
                        "page_vectors"
                    },
                )?,
            },
            "qdrant" => StoreConfig::Qdrant(crate::store::QdrantConfig::from_env(env)?),
            "stargate" => StoreConfig::Stargate(crate::store::StargateConfig::from_env(env)?),
            other => {
                return Err(ConfigError::new(
                    "VECTOR_STORE",
                    format!("unknown store {other:?}; expected supabase, qdrant or stargate"),
                ));
            }
        };
        let local_model_dir = match (local, env.get("LOCAL_MODEL_DIR")) {
            (true, None) => {
                return Err(ConfigError::new(
                    "LOCAL_MODEL_DIR",
                    "required with EMBED_PROVIDER=local: a directory with config.json, tokenizer.json and model.safetensors (scripts/model prints one)",
                ));
            }
            (_, dir) => dir,
        };
        let rag = match env.get("RAG_REFRESH_URL") {
            Some(url) => {
                // No credential is sent to the hook: http:// stays allowed.
                lambda_kit::config::check_url("RAG_REFRESH_URL", &url, false)?;
                Some(RagConfig {
                    url,
                    timeout: env.millis_or("RAG_REFRESH_TIMEOUT_MS", Duration::from_secs(5))?,
                    concurrency: env.positive_or("RAG_REFRESH_CONCURRENCY", 8)?,
                })
            }
            None => None,
        };
        Ok(Self {
            page_id_field: env.identifier_or("PAGE_ID_FIELD", "page_id")?,
            body_field: env.identifier_or("BODY_FIELD", "body")?,
            embed: EmbedConfig {
                provider,
                base_url,
                model,
                dimensions,
                dimensions_explicit,
                doc_prefix,
                limits: ChunkLimits::new(max_chars - prefix_len, overlap),
                batch_size: env.positive_or("EMBED_BATCH_SIZE", 64)?,
                concurrency: env.positive_or("EMBED_CONCURRENCY", 4)?,
                timeout: env.millis_or("EMBED_TIMEOUT_MS", Duration::from_secs(30))?,
                keep_alive: env.get("EMBED_KEEP_ALIVE"),
                retry: RetryPolicy::from_env(env, "EMBED_RETRY_")?,
                api_key,
                local_model_dir,
            },
            store,
            rag,
            page_state_table: env.identifier_or("PAGE_STATE_TABLE", "page_state")?,
            truncate_deletes_all: match env
                .string_or("CDC_ON_TRUNCATE", "ignore")
                .to_ascii_lowercase()
                .as_str()
            {
                "ignore" => false,
                "delete-all" => true,
                other => {
                    return Err(ConfigError::new(
                        "CDC_ON_TRUNCATE",
                        format!("unknown value {other:?}; expected ignore or delete-all"),
                    ));
                }
            },
            source_table: env.get("CDC_SOURCE_TABLE").filter(|t| !t.trim().is_empty()),
            cdc_unavailable_value: match env.get("CDC_UNAVAILABLE_VALUE") {
                Some(v) if v.eq_ignore_ascii_case("none") => String::new(),
                Some(v) => v,
                None => crate::pipeline::DEBEZIUM_UNAVAILABLE_VALUE.to_owned(),
            },
        })
    }

    /// The handler `main` runs: reads what every function's runner needs ([`RunnerConfig`]:
    /// PostgREST and the Supabase key, dead letters, write bounds, deadline, metrics), resolves
    /// the keys (environment or Secrets Manager), builds one HTTP client for PostgREST, the
    /// provider, the vector store and RAG (one connection pool, one load of the TLS roots), loads
    /// the in-process model when chosen. Tests and benchmarks build their handlers the same way.
    pub async fn build(&self, env: &Env) -> Result<ConfiguredHandler, InitError> {
        let runner = RunnerConfig::from_env(env, FUNCTION_NAME).await?;
        let postgrest_config = runner.postgrest.clone();
        // Connect within HTTP_CONNECT_TIMEOUT_MS; every request sets its own timeout.
        let http = lambda_kit::http::client_builder()
            .connect_timeout(postgrest_config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| InitError::Client(format!("HTTP client: {e}")))?;
        let embedder = self.embedder(env, &http).await?;
        let postgrest = PostgrestClient::with_http(postgrest_config, http.clone())
            .map_err(|e| InitError::Client(e.to_string()))?;
        let store = AnyStore::from_config(&self.store, env, postgrest.clone(), &http).await?;
        if self.truncate_deletes_all && self.source_table.is_none() {
            return Err(ConfigError::new(
                "CDC_SOURCE_TABLE",
                "required with CDC_ON_TRUNCATE=delete-all: the source table whose truncate deletes every vector (schema.table, e.g. public.pages); a truncate of any other table is ignored",
            )
            .into());
        }
        if self.truncate_deletes_all && !store.supports_delete_all() {
            return Err(ConfigError::new(
                "CDC_ON_TRUNCATE",
                "delete-all needs VECTOR_STORE=supabase (this store cannot delete every vector)",
            )
            .into());
        }
        let rag = self
            .rag
            .as_ref()
            .map(|r| HttpRag::new(http.clone(), r.url.clone(), r.timeout, r.concurrency));
        let values = ValueSettings::from_env(env)
            .await?
            .build_on(&http)
            .map_err(|e| InitError::Client(e.to_string()))?;
        let e = &self.embed;
        let pipeline = Pipeline {
            embedder,
            store,
            rag,
            states: PageStates::postgrest(postgrest.clone(), self.page_state_table.clone()),
            settings: Settings {
                page_id_field: self.page_id_field.clone(),
                body_field: self.body_field.clone(),
                doc_prefix: e.doc_prefix.clone(),
                limits: e.limits,
                embed: EmbedSettings {
                    batch_size: e.batch_size,
                    concurrency: e.concurrency,
                    retry: e.retry.clone(),
                },
                writes: runner.limits,
                rag_enabled: self.rag.is_some(),
                function_name: FUNCTION_NAME.to_owned(),
                unavailable_value: self.cdc_unavailable_value.clone(),
                truncate_deletes_all: self.truncate_deletes_all,
                source_table: self.source_table.clone(),
            },
            values,
        };
        Ok(runner.runner(pipeline, postgrest))
    }

    /// The embedding provider client of this configuration (the API key resolved from the
    /// environment or Secrets Manager), on `http`; `kl pages reembed` embeds with it too.
    pub async fn embedder(
        &self,
        env: &Env,
        http: &reqwest::Client,
    ) -> Result<ProviderEmbedder, InitError> {
        let e = &self.embed;
        Ok(match e.provider {
            Provider::OpenAi => {
                let api_key = match &e.api_key {
                    KeySource::None => None,
                    _ => Some(
                        Credential::from_env(
                            env,
                            &SecretSpec::new(OPENAI_KEY_VARS.0, OPENAI_KEY_VARS.1, "key"),
                        )
                        .await?,
                    ),
                };
                ProviderEmbedder::OpenAi(
                    OpenAiEmbedder::new(
                        http.clone(),
                        &e.base_url,
                        &e.model,
                        e.dimensions,
                        e.dimensions_explicit,
                        api_key,
                    )
                    .with_timeout(e.timeout),
                )
            }
            Provider::Ollama => ProviderEmbedder::Ollama(
                OllamaEmbedder::new(
                    http.clone(),
                    &e.base_url,
                    &e.model,
                    e.dimensions,
                    e.dimensions_explicit,
                )
                .with_keep_alive(e.keep_alive.clone())
                .with_timeout(e.timeout),
            ),
            #[cfg(feature = "local-embedder")]
            Provider::Local => {
                let dir = e.local_model_dir.as_deref().unwrap_or_default();
                let local = crate::embed::LocalProvider::load(dir, &e.model)
                    .map_err(|err| InitError::Client(format!("LOCAL_MODEL_DIR: {err}")))?;
                let dims = local.embedder().dimensions();
                if dims != e.dimensions {
                    return Err(ConfigError::new(
                        "EMBED_DIM",
                        format!(
                            "is {} but the model in LOCAL_MODEL_DIR produces {dims}",
                            e.dimensions
                        ),
                    )
                    .into());
                }
                ProviderEmbedder::Local(local)
            }
            #[cfg(not(feature = "local-embedder"))]
            Provider::Local => {
                return Err(ConfigError::new(
                    "EMBED_PROVIDER",
                    "local: this binary was built without the local-embedder feature (cargo build --features local-embedder)",
                )
                .into());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed_worker() {
        let c = Config::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(c.embed.provider, Provider::Ollama);
        assert_eq!(c.embed.base_url, "http://localhost:11434");
        assert_eq!(c.embed.model, "nomic-embed-text");
        assert_eq!(c.embed.dimensions, 768);
        assert!(!c.embed.dimensions_explicit);
        assert_eq!(c.embed.doc_prefix, "search_document: ");
        assert_eq!(c.embed.limits.max_chars, 4000 - "search_document: ".len());
        assert_eq!(c.page_id_field, "page_id");
        assert_eq!(c.body_field, "body");
        assert!(matches!(&c.store, StoreConfig::Supabase { table } if table == "page_vectors"));
        assert!(c.rag.is_none());
        assert_eq!(c.embed.api_key, KeySource::None);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (var, value) in [
            ("EMBED_PROVIDER", "cohere"),
            ("EMBED_BASE_URL", "localhost:11434"),
            ("EMBED_DIM", "-1"),
            ("EMBED_MAX_CHARS", "10"),
            ("EMBED_OVERLAP_CHARS", "3000"),
            ("EMBED_BATCH_SIZE", "0"),
            ("VECTOR_STORE", "pinecone"),
            ("RAG_REFRESH_URL", "ftp://x"),
            ("PAGE_ID_FIELD", "page id; drop"),
        ] {
            let err = Config::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{value}: {err}");
        }
    }

    #[test]
    fn urls_receiving_a_key_are_https_and_no_url_carries_userinfo() {
        let openai = |url: &'static str, key: (&'static str, &'static str)| {
            Config::from_env(&Env::from_pairs([
                ("EMBED_PROVIDER", "openai"),
                ("EMBED_BASE_URL", url),
                key,
            ]))
        };
        for key in [
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_API_KEY_SECRET_ID", "id"),
        ] {
            let err = openai("http://vllm.internal:8000/v1", key).unwrap_err();
            assert_eq!(err.var, "EMBED_BASE_URL");
            assert!(err.problem.contains("https://"), "{err}");
            assert!(openai("http://127.0.0.1:8000/v1", key).is_ok());
            assert!(openai("https://api.openai.com", key).is_ok());
        }
        // No key, nothing to protect: an Ollama or a keyless server in the VPC.
        assert!(openai("http://vllm.internal:8000/v1", ("EMBED_MODEL", "m")).is_ok());
        assert!(
            Config::from_env(&Env::from_pairs([(
                "EMBED_BASE_URL",
                "http://ollama:11434"
            )]))
            .is_ok()
        );
        for (var, url) in [
            ("EMBED_BASE_URL", "https://me:pa55word@ollama.example"),
            ("RAG_REFRESH_URL", "https://me:pa55word@rag.example/refresh"),
        ] {
            let err = Config::from_env(&Env::from_pairs([(var, url)])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(!err.to_string().contains("pa55word"), "{err}");
        }
        assert!(
            Config::from_env(&Env::from_pairs([(
                "RAG_REFRESH_URL",
                "http://rag:8080/refresh"
            )]))
            .is_ok()
        );
    }

    #[test]
    fn local_provider_and_other_stores() {
        let err = Config::from_env(&Env::from_pairs([("EMBED_PROVIDER", "local")])).unwrap_err();
        assert_eq!(err.var, "LOCAL_MODEL_DIR");
        let c = Config::from_env(&Env::from_pairs([
            ("EMBED_PROVIDER", "local"),
            ("LOCAL_MODEL_DIR", "model"),
        ]))
        .unwrap();
        assert_eq!(c.embed.provider, Provider::Local);
        assert_eq!(
            (c.embed.model.as_str(), c.embed.dimensions),
            ("all-MiniLM-L6-v2", 384)
        );
        assert!(
            matches!(&c.store, StoreConfig::Supabase { table } if table == "page_vectors_minilm")
        );
        assert_eq!(c.embed.doc_prefix, "");
        assert_eq!(c.embed.limits.max_chars, 1000);

        let err = Config::from_env(&Env::from_pairs([("VECTOR_STORE", "qdrant")])).unwrap_err();
        assert_eq!(err.var, "QDRANT_URL");
        let c = Config::from_env(&Env::from_pairs([
            ("VECTOR_STORE", "Qdrant"),
            ("QDRANT_URL", "http://127.0.0.1:6333"),
        ]))
        .unwrap();
        assert!(matches!(&c.store, StoreConfig::Qdrant(q) if q.collection == "page_vectors"));
        let c = Config::from_env(&Env::from_pairs([
            ("VECTOR_STORE", "stargate"),
            ("STARGATE_URL", "http://127.0.0.1:8082"),
            ("STARGATE_AUTH_TOKEN", "tok"),
        ]))
        .unwrap();
        assert!(matches!(c.store, StoreConfig::Stargate(_)));
    }

    #[test]
    fn openai_defaults_to_a_model_it_serves_with_the_table_dimension() {
        let c = Config::from_env(&Env::from_pairs([("EMBED_PROVIDER", "openai")])).unwrap();
        assert_eq!(c.embed.model, "text-embedding-3-small");
        assert_eq!(c.embed.dimensions, 768);
        assert!(c.embed.dimensions_explicit, "dimensions is sent");
        assert_eq!(c.embed.doc_prefix, "");
        // A model the user names gets `dimensions` only when EMBED_DIM is set.
        let c = Config::from_env(&Env::from_pairs([
            ("EMBED_PROVIDER", "openai"),
            ("EMBED_MODEL", "nomic-embed-text-v1.5"),
        ]))
        .unwrap();
        assert!(!c.embed.dimensions_explicit);
    }

    #[tokio::test]
    async fn truncate_setting_is_checked_and_needs_a_store_that_can_delete_everything() {
        let err = Config::from_env(&Env::from_pairs([("CDC_ON_TRUNCATE", "drop")])).unwrap_err();
        assert_eq!(err.var, "CDC_ON_TRUNCATE");
        let pairs = [
            ("CDC_ON_TRUNCATE", "delete-all"),
            ("VECTOR_STORE", "qdrant"),
            ("QDRANT_URL", "http://127.0.0.1:9"),
            ("SUPABASE_REST_URL", "http://127.0.0.1:9"),
            ("SUPABASE_SECRET_KEY", "sb_secret_test"),
            ("METRICS_ENABLED", "false"),
        ];
        let env = Env::from_pairs(pairs);
        let c = Config::from_env(&env).unwrap();
        assert!(c.truncate_deletes_all);
        let err = c.build(&env).await.unwrap_err().to_string();
        assert!(err.contains("CDC_SOURCE_TABLE"), "{err}");
        let pairs = Env::from_pairs(
            pairs
                .into_iter()
                .chain([("CDC_SOURCE_TABLE", "public.pages")]),
        );
        let c = Config::from_env(&pairs).unwrap();
        assert_eq!(c.source_table.as_deref(), Some("public.pages"));
        let err = c.build(&pairs).await.unwrap_err().to_string();
        assert!(err.contains("CDC_ON_TRUNCATE"), "{err}");
    }

    #[test]
    fn key_sources_and_prefix_forms() {
        let c = Config::from_env(&Env::from_pairs([
            ("OPENAI_API_KEY", "sk-abc"),
            ("EMBED_DOC_PREFIX", "none"),
        ]))
        .unwrap();
        assert!(matches!(c.embed.api_key, KeySource::Plain(_)));
        assert!(!format!("{c:?}").contains("sk-abc"));
        assert_eq!(c.embed.doc_prefix, "");
        let c = Config::from_env(&Env::from_pairs([
            ("OPENAI_API_KEY_SECRET_ID", "prod/openai"),
            ("EMBED_DOC_PREFIX", "passage:"),
        ]))
        .unwrap();
        assert_eq!(c.embed.api_key, KeySource::SecretId("prod/openai".into()));
        assert_eq!(c.embed.doc_prefix, "passage: ");
        assert!(
            Config::from_env(&Env::from_pairs([
                ("OPENAI_API_KEY", "a"),
                ("OPENAI_API_KEY_SECRET_ID", "b")
            ]))
            .is_err()
        );
    }
}
