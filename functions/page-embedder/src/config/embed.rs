//! The embedding provider's settings (`EMBED_*`, `OPENAI_API_KEY*`, `LOCAL_MODEL_DIR`), its key
//! and the provider client built from them.

use std::time::Duration;

use lambda_kit::config::{ConfigError, Env};
use lambda_kit::init::InitError;
use lambda_kit::retry::RetryPolicy;
use lambda_kit::secrets::Credential;

use crate::chunk::ChunkLimits;
use crate::embed::{EmbedSettings, OllamaEmbedder, OpenAiEmbedder, ProviderEmbedder};
use crate::keys::{KeySource, key_source};

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

impl EmbedConfig {
    /// How texts are sent to the provider: `EMBED_BATCH_SIZE`, `EMBED_CONCURRENCY` and the
    /// retry policy, for the function and for `kl pages reembed` alike.
    pub fn settings(&self) -> EmbedSettings {
        EmbedSettings {
            batch_size: self.batch_size,
            concurrency: self.concurrency,
            retry: self.retry.clone(),
        }
    }

    /// Reads and checks the embedding settings (no I/O).
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::config::{EmbedConfig, Provider};
    /// let e = EmbedConfig::from_env(&Env::from_pairs([("EMBED_PROVIDER", "openai"), ("EMBED_DIM", "1536")])).unwrap();
    /// assert_eq!((e.provider, e.base_url.as_str()), (Provider::OpenAi, "https://api.openai.com"));
    /// assert!(e.dimensions_explicit && e.doc_prefix.is_empty());
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
        let doc_prefix = doc_prefix(env, &model);
        let limits = chunk_limits(env, local, &doc_prefix)?;
        let local_model_dir = match (local, env.get("LOCAL_MODEL_DIR")) {
            (true, None) => {
                return Err(ConfigError::new(
                    "LOCAL_MODEL_DIR",
                    "required with EMBED_PROVIDER=local: a directory with config.json, tokenizer.json and model.safetensors (scripts/model prints one)",
                ));
            }
            (_, dir) => dir,
        };
        Ok(Self {
            provider,
            base_url,
            model,
            dimensions,
            dimensions_explicit,
            doc_prefix,
            limits,
            batch_size: env.positive_or("EMBED_BATCH_SIZE", 64)?,
            concurrency: env.positive_or("EMBED_CONCURRENCY", 4)?,
            timeout: env.millis_or("EMBED_TIMEOUT_MS", Duration::from_secs(30))?,
            keep_alive: env.get("EMBED_KEEP_ALIVE"),
            retry: RetryPolicy::from_env(env, "EMBED_RETRY_")?,
            api_key,
            local_model_dir,
        })
    }

    /// The provider's key, resolved from the environment or Secrets Manager (at cold start;
    /// re-read as [`Credential`] says); `None` when the provider is sent no key.
    pub async fn credential(&self, env: &Env) -> Result<Option<Credential>, InitError> {
        if self.provider != Provider::OpenAi {
            return Ok(None);
        }
        self.api_key.credential(env, OPENAI_KEY_VARS).await
    }

    /// The provider client, on `http`, sending `api_key` (from [`EmbedConfig::credential`]);
    /// loads the in-process model when chosen. `kl pages reembed` embeds with it too.
    pub fn embedder(
        &self,
        api_key: Option<Credential>,
        http: &reqwest::Client,
    ) -> Result<ProviderEmbedder, InitError> {
        Ok(match self.provider {
            Provider::OpenAi => ProviderEmbedder::OpenAi(
                OpenAiEmbedder::new(
                    http.clone(),
                    &self.base_url,
                    &self.model,
                    self.dimensions,
                    self.dimensions_explicit,
                    api_key,
                )
                .with_timeout(self.timeout),
            ),
            Provider::Ollama => ProviderEmbedder::Ollama(
                OllamaEmbedder::new(
                    http.clone(),
                    &self.base_url,
                    &self.model,
                    self.dimensions,
                    self.dimensions_explicit,
                )
                .with_keep_alive(self.keep_alive.clone())
                .with_timeout(self.timeout),
            ),
            Provider::Local => self.local()?,
        })
    }

    #[cfg(feature = "local-embedder")]
    fn local(&self) -> Result<ProviderEmbedder, InitError> {
        let dir = self.local_model_dir.as_deref().unwrap_or_default();
        let local = crate::embed::LocalProvider::load(dir, &self.model)
            .map_err(|err| InitError::Client(format!("LOCAL_MODEL_DIR: {err}")))?;
        let dims = local.embedder().dimensions();
        if dims != self.dimensions {
            return Err(ConfigError::new(
                "EMBED_DIM",
                format!(
                    "is {} but the model in LOCAL_MODEL_DIR produces {dims}",
                    self.dimensions
                ),
            )
            .into());
        }
        Ok(ProviderEmbedder::Local(local))
    }

    #[cfg(not(feature = "local-embedder"))]
    fn local(&self) -> Result<ProviderEmbedder, InitError> {
        Err(ConfigError::new(
            "EMBED_PROVIDER",
            "local: this binary was built without the local-embedder feature (cargo build --features local-embedder)",
        )
        .into())
    }
}

/// `EMBED_DOC_PREFIX`, or the prefix `model` expects.
fn doc_prefix(env: &Env, model: &str) -> String {
    match env.get("EMBED_DOC_PREFIX") {
        // Values are trimmed; the usual `task: ` prefixes get their space back.
        Some(p) if p.eq_ignore_ascii_case("none") => String::new(),
        Some(p) if p.ends_with(':') => format!("{p} "),
        Some(p) => p,
        None if model.to_ascii_lowercase().contains("nomic") => "search_document: ".to_owned(),
        None => String::new(),
    }
}

/// `EMBED_MAX_CHARS` and `EMBED_OVERLAP_CHARS`, checked against the prefix each chunk carries.
fn chunk_limits(env: &Env, local: bool, doc_prefix: &str) -> Result<ChunkLimits, ConfigError> {
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
    Ok(ChunkLimits::new(max_chars - prefix_len, overlap))
}
