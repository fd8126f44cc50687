//! Shared plumbing of the functions: configuration, secrets, retries with deadlines, the
//! PostgREST client, dead letters and the chunked bulk-write machinery.
//!
//! - [`error`]: [`ErrorClass`](error::ErrorClass) (data, environment, transient) and the
//!   [`Classify`](error::Classify) trait.
//! - [`http`]: status / transport classification, `Retry-After`, safe error bodies.
//! - [`retry`]: [`RetryPolicy`](retry::RetryPolicy), [`Deadline`](retry::Deadline), [`retry`](retry::retry).
//! - [`postgrest`]: [`PostgrestClient`](postgrest::PostgrestClient), the PostgREST client.
//! - [`config`]: environment variables with errors naming the variable.
//! - [`init`]: [`InitError`](init::InitError), what a failed cold start returns.
//! - [`secrets`]: [`Secret`](secrets::Secret), API keys from the environment or AWS Secrets Manager.
//! - [`fate`]: [`Fate`](fate::Fate), what became of one record: the workspace's outcome
//!   vocabulary.
//! - [`runner`]: the batch lifecycle every function plugs into ([`BatchFunction`](runner::BatchFunction),
//!   [`Runner`](runner::Runner)).
//! - [`bulk`]: chunked bulk writes and [`bisect`](bulk::bisect), the one way bad inputs are
//!   isolated.
//! - [`dead_letter`]: [`DeadLetter`](dead_letter::DeadLetter) rows and the
//!   [`DeadLetterSink`](dead_letter::DeadLetterSink) trait with its PostgREST implementation.
//! - [`metrics`]: per-invocation CloudWatch Embedded Metric Format lines.
//! - [`schema_registry`]: writer schemas from a Confluent-compatible registry or the AWS Glue
//!   Schema Registry (`GetSchemaVersion`), cached per process, with their one
//!   [`RegistryError`](schema_registry::RegistryError), and the `VALUE_FORMAT` settings.
//! - `schema_cache` (crate-private): the per-process schema cache both registry clients share.
//! - [`trace`]: W3C trace context from record headers to logs and outbound requests.
//! - [`otlp`]: optional OpenTelemetry (OTLP/HTTP JSON) export of each batch's span.
//! - `testing` (`testing` feature): loopback listeners and free ports for tests.
//!
//! One crate, not three: the PostgREST client and the schema-registry clients could be crates of
//! their own, but gift-persister, page-embedder and table-sink each use both (and the runner, which
//! writes dead letters through PostgREST), and gift-publisher, which uses neither, carries none of
//! their code after thin LTO. A split would add manifests without shrinking any binary.

pub mod bulk;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod fate;
pub mod http;
#[cfg(any(test, feature = "testing"))]
pub mod in_flight;
pub mod init;
pub mod metrics;
pub mod otlp;
pub mod postgrest;
pub mod retry;
pub mod runner;
pub mod runtime;
mod schema_cache;
pub mod schema_registry;
pub mod secrets;
pub mod trace;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
