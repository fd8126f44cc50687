//! [`SecretError`]: why a secret could not be had, naming variables and secret ids, never values.

use crate::config::ConfigError;
use crate::error::{Classify, ErrorClass};

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
    /// A setting of the secrets themselves is invalid (`SECRETS_TTL_SECONDS`).
    #[error("invalid configuration {var}: {problem}")]
    Setting {
        /// The variable.
        var: String,
        /// What is wrong with it.
        problem: String,
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

/// A bad setting of the secrets themselves (`SECRETS_TTL_SECONDS`): same message, its own code.
impl From<ConfigError> for SecretError {
    fn from(e: ConfigError) -> Self {
        Self::Setting {
            var: e.var,
            problem: e.problem,
        }
    }
}

impl Classify for SecretError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Fetch {
                transient: true, ..
            } => ErrorClass::TRANSIENT,
            Self::Fetch {
                transient: false, ..
            }
            | Self::NotConfigured { .. }
            | Self::Setting { .. }
            | Self::Unusable { .. } => ErrorClass::Environment,
        }
    }
    fn error_code(&self) -> &'static str {
        match self {
            Self::NotConfigured { .. } => "secret_not_configured",
            Self::Fetch { .. } => "secret_fetch",
            Self::Unusable { .. } => "secret_unusable",
            Self::Setting { .. } => "secret_setting",
        }
    }
}
