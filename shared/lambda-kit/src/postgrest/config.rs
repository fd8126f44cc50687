//! [`PostgrestConfig`]: where PostgREST is (`SUPABASE_REST_URL` or `SUPABASE_URL`), the key,
//! timeouts and retries, read from the environment and checked at cold start.

use std::time::Duration;

use crate::config::{ConfigError, Env};
use crate::retry::RetryPolicy;
use crate::secrets::Credential;

/// Settings of a [`PostgrestClient`](super::PostgrestClient).
///
/// Defaults: request timeout 10 s, connect timeout 2 s, [`RetryPolicy::default`].
#[derive(Debug, Clone)]
pub struct PostgrestConfig {
    /// PostgREST base URL without a trailing `/` (tables are served below it).
    pub base_url: String,
    /// The key, sent as `apikey`, and also as `Authorization: Bearer` when it is a JWT
    /// ([`KeyKind::sends_bearer`](super::KeyKind::sends_bearer)); re-read after a 401/403 when it comes from Secrets Manager.
    pub key: Credential,
    /// Timeout of one HTTP request (further capped by the deadline).
    pub request_timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Retries of transient faults.
    pub retry: RetryPolicy,
}

impl PostgrestConfig {
    /// A configuration with default timeouts and retries.
    pub fn new(base_url: impl Into<String>, key: impl Into<Credential>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            key: key.into(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        }
    }

    /// Reads the base URL from `SUPABASE_REST_URL` (used as is) or `SUPABASE_URL` (+ `/rest/v1`),
    /// `HTTP_TIMEOUT_MS`, `HTTP_CONNECT_TIMEOUT_MS` and the `RETRY_*` settings
    /// ([`RetryPolicy::from_env`]).
    ///
    /// ```
    /// use lambda_kit::{config::Env, postgrest::{PostgrestConfig, Secret}};
    /// let env = Env::from_pairs([("SUPABASE_URL", "https://x.supabase.co/")]);
    /// let c = PostgrestConfig::from_env(&env, Secret::new("k")).unwrap();
    /// assert_eq!(c.base_url, "https://x.supabase.co/rest/v1");
    /// ```
    pub fn from_env(env: &Env, key: impl Into<Credential>) -> Result<Self, ConfigError> {
        let base_url = match (env.get("SUPABASE_REST_URL"), env.get("SUPABASE_URL")) {
            (Some(rest), _) => check_url("SUPABASE_REST_URL", &rest)?,
            (None, Some(url)) => format!("{}/rest/v1", check_url("SUPABASE_URL", &url)?),
            (None, None) => {
                return Err(ConfigError::new(
                    "SUPABASE_URL",
                    "set SUPABASE_URL or SUPABASE_REST_URL",
                ));
            }
        };
        let d = Self::new(base_url, key);
        Ok(Self {
            request_timeout: env.millis_or("HTTP_TIMEOUT_MS", d.request_timeout)?,
            connect_timeout: env.millis_or("HTTP_CONNECT_TIMEOUT_MS", d.connect_timeout)?,
            retry: RetryPolicy::from_env(env, "RETRY_")?,
            ..d
        })
    }
}

/// Every request carries the key: https (but on loopback), no userinfo, no query.
fn check_url(var: &str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim_end_matches('/');
    if crate::config::check_url(var, url, true)?.query().is_some() {
        return Err(ConfigError::new(var, "must be a URL without a query"));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    #[test]
    fn config_prefers_rest_url_and_validates() {
        let env = Env::from_pairs([
            ("SUPABASE_REST_URL", "http://127.0.0.1:1/"),
            ("SUPABASE_URL", "http://x"),
        ]);
        assert_eq!(
            PostgrestConfig::from_env(&env, Secret::new("k"))
                .unwrap()
                .base_url,
            "http://127.0.0.1:1"
        );
        let e = PostgrestConfig::from_env(
            &Env::from_pairs([("SUPABASE_URL", "not a url")]),
            Secret::new("k"),
        )
        .unwrap_err();
        assert_eq!(e.var, "SUPABASE_URL");
        let e = PostgrestConfig::from_env(&Env::empty(), Secret::new("k")).unwrap_err();
        assert_eq!(e.var, "SUPABASE_URL");
        // Every request carries the key: https, but on loopback; never userinfo.
        for (var, url) in [
            ("SUPABASE_URL", "http://db.example.com"),
            ("SUPABASE_REST_URL", "http://10.0.0.5:3000"),
            ("SUPABASE_URL", "https://u:pw-secret@x.supabase.co"),
        ] {
            let e = PostgrestConfig::from_env(&Env::from_pairs([(var, url)]), Secret::new("k"))
                .unwrap_err();
            assert_eq!(e.var, var);
            assert!(!e.to_string().contains("pw-secret"), "{e}");
        }
        assert!(
            PostgrestConfig::from_env(
                &Env::from_pairs([("SUPABASE_URL", "http://localhost:54321")]),
                Secret::new("k")
            )
            .is_ok()
        );
    }
}
