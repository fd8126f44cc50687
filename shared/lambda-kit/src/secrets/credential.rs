//! [`Credential`]: a value that knows where it came from, re-read after the TTL and after the
//! service refused it, and the [`Refusal`] its clients' errors describe.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::error::SecretError;
use super::refresh::{MIN_FORCED_REFRESH_INTERVAL, Refreshed};
use super::secret::Secret;
use super::secrets_manager::extract;
use super::stored::Stored;
// Only the test reader builds its own secret.
#[cfg(any(test, feature = "testing"))]
use super::{refresh::RefreshPolicy, stored::Reader};

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
    pub(super) async fn of_stored(stored: Arc<Stored>, field: &str) -> Result<Self, SecretError> {
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
    /// [`RefreshPolicy::min_forced_interval`](super::RefreshPolicy::min_forced_interval) per
    /// secret, and says what it found. A value other than `rejected` that another request already
    /// brought counts as [`Refreshed::Changed`] without a read.
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

impl From<Secret> for Credential {
    /// A key given in code (tests, tools): never re-read.
    fn from(value: Secret) -> Self {
        Self::fixed("the key given to the client", value)
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
