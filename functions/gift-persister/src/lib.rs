//! gift-persister: stores gift events from Kafka (`gift_events`) in the gifts table through
//! PostgREST, idempotently and in bulk, dead-lettering what can never be stored.
//!
//! - [`config`]: settings read once at cold start.
//! - [`gift`]: validation and the row of one gift.
//! - [`store`]: the [`GiftStore`](store::GiftStore) trait and its PostgREST implementation.
//! - [`handler`]: its decode and write for lambda-kit's batch runner (which groups, dead-letters,
//!   answers with the partial batch response, logs and counts).

pub mod config;
pub mod gift;
pub mod handler;
pub mod store;

#[cfg(test)]
mod tests;
