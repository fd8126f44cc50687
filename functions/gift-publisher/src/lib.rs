//! gift-publisher: the producing half of the old Faust API. `POST /vault/save` (a Lambda Function
//! URL or an API Gateway HTTP API) validates a gift with gift-persister's own rules, stamps `ts`
//! and `event_id`, publishes it to the gift topic keyed by page, and answers `202` only once the
//! broker acknowledged it.
//!
//! - [`config`]: settings read once at cold start.
//! - [`http`]: the payload format 2.0 request and response.
//! - [`idempotency`]: `Idempotency-Key`s scoped to the caller.
//! - [`handler`]: the request rules and answers.
//! - [`kafka`]: the producer (one connection per execution environment).
//! - [`partition`]: the Java-compatible key partitioner.
//! - [`msk_iam`]: the MSK IAM SASL token.

pub mod config;
pub mod handler;
pub mod http;
pub mod idempotency;
pub mod kafka;
pub mod msk_iam;
pub mod partition;

#[cfg(test)]
mod tests;
