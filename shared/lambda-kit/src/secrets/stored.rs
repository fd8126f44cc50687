//! One Secrets Manager secret per id for the whole process: its raw value, the version bumped by
//! each new value, when it was read, and the one read at a time that every field of it shares.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::time::Instant;

use super::error::SecretError;
use super::refresh::{RefreshPolicy, Refreshed};
use super::secret::Secret;
use super::secrets_manager::fetch;
use crate::error::Classify;

/// One read of a Secrets Manager secret: its string value (`None`: it has none).
type ReadFuture = Pin<Box<dyn Future<Output = Result<Option<Secret>, SecretError>> + Send>>;
/// How a secret is read (Secrets Manager; a fake in tests).
pub(super) type Reader = Arc<dyn Fn() -> ReadFuture + Send + Sync>;

/// One Secrets Manager secret, shared by every [`Credential`] reading a field of it (a user name
/// and a password cost one call, and refreshing one refreshes both).
pub(super) struct Stored {
    pub(super) id: String,
    /// The variable naming it.
    pub(super) var: String,
    pub(super) policy: RefreshPolicy,
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

impl Stored {
    pub(super) fn new(id: String, var: String, policy: RefreshPolicy, read: Reader) -> Self {
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

    pub(super) fn snapshot(&self) -> (u64, Secret) {
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
    pub(super) async fn current(&self) -> Result<(u64, Secret), SecretError> {
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
    pub(super) async fn refresh(&self, version: u64) -> Result<Refreshed, SecretError> {
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
pub(super) fn stored(id: &str, var: &str, policy: RefreshPolicy) -> Arc<Stored> {
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

impl Stored {
    pub(super) fn unusable(&self, problem: &str) -> SecretError {
        SecretError::Unusable {
            secret_id: self.id.clone(),
            secret_id_var: self.var.clone(),
            problem: problem.to_owned(),
        }
    }
}
