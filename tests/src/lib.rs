//! Helpers shared by the integration tests.

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
