//! table-sink: upserts the JSON rows of one Kafka topic into one Supabase table through
//! PostgREST, configured by environment variables only (no code per table).
//!
//! - [`config`]: settings read once at cold start.
//! - [`row`]: a record as a row: a JSON object, its allow-listed fields, its key.
//! - [`store`]: the [`RowStore`](store::RowStore) trait and its PostgREST implementation.
//! - [`handler`]: decode -> one row per key -> write, on the shared runner.
//! - `fixtures` (`testing` feature): what the sample events must give.

pub mod config;
pub mod handler;
pub mod row;
pub mod store;

#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
#[cfg(test)]
mod tests;
