//! What a failed cold start returns: [`InitError`], the one error of every function's
//! `Config::load` / `Config::build`, wrapping a bad setting ([`config`](crate::config)), a
//! secret that could not be resolved ([`secrets`](crate::secrets)) or a client that could not be
//! built. It sits above both so that neither of them depends on the other's errors; each client
//! module converts its own build error into it (`From<PostgrestError>` lives in
//! [`postgrest`](crate::postgrest)).

use crate::config::ConfigError;
use crate::secrets::SecretError;

/// A failed cold start: what `Config::load` / `Config::build` of a function return. The
/// message names the variable, the secret or the client at fault.
///
/// ```
/// use lambda_kit::{config::ConfigError, init::InitError};
/// let e: InitError = ConfigError::new("GIFTS_TABLE", "must not be empty").into();
/// assert_eq!(e.to_string(), "invalid configuration GIFTS_TABLE: must not be empty");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A bad setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key could not be resolved.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A client could not be built.
    #[error("{0}")]
    Client(String),
}
