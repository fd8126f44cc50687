//! Helpers shared by the integration tests.
//!
//! The fake servers are ours, on one serve loop ([`serve`]), rather than `wiremock` (0.6.5, last
//! released 2025-08-24; its tree is 87 crates, 4 of them new to the workspace: `wiremock`,
//! `deadpool`, `deadpool-runtime`, `assert-json-diff`; measured 2026-12-07 with `cargo tree -e
//! normal`). wiremock can answer what most fakes answer (a status with headers such as 429 and
//! `Retry-After`, a JSON body, a delay before the answer, a connection reset through
//! `respond_with_err`, state kept by a custom `Respond`), but not these, which the tests need:
//! - a body that never ends ([`endless`]: HTTP/1.1 without a length, a JSON prefix, then
//!   `0.125,` for as long as the client reads, counting bytes written and hang-ups): its answer
//!   is one finished body in memory (`Full<Bytes>`), and `set_delay` only delays the whole answer;
//! - an answer that awaits other work ([`fake_lambda`] runs a real function binary per
//!   `Invoke`): `Respond::respond` is a synchronous `fn(&Request) -> ResponseTemplate`;
//! - passing requests through to the real API after the scripted faults ([`fault_proxy`] in
//!   front of PostgREST): it has no forwarding;
//! - TCP below HTTP ([`tcp_gate`]: connection refused, open connections cut, the API brought back
//!   on the same port, a round-trip delay): it only speaks HTTP.
//!
//! Taking it for the rest would leave two server stacks in the tests instead of one.

// page-embedder fakes (documented Ollama / OpenAI embedding APIs, RAG hook) and test helpers.
pub mod fake_embedder;
pub mod fake_http;
pub mod pages;
// An HTTP server whose answers never end (bounded reading of responses).
pub mod endless;

// Vector-store fakes (documented Qdrant and Stargate REST APIs) and their raw-path server.
pub mod fake_qdrant;
pub mod fake_rest;
pub mod fake_stargate;

// gift-persister tests: the stack's env and SQL, a fault-injecting proxy.
pub mod fault_proxy;
pub mod gifts;
pub mod stack;

// The loopback serve loop behind the fakes and the fault proxy.
pub mod serve;

// Real Kafka end to end: the runner, the function binaries, a private API outage.
pub mod esm;
// Avro values: a Confluent-compatible schema registry (documented REST API).
pub mod fake_schema_registry;
// Values from independent encoders and what the run stored.
pub mod encoded;
pub mod tcp_gate;

// `kl dead-letters replay --aws-function`: Lambda's Invoke API running a real binary.
pub mod fake_lambda;
