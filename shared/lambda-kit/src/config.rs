//! Reading configuration from environment variables, with errors that name the variable.
//!
//! Each function's settings are one plain struct (its `Config`), read by hand through [`Env`]
//! once at cold start, not a `serde` struct filled by a crate such as `envy`. Measured
//! 2026-12-07 against `envy` 0.4.2 (`cargo info envy`: the newest version; crates.io lists it as
//! released 2021-01-04, the last of 11 releases, about 22 M downloads), with a scratch crate
//! outside the workspace (serde + envy, the workspace's release profile, its own target dir):
//!
//! - What it would cost: `cargo build --release --features envy --timings` compiles `envy` in
//!   0.31 s; the stripped binary of a five-field struct grows from 334,056 to 363,736 bytes.
//!   Cheap, but it buys only the lookup and the parse.
//! - What it would lose (the errors `envy::from_iter` returned there): a missing value is
//!   `missing value for field sink_table` (the serde field, not `SINK_TABLE`); a bad one is
//!   `invalid digit found in string while parsing value 'zero' provided by EMBED_DIM`; both a bare
//!   string, where [`ConfigError::var`] holds the variable for callers and tests to match. A blank
//!   value (`"  "`) counts as set and `" 5 "` fails to parse, where [`Env::get`] trims and takes
//!   blank as unset (template.yaml's optional parameters default to `""`). `0` passes where
//!   [`Env::positive_or`] refuses it.
//! - What it cannot do, so would stay hand-written beside it: the checks after the type (table
//!   names, [`check_url`], allowed values named in the error, case-insensitive choices), defaults
//!   that depend on another setting (page-embedder's dimension, table and chunk size follow
//!   `EMBED_PROVIDER`), a setting and its legacy name or its `*_SECRET_ID` set together, and
//!   resolving keys from Secrets Manager, which is I/O that serde does not do.
//!
//! `Env::from_pairs` serves tests as `envy::from_iter` would; `RetryPolicy::from_env(env,
//! prefix)` as `envy::prefixed`. So the readers stay here: about 100 lines whose errors name the
//! variable and, where there is a closed set, its allowed values.

use std::str::FromStr;
use std::time::Duration;

/// A setting that is missing or malformed; fails the cold start.
///
/// ```
/// use lambda_kit::config::ConfigError;
/// let e = ConfigError::new("GIFTS_TABLE", "must not be empty");
/// assert_eq!(e.to_string(), "invalid configuration GIFTS_TABLE: must not be empty");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration {var}: {problem}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The environment variable (or setting) at fault.
    pub var: String,
    /// What is wrong with it (never its value when it may be a secret).
    pub problem: String,
}

impl ConfigError {
    /// A new error about `var`.
    pub fn new(var: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            problem: problem.into(),
        }
    }
}

/// Where settings are read from: the process environment, or a map in tests.
///
/// ```
/// use lambda_kit::config::Env;
/// let env = Env::from_pairs([("MAX_ROWS", "500")]);
/// assert_eq!(env.parse_or("MAX_ROWS", 100usize).unwrap(), 500);
/// assert_eq!(env.parse_or("MISSING", 100usize).unwrap(), 100);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: Option<std::collections::HashMap<String, String>>,
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self { overrides: None }
    }

    /// Reads only the given pairs (tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// An environment with nothing set (tests).
    pub fn empty() -> Self {
        Self {
            overrides: Some(Default::default()),
        }
    }

    /// The value of `var`, `None` when unset or blank.
    pub fn get(&self, var: &str) -> Option<String> {
        let v = match &self.overrides {
            Some(map) => map.get(var).cloned(),
            None => std::env::var(var).ok(),
        }?;
        let trimmed = v.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }

    /// The value of `var`, or an error naming it.
    pub fn required(&self, var: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| ConfigError::new(var, "is required but not set"))
    }

    /// The value of `var`, or `default`.
    pub fn string_or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// `var` parsed as `T`, or `default` when unset.
    pub fn parse_or<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| {
                ConfigError::new(
                    var,
                    format!("cannot parse {v:?} as {}: {e}", std::any::type_name::<T>()),
                )
            }),
        }
    }

    /// A positive integer, or `default` when unset.
    pub fn positive_or(&self, var: &str, default: usize) -> Result<usize, ConfigError> {
        let v: usize = self.parse_or(var, default)?;
        if v == 0 {
            return Err(ConfigError::new(var, "must be greater than 0"));
        }
        Ok(v)
    }

    /// A duration given in milliseconds, or `default` when unset.
    pub fn millis_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(_) => Ok(Duration::from_millis(self.parse_or::<u64>(var, 0)?)),
        }
    }

    /// A table or column name for a PostgREST path: ASCII letters, digits and `_`.
    pub fn identifier_or(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let v = self.string_or(var, default);
        if is_identifier(&v) {
            Ok(v)
        } else {
            Err(ConfigError::new(
                var,
                "must be a table name made of letters, digits and '_'",
            ))
        }
    }
}

/// `true` for a table or column name the functions accept: an ASCII letter or `_`, then
/// letters, digits or `_`, at most 63 bytes (PostgreSQL truncates longer names).
///
/// ```
/// use lambda_kit::config::is_identifier;
/// assert!(is_identifier("user_id"));
/// assert!(!is_identifier("1st") && !is_identifier("a-b") && !is_identifier(""));
/// assert!(!is_identifier(&"x".repeat(64)));
/// ```
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks the URL in setting `var` before any request is sent to it: an `http(s)` URL without
/// userinfo (`user:password@host` would reach logs and error messages: credentials have their own
/// settings), and, when requests to it carry a credential (an API key, a token, basic auth), an
/// `https://` URL unless its host is loopback (`127.0.0.0/8`, `::1`, `localhost`: local stacks).
/// Errors name `var`, never the value (it may hold a password). Returns the parsed URL.
///
/// ```
/// use lambda_kit::config::check_url;
/// assert!(check_url("QDRANT_URL", "https://q.example.com:6333", true).is_ok());
/// assert!(check_url("QDRANT_URL", "http://127.0.0.1:6333", true).is_ok());
/// assert!(check_url("QDRANT_URL", "http://qdrant:6333", false).is_ok());
/// let e = check_url("QDRANT_URL", "http://qdrant:6333", true).unwrap_err();
/// assert!(e.to_string().contains("https://"), "{e}");
/// let e = check_url("SUPABASE_URL", "https://u:hunter2@db.example.com", true).unwrap_err();
/// assert_eq!(e.var, "SUPABASE_URL");
/// assert!(!e.to_string().contains("hunter2"));
/// ```
pub fn check_url(var: &str, value: &str, credential: bool) -> Result<reqwest::Url, ConfigError> {
    // The parser's error names no part of the value.
    let url = reqwest::Url::parse(value)
        .map_err(|e| ConfigError::new(var, format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(var, "must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            var,
            "must not carry credentials (user:password@) in the URL: give them in their own settings",
        ));
    }
    if credential && url.scheme() == "http" && !is_loopback(&url) {
        return Err(ConfigError::new(
            var,
            "must be an https:// URL: requests to it carry a credential (http:// is accepted only for loopback hosts: 127.0.0.0/8, ::1, localhost)",
        ));
    }
    Ok(url)
}

/// `true` for a loopback host: `localhost`, `127.0.0.0/8`, `::1`.
fn is_loopback(url: &reqwest::Url) -> bool {
    // The parser has normalised IP addresses (`127.1` is `127.0.0.1`, IPv6 in brackets).
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_variable() {
        let env = Env::from_pairs([("N", "abc")]);
        let e = env.parse_or("N", 1usize).unwrap_err();
        assert_eq!(e.var, "N");
        assert!(e.to_string().contains("N"), "{e}");
    }

    #[test]
    fn blank_is_unset() {
        let env = Env::from_pairs([("X", "  ")]);
        assert_eq!(env.get("X"), None);
        assert_eq!(env.required("X").unwrap_err().var, "X");
    }

    #[test]
    fn zero_is_rejected_for_positive() {
        let env = Env::from_pairs([("N", "0")]);
        assert!(env.positive_or("N", 3).is_err());
        assert_eq!(
            Env::from_pairs([("N", "7")]).positive_or("N", 3).unwrap(),
            7
        );
    }

    #[test]
    fn millis() {
        let env = Env::from_pairs([("T", "250")]);
        assert_eq!(
            env.millis_or("T", Duration::ZERO).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            env.millis_or("U", Duration::from_secs(1)).unwrap(),
            Duration::from_secs(1)
        );
        assert!(
            Env::from_pairs([("T", "-1")])
                .millis_or("T", Duration::ZERO)
                .is_err()
        );
    }

    #[test]
    fn credential_urls_are_https_but_on_loopback() {
        for ok in [
            "https://db.example.com",
            "http://127.0.0.1:3000",
            "http://127.9.8.7",
            "http://[::1]:6333/x",
            "http://LOCALHOST:11434",
        ] {
            assert!(check_url("V", ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "http://db.example.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
            "http://127.0.0.1.nip.io",
        ] {
            let e = check_url("V", bad, true).unwrap_err();
            assert_eq!(e.var, "V");
            assert!(e.problem.contains("https://"), "{bad}: {e}");
        }
        assert!(check_url("V", "http://ollama:11434", false).is_ok());
        assert!(check_url("V", "ftp://127.0.0.1", false).is_err());
        assert!(check_url("V", "not a url", false).is_err());
    }

    #[test]
    fn userinfo_is_refused_without_printing_it() {
        for url in [
            "https://user:s3cret-pw@db.example.com",
            "http://user:s3cret-pw@127.0.0.1",
            "https://s3cret-pw@db.example.com",
            "https://:s3cret-pw@db.example.com",
        ] {
            for credential in [true, false] {
                let e = check_url("SUPABASE_URL", url, credential).unwrap_err();
                assert_eq!(e.var, "SUPABASE_URL");
                assert!(e.problem.contains("user:password@"), "{url}: {e}");
                assert!(!format!("{e} {e:?}").contains("s3cret-pw"), "{e}");
            }
        }
    }

    #[test]
    fn identifiers() {
        let env = Env::from_pairs([
            ("A", "vault"),
            ("B", "public.vault"),
            ("C", "vault?x=1"),
            ("D", "a.b.c"),
        ]);
        assert_eq!(env.identifier_or("A", "x").unwrap(), "vault");
        assert!(env.identifier_or("B", "x").is_err());
        assert!(env.identifier_or("C", "x").is_err());
        assert!(env.identifier_or("D", "x").is_err());
        assert_eq!(
            env.identifier_or("E", "dead_letters").unwrap(),
            "dead_letters"
        );
    }
}
