//! Shared plumbing of the functions: configuration, secrets, retries with deadlines, the
//! PostgREST client, dead letters and the chunked bulk-write machinery.
//!
//! - [`error`]: [`ErrorClass`](error::ErrorClass) and the [`Classify`](error::Classify) trait.
//! - [`http`]: status / transport classification, `Retry-After`, safe error bodies.
//! - [`retry`]: [`RetryPolicy`](retry::RetryPolicy), [`Deadline`](retry::Deadline), [`retry`](retry::retry).
//! - [`postgrest`]: [`PostgrestClient`](postgrest::PostgrestClient) and [`Secret`](postgrest::Secret).
//! - [`config`]: environment variables with errors naming the variable.

pub mod config;
pub mod error;
pub mod http;
pub mod postgrest;
pub mod retry;

#[cfg(test)]
mod testing;
