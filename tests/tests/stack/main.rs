//! Integration and end-to-end tests against the real local stack (`scripts/local-stack`,
//! `scripts/kafka-broker`), one module per area.
//!
//! They share one test binary on purpose: every linked test binary carries the AWS SDK, candle and
//! the Kafka client, so six binaries cost six links and six copies on disk. Every test uses its
//! own ids, so the modules run in parallel against one database and one broker. The log-capture
//! test (`gift_log_secrets`) keeps a binary of its own: it installs a tracing subscriber, which
//! must not race with other tests.

// The function handlers nest deep futures (runner, PostgREST client, credential refresh).
#![recursion_limit = "256"]

mod acknowledged;
mod avro_values;
mod esm_e2e;
mod esm_mapping;
mod gift_persister;
mod gift_publisher;
mod gift_secrets;
mod glue;
mod observability;
mod pages_pipeline;
mod protobuf;
mod query;
mod reembed;
mod replay;
mod runtime_layer;
mod stores_qdrant_stargate;
mod table_sink;
