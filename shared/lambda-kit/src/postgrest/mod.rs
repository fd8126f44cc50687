//! A small PostgREST client: bulk upserts of pre-serialized JSON, selects and deletes with
//! filters, errors parsed from PostgREST's error JSON and classified for retries and dead letters.
//!
//! Built once in `main` and borrowed by handlers. Every call retries transient faults with the
//! client's [`RetryPolicy`](crate::retry::RetryPolicy) and never runs past the
//! [`Deadline`](crate::retry::Deadline) it is given.
//!
//! - `key`: Supabase key kinds ([`KeyKind`]), [`resolve_key`] and the headers a key is sent in.
//! - `config`: [`PostgrestConfig`], read from the environment.
//! - `query`: [`Filter`] and [`Upsert`], how a request names rows.
//! - `error`: [`PostgrestError`] and its classification.
//! - `client`: [`PostgrestClient`], the calls.

mod client;
mod config;
mod error;
mod key;
mod query;
#[cfg(test)]
mod test_support;

pub use crate::secrets::Secret;
pub use client::{MAX_ANSWER, MAX_SELECT_ALL_ROWS, PostgrestClient, READ_PAGE_ROWS};
pub use config::PostgrestConfig;
pub use error::PostgrestError;
pub use key::{KEY_VARS, KeyKind, resolve_key};
pub use query::{Duplicates, Filter, MAX_IN_LIST_BYTES, Upsert};
