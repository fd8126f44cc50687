//! Where the API key of an external service (the embedding provider, Qdrant, Stargate) comes
//! from: given directly in a variable or as a Secrets Manager id, never both.

use lambda_kit::config::{ConfigError, Env};
use lambda_kit::init::InitError;
use lambda_kit::postgrest::Secret;
use lambda_kit::secrets::{Credential, SecretSpec};

/// Where an API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// No key (local servers).
    None,
    /// The key itself (`OPENAI_API_KEY`).
    Plain(Secret),
    /// A Secrets Manager secret id (`OPENAI_API_KEY_SECRET_ID`), read at cold start and re-read
    /// as [`Credential`] says (after `SECRETS_TTL_SECONDS`, after a 401/403).
    SecretId(String),
}

impl KeySource {
    /// The key as a [`Credential`] (resolved now, from `plain` or the secret `secret_id`
    /// names), or `None` when no key is set.
    pub(crate) async fn credential(
        &self,
        env: &Env,
        (plain, secret_id): (&str, &str),
    ) -> Result<Option<Credential>, InitError> {
        if *self == KeySource::None {
            return Ok(None);
        }
        let spec = SecretSpec::new(plain, secret_id, "key");
        Ok(Some(Credential::from_env(env, &spec).await?))
    }
}

/// A key given directly or as a Secrets Manager id, not both.
pub(crate) fn key_source(
    env: &Env,
    (plain, secret_id): (&str, &str),
) -> Result<KeySource, ConfigError> {
    match (env.get(plain), env.get(secret_id)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            secret_id,
            format!("set either {plain} or {secret_id}, not both"),
        )),
        (Some(k), None) => Ok(KeySource::Plain(Secret::new(k))),
        (None, Some(id)) => Ok(KeySource::SecretId(id)),
        (None, None) => Ok(KeySource::None),
    }
}
