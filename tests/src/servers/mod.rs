//! Servers on 127.0.0.1 that the tests point the functions at: each speaks the documented
//! protocol of a service that cannot run here, error cases included, or puts a fault between a
//! function and a real service.

// The serve loop and the request/reply server the protocol servers are written on.
pub mod http;
pub mod serve;

// page-embedder's outside world: Ollama / OpenAI embedding APIs, the RAG refresh hook, and an
// answer that never ends (bounded reading of responses).
pub mod embedding;
pub mod endless;
pub mod rag;

// Vector stores: Qdrant and Stargate REST APIs.
pub mod qdrant;
pub mod stargate;

// A Confluent-compatible schema registry (documented REST API).
pub mod schema_registry;

// `kl dead-letters replay --aws-function`: Lambda's Invoke API running a real binary.
pub mod lambda_invoke;

// Faults in front of the real API: scripted HTTP answers, and a TCP outage or round trip.
pub mod fault_proxy;
pub mod tcp_gate;
