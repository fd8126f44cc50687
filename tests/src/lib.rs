//! Helpers shared by the integration tests.
//!
//! The test servers are ours, on one serve loop ([`servers::serve`]), rather than `wiremock` (0.6.5, last
//! released 2025-08-24; its tree is 87 crates, 4 of them new to the workspace: `wiremock`,
//! `deadpool`, `deadpool-runtime`, `assert-json-diff`; measured 2026-12-07 with `cargo tree -e
//! normal`). wiremock can answer what most of these servers answer (a status with headers such as 429 and
//! `Retry-After`, a JSON body, a delay before the answer, a connection reset through
//! `respond_with_err`, state kept by a custom `Respond`), but not these, which the tests need:
//! - a body that never ends ([`servers::endless`]: HTTP/1.1 without a length, a JSON prefix, then
//!   `0.125,` for as long as the client reads, counting bytes written and hang-ups): its answer
//!   is one finished body in memory (`Full<Bytes>`), and `set_delay` only delays the whole answer;
//! - an answer that awaits other work ([`servers::lambda_invoke`] runs a real function binary per
//!   `Invoke`): `Respond::respond` is a synchronous `fn(&Request) -> ResponseTemplate`;
//! - passing requests through to the real API after the scripted faults ([`servers::fault_proxy`] in
//!   front of PostgREST): it has no forwarding;
//! - TCP below HTTP ([`servers::tcp_gate`]: connection refused, open connections cut, the API brought back
//!   on the same port, a round-trip delay): it only speaks HTTP.
//!
//! Taking it for the rest would leave two server stacks in the tests instead of one.

// Loopback servers speaking the documented protocols of what cannot run here (embedding APIs,
// Qdrant, Stargate, a schema registry, Lambda's Invoke API, a RAG hook), and the network faults
// (an endless body, a fault-injecting proxy, a TCP gate).
pub mod servers;

// Batches, handlers wired as `main` wires them, and readers of what a run stored.
pub mod fixtures;

// The local stack's environment and SQL; real Kafka end to end (the broker, the function
// binaries, an in-process esm-local runner).
pub mod esm;
pub mod stack;

// A program run to its end: its stdout, or a failure with its stderr.
pub mod command;

// Log lines captured from a thread-local tracing subscriber.
pub mod logs;

// Test code's one way to a loopback listener or a port nothing listens on.
pub use lambda_kit::testing::{async_listener, listener, unused_port};
