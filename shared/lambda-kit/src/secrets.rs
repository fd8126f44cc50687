//! Secrets (API keys) from a plain environment variable or from AWS Secrets Manager, never
//! logged. A [`Credential`] remembers where its value came from: a Secrets Manager value is
//! re-read after [`RefreshPolicy::ttl`] (`SECRETS_TTL_SECONDS`) and, rate-limited, after the
//! service refused it ([`Credential::call`]), so a key rotated while the function is warm is
//! picked up without a new execution environment.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{ConfigError, Env};
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

/// One read of a Secrets Manager secret: its string value (`None`: it has none).
type ReadFuture = Pin<Box<dyn Future<Output = Result<Option<Secret>, SecretError>> + Send>>;
/// How a secret is read (Secrets Manager; a fake in tests).
type Reader = Arc<dyn Fn() -> ReadFuture + Send + Sync>;

/// One Secrets Manager secret, shared by every [`Credential`] reading a field of it (a user name
/// and a password cost one call, and refreshing one refreshes both).
struct Stored {
    id: String,
    /// The variable naming it.
    var: String,
    policy: RefreshPolicy,
    read: Reader,
    state: Mutex<StoredState>,
    /// One read at a time: concurrent refusals wait for the read under way and share it.
    reading: tokio::sync::Mutex<()>,
}

struct StoredState {
    raw: Secret,
    /// Bumped whenever a read brings a different value.
    version: u64,
    read_at: Instant,
    forced_at: Option<Instant>,
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

impl Stored {
    fn new(id: String, var: String, policy: RefreshPolicy, read: Reader) -> Self {
        Self {
            id,
            var,
            policy,
            read,
            state: Mutex::new(StoredState {
                raw: Secret::new(""),
                version: 0,
                read_at: Instant::now(),
                forced_at: None,
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (u64, Secret) {
        let state = self.state.lock().expect("secret state");
        (state.version, state.raw.clone())
    }

    /// Whether the value is older than the TTL (version 0: never read).
    fn expired(&self) -> bool {
        let state = self.state.lock().expect("secret state");
        state.version == 0
            || self
                .policy
                .ttl
                .is_some_and(|ttl| state.read_at.elapsed() >= ttl)
    }

    /// Reads the secret and keeps the value; `Ok(true)` when it differs from the one held.
    async fn read_now(&self) -> Result<bool, SecretError> {
        let raw = (self.read)()
            .await?
            .ok_or_else(|| self.unusable("has no string value"))?;
        let mut state = self.state.lock().expect("secret state");
        state.read_at = Instant::now();
        let changed = state.version == 0 || state.raw != raw;
        if changed {
            state.raw = raw;
            state.version += 1;
        }
        Ok(changed)
    }

    /// The value (version, raw string), re-read first when older than the TTL. Only the first
    /// read can fail: a failed re-read keeps the value held (a warning; the next use tries
    /// again after another TTL).
    async fn current(&self) -> Result<(u64, Secret), SecretError> {
        if self.expired() {
            let _reading = self.reading.lock().await;
            // Another use may have re-read it while this one waited.
            if self.expired()
                && let Err(e) = self.read_now().await
            {
                let mut state = self.state.lock().expect("secret state");
                if state.version == 0 {
                    return Err(e);
                }
                state.read_at = Instant::now();
                tracing::warn!(secret_id = %self.id, error_code = e.error_code(), error = %e, "secret not re-read after its TTL; the value held is used");
            }
        }
        Ok(self.snapshot())
    }

    /// Re-reads the secret after `version` was refused, unless a newer version is held already
    /// or the last forced re-read is too recent.
    async fn refresh(&self, version: u64) -> Result<Refreshed, SecretError> {
        let _reading = self.reading.lock().await;
        {
            let mut state = self.state.lock().expect("secret state");
            if state.version != version {
                return Ok(Refreshed::Changed(state.raw.clone()));
            }
            let now = Instant::now();
            if state
                .forced_at
                .is_some_and(|at| now.duration_since(at) < self.policy.min_forced_interval)
            {
                return Ok(Refreshed::RateLimited);
            }
            state.forced_at = Some(now);
        }
        match self.read_now().await? {
            true => Ok(Refreshed::Changed(self.snapshot().1)),
            false => Ok(Refreshed::Unchanged),
        }
    }
}

/// The process's Secrets Manager secrets by id.
fn stored_secrets() -> &'static Mutex<HashMap<String, Arc<Stored>>> {
    static STORED: OnceLock<Mutex<HashMap<String, Arc<Stored>>>> = OnceLock::new();
    STORED.get_or_init(Default::default)
}

/// The shared entry of secret `id`, created (not yet read) on first use.
fn stored(id: &str, var: &str, policy: RefreshPolicy) -> Arc<Stored> {
    let mut all = stored_secrets().lock().expect("secret cache");
    all.entry(id.to_owned())
        .or_insert_with(|| {
            let (read_id, read_var) = (id.to_owned(), var.to_owned());
            let read: Reader = Arc::new(move || {
                let (id, var) = (read_id.clone(), read_var.clone());
                Box::pin(async move { fetch(&id, &var).await })
            });
            Arc::new(Stored::new(id.to_owned(), var.to_owned(), policy, read))
        })
        .clone()
}

/// A credential that knows where it came from: an environment variable (fixed for the life of
/// the process) or a field of a Secrets Manager secret, re-read after the TTL and after the
/// service refused it. Cheap to clone; clones share the value. Every client that sends a key
/// holds one and sends through [`call`](Self::call).
///
/// ```
/// use lambda_kit::secrets::{Credential, Refreshed, Secret};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let key = Credential::fixed("API_KEY", Secret::new("k1"));
/// assert_eq!(key.current().await.expose(), "k1");
/// // An environment variable cannot be re-read.
/// assert_eq!(key.refresh_after_auth_failure(&Secret::new("k1")).await, Refreshed::Fixed);
/// # }
/// ```
#[derive(Clone)]
pub struct Credential(Arc<Source>);

enum Source {
    Fixed {
        var: String,
        value: Secret,
    },
    Stored {
        stored: Arc<Stored>,
        field: String,
        /// The field's value, and the version of the secret it was taken from.
        last: Mutex<(u64, Secret)>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credential");
        match &*self.0 {
            Source::Fixed { var, .. } => d.field("var", var),
            Source::Stored { stored, field, .. } => d
                .field("secret_id", &stored.id)
                .field("var", &stored.var)
                .field("field", field),
        };
        d.finish_non_exhaustive()
    }
}

impl Credential {
    /// A value that is never re-read (from the environment variable `var`, or a test).
    pub fn fixed(var: impl Into<String>, value: Secret) -> Self {
        Self(Arc::new(Source::Fixed {
            var: var.into(),
            value,
        }))
    }

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

    /// A credential read by `read` instead of Secrets Manager (as secret `secret_id`, named by
    /// `var`; `field` of a JSON value), read now: lets tests rotate a key under a warm client.
    #[cfg(any(test, feature = "testing"))]
    pub async fn from_reader<F, Fut>(
        secret_id: &str,
        var: &str,
        field: &str,
        policy: RefreshPolicy,
        read: F,
    ) -> Result<Self, SecretError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Secret>, SecretError>> + Send + 'static,
    {
        let read: Reader = Arc::new(move || Box::pin(read()));
        let stored = Stored::new(secret_id.to_owned(), var.to_owned(), policy, read);
        Self::of_stored(Arc::new(stored), field).await
    }

    /// Another field of the same Secrets Manager secret (a user name beside a password): one
    /// read serves both, and re-reading one re-reads the other. `None` for a value from the
    /// environment.
    pub async fn other_field(&self, field: &str) -> Option<Result<Self, SecretError>> {
        match &*self.0 {
            Source::Fixed { .. } => None,
            Source::Stored { stored, .. } => Some(Self::of_stored(stored.clone(), field).await),
        }
    }

    /// The credential of `field` of `stored`, read now.
    async fn of_stored(stored: Arc<Stored>, field: &str) -> Result<Self, SecretError> {
        let (version, raw) = stored.current().await?;
        let value = extract(raw.expose(), field).map_err(|p| stored.unusable(&p))?;
        Ok(Self(Arc::new(Source::Stored {
            stored,
            field: field.to_owned(),
            last: Mutex::new((version, Secret::new(value))),
        })))
    }

    /// The value to send now: re-read first when a Secrets Manager value is older than the TTL.
    /// A failed re-read, or a new value without the field, keeps the value held (with a
    /// warning): a request with it may still succeed, and a refusal forces a re-read anyway.
    pub async fn current(&self) -> Secret {
        match &*self.0 {
            Source::Fixed { value, .. } => value.clone(),
            Source::Stored {
                stored,
                field,
                last,
            } => {
                let held = last.lock().expect("credential").clone();
                match stored.current().await {
                    Ok((version, raw)) if version != held.0 => {
                        self.take(version, &raw, field, last).unwrap_or(held.1)
                    }
                    _ => held.1,
                }
            }
        }
    }

    /// `field` of `raw` (version `version`) becomes the value held; `None` (with a warning)
    /// when the field cannot be had.
    fn take(
        &self,
        version: u64,
        raw: &Secret,
        field: &str,
        last: &Mutex<(u64, Secret)>,
    ) -> Option<Secret> {
        match extract(raw.expose(), field) {
            Ok(value) => {
                let value = Secret::new(value);
                *last.lock().expect("credential") = (version, value.clone());
                Some(value)
            }
            Err(problem) => {
                tracing::warn!(secret_id = %self.secret_id().unwrap_or_default(), error_code = "secret_unusable", problem, "secret re-read without a usable value; the value held is used");
                None
            }
        }
    }

    /// After the service refused `rejected` (401/403): re-reads the secret, at most once per
    /// [`RefreshPolicy::min_forced_interval`] per secret, and says what it found. A value other
    /// than `rejected` that another request already brought counts as [`Refreshed::Changed`]
    /// without a read.
    pub async fn refresh_after_auth_failure(&self, rejected: &Secret) -> Refreshed {
        let Source::Stored {
            stored,
            field,
            last,
        } = &*self.0
        else {
            return Refreshed::Fixed;
        };
        let (version, held) = last.lock().expect("credential").clone();
        if held != *rejected {
            return Refreshed::Changed(held);
        }
        let outcome = match stored.refresh(version).await {
            Ok(Refreshed::Changed(raw)) => {
                let version = stored.snapshot().0;
                match extract(raw.expose(), field) {
                    Ok(value) if value == rejected.expose() => Refreshed::Unchanged,
                    Ok(_) => match self.take(version, &raw, field, last) {
                        Some(value) => Refreshed::Changed(value),
                        None => Refreshed::Unchanged,
                    },
                    Err(problem) => Refreshed::Failed(stored.unusable(&problem)),
                }
            }
            Ok(other) => other,
            Err(e) => Refreshed::Failed(e),
        };
        tracing::info!(secret_id = %stored.id, var = %stored.var, outcome = outcome.label(), "credential refused; secret re-read");
        outcome
    }

    /// The Secrets Manager id, when the value comes from one.
    pub fn secret_id(&self) -> Option<String> {
        match &*self.0 {
            Source::Fixed { .. } => None,
            Source::Stored { stored, .. } => Some(stored.id.clone()),
        }
    }

    /// The variable to fix when the value is refused.
    pub fn var(&self) -> &str {
        match &*self.0 {
            Source::Fixed { var, .. } => var,
            Source::Stored { stored, .. } => &stored.var,
        }
    }

    /// Where the value comes from, for messages (never the value): "the credential in
    /// `VAR`", or "the credential from Secrets Manager secret `ID` (`VAR`)".
    ///
    /// ```
    /// use lambda_kit::secrets::{Credential, Secret};
    /// let key = Credential::fixed("API_KEY", Secret::new("k1"));
    /// assert_eq!(key.source(), "the credential in API_KEY");
    /// ```
    pub fn source(&self) -> String {
        let var = self.var();
        match self.secret_id() {
            Some(id) => format!("the credential from Secrets Manager secret {id} ({var})"),
            None => format!("the credential in {var}"),
        }
    }

    /// The value held now, without the re-read [`current`](Self::current) makes after the TTL:
    /// for checks at construction, on the value just read.
    pub fn held(&self) -> Secret {
        match &*self.0 {
            Source::Fixed { value, .. } => value.clone(),
            Source::Stored { last, .. } => last.lock().expect("credential").1.clone(),
        }
    }

    /// Why a refusal of this credential is the environment's: what was tried and which setting
    /// to fix (never the value). `refreshed` is what the re-read found, `retried_refused` whether
    /// the new value was refused too.
    pub fn refusal_note(&self, refreshed: &Refreshed, retried_refused: bool) -> String {
        let var = self.var();
        let source = self.source();
        match refreshed {
            Refreshed::Fixed => format!("{source} was refused: set a valid one in {var}"),
            Refreshed::Changed(_) if retried_refused => format!(
                "{source} was refused, and so was the new value re-read from it: store a valid one in the secret named by {var}"
            ),
            Refreshed::Changed(_) => {
                format!("{source} was refused; re-read, a new value was found")
            }
            Refreshed::Unchanged => format!(
                "{source} was refused, and re-reading the secret gave the same value: store a valid one in the secret named by {var}"
            ),
            Refreshed::RateLimited => {
                let interval = match &*self.0 {
                    Source::Stored { stored, .. } => stored.policy.min_forced_interval,
                    Source::Fixed { .. } => MIN_FORCED_REFRESH_INTERVAL,
                };
                format!(
                    "{source} was refused; the secret was re-read less than {} s ago and is not read again yet: store a valid one in the secret named by {var}",
                    interval.as_secs()
                )
            }
            Refreshed::Failed(e) => {
                format!("{source} was refused, and re-reading the secret failed: {e}")
            }
        }
    }

    /// Runs `call` with the current value; when it fails with an error `refused` recognises
    /// (the service's 401/403), re-reads the secret ([`refresh_after_auth_failure`](Self::refresh_after_auth_failure))
    /// and, when a new value was found, runs `call` once more with it (the caller's deadline
    /// still applies inside `call`). A refusal that stands is returned through `explain`, with
    /// [`refusal_note`](Self::refusal_note) naming the setting to fix.
    ///
    /// ```
    /// use lambda_kit::secrets::{Credential, Secret};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let key = Credential::fixed("API_KEY", Secret::new("old"));
    /// let r: Result<(), String> = key
    ///     .call(|e: &String| e == "401", |e, note| format!("{e}: {note}"), |k| async move {
    ///         if k.expose() == "old" { Err("401".to_string()) } else { Ok(()) }
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap_err(), "401: the credential in API_KEY was refused: set a valid one in API_KEY");
    /// # }
    /// ```
    pub async fn call<T, E, F, Fut>(
        &self,
        refused: impl Fn(&E) -> bool,
        explain: impl FnOnce(E, String) -> E,
        mut call: F,
    ) -> Result<T, E>
    where
        F: FnMut(Secret) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = self.current().await;
        let first = match call(key.clone()).await {
            Err(e) if refused(&e) => e,
            other => return other,
        };
        let refreshed = self.refresh_after_auth_failure(&key).await;
        let Refreshed::Changed(new) = &refreshed else {
            return Err(explain(first, self.refusal_note(&refreshed, false)));
        };
        match call(new.clone()).await {
            Err(e) if refused(&e) => Err(explain(e, self.refusal_note(&refreshed, true))),
            other => other,
        }
    }
}

/// What a client makes of a credential's value (its auth headers, checked), made once per
/// value: again only when a re-read brings another one. A value that cannot be used fails where
/// it was read (the cold start, the re-read), with the client's error, not in every request's
/// path; the error is not kept (each use of that value says it again).
///
/// ```
/// use lambda_kit::secrets::{PerValue, Secret};
/// let made = PerValue::default();
/// let header = |k: &Secret| Ok::<_, ()>(format!("Bearer {}", k.expose()));
/// assert_eq!(made.get(&Secret::new("k1"), header).unwrap(), "Bearer k1");
/// // The same value: made earlier, not again.
/// assert_eq!(made.get(&Secret::new("k1"), |_| Err(())).unwrap(), "Bearer k1");
/// assert!(made.get(&Secret::new("k2"), |_| Err::<String, _>(())).is_err());
/// ```
pub struct PerValue<T>(Mutex<Option<(Secret, T)>>);

impl<T> Default for PerValue<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> fmt::Debug for PerValue<T> {
    // The value made may be a header holding the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PerValue([REDACTED])")
    }
}

impl<T: Clone> PerValue<T> {
    /// What `make` made of `value`, made now unless it was made of this value last.
    pub fn get<E>(
        &self,
        value: &Secret,
        make: impl FnOnce(&Secret) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some((held, made)) = &*self.0.lock().expect("per value")
            && held == value
        {
            return Ok(made.clone());
        }
        let made = make(value)?;
        *self.0.lock().expect("per value") = Some((value.clone(), made.clone()));
        Ok(made)
    }
}

/// An error of a client that sends a [`Credential`]: whether it is the service's refusal of the
/// value sent (its 401/403), and how it carries the [`Credential::refusal_note`] naming the
/// setting to fix. [`crate::http::Sender::send_with_credential`] reads both.
///
/// ```
/// use lambda_kit::secrets::Refusal;
/// struct Status(u16, String);
/// impl Refusal for Status {
///     fn is_refusal(&self) -> bool {
///         matches!(self.0, 401 | 403)
///     }
///     fn with_note(self, note: String) -> Self {
///         Status(self.0, format!("{}; {note}", self.1))
///     }
/// }
/// assert!(Status(401, "no".into()).is_refusal());
/// ```
pub trait Refusal: Sized {
    /// Whether the service refused the credential (not the request).
    fn is_refusal(&self) -> bool;
    /// The error with `note` (what was tried, which setting to fix) added to its message.
    fn with_note(self, note: String) -> Self;
}

impl From<Secret> for Credential {
    /// A key given in code (tests, tools): never re-read.
    fn from(value: Secret) -> Self {
        Self::fixed("the key given to the client", value)
    }
}

impl Refreshed {
    fn label(&self) -> &'static str {
        match self {
            Self::Changed(_) => "changed",
            Self::Unchanged => "unchanged",
            Self::RateLimited => "rate_limited",
            Self::Fixed => "fixed",
            Self::Failed(_) => "failed",
        }
    }
}

impl Stored {
    fn unusable(&self, problem: &str) -> SecretError {
        SecretError::Unusable {
            secret_id: self.id.clone(),
            secret_id_var: self.var.clone(),
            problem: problem.to_owned(),
        }
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

/// The one Secrets Manager client of the process.
async fn client() -> &'static aws_sdk_secretsmanager::Client {
    static CLIENT: tokio::sync::OnceCell<aws_sdk_secretsmanager::Client> =
        tokio::sync::OnceCell::const_new();
    CLIENT
        .get_or_init(|| async {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            aws_sdk_secretsmanager::Client::new(&config)
        })
        .await
}

/// The string value of Secrets Manager secret `secret_id` (`None`: it has none).
async fn fetch(secret_id: &str, secret_id_var: &str) -> Result<Option<Secret>, SecretError> {
    let out = client()
        .await
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

    /// A secret whose value the test sets, counting reads; read through `policy`.
    struct Fake {
        value: Arc<Mutex<Result<String, ()>>>,
        reads: Arc<std::sync::atomic::AtomicUsize>,
        stored: Arc<Stored>,
    }

    impl Fake {
        fn new(value: &str, policy: RefreshPolicy) -> Self {
            let value = Arc::new(Mutex::new(Ok(value.to_owned())));
            let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (v, r) = (value.clone(), reads.clone());
            let read: Reader = Arc::new(move || {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let now = v.lock().unwrap().clone();
                Box::pin(async move {
                    now.map(|s| Some(Secret::new(s)))
                        .map_err(|()| SecretError::Fetch {
                            secret_id: "app/key".into(),
                            secret_id_var: "KEY_SECRET_ID".into(),
                            message: "unreachable".into(),
                            transient: true,
                        })
                })
            });
            let stored = Arc::new(Stored::new(
                "app/key".into(),
                "KEY_SECRET_ID".into(),
                policy,
                read,
            ));
            Self {
                value,
                reads,
                stored,
            }
        }
        fn set(&self, value: Result<&str, ()>) {
            *self.value.lock().unwrap() = value.map(str::to_owned);
        }
        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
        async fn credential(&self, field: &str) -> Credential {
            Credential::of_stored(self.stored.clone(), field)
                .await
                .unwrap()
        }
    }

    fn policy(ttl: Option<u64>) -> RefreshPolicy {
        RefreshPolicy {
            ttl: ttl.map(Duration::from_secs),
            ..RefreshPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_is_re_read_on_its_first_use_after_the_ttl() {
        let fake = Fake::new("key-a", policy(Some(300)));
        let key = fake.credential("key").await;
        assert_eq!(fake.reads(), 1);
        fake.set(Ok("key-b"));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(key.current().await.expose(), "key-a", "within the TTL");
        assert_eq!(fake.reads(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(key.current().await.expose(), "key-b", "past the TTL");
        assert_eq!(fake.reads(), 2);
        assert_eq!(key.current().await.expose(), "key-b");
        assert_eq!(fake.reads(), 2, "the new value starts a new TTL");

        // A failed re-read keeps the value held, and is tried again one TTL later.
        fake.set(Err(()));
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(key.current().await.expose(), "key-b");
        assert_eq!(key.current().await.expose(), "key-b");
        assert_eq!(fake.reads(), 3);
        fake.set(Ok("key-c"));
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(key.current().await.expose(), "key-c");
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_zero_never_re_reads_on_a_timer() {
        let p = RefreshPolicy::from_env(&Env::from_pairs([("SECRETS_TTL_SECONDS", "0")])).unwrap();
        let fake = Fake::new("key-a", p);
        let key = fake.credential("key").await;
        fake.set(Ok("key-b"));
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(key.current().await.expose(), "key-a");
        assert_eq!(fake.reads(), 1);
        // A refusal still re-reads it.
        let refreshed = key.refresh_after_auth_failure(&Secret::new("key-a")).await;
        assert_eq!(refreshed, Refreshed::Changed(Secret::new("key-b")));
        let e =
            RefreshPolicy::from_env(&Env::from_pairs([("SECRETS_TTL_SECONDS", "-1")])).unwrap_err();
        assert_eq!(e.var, "SECRETS_TTL_SECONDS");
    }

    #[tokio::test(start_paused = true)]
    async fn forced_re_reads_are_rate_limited_per_secret() {
        let fake = Fake::new(r#"{"username":"u","password":"pw-a"}"#, policy(None));
        let password = fake.credential("password").await;
        let user = fake.credential("username").await;
        assert_eq!(fake.reads(), 1, "two fields of one secret: one read");
        let refused = password.current().await;

        // Refused, the secret unchanged: one read, then none for the next 30 s.
        assert_eq!(
            password.refresh_after_auth_failure(&refused).await,
            Refreshed::Unchanged
        );
        assert_eq!(fake.reads(), 2);
        for _ in 0..100 {
            assert_eq!(
                password.refresh_after_auth_failure(&refused).await,
                Refreshed::RateLimited
            );
        }
        // The limit is per secret, whichever field was refused.
        let u = user.current().await;
        assert_eq!(
            user.refresh_after_auth_failure(&u).await,
            Refreshed::RateLimited
        );
        assert_eq!(
            fake.reads(),
            2,
            "a wrong key does not hammer Secrets Manager"
        );

        fake.set(Ok(r#"{"username":"u","password":"pw-b"}"#));
        tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(
            password.refresh_after_auth_failure(&refused).await,
            Refreshed::RateLimited
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            password.refresh_after_auth_failure(&refused).await,
            Refreshed::Changed(Secret::new("pw-b"))
        );
        assert_eq!(fake.reads(), 3);
        // Another request refused with the old value meanwhile gets the new one without a read.
        assert_eq!(
            password.refresh_after_auth_failure(&refused).await,
            Refreshed::Changed(Secret::new("pw-b"))
        );
        assert_eq!(password.current().await.expose(), "pw-b");
        assert_eq!(user.current().await.expose(), "u");
        assert_eq!(fake.reads(), 3);

        // A re-read that fails is said so, naming the secret and its variable.
        fake.set(Err(()));
        tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL).await;
        let now = password.current().await;
        let refreshed = password.refresh_after_auth_failure(&now).await;
        assert!(matches!(refreshed, Refreshed::Failed(_)), "{refreshed:?}");
        let note = password.refusal_note(&refreshed, false);
        assert!(
            note.contains("app/key") && note.contains("KEY_SECRET_ID"),
            "{note}"
        );
        assert!(!note.contains("pw-"), "{note}");
    }

    #[tokio::test(start_paused = true)]
    async fn call_retries_once_with_the_re_read_value() {
        let fake = Fake::new("key-a", policy(None));
        let key = fake.credential("key").await;
        fake.set(Ok("key-b"));
        let sent = Mutex::new(Vec::new());
        let accept_b = |k: Secret| {
            sent.lock().unwrap().push(k.expose().to_owned());
            async move {
                match k.expose() {
                    "key-b" => Ok("stored"),
                    _ => Err(401),
                }
            }
        };
        let r = key.call(|s| *s == 401, |s, _| s, accept_b).await;
        assert_eq!(r, Ok("stored"));
        assert_eq!(*sent.lock().unwrap(), ["key-a", "key-b"]);

        // Both refused: the error names the variable; no third attempt.
        sent.lock().unwrap().clear();
        fake.set(Ok("key-c"));
        tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL).await;
        let refuse_all = |k: Secret| {
            sent.lock().unwrap().push(k.expose().to_owned());
            async move { Err::<(), String>("403".into()) }
        };
        let r = key.call(|s| s == "403", |_, note| note, refuse_all).await;
        let note = r.unwrap_err();
        assert!(
            note.contains("so was the new value") && note.contains("KEY_SECRET_ID"),
            "{note}"
        );
        assert_eq!(*sent.lock().unwrap(), ["key-b", "key-c"]);

        // Other errors are not retried.
        let calls = Mutex::new(0);
        let r: Result<(), u16> = key
            .call(
                |s| *s == 401,
                |s, _| s,
                |_| {
                    *calls.lock().unwrap() += 1;
                    async { Err(500) }
                },
            )
            .await;
        assert_eq!((r, *calls.lock().unwrap()), (Err(500), 1));
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
