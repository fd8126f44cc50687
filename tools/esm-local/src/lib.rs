//! `esm-local`: a local stand-in for Lambda's Kafka event source mapping.
//!
//! It polls a Kafka broker with a consumer group, builds batches the way the ESM does, drives
//! a real function binary through an emulated Lambda Runtime API, honours partial batch
//! responses, retries, dead-letters exhausted batches and commits offsets.

pub mod api;
pub mod cli;
pub mod dead_letter;
pub mod filter;
pub mod invoke;
pub mod kafka;
pub mod mapping;
pub mod on_failure;
pub mod payload;
pub mod publish;
pub mod runner;
pub mod template;
