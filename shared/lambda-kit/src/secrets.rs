//! Secrets (API keys) from a plain environment variable or from AWS Secrets Manager, resolved
//! once at cold start, cached for the life of the execution environment, never logged.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};

use crate::config::Env;
use crate::error::{Classify, ErrorClass};

/// A secret string (API key). `Debug` and `Display` print `[REDACTED]`.
///
/// ```
/// use lambda_kit::secrets::Secret;
/// let s = Secret::new("sk-live-123");
/// assert_eq!(format!("{s} {s:?}"), "[REDACTED] Secret([REDACTED])");
/// assert_eq!(s.expose(), "sk-live-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where a secret may come from.
///
/// ```
/// use lambda_kit::secrets::SecretSpec;
/// let spec = SecretSpec::new("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY_SECRET_ID", "key");
/// assert_eq!(spec.json_field, "key");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSpec<'a> {
    /// Variable holding the secret itself (wins when set).
    pub env_var: &'a str,
    /// Variable holding a Secrets Manager id or ARN.
    pub secret_id_var: &'a str,
    /// Field to read when the secret value is a JSON object.
    pub json_field: &'a str,
}

impl<'a> SecretSpec<'a> {
    /// A new spec.
    pub fn new(env_var: &'a str, secret_id_var: &'a str, json_field: &'a str) -> Self {
        Self {
            env_var,
            secret_id_var,
            json_field,
        }
    }
}

/// A secret that could not be resolved. Messages name variables and secret ids, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Neither variable is set.
    #[error("invalid configuration {env_var}: set {env_var} or {secret_id_var}")]
    NotConfigured {
        /// The plain variable.
        env_var: String,
        /// The secret id variable.
        secret_id_var: String,
    },
    /// Secrets Manager call failed.
    #[error("secret {secret_id} (from {secret_id_var}) could not be fetched: {message}")]
    Fetch {
        /// Secret id or ARN.
        secret_id: String,
        /// The variable naming it.
        secret_id_var: String,
        /// Error of the call.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// The secret has no usable string value.
    #[error("secret {secret_id} (from {secret_id_var}) {problem}")]
    Unusable {
        /// Secret id or ARN.
        secret_id: String,
        /// The variable naming it.
        secret_id_var: String,
        /// What is wrong (never the value).
        problem: String,
    },
}

impl Classify for SecretError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Fetch {
                transient: true, ..
            } => ErrorClass::TRANSIENT,
            _ => ErrorClass::Permanent,
        }
    }
    fn error_code(&self) -> &'static str {
        match self {
            Self::NotConfigured { .. } => "secret_not_configured",
            Self::Fetch { .. } => "secret_fetch",
            Self::Unusable { .. } => "secret_unusable",
        }
    }
}

fn cache() -> &'static Mutex<HashMap<String, Secret>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Secret>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Resolves the secret: `spec.env_var` when set, else the Secrets Manager secret named by
/// `spec.secret_id_var` (plain string, or a JSON object whose `spec.json_field` is a string).
/// A Secrets Manager secret is fetched once per secret id for the life of the process, whichever
/// fields are read from it.
///
/// The AWS client honours the usual configuration (`AWS_REGION`, credentials,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
///
/// ```
/// use lambda_kit::{config::Env, secrets::{resolve, SecretSpec}};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = Env::from_pairs([("API_KEY", "s3cr3t")]);
/// let key = resolve(&env, &SecretSpec::new("API_KEY", "API_KEY_SECRET_ID", "key")).await.unwrap();
/// assert_eq!(key.expose(), "s3cr3t");
/// # }
/// ```
pub async fn resolve(env: &Env, spec: &SecretSpec<'_>) -> Result<Secret, SecretError> {
    if let Some(value) = env.get(spec.env_var) {
        return Ok(Secret::new(value));
    }
    let Some(secret_id) = env.get(spec.secret_id_var) else {
        return Err(SecretError::NotConfigured {
            env_var: spec.env_var.to_owned(),
            secret_id_var: spec.secret_id_var.to_owned(),
        });
    };
    let unusable = |problem: &str| SecretError::Unusable {
        secret_id: secret_id.clone(),
        secret_id_var: spec.secret_id_var.to_owned(),
        problem: problem.to_owned(),
    };
    // The secret's string, cached per id: several fields of one secret (a user name and a
    // password) cost one call.
    let cached = cache()
        .lock()
        .expect("secret cache")
        .get(&secret_id)
        .cloned();
    let raw = match cached {
        Some(raw) => raw,
        None => {
            let raw = fetch(&secret_id, spec.secret_id_var)
                .await?
                .ok_or_else(|| unusable("has no string value"))?;
            cache()
                .lock()
                .expect("secret cache")
                .insert(secret_id.clone(), raw.clone());
            raw
        }
    };
    extract(raw.expose(), spec.json_field)
        .map(Secret::new)
        .map_err(|p| unusable(&p))
}

/// The string value of Secrets Manager secret `secret_id` (`None`: it has none).
async fn fetch(secret_id: &str, secret_id_var: &str) -> Result<Option<Secret>, SecretError> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            let transient = matches!(
                e,
                aws_sdk_secretsmanager::error::SdkError::TimeoutError(_)
                    | aws_sdk_secretsmanager::error::SdkError::DispatchFailure(_)
            ) || e
                .raw_response()
                .is_some_and(|r| r.status().is_server_error());
            SecretError::Fetch {
                secret_id: secret_id.to_owned(),
                secret_id_var: secret_id_var.to_owned(),
                message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                transient,
            }
        })?;
    Ok(out.secret_string().map(Secret::new))
}

/// The secret out of a Secrets Manager string: a JSON object's `field`, or the plain string.
fn extract(raw: &str, field: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.starts_with('{') {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|_| "is not valid JSON (it starts with '{')".to_owned())?;
        return match obj.get(field) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(_) => Err(format!(
                "has a field {field:?} that is not a non-empty string"
            )),
            None => Err(format!("is a JSON object without a {field:?} field")),
        };
    }
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_plain_and_json() {
        assert_eq!(extract(" abc \n", "key").unwrap(), "abc");
        assert_eq!(extract(r#"{"key":"v","other":1}"#, "key").unwrap(), "v");
        assert_eq!(extract(r#"{"api_key":"v"}"#, "api_key").unwrap(), "v");
        let e = extract(r#"{"nope":"topsecret"}"#, "key").unwrap_err();
        assert!(e.contains("\"key\"") && !e.contains("topsecret"), "{e}");
        assert!(extract(r#"{"key":5}"#, "key").is_err());
        assert!(extract(r#"{"key":"#, "key").is_err());
        assert!(extract("  ", "key").is_err());
    }

    #[tokio::test]
    async fn missing_names_both_variables() {
        let e = resolve(
            &Env::empty(),
            &SecretSpec::new("A_KEY", "A_KEY_SECRET_ID", "key"),
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("A_KEY") && text.contains("A_KEY_SECRET_ID"),
            "{text}"
        );
        assert_eq!(e.error_code(), "secret_not_configured");
    }
}
