//! Where a secret comes from ([`SecretSpec`]) and resolving it from the environment:
//! [`Credential::from_env`] and [`resolve`].

use super::credential::Credential;
use super::error::SecretError;
use super::refresh::RefreshPolicy;
use super::secret::Secret;
use super::stored::stored;
use crate::config::Env;

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

impl Credential {
    /// Resolves the credential as [`resolve`] does (`spec.env_var` when set, else the Secrets
    /// Manager secret named by `spec.secret_id_var`, plain or JSON `spec.json_field`) and reads
    /// it now, so a missing or unreadable secret fails the cold start. A Secrets Manager value
    /// is re-read as [`RefreshPolicy::from_env`] says.
    pub async fn from_env(env: &Env, spec: &SecretSpec<'_>) -> Result<Self, SecretError> {
        let policy = RefreshPolicy::from_env(env)?;
        // Boxed: cold start only, and it keeps the futures of the functions' `main` shallow.
        Box::pin(Self::resolve_with(env, spec, policy)).await
    }

    async fn resolve_with(
        env: &Env,
        spec: &SecretSpec<'_>,
        policy: RefreshPolicy,
    ) -> Result<Self, SecretError> {
        if let Some(value) = env.get(spec.env_var) {
            return Ok(Self::fixed(spec.env_var, Secret::new(value)));
        }
        let Some(secret_id) = env.get(spec.secret_id_var) else {
            return Err(SecretError::NotConfigured {
                env_var: spec.env_var.to_owned(),
                secret_id_var: spec.secret_id_var.to_owned(),
            });
        };
        let stored = stored(&secret_id, spec.secret_id_var, policy);
        Self::of_stored(stored, spec.json_field).await
    }
}

/// Resolves the secret once: `spec.env_var` when set, else the Secrets Manager secret named by
/// `spec.secret_id_var` (plain string, or a JSON object whose `spec.json_field` is a string).
/// Secrets Manager is read once per secret id and TTL, whichever fields are read from it. For a
/// value used for the life of the process, hold a [`Credential`] instead.
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
    let policy = RefreshPolicy::from_env(env)?;
    Ok(Box::pin(Credential::resolve_with(env, spec, policy))
        .await?
        .current()
        .await)
}
