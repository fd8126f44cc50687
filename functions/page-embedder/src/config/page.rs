//! page-embedder's own settings: the page fields, the embedding and store settings, the RAG hook
//! and the CDC options, read and checked without I/O (`kl` reads them too).

use std::time::Duration;

use lambda_kit::config::{ConfigError, Env};

use super::embed::{EmbedConfig, Provider};
use super::store::store_from_env;
use crate::store::StoreConfig;

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

impl RagConfig {
    /// The hook's settings, `None` when `RAG_REFRESH_URL` is unset.
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("RAG_REFRESH_URL") else {
            return Ok(None);
        };
        // No credential is sent to the hook: http:// stays allowed.
        lambda_kit::config::check_url("RAG_REFRESH_URL", &url, false)?;
        Ok(Some(Self {
            url,
            timeout: env.millis_or("RAG_REFRESH_TIMEOUT_MS", Duration::from_secs(5))?,
            concurrency: env.positive_or("RAG_REFRESH_CONCURRENCY", 8)?,
        }))
    }
}

/// Every setting of page-embedder but those all functions read ([`RunnerConfig`]) and the value
/// format ([`ValueSettings`]).
///
/// [`RunnerConfig`]: lambda_kit::runner::RunnerConfig
/// [`ValueSettings`]: lambda_kit::schema_registry::ValueSettings
#[derive(Debug, Clone)]
pub struct PageSettings {
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

impl PageSettings {
    /// Reads and checks every setting; an error names the variable.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::config::{PageSettings, Provider};
    /// let c = PageSettings::from_env(&Env::from_pairs([("EMBED_PROVIDER", "openai"), ("EMBED_MODEL", "text-embedding-3-small"), ("EMBED_DIM", "1536")])).unwrap();
    /// assert_eq!(c.embed.provider, Provider::OpenAi);
    /// assert_eq!(c.embed.base_url, "https://api.openai.com");
    /// assert!(c.embed.dimensions_explicit && c.embed.doc_prefix.is_empty());
    /// let err = PageSettings::from_env(&Env::from_pairs([("EMBED_DIM", "zero")])).unwrap_err();
    /// assert_eq!(err.var, "EMBED_DIM");
    /// ```
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let embed = EmbedConfig::from_env(env)?;
        let store = store_from_env(env, embed.provider == Provider::Local)?;
        Ok(Self {
            rag: RagConfig::from_env(env)?,
            page_id_field: env.identifier_or("PAGE_ID_FIELD", "page_id")?,
            body_field: env.identifier_or("BODY_FIELD", "body")?,
            embed,
            store,
            page_state_table: env.identifier_or("PAGE_STATE_TABLE", "page_state")?,
            truncate_deletes_all: truncate_deletes_all(env)?,
            source_table: env.get("CDC_SOURCE_TABLE").filter(|t| !t.trim().is_empty()),
            cdc_unavailable_value: match env.get("CDC_UNAVAILABLE_VALUE") {
                Some(v) if v.eq_ignore_ascii_case("none") => String::new(),
                Some(v) => v,
                None => crate::pipeline::DEBEZIUM_UNAVAILABLE_VALUE.to_owned(),
            },
        })
    }
}

/// `CDC_ON_TRUNCATE`: `true` for `delete-all`.
fn truncate_deletes_all(env: &Env) -> Result<bool, ConfigError> {
    match env
        .string_or("CDC_ON_TRUNCATE", "ignore")
        .to_ascii_lowercase()
        .as_str()
    {
        "ignore" => Ok(false),
        "delete-all" => Ok(true),
        other => Err(ConfigError::new(
            "CDC_ON_TRUNCATE",
            format!("unknown value {other:?}; expected ignore or delete-all"),
        )),
    }
}
