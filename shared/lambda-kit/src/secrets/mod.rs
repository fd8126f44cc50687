//! Secrets (API keys) from a plain environment variable or from AWS Secrets Manager, never
//! logged. A [`Credential`] remembers where its value came from: a Secrets Manager value is
//! re-read after [`RefreshPolicy::ttl`] (`SECRETS_TTL_SECONDS`) and, rate-limited, after the
//! service refused it ([`Credential::call`]), so a key rotated while the function is warm is
//! picked up without a new execution environment.
//!
//! One concern a file: the [`Secret`] value (`secret.rs`), where it comes from and resolving it
//! (`spec.rs`), the [`Credential`] clients hold (`credential.rs`), when it is re-read
//! (`refresh.rs`), the process's Secrets Manager secrets (`stored.rs`) and how they are read
//! (`secrets_manager.rs`), what a client makes of each value (`per_value.rs`), errors
//! (`error.rs`).

mod credential;
mod error;
mod per_value;
mod refresh;
mod secret;
mod secrets_manager;
mod spec;
mod stored;

pub use credential::{Credential, Refusal};
pub use error::SecretError;
pub use per_value::PerValue;
pub use refresh::{DEFAULT_TTL, MIN_FORCED_REFRESH_INTERVAL, RefreshPolicy, Refreshed};
pub use secret::Secret;
pub use spec::{SecretSpec, resolve};

#[cfg(test)]
mod tests;
