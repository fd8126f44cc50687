//! Helpers shared by the integration tests.

// Vector-store fakes (documented Qdrant and Stargate REST APIs) and their raw-path server.
pub mod fake_qdrant;
pub mod fake_rest;
pub mod fake_stargate;
