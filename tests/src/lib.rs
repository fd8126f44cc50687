//! Helpers shared by the integration tests.

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
