//! When a Secrets Manager value is read again ([`RefreshPolicy`]) and what a forced re-read
//! found ([`Refreshed`]).

use std::time::Duration;

use super::error::SecretError;
use super::secret::Secret;
use crate::config::{ConfigError, Env};

/// How long a value read from Secrets Manager is used before its next use re-reads it, when
/// `SECRETS_TTL_SECONDS` is unset: the default of AWS's own Parameters and Secrets Lambda
/// extension. One read per secret every five minutes per warm environment costs next to nothing,
/// and bounds how long a rotated key that the service still accepts (both keys valid during a
/// rotation) keeps being used.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Shortest time between two re-reads of one secret forced by refused requests: a wrong key
/// costs one Secrets Manager call per secret per 30 s, not one per request.
pub const MIN_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// When Secrets Manager values are read again.
///
/// ```
/// use lambda_kit::{config::Env, secrets::RefreshPolicy};
/// use std::time::Duration;
/// let p = RefreshPolicy::from_env(&Env::empty()).unwrap();
/// assert_eq!(p.ttl, Some(Duration::from_secs(300)));
/// let p = RefreshPolicy::from_env(&Env::from_pairs([("SECRETS_TTL_SECONDS", "0")])).unwrap();
/// assert_eq!(p.ttl, None);
/// assert!(RefreshPolicy::from_env(&Env::from_pairs([("SECRETS_TTL_SECONDS", "5m")])).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// How long a value is used before the next use re-reads it (`None`: until a refusal).
    pub ttl: Option<Duration>,
    /// Shortest time between two re-reads forced by refusals.
    pub min_forced_interval: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            ttl: Some(DEFAULT_TTL),
            min_forced_interval: MIN_FORCED_REFRESH_INTERVAL,
        }
    }
}

impl RefreshPolicy {
    /// `SECRETS_TTL_SECONDS` (whole seconds, default 300; `0`: never re-read on a timer, only
    /// after a refusal).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let secs: u64 = env.parse_or("SECRETS_TTL_SECONDS", DEFAULT_TTL.as_secs())?;
        Ok(Self {
            ttl: (secs > 0).then(|| Duration::from_secs(secs)),
            ..Self::default()
        })
    }
}

/// What a forced re-read of a secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refreshed {
    /// A value other than the refused one: try again with it.
    Changed(Secret),
    /// The secret holds the refused value.
    Unchanged,
    /// Re-read less than [`RefreshPolicy::min_forced_interval`] ago; not read again.
    RateLimited,
    /// The value comes from an environment variable: nothing to re-read.
    Fixed,
    /// The re-read failed.
    Failed(SecretError),
}

impl Refreshed {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Changed(_) => "changed",
            Self::Unchanged => "unchanged",
            Self::RateLimited => "rate_limited",
            Self::Fixed => "fixed",
            Self::Failed(_) => "failed",
        }
    }
}
