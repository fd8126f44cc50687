//! A small pure-Rust Kafka client: just what an event source mapping needs (metadata, fetch,
//! produce, list offsets, committed group offsets), over the `kafka-protocol` wire messages.
//!
//! Consumer groups are "simple" groups: offsets live in the broker under the group id
//! (FindCoordinator + OffsetFetch/OffsetCommit with generation -1), and this one runner is
//! statically assigned every partition of its topics. There is no JoinGroup/SyncGroup
//! rebalancing, so run one `esm-local` per group.

mod client;
mod conn;
mod group;
mod inflate;

pub use client::{FetchedPartition, KafkaClient, OffsetSpec, ProduceRecord, TopicPartition};
pub use conn::BrokerConnection;
pub use kafka_protocol::records::Record;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::TimestampType;

/// A record as a plain producer writes it (no transaction, no producer id, creation time), for
/// building ESM events from records that come from elsewhere (kl's dead letters, tests).
pub fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: IndexMap<StrBytes, Option<Bytes>>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value,
        headers,
    }
}

/// Wire versions this client speaks (all non-flexible, all still served by Kafka 4.x).
pub(crate) const VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Metadata, 4),
    (ApiKey::Produce, 3),
    (ApiKey::Fetch, 4),
    (ApiKey::ListOffsets, 1),
    (ApiKey::FindCoordinator, 1),
    (ApiKey::OffsetCommit, 2),
    (ApiKey::OffsetFetch, 1),
    (ApiKey::CreateTopics, 2),
];

/// Where to reach the cluster: plaintext only (local runs), neither SASL nor TLS.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port` seeds; the first that answers is used for metadata.
    pub bootstrap_servers: Vec<String>,
}

impl KafkaConfig {
    /// A plaintext connection to `bootstrap_servers` (`host:port` each).
    ///
    /// ```
    /// let c = esm_local::kafka::KafkaConfig::new(vec!["127.0.0.1:9092".into()]);
    /// assert_eq!(c.bootstrap_servers, ["127.0.0.1:9092"]);
    /// ```
    pub fn new(bootstrap_servers: Vec<String>) -> Self {
        Self { bootstrap_servers }
    }
}

/// Errors of the Kafka client, classified where they are created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// No TCP connection to a broker.
    #[error("cannot connect to Kafka broker {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The connection broke mid-request.
    #[error("I/O error talking to Kafka broker {addr}: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The broker answered a request with an error code.
    #[error("Kafka {api} failed: {error}")]
    Broker {
        /// Which request.
        api: &'static str,
        /// The broker's error.
        error: ResponseError,
    },
    /// A topic does not exist.
    #[error("Kafka topic `{0}` does not exist (create it first, e.g. `esm-local create-topic`)")]
    UnknownTopic(String),
    /// Malformed frame or a message we cannot encode/decode.
    #[error("Kafka protocol error: {0}")]
    Protocol(String),
    /// The broker does not speak an API version we need.
    #[error("Kafka broker does not support {0}")]
    Unsupported(String),
}

impl KafkaError {
    pub(crate) fn encode(e: impl std::fmt::Display) -> Self {
        Self::Protocol(format!("encode: {e}"))
    }
    pub(crate) fn decode(e: impl std::fmt::Display) -> Self {
        Self::Protocol(format!("decode: {e}"))
    }

    /// Whether retrying later can succeed (network, leader moves, coordinator loading).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Io { .. } => true,
            Self::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// Low-cardinality code for logs and metrics.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "kafka_connect",
            Self::Io { .. } => "kafka_io",
            Self::Broker { .. } => "kafka_broker_error",
            Self::UnknownTopic(_) => "kafka_unknown_topic",
            Self::Protocol(_) => "kafka_protocol",
            Self::Unsupported(_) => "kafka_unsupported",
        }
    }

    /// The broker's error when this is one.
    pub fn broker_error(&self) -> Option<ResponseError> {
        match self {
            Self::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// Turns a response error code into a `Result`.
pub(crate) fn check(code: i16, api: &'static str) -> Result<(), KafkaError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(KafkaError::Broker { api, error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(check(6, "Fetch").unwrap_err().is_transient()); // NOT_LEADER_OR_FOLLOWER
        assert!(!check(1, "Fetch").unwrap_err().is_transient()); // OFFSET_OUT_OF_RANGE
        assert!(check(0, "Fetch").is_ok());
    }
}
