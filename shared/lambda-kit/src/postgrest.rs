//! A small PostgREST client: bulk upserts of pre-serialized JSON, selects and deletes with
//! filters, errors parsed from PostgREST's error JSON and classified for retries and dead letters.
//!
//! Built once in `main` and borrowed by handlers. Every call retries transient faults with the
//! client's [`RetryPolicy`] and never runs past the [`Deadline`] it is given.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;

use crate::config::{ConfigError, Env};
use crate::error::{Classify, ErrorClass};
use crate::http;
use crate::init::InitError;
use crate::retry::{Deadline, RetryPolicy};
pub use crate::secrets::Secret;
use crate::secrets::{Credential, PerValue, Refusal, SecretSpec};

/// Characters left as is in query values; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

// Supabase API keys, as Supabase's documentation describes them (supabase.com/docs: guides
// "API keys" and "Migrating to publishable and secret API keys"; the troubleshooting article on
// `UNAUTHORIZED_MISSING_API_KEY`):
// - there are four kinds: publishable `sb_publishable_...` and secret `sb_secret_...` keys, and
//   the legacy JWT `anon` and `service_role` keys, which are deprecated (end of 2026) but keep
//   working next to the new ones during the migration;
// - a publishable key (like `anon`) only reaches what row-level security allows; a secret key
//   (like `service_role`) bypasses it and belongs on servers only;
// - a secret key is not a JWT: it goes in the `apikey` header, and Supabase's API gateway
//   authenticates it; `Authorization: Bearer` is not required, and a secret key sent only there
//   is answered 401 `UNAUTHORIZED_MISSING_API_KEY`; requests with a secret key from a browser
//   are refused.
// A legacy JWT key keeps both headers, as Supabase's clients send it (PostgREST verifies the JWT
// itself: the local stack relies on that); a key of no known form is sent as before, in both.

/// The documented variables of the Supabase key (the key, or a Secrets Manager id), and the legacy
/// ones still read.
pub const KEY_VARS: [(&str, &str); 2] = [
    ("SUPABASE_SECRET_KEY", "SUPABASE_SECRET_KEY_SECRET_ID"),
    ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY_SECRET_ID"),
];

/// What kind of Supabase API key a string is, judged by its form alone (a JWT's signature is not
/// verified: PostgREST does that).
///
/// ```
/// use lambda_kit::postgrest::KeyKind;
/// assert_eq!(KeyKind::of("sb_secret_abc"), KeyKind::Secret);
/// assert!(!KeyKind::Secret.sends_bearer());
/// // The payload {"role":"service_role"}.
/// let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln";
/// assert_eq!(KeyKind::of(jwt), KeyKind::Jwt { role: Some("service_role".into()) });
/// assert!(KeyKind::of(jwt).sends_bearer());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// `sb_secret_...`: sent as `apikey` only.
    Secret,
    /// `sb_publishable_...`: row-level security applies, so it cannot write; refused.
    Publishable,
    /// A legacy key: a JWT (`eyJ...`, three base64url segments) with the `role` claim of its
    /// payload, when readable. `anon` is refused; others are sent in both headers.
    Jwt {
        /// The payload's `role` claim.
        role: Option<String>,
    },
    /// Any other form (a self-hosted token, a test key): sent in both headers.
    Other,
}

impl KeyKind {
    /// The kind of `key`.
    pub fn of(key: &str) -> Self {
        if key.starts_with("sb_secret_") {
            Self::Secret
        } else if key.starts_with("sb_publishable_") {
            Self::Publishable
        } else if is_jwt(key) {
            Self::Jwt {
                role: jwt_role(key),
            }
        } else {
            Self::Other
        }
    }

    /// Whether the key also goes in `Authorization: Bearer`: not for Supabase's API keys, which
    /// are not JWTs.
    pub fn sends_bearer(&self) -> bool {
        !matches!(self, Self::Secret | Self::Publishable)
    }

    /// Why a writer cannot use this key, if it cannot: publishable and `anon` keys only reach
    /// what row-level security allows.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Self::Publishable => Some(
                "is a publishable key (sb_publishable_...): row-level security keeps it from \
                 writing; use a secret key (sb_secret_...)",
            ),
            Self::Jwt { role: Some(role) } if role == "anon" => Some(
                "is the legacy anon key (JWT role \"anon\"): row-level security keeps it from \
                 writing; use a secret key (sb_secret_...) or the legacy service_role key",
            ),
            _ => None,
        }
    }
}

fn is_jwt(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    key.starts_with("eyJ")
        && parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
        })
}

/// The `role` claim of a JWT's payload, decoded without verifying anything.
fn jwt_role(key: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = key.split('.').nth(1)?.trim_end_matches('=');
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("role")?.as_str().map(str::to_owned)
}

/// The Supabase key of a writer, read at cold start: `SUPABASE_SECRET_KEY`, or the legacy
/// `SUPABASE_SERVICE_ROLE_KEY`, or a Secrets Manager id in `SUPABASE_SECRET_KEY_SECRET_ID` /
/// `SUPABASE_KEY_SECRET_ID` (plain value or JSON `{"key": ...}`); the key wins over an id, as
/// with [`resolve`](crate::secrets::resolve). Setting both names of one pair is an error naming
/// both, and so is a key that cannot write ([`KeyKind::refusal`]): the error names the variable
/// it came from. A key from Secrets Manager is re-read after `SECRETS_TTL_SECONDS` and after a
/// 401/403 ([`Credential`]).
///
/// ```
/// use lambda_kit::{config::Env, postgrest::resolve_key};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = Env::from_pairs([("SUPABASE_SECRET_KEY", "sb_secret_abc")]);
/// assert_eq!(resolve_key(&env).await.unwrap().current().await.expose(), "sb_secret_abc");
/// let env = Env::from_pairs([("SUPABASE_SECRET_KEY", "sb_publishable_abc")]);
/// assert!(resolve_key(&env).await.unwrap_err().to_string().contains("SUPABASE_SECRET_KEY"));
/// # }
/// ```
pub async fn resolve_key(env: &Env) -> Result<Credential, InitError> {
    let [(key, key_id), (legacy_key, legacy_id)] = KEY_VARS;
    let plain = one_of(env, key, legacy_key)?;
    let id = one_of(env, key_id, legacy_id)?;
    if plain.is_none() && id.is_none() {
        return Err(ConfigError::new(
            key,
            format!("set {key} or {key_id} (or the legacy {legacy_key} or {legacy_id})"),
        )
        .into());
    }
    let spec = SecretSpec::new(plain.unwrap_or(key), id.unwrap_or(key_id), "key");
    let credential = Credential::from_env(env, &spec).await?;
    let var = if plain.is_some() {
        spec.env_var
    } else {
        spec.secret_id_var
    };
    match KeyKind::of(credential.current().await.expose()).refusal() {
        Some(problem) => Err(ConfigError::new(var, format!("the key {problem}")).into()),
        None => Ok(credential),
    }
}

/// Which of two names of one setting is set; both is an error naming both.
fn one_of<'a>(env: &Env, name: &'a str, legacy: &'a str) -> Result<Option<&'a str>, ConfigError> {
    match (env.get(name).is_some(), env.get(legacy).is_some()) {
        (true, true) => Err(ConfigError::new(
            name,
            format!("set either {name} or the legacy {legacy}, not both"),
        )),
        (true, false) => Ok(Some(name)),
        (false, true) => Ok(Some(legacy)),
        (false, false) => Ok(None),
    }
}

/// Settings of a [`PostgrestClient`].
///
/// Defaults: request timeout 10 s, connect timeout 2 s, [`RetryPolicy::default`].
#[derive(Debug, Clone)]
pub struct PostgrestConfig {
    /// PostgREST base URL without a trailing `/` (tables are served below it).
    pub base_url: String,
    /// The key, sent as `apikey`, and also as `Authorization: Bearer` when it is a JWT
    /// ([`KeyKind::sends_bearer`]); re-read after a 401/403 when it comes from Secrets Manager.
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

/// What an upsert does with a row whose conflict key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Duplicates {
    /// `Prefer: resolution=merge-duplicates`: update the existing row.
    Merge,
    /// `Prefer: resolution=ignore-duplicates`: keep the existing row.
    Ignore,
}

/// Options of [`PostgrestClient::upsert`].
///
/// ```
/// use lambda_kit::postgrest::{Duplicates, Upsert};
/// let u = Upsert::on_conflict("event_id", Duplicates::Ignore);
/// assert_eq!(u.on_conflict.as_deref(), Some("event_id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upsert {
    /// Columns of the unique constraint (`?on_conflict=`), comma separated.
    pub on_conflict: Option<String>,
    /// Resolution of duplicates; `None` is a plain insert (duplicates fail with 409).
    pub duplicates: Option<Duplicates>,
}

impl Upsert {
    /// An upsert on the given unique columns.
    pub fn on_conflict(columns: impl Into<String>, duplicates: Duplicates) -> Self {
        Self {
            on_conflict: Some(columns.into()),
            duplicates: Some(duplicates),
        }
    }

    /// A plain insert.
    pub fn insert() -> Self {
        Self {
            on_conflict: None,
            duplicates: None,
        }
    }
}

/// Longest encoded `in.(...)` query pair of one [`Filter::in_lists`] filter: with the table
/// URL, `select`, ordering and the other filters, a request URL stays under 8 KiB.
pub const MAX_IN_LIST_BYTES: usize = 6 * 1024;

/// A PostgREST row filter (`column=op.value`), values percent-encoded.
///
/// ```
/// use lambda_kit::postgrest::Filter;
/// assert_eq!(Filter::eq("topic", "a b&c").to_query(), "topic=eq.a%20b%26c");
/// assert_eq!(Filter::in_list("id", ["1", "x,y"]).to_query(), "id=in.(%221%22,%22x%2Cy%22)");
/// assert_eq!(Filter::lt("n", 5).to_query(), "n=lt.5");
/// assert_eq!(Filter::like("page_id", "wiki-*").to_query(), "page_id=like.wiki-%2A");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    column: String,
    op: &'static str,
    value: String,
}

impl Filter {
    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "eq",
            value: encode(&value.to_string()),
        }
    }

    /// `column >= value`.
    pub fn gte(column: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "gte",
            value: encode(&value.to_string()),
        }
    }

    /// `column < value`.
    pub fn lt(column: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "lt",
            value: encode(&value.to_string()),
        }
    }

    /// `column LIKE pattern`, PostgREST's `*` standing for SQL's `%` (`_` matches one
    /// character).
    pub fn like(column: impl Into<String>, pattern: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "like",
            value: encode(&pattern.to_string()),
        }
    }

    /// `column IS NULL`.
    pub fn is_null(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            op: "is",
            value: "null".into(),
        }
    }

    /// `column IS NOT NULL` (every row, when `column` is the primary key).
    pub fn not_null(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            op: "not.is",
            value: "null".into(),
        }
    }

    /// `column IN (values...)`. Every value is double-quoted with `"` and `\` backslash-escaped,
    /// so PostgREST's reserved characters (`,.:()`) inside values are taken literally.
    pub fn in_list<I, V>(column: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: AsRef<str>,
    {
        let items: Vec<String> = values
            .into_iter()
            .map(|v| encode(&quote_in_value(v.as_ref())))
            .collect();
        Self {
            column: column.into(),
            op: "in",
            value: format!("({})", items.join(",")),
        }
    }

    /// `column IN (values...)` split into consecutive filters, for reads and deletes of many
    /// keys: each filter holds at most `max_values` values and its encoded query pair at most
    /// [`MAX_IN_LIST_BYTES`] bytes (one value longer than that goes alone), so long keys cannot
    /// push a request past the servers' URL limits (8 KiB is common: PostgREST behind Kong,
    /// nginx, AWS load balancers). Together the filters hold every value once, in order.
    ///
    /// ```
    /// use lambda_kit::postgrest::{Filter, MAX_IN_LIST_BYTES};
    /// let ids: Vec<String> = (0..5).map(|i| format!("{i}").repeat(2000)).collect();
    /// let parts = Filter::in_lists("page_id", &ids, 200);
    /// assert_eq!(parts.len(), 2);
    /// assert!(parts.iter().all(|f| f.to_query().len() <= MAX_IN_LIST_BYTES));
    /// assert_eq!(Filter::in_lists("id", &["1", "2", "3"], 2).len(), 2);
    /// ```
    pub fn in_lists<V: AsRef<str>>(
        column: impl Into<String>,
        values: &[V],
        max_values: usize,
    ) -> Vec<Self> {
        let column = column.into();
        let encoded: Vec<String> = values
            .iter()
            .map(|v| encode(&quote_in_value(v.as_ref())))
            .collect();
        in_list_ranges(&column, &encoded, max_values)
            .into_iter()
            .map(|range| Self {
                column: column.clone(),
                op: "in",
                value: format!("({})", encoded[range].join(",")),
            })
            .collect()
    }

    /// The query-string pair.
    pub fn to_query(&self) -> String {
        format!("{}={}.{}", encode(&self.column), self.op, self.value)
    }
}

/// The consecutive ranges of `encoded` (values quoted and percent-encoded) that
/// [`Filter::in_lists`] puts in one filter each.
fn in_list_ranges(column: &str, encoded: &[String], max_values: usize) -> Vec<Range<usize>> {
    // `column=in.(` and `)`.
    let fixed = encode(column).len() + "=in.()".len();
    let mut out = Vec::new();
    let mut start = 0;
    let mut len = fixed;
    for (i, item) in encoded.iter().enumerate() {
        let add = item.len() + usize::from(i > start);
        if i > start && (i - start >= max_values.max(1) || len + add > MAX_IN_LIST_BYTES) {
            out.push(start..i);
            start = i;
            len = fixed + item.len();
        } else {
            len += add;
        }
    }
    if start < encoded.len() {
        out.push(start..encoded.len());
    }
    out
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn quote_in_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// A failed PostgREST call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PostgrestError {
    /// PostgREST answered with an error status.
    #[error("PostgREST {status}: {message}{}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// PostgREST / PostgreSQL error code (`23505`, `PGRST204`, ...).
        code: Option<String>,
        /// Error message (short, secret-free).
        message: String,
        /// `details` of the error JSON.
        details: Option<String>,
        /// `hint` of the error JSON.
        hint: Option<String>,
        /// Class decided from the status and `Retry-After`.
        class: ErrorClass,
    },
    /// The request did not complete (connection refused/reset, timeout, ...).
    #[error("PostgREST request failed: {message}")]
    Transport {
        /// Low-cardinality code (`http_connect`, `http_timeout`, ...).
        code: &'static str,
        /// Class of the transport error.
        class: ErrorClass,
        /// Description with causes.
        message: String,
    },
    /// A successful response could not be decoded.
    #[error("PostgREST response could not be decoded: {0}")]
    Decode(String),
    /// The deadline passed before the call could be (re)tried.
    #[error("deadline reached before the PostgREST call could complete")]
    DeadlineExceeded,
    /// The client could not be built (bad URL or TLS setup).
    #[error("PostgREST client could not be built: {0}")]
    Build(String),
    /// The key read (at cold start or re-read after a rotation) cannot be used: a key that
    /// cannot write ([`KeyKind::refusal`]) or cannot be sent in a header. No request is sent
    /// with it; the message names the secret or variable to fix, never the key.
    #[error("Supabase key not used: {0}")]
    Key(String),
}

impl From<PostgrestError> for InitError {
    fn from(e: PostgrestError) -> Self {
        Self::Client(e.to_string())
    }
}

impl PostgrestError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request names something the database or the API's schema cache does not have: a
    /// column (`PGRST204`, `42703`), a table (`PGRST205`, `42P01`), a type or operator (`42704`,
    /// `42883`: pgvector's `vector` when the API's search path lacks the `extensions` schema), a
    /// unique constraint for the conflict target (`42P10`), a query string the API cannot parse
    /// (`PGRST100`: the client's own `on_conflict`, `columns` or `select`). The schema and the
    /// code disagree: every row would fail alike, so no row is to blame.
    ///
    /// ```
    /// use lambda_kit::error::{Classify, ErrorClass};
    /// use lambda_kit::postgrest::PostgrestError;
    /// let e = PostgrestError::Api {
    ///     status: 400,
    ///     code: Some("PGRST204".into()),
    ///     message: "Could not find the 'answer' column of 'vault' in the schema cache".into(),
    ///     details: None,
    ///     hint: None,
    ///     class: ErrorClass::Permanent,
    /// };
    /// assert!(e.is_schema_mismatch() && !e.blames_input());
    /// assert_eq!(e.error_code(), "db_schema");
    /// ```
    pub fn is_schema_mismatch(&self) -> bool {
        const SCHEMA_CODES: [&str; 8] = [
            "PGRST100", "PGRST204", "PGRST205", "42703", "42P01", "42P10", "42704", "42883",
        ];
        matches!(self, Self::Api { code: Some(code), .. } if SCHEMA_CODES.contains(&code.as_str()))
    }

    /// `true` for pgvector's refusal of a vector whose length is not the column's `vector(N)`
    /// (SQLSTATE `22000`, "expected N dimensions, not M"): the writer's configured dimension
    /// (`EMBED_DIM`, the model) does not match the table, a configuration error that every row
    /// would hit, not a fault of one row.
    ///
    /// ```
    /// use lambda_kit::error::{Classify, ErrorClass};
    /// use lambda_kit::postgrest::PostgrestError;
    /// let e = PostgrestError::Api {
    ///     status: 400,
    ///     code: Some("22000".into()),
    ///     message: "expected 768 dimensions, not 3".into(),
    ///     details: None,
    ///     hint: None,
    ///     class: ErrorClass::Permanent,
    /// };
    /// assert!(e.is_vector_dimension_mismatch());
    /// assert!(!e.blames_input());
    /// assert_eq!(e.error_code(), "db_vector_dimensions");
    /// ```
    pub fn is_vector_dimension_mismatch(&self) -> bool {
        match self {
            Self::Api {
                status: 400,
                code: Some(code),
                message,
                ..
            } => {
                code == "22000"
                    && message.starts_with("expected ")
                    && message.contains(" dimensions, not ")
            }
            _ => false,
        }
    }
}

impl Classify for PostgrestError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Api { class, .. } | Self::Transport { class, .. } => *class,
            Self::Decode(_) | Self::Build(_) | Self::Key(_) => ErrorClass::Permanent,
            Self::DeadlineExceeded => ErrorClass::TRANSIENT,
        }
    }

    fn error_code(&self) -> &'static str {
        match self {
            _ if self.is_vector_dimension_mismatch() => "db_vector_dimensions",
            _ if self.is_schema_mismatch() => "db_schema",
            Self::Api { status, .. } => match *status {
                400 => "db_bad_request",
                401 | 403 => "db_unauthorized",
                404 => "db_not_found",
                409 => "db_conflict",
                413 => "db_payload_too_large",
                408 | 429 => "db_throttled",
                500..=599 => "db_server_error",
                _ => "db_rejected",
            },
            Self::Transport { code, .. } => code,
            Self::Decode(_) => "db_decode",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Build(_) => "db_client_build",
            Self::Key(_) => "db_key_unusable",
        }
    }

    /// Only a rejection of the data itself (400 bad value, 409 constraint, 413 too large, 422)
    /// blames the rows: bad credentials (401/403), a missing table (404), a method not allowed, a
    /// schema that lacks what the rows name
    /// ([`is_schema_mismatch`](PostgrestError::is_schema_mismatch)) or a vector column of another
    /// dimension ([`is_vector_dimension_mismatch`](PostgrestError::is_vector_dimension_mismatch))
    /// are environment problems, and the rows must not be dead-lettered for them.
    fn blames_input(&self) -> bool {
        !self.is_vector_dimension_mismatch()
            && !self.is_schema_mismatch()
            && matches!(
                self,
                Self::Api {
                    status: 400 | 409 | 413 | 422,
                    ..
                }
            )
    }
}

/// The settings of PostgREST's URL, named when it redirects or answers too much.
const URL_VARS: &str = "SUPABASE_URL (or SUPABASE_REST_URL)";

/// Largest PostgREST answer the functions read: a page of [`READ_PAGE_ROWS`] rows of 16 KB each,
/// far more than the ids, versions and hashes they read. Past it the call fails as an environment
/// fault, having read no more. `kl`, which reads whole dead letters, sets its own
/// ([`PostgrestClient::with_max_answer`]).
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Most rows one [`PostgrestClient::select_all`] returns: a server that ignored `offset` would
/// otherwise answer the same page forever while the result grows.
pub const MAX_SELECT_ALL_ROWS: usize = 1_000 * READ_PAGE_ROWS;

/// Rows asked for per request by [`PostgrestClient::select_all`]: Supabase's default
/// `db-max-rows`.
pub const READ_PAGE_ROWS: usize = 1000;

/// The PostgREST client; cheap to clone (shared connection pool and counters).
#[derive(Debug, Clone)]
pub struct PostgrestClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    /// Sent as `apikey`, and as `Authorization: Bearer` for JWT keys ([`KeyKind::sends_bearer`]).
    key: Credential,
    /// The headers of the key's current value, checked ([`auth_headers`]).
    headers: Arc<PerValue<AuthHeaders>>,
    /// Timeout, retries and the answer's limit.
    sender: http::Sender,
    requests: Arc<AtomicU64>,
}

impl PostgrestClient {
    /// Builds the client (connection pool, timeouts).
    ///
    /// ```
    /// use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, Secret};
    /// let c = PostgrestClient::new(PostgrestConfig::new("http://127.0.0.1:3000", Secret::new("k"))).unwrap();
    /// assert_eq!(c.table_url("vault"), "http://127.0.0.1:3000/vault");
    /// ```
    pub fn new(config: PostgrestConfig) -> Result<Self, PostgrestError> {
        let http = http::client_builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| PostgrestError::Build(http::describe_reqwest(&e)))?;
        Self::with_http(config, http)
    }

    /// Like [`new`](Self::new) but on a connection pool the caller already has (a function that
    /// also calls other HTTP APIs loads the TLS roots once). Every request carries
    /// `config.request_timeout` itself (capped by the invocation deadline); the client's own
    /// connect timeout applies, `config.connect_timeout` does not.
    pub fn with_http(
        config: PostgrestConfig,
        http: reqwest::Client,
    ) -> Result<Self, PostgrestError> {
        Ok(Self {
            http,
            base_url: Arc::from(config.base_url.trim_end_matches('/')),
            key: config.key,
            headers: Arc::default(),
            sender: http::Sender::new(
                "postgrest",
                config.request_timeout,
                config.retry,
                http::Limit::new(URL_VARS, MAX_ANSWER),
            ),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same client, reading answers of up to `bytes` (default [`MAX_ANSWER`]).
    pub fn with_max_answer(mut self, bytes: usize) -> Self {
        self.sender.limit = http::Limit::new(URL_VARS, bytes);
        self
    }

    /// URL of a table (path segment percent-encoded).
    pub fn table_url(&self, table: &str) -> String {
        format!("{}/{}", self.base_url, encode(table))
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Inserts or upserts the rows of `body`, a JSON array of objects, in one request
    /// (`Prefer: return=minimal`).
    pub async fn upsert(
        &self,
        deadline: &Deadline,
        table: &str,
        body: Bytes,
        options: &Upsert,
    ) -> Result<(), PostgrestError> {
        let mut url = self.table_url(table);
        if let Some(cols) = &options.on_conflict {
            url.push_str("?on_conflict=");
            url.push_str(&encode(cols).replace("%2C", ","));
        }
        let prefer = match options.duplicates {
            Some(Duplicates::Merge) => "return=minimal,resolution=merge-duplicates",
            Some(Duplicates::Ignore) => "return=minimal,resolution=ignore-duplicates",
            None => "return=minimal",
        };
        self.send(deadline, || {
            self.http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .header("Prefer", prefer)
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Rows of `table` matching every filter, `select` being PostgREST's column list (`*`,
    /// `a,b`).
    pub async fn select<T: DeserializeOwned>(
        &self,
        deadline: &Deadline,
        table: &str,
        select: &str,
        filters: &[Filter],
    ) -> Result<Vec<T>, PostgrestError> {
        let url = self.url_with_filters(table, Some(select), filters);
        let body = self.send(deadline, || self.http.get(&url)).await?;
        serde_json::from_slice(&body).map_err(|e| PostgrestError::Decode(e.to_string()))
    }

    /// Every row matching the filters, read in pages of [`READ_PAGE_ROWS`] ordered by `order` (a
    /// column list that is unique per row, e.g. the primary key), so that the API's row limit
    /// (Supabase answers at most 1000 rows per request by default, `db-max-rows`) never cuts the
    /// result short silently. Reading stops at the first empty page, whatever limit the server
    /// applies, or fails past [`MAX_SELECT_ALL_ROWS`] rows.
    pub async fn select_all<T: DeserializeOwned>(
        &self,
        deadline: &Deadline,
        table: &str,
        select: &str,
        filters: &[Filter],
        order: &str,
    ) -> Result<Vec<T>, PostgrestError> {
        let base = self.url_with_filters(table, Some(select), filters);
        let order = encode(order).replace("%2C", ",");
        let mut out: Vec<T> = Vec::new();
        loop {
            let url = format!(
                "{base}&order={order}&limit={READ_PAGE_ROWS}&offset={}",
                out.len()
            );
            let body = self.send(deadline, || self.http.get(&url)).await?;
            let page: Vec<T> =
                serde_json::from_slice(&body).map_err(|e| PostgrestError::Decode(e.to_string()))?;
            if page.is_empty() {
                return Ok(out);
            }
            if page.len() > MAX_SELECT_ALL_ROWS - out.len() {
                return Err(PostgrestError::Decode(format!(
                    "{table}: more than {MAX_SELECT_ALL_ROWS} rows in pages of {READ_PAGE_ROWS}; a selection this large is refused (does the server ignore `offset`?)"
                )));
            }
            out.extend(page);
        }
    }

    /// Sets the columns of `body` (one JSON object) on the rows matching every filter (at least
    /// one filter is required, to avoid rewriting a whole table by mistake).
    pub async fn update(
        &self,
        deadline: &Deadline,
        table: &str,
        filters: &[Filter],
        body: Bytes,
    ) -> Result<(), PostgrestError> {
        if filters.is_empty() {
            return Err(PostgrestError::Build(
                "update without a filter is refused".into(),
            ));
        }
        let url = self.url_with_filters(table, None, filters);
        self.send(deadline, || {
            self.http
                .patch(&url)
                .header(CONTENT_TYPE, "application/json")
                .header("Prefer", "return=minimal")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Deletes the rows matching every filter (at least one filter is required, to avoid
    /// emptying a table by mistake).
    pub async fn delete(
        &self,
        deadline: &Deadline,
        table: &str,
        filters: &[Filter],
    ) -> Result<(), PostgrestError> {
        if filters.is_empty() {
            return Err(PostgrestError::Build(
                "delete without a filter is refused".into(),
            ));
        }
        let url = self.url_with_filters(table, None, filters);
        self.send(deadline, || {
            self.http.delete(&url).header("Prefer", "return=minimal")
        })
        .await
        .map(drop)
    }

    fn url_with_filters(&self, table: &str, select: Option<&str>, filters: &[Filter]) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(filters.len() + 1);
        if let Some(select) = select {
            parts.push(format!(
                "select={}",
                encode(select).replace("%2C", ",").replace("%2A", "*")
            ));
        }
        parts.extend(filters.iter().map(Filter::to_query));
        let mut url = self.table_url(table);
        if !parts.is_empty() {
            url.push('?');
            url.push_str(&parts.join("&"));
        }
        url
    }

    /// Sends with the current key; a 401/403 re-reads the key ([`Credential::call`]) and, when
    /// it changed, sends once more with the new one within the same deadline. A refusal that
    /// stands names the setting to fix.
    async fn send<F>(&self, deadline: &Deadline, build: F) -> Result<Bytes, PostgrestError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.sender
            .send_with_credential(
                deadline,
                &self.key,
                |key| {
                    let headers = self.headers.get(&key, |k| auth_headers(k, &self.key));
                    std::future::ready(headers)
                },
                |(apikey, auth)| {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    let request = build().header("apikey", apikey.clone());
                    match auth {
                        Some(auth) => request.header(AUTHORIZATION, auth.clone()),
                        None => request,
                    }
                },
                || PostgrestError::DeadlineExceeded,
                postgrest_error,
            )
            .await
    }
}

/// `apikey`, and `Authorization: Bearer` for a JWT.
type AuthHeaders = (HeaderValue, Option<HeaderValue>);

/// The `apikey` header of `key`, a value of `credential`, and `Authorization: Bearer` for a JWT
/// ([`KeyKind::sends_bearer`]), both marked sensitive. A key that cannot write
/// ([`KeyKind::refusal`]: a rotation put a publishable or anon key in the secret) or cannot be
/// sent is refused here, before any request, naming where it came from.
fn auth_headers(key: &Secret, credential: &Credential) -> Result<AuthHeaders, PostgrestError> {
    let key = key.expose();
    let kind = KeyKind::of(key);
    if let Some(problem) = kind.refusal() {
        return Err(PostgrestError::Key(format!(
            "{} {problem}",
            credential.source()
        )));
    }
    let header = |value: &str| {
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            PostgrestError::Key(format!(
                "{} contains characters not allowed in an HTTP header",
                credential.source()
            ))
        })?;
        v.set_sensitive(true);
        Ok::<_, PostgrestError>(v)
    };
    let auth = match kind.sends_bearer() {
        true => Some(header(&format!("Bearer {key}"))?),
        false => None,
    };
    Ok((header(key)?, auth))
}

/// A 401/403 is PostgREST refusing the key; one that stands after the key was re-read says
/// which setting to fix.
impl Refusal for PostgrestError {
    fn is_refusal(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    fn with_note(self, note: String) -> Self {
        match self {
            Self::Api {
                status,
                code,
                message,
                details,
                hint,
                class,
            } => Self::Api {
                status,
                code,
                message: format!("{message}; {note}"),
                details,
                hint,
                class,
            },
            other => other,
        }
    }
}

/// PostgREST's reading of a failed attempt: its error JSON (`code`, `message`, `details`,
/// `hint`), or the raw body when it sent none.
fn postgrest_error(failure: http::Failure<'_>) -> PostgrestError {
    let r = match failure {
        http::Failure::Status(r) => r,
        http::Failure::Transport(t) => {
            return PostgrestError::Transport {
                code: t.code,
                class: t.class,
                message: t.message,
            };
        }
    };
    #[derive(serde::Deserialize)]
    struct Body {
        code: Option<serde_json::Value>,
        message: Option<String>,
        details: Option<serde_json::Value>,
        hint: Option<serde_json::Value>,
    }
    let text = |v: Option<serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(r.clean(&s)),
        Some(other) => Some(r.clean(&other.to_string())),
    };
    let (code, message, details, hint) = match serde_json::from_slice::<Body>(&r.body) {
        Ok(b) => (
            text(b.code),
            r.clean(b.message.as_deref().unwrap_or("(no message)")),
            text(b.details),
            text(b.hint),
        ),
        Err(_) => (None, r.clean(&r.text()), None, None),
    };
    PostgrestError::Api {
        status: r.status.as_u16(),
        code,
        message,
        details,
        hint,
        class: r.class(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockServer;

    fn client(url: &str) -> PostgrestClient {
        let mut c = PostgrestConfig::new(url, Secret::new("sekret-key"));
        c.retry = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        PostgrestClient::new(c).unwrap()
    }

    #[test]
    fn in_lists_split_long_values_by_encoded_length_and_cover_each_value_once() {
        // 512-byte ids of two-byte characters: 1,536 bytes each once percent-encoded, so 200 of
        // them (the count bound alone) would make a 300 KB URL.
        let ids: Vec<String> = (0..200)
            .map(|i| format!("{i:03}{}", "é".repeat(254)))
            .collect();
        let encoded = |values: &[String]| -> Vec<String> {
            values.iter().map(|v| encode(&quote_in_value(v))).collect()
        };
        let ranges = in_list_ranges("page_id", &encoded(&ids), 200);
        let filters = Filter::in_lists("page_id", &ids, 200);
        assert!(ranges.len() > 1);
        assert_eq!(ranges.len(), filters.len());
        let mut next = 0;
        for (range, filter) in ranges.iter().zip(&filters) {
            assert_eq!(range.start, next);
            next = range.end;
            let query = filter.to_query();
            assert!(query.len() <= MAX_IN_LIST_BYTES, "{}", query.len());
            assert_eq!(
                query,
                Filter::in_list("page_id", &ids[range.clone()]).to_query()
            );
        }
        assert_eq!(next, ids.len());
        // The count bound still holds for short values; one value over the budget goes alone.
        let short: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert_eq!(
            in_list_ranges("id", &encoded(&short), 2),
            [0..2, 2..4, 4..5]
        );
        let huge = [
            "a".to_string(),
            "b".repeat(MAX_IN_LIST_BYTES),
            "c".to_string(),
        ];
        assert_eq!(
            in_list_ranges("id", &encoded(&huge), 200),
            [0..1, 1..2, 2..3]
        );
        assert!(Filter::in_lists("id", &Vec::<String>::new(), 200).is_empty());
    }

    #[test]
    fn in_list_quoting() {
        assert_eq!(quote_in_value("abc"), "\"abc\"");
        assert_eq!(quote_in_value("a,b"), "\"a,b\"");
        assert_eq!(quote_in_value("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(quote_in_value(""), "\"\"");
        assert_eq!(
            Filter::in_list("k", ["é"]).to_query(),
            "k=in.(%22%C3%A9%22)"
        );
        assert_eq!(Filter::is_null("x").to_query(), "x=is.null");
    }

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

    #[tokio::test]
    async fn upsert_sends_auth_prefer_and_conflict() {
        let server = MockServer::start(vec![(201, vec![], String::new())]).await;
        let c = client(&server.url());
        c.upsert(
            &Deadline::after(Duration::from_secs(5)),
            "vault",
            Bytes::from_static(b"[{}]"),
            &Upsert::on_conflict("event_id", Duplicates::Ignore),
        )
        .await
        .unwrap();
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert!(
            r.head
                .starts_with("POST /vault?on_conflict=event_id HTTP/1.1"),
            "{}",
            r.head
        );
        let head = r.head.to_ascii_lowercase();
        assert!(head.contains("apikey: sekret-key"));
        assert!(head.contains("authorization: bearer sekret-key"));
        assert!(head.contains("prefer: return=minimal,resolution=ignore-duplicates"));
        assert_eq!(r.body, b"[{}]");
        assert_eq!(c.requests_sent(), 1);
    }

    /// A JWT with `claims` as payload (the signature is not checked by the client).
    fn jwt(claims: serde_json::Value) -> String {
        use base64::Engine as _;
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"signature")
        )
    }

    /// A plain insert of `[]` into `table`, within 5 s.
    async fn insert_empty(c: &PostgrestClient, table: &str) -> Result<(), PostgrestError> {
        let deadline = Deadline::after(Duration::from_secs(5));
        let body = Bytes::from_static(b"[]");
        c.upsert(&deadline, table, body, &Upsert::insert()).await
    }

    /// The `apikey` and `authorization` headers of one insert sent with `key`.
    async fn auth_headers_sent(key: &str) -> (Option<String>, Option<String>) {
        let server = MockServer::start(vec![(201, vec![], String::new())]).await;
        let c = PostgrestClient::new(PostgrestConfig::new(server.url(), Secret::new(key))).unwrap();
        insert_empty(&c, "vault").await.unwrap();
        let head = server.requests()[0].head.clone();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        (header("apikey"), header("authorization"))
    }

    #[tokio::test]
    async fn headers_follow_the_key_kind() {
        // Legacy service_role JWT (the local stack's key): both headers, as before.
        let legacy = jwt(serde_json::json!({"iss": "supabase", "role": "service_role"}));
        assert_eq!(
            auth_headers_sent(&legacy).await,
            (Some(legacy.clone()), Some(format!("Bearer {legacy}")))
        );
        // A secret key is not a JWT: `apikey` only.
        assert_eq!(
            auth_headers_sent("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz").await,
            (
                Some("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz".into()),
                None
            )
        );
        // A key of no known form is sent as before.
        assert_eq!(
            auth_headers_sent("opaque-token").await,
            (
                Some("opaque-token".into()),
                Some("Bearer opaque-token".into())
            )
        );
    }

    #[test]
    fn key_kinds() {
        let anon = jwt(serde_json::json!({"role": "anon"}));
        assert_eq!(
            KeyKind::of(&anon),
            KeyKind::Jwt {
                role: Some("anon".into())
            }
        );
        assert!(KeyKind::of(&anon).refusal().is_some());
        assert!(KeyKind::of("sb_publishable_x").refusal().is_some());
        assert!(!KeyKind::of("sb_publishable_x").sends_bearer());
        let service = jwt(serde_json::json!({"role": "service_role"}));
        assert!(KeyKind::of(&service).refusal().is_none());
        // A JWT whose payload is not JSON: still a JWT, nothing to refuse.
        assert_eq!(
            KeyKind::of("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"),
            KeyKind::Jwt { role: None }
        );
        for other in [
            "",
            "k",
            "eyJ.only-two",
            "eyJa.b.c.d",
            "eyJa.b c.d",
            "sb_secretive",
        ] {
            assert_eq!(KeyKind::of(other), KeyKind::Other, "{other}");
        }
    }

    #[tokio::test]
    async fn resolve_key_reads_both_names_and_refuses_keys_that_cannot_write() {
        let legacy = jwt(serde_json::json!({"role": "service_role"}));
        for (var, key) in [
            ("SUPABASE_SECRET_KEY", "sb_secret_abc"),
            ("SUPABASE_SERVICE_ROLE_KEY", legacy.as_str()),
            ("SUPABASE_SECRET_KEY", legacy.as_str()),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_abc"),
        ] {
            let got = resolve_key(&Env::from_pairs([(var, key)])).await.unwrap();
            assert_eq!(got.current().await.expose(), key, "{var}");
        }
        // A key wins over a secret id, as with `secrets::resolve` (no AWS call here).
        let env = Env::from_pairs([
            ("SUPABASE_SECRET_KEY", "sb_secret_abc"),
            ("SUPABASE_KEY_SECRET_ID", "arn:x"),
        ]);
        let got = resolve_key(&env).await.unwrap().current().await;
        assert_eq!(got.expose(), "sb_secret_abc");

        let anon = jwt(serde_json::json!({"role": "anon"}));
        let refused = [
            (
                vec![("SUPABASE_SECRET_KEY", "sb_publishable_abc")],
                &["SUPABASE_SECRET_KEY", "publishable"][..],
            ),
            (
                vec![("SUPABASE_SERVICE_ROLE_KEY", anon.as_str())],
                &["SUPABASE_SERVICE_ROLE_KEY", "anon"],
            ),
            (
                vec![
                    ("SUPABASE_SECRET_KEY", "sb_secret_a"),
                    ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_b"),
                ],
                &["SUPABASE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY"],
            ),
            (
                vec![
                    ("SUPABASE_SECRET_KEY_SECRET_ID", "arn:1"),
                    ("SUPABASE_KEY_SECRET_ID", "arn:2"),
                ],
                &["SUPABASE_SECRET_KEY_SECRET_ID", "SUPABASE_KEY_SECRET_ID"],
            ),
            (
                vec![],
                &[
                    "SUPABASE_SECRET_KEY",
                    "SUPABASE_SECRET_KEY_SECRET_ID",
                    "SUPABASE_SERVICE_ROLE_KEY",
                    "SUPABASE_KEY_SECRET_ID",
                ],
            ),
        ];
        for (pairs, names) in refused {
            let e = resolve_key(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, InitError::Config(_)), "{pairs:?}: {text}");
            for name in names {
                assert!(text.contains(name), "{pairs:?}: {text}");
            }
            for (_, value) in &pairs {
                assert!(!text.contains(value), "the key leaked: {text}");
            }
        }
    }

    #[tokio::test]
    async fn retries_503_then_succeeds_and_parses_select() {
        let server = MockServer::start(vec![
            (503, vec![("retry-after", "0")], "oops".into()),
            (200, vec![], r#"[{"id":1}]"#.into()),
        ])
        .await;
        let c = client(&server.url());
        let rows: Vec<serde_json::Value> = c
            .select(
                &Deadline::after(Duration::from_secs(5)),
                "t",
                "id,name",
                &[Filter::eq("topic", "a&b")],
            )
            .await
            .unwrap();
        assert_eq!(rows, vec![serde_json::json!({"id": 1})]);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert!(
            reqs[1]
                .head
                .starts_with("GET /t?select=id,name&topic=eq.a%26b "),
            "{}",
            reqs[1].head
        );
    }

    #[tokio::test]
    async fn constraint_error_is_parsed_permanent_and_blames_input() {
        let body = r#"{"code":"23502","message":"null value in column \"question\" violates not-null constraint sekret-key","details":null,"hint":null}"#;
        let server = MockServer::start(vec![(400, vec![], body.into())]).await;
        let c = client(&server.url());
        let e = insert_empty(&c, "vault").await.unwrap_err();
        assert_eq!(
            server.requests().len(),
            1,
            "permanent errors are not retried"
        );
        assert!(e.class().is_permanent());
        assert!(e.blames_input());
        assert_eq!(e.error_code(), "db_bad_request");
        let text = e.to_string();
        assert!(
            text.contains("23502") && text.contains("not-null"),
            "{text}"
        );
        assert!(!text.contains("sekret-key"), "{text}");
    }

    #[tokio::test]
    async fn vector_dimension_mismatch_does_not_blame_rows() {
        // The answer of the local stack (PostgREST + pgvector) to a 3-d vector in vector(768).
        let body = r#"{"code":"22000","details":null,"hint":null,"message":"expected 768 dimensions, not 3"}"#;
        let server = MockServer::start(vec![(400, vec![], body.into())]).await;
        let e = insert_empty(&client(&server.url()), "page_vectors")
            .await
            .unwrap_err();
        assert_eq!(server.requests().len(), 1, "not retried");
        assert!(e.is_vector_dimension_mismatch());
        assert!(e.class().is_permanent());
        assert!(!e.blames_input());
        assert_eq!(e.error_code(), "db_vector_dimensions");
        assert!(e.to_string().contains("expected 768 dimensions"), "{e}");

        // Another data exception with code 22000 still blames the row.
        let other = PostgrestError::Api {
            status: 400,
            code: Some("22000".into()),
            message: "some other data exception".into(),
            details: None,
            hint: None,
            class: ErrorClass::Permanent,
        };
        assert!(!other.is_vector_dimension_mismatch());
        assert!(other.blames_input());
        assert_eq!(other.error_code(), "db_bad_request");
    }

    /// A key in a secret whose value the test sets; re-read only after refusals.
    async fn rotating_key(value: &Arc<std::sync::Mutex<String>>) -> Credential {
        rotating_key_with_ttl(value, None).await
    }

    /// A key in a secret whose value the test sets; re-read after refusals and after `ttl`.
    async fn rotating_key_with_ttl(
        value: &Arc<std::sync::Mutex<String>>,
        ttl: Option<Duration>,
    ) -> Credential {
        let value = value.clone();
        let policy = crate::secrets::RefreshPolicy {
            ttl,
            ..Default::default()
        };
        Credential::from_reader(
            "app/supabase",
            "SUPABASE_KEY_SECRET_ID",
            "key",
            policy,
            move || {
                let now = value.lock().unwrap().clone();
                async move { Ok(Some(Secret::new(now))) }
            },
        )
        .await
        .unwrap()
    }

    /// PostgREST answers a revoked key 401 (`PGRST301` for a JWT it cannot verify): the client
    /// re-reads the secret and sends once more with the rotated key, within the same call.
    #[tokio::test]
    async fn unauthorized_re_reads_the_key_and_retries_once() {
        let refused = r#"{"code":"PGRST301","message":"JWT cryptographic operation failed"}"#;
        let server = MockServer::start(vec![
            (401, vec![], refused.into()),
            (201, vec![], String::new()),
            (403, vec![], refused.into()),
            (401, vec![], refused.into()),
        ])
        .await;
        let value = Arc::new(std::sync::Mutex::new("key-a".to_owned()));
        let c = PostgrestClient::new(PostgrestConfig::new(
            server.url(),
            rotating_key(&value).await,
        ))
        .unwrap();
        *value.lock().unwrap() = "key-b".into();
        insert_empty(&c, "vault").await.unwrap();
        let keys: Vec<String> = server
            .requests()
            .iter()
            .map(|r| {
                let head = r.head.to_ascii_lowercase();
                head.lines()
                    .find_map(|l| l.strip_prefix("apikey: ").map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(keys, ["key-a", "key-b"]);

        // Refused again, and the secret still holds the refused key (re-read rate-limited or
        // unchanged): an environment error naming the variable, no third request.
        let e = insert_empty(&c, "vault").await.unwrap_err();
        assert_eq!(server.requests().len(), 3);
        assert_eq!(e.error_code(), "db_unauthorized");
        assert!(!e.blames_input());
        let text = e.to_string();
        assert!(
            text.contains("SUPABASE_KEY_SECRET_ID") && text.contains("app/supabase"),
            "{text}"
        );
        assert!(!text.contains("key-b"), "{text}");
    }

    /// A rotation that puts a key that cannot write in the secret (Supabase's publishable key,
    /// or the legacy anon JWT: row-level security keeps them from writing) is refused as the
    /// cold start refuses it, whether the key is re-read after a 401 or after its TTL: an
    /// environment fault naming the secret and its variable, and no request carries that key.
    #[tokio::test]
    async fn a_key_rotated_to_one_that_cannot_write_is_refused_after_a_re_read() {
        let anon = jwt(serde_json::json!({"role": "anon"}));
        for bad in ["sb_publishable_Zx9Qk2_rotated", anon.as_str()] {
            // Re-read after PostgREST refused the old key.
            let server = MockServer::start(vec![(401, vec![], "{}".into())]).await;
            let value = Arc::new(std::sync::Mutex::new("sb_secret_old".to_owned()));
            let key = rotating_key(&value).await;
            let c = PostgrestClient::new(PostgrestConfig::new(server.url(), key)).unwrap();
            *value.lock().unwrap() = bad.to_owned();
            let e = insert_empty(&c, "vault").await.unwrap_err();
            assert_eq!(server.requests().len(), 1, "no request with the new key");
            assert_key_refused(&e, bad);

            // Re-read after the TTL (0: every use re-reads): refused before any request.
            let server = MockServer::start(vec![(201, vec![], String::new())]).await;
            let value = Arc::new(std::sync::Mutex::new("sb_secret_old".to_owned()));
            let key = rotating_key_with_ttl(&value, Some(Duration::ZERO)).await;
            let c = PostgrestClient::new(PostgrestConfig::new(server.url(), key)).unwrap();
            insert_empty(&c, "vault").await.unwrap();
            *value.lock().unwrap() = bad.to_owned();
            let e = insert_empty(&c, "vault").await.unwrap_err();
            assert_eq!(server.requests().len(), 1, "no request with the new key");
            assert_key_refused(&e, bad);
            // Rotated back to a secret key: used again at once.
            *value.lock().unwrap() = "sb_secret_new".into();
            insert_empty(&c, "vault").await.unwrap();
            assert_eq!(server.requests().len(), 2);
        }
    }

    fn assert_key_refused(e: &PostgrestError, key: &str) {
        assert_eq!(e.error_code(), "db_key_unusable");
        assert!(e.class().is_permanent() && !e.blames_input(), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("app/supabase") && text.contains("SUPABASE_KEY_SECRET_ID"),
            "{text}"
        );
        assert!(text.contains("secret key (sb_secret_...)"), "{text}");
        assert!(!text.contains(key), "the key leaked: {text}");
    }

    #[tokio::test]
    async fn unauthorized_does_not_blame_rows() {
        let server = MockServer::start(vec![(
            401,
            vec![],
            r#"{"code":"PGRST301","message":"JWT invalid"}"#.into(),
        )])
        .await;
        let e = client(&server.url())
            .delete(
                &Deadline::after(Duration::from_secs(5)),
                "t",
                &[Filter::eq("a", 1)],
            )
            .await
            .unwrap_err();
        assert!(e.class().is_permanent());
        assert!(!e.blames_input());
        assert_eq!(e.error_code(), "db_unauthorized");
    }

    #[tokio::test]
    async fn connection_refused_gives_up_at_the_deadline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = PostgrestConfig::new(format!("http://127.0.0.1:{port}"), Secret::new("k"));
        cfg.retry = RetryPolicy {
            max_attempts: 1000,
            initial_backoff: Duration::from_millis(20),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let c = PostgrestClient::new(cfg).unwrap();
        let start = std::time::Instant::now();
        let e = c
            .upsert(
                &Deadline::after(Duration::from_millis(300)),
                "t",
                Bytes::new(),
                &Upsert::insert(),
            )
            .await
            .unwrap_err();
        assert!(e.class().is_transient(), "{e:?}");
        assert!(
            start.elapsed() < Duration::from_millis(600),
            "{:?}",
            start.elapsed()
        );
        assert!(c.requests_sent() >= 2);
    }

    /// A server whose row limit (2 here, 1000 on Supabase) is below what was asked: every row is
    /// still read, page after page, until an empty page.
    #[tokio::test]
    async fn select_all_reads_past_the_servers_row_limit() {
        let server = MockServer::start(vec![
            (200, vec![], r#"[{"id":1},{"id":2}]"#.into()),
            (200, vec![], r#"[{"id":3}]"#.into()),
            (200, vec![], "[]".into()),
        ])
        .await;
        let c = client(&server.url());
        let rows: Vec<serde_json::Value> = c
            .select_all(
                &Deadline::after(Duration::from_secs(5)),
                "page_vectors",
                "id",
                &[Filter::in_list("page_id", ["a", "b"])],
                "page_id,chunk_index",
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        let heads: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.head.lines().next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(heads.len(), 3);
        for (head, offset) in heads.iter().zip([0, 2, 3]) {
            assert!(
                head.contains("order=page_id,chunk_index")
                    && head.contains(&format!("limit={READ_PAGE_ROWS}&offset={offset} ")),
                "{head}"
            );
        }
    }

    #[tokio::test]
    async fn select_all_stops_when_the_server_ignores_the_offset() {
        // The same full page, whatever the offset.
        let page = format!("[{}]", vec!["1"; READ_PAGE_ROWS].join(","));
        let server = MockServer::start(vec![(200, vec![], page)]).await;
        let e = client(&server.url())
            .select_all::<serde::de::IgnoredAny>(
                &Deadline::after(Duration::from_secs(60)),
                "dead_letters",
                "*",
                &[],
                "id",
            )
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "db_decode");
        assert!(!e.blames_input());
        assert!(e.to_string().contains("more than 1000000 rows"), "{e}");
        assert_eq!(
            server.requests().len(),
            MAX_SELECT_ALL_ROWS / READ_PAGE_ROWS + 1
        );
    }

    #[tokio::test]
    async fn answers_are_read_through_the_limit_and_redirects_name_the_url_setting() {
        let server = MockServer::start(vec![(200, vec![], "[1,2,3,4,5,6,7,8,9]".into())]).await;
        let e = client(&server.url())
            .with_max_answer(8)
            .select::<u8>(&Deadline::after(Duration::from_secs(5)), "t", "*", &[])
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "http_body_too_large");
        assert!(!e.blames_input() && e.class().is_permanent());
        let server = MockServer::start(vec![(
            308,
            vec![("location", "https://elsewhere.example/rest/v1/t")],
            String::new(),
        )])
        .await;
        let e = client(&server.url())
            .select::<u8>(&Deadline::after(Duration::from_secs(5)), "t", "*", &[])
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "http_redirect");
        assert!(!e.blames_input());
        assert!(e.to_string().contains("SUPABASE_URL"), "{e}");
        assert!(!e.to_string().contains("sekret-key"), "{e}");
        assert_eq!(server.requests().len(), 1, "not retried");
    }

    #[test]
    fn schema_codes_are_the_environment_and_data_codes_blame_the_rows() {
        let api = |status: u16, code: &str| PostgrestError::Api {
            status,
            code: Some(code.into()),
            message: "m".into(),
            details: None,
            hint: None,
            class: ErrorClass::Permanent,
        };
        for code in [
            "PGRST100", "PGRST204", "PGRST205", "42703", "42P01", "42P10", "42704", "42883",
        ] {
            let e = api(400, code);
            assert!(e.is_schema_mismatch(), "{code}");
            assert!(!e.blames_input(), "{code}");
            assert_eq!(e.error_code(), "db_schema", "{code}");
        }
        for (status, code) in [(400, "22P02"), (400, "23514"), (409, "23505")] {
            let e = api(status, code);
            assert!(!e.is_schema_mismatch() && e.blames_input(), "{code}");
        }
    }
}
