//! A small pure-Rust Kafka client: just what an event source mapping needs (metadata, fetch,
//! produce, list offsets, committed group offsets), over the `kafka-protocol` wire messages.
//!
//! Consumer groups are "simple" groups: offsets live in the broker under the group id
//! (FindCoordinator + OffsetFetch/OffsetCommit with generation -1), and this one runner is
//! statically assigned every partition of its topics. There is no JoinGroup/SyncGroup
//! rebalancing, so run one `esm-local` per group.

mod client;
mod conn;
mod sasl;

pub use client::{FetchedPartition, KafkaClient, OffsetSpec, ProduceRecord, TopicPartition};
pub use conn::BrokerConnection;
pub use kafka_protocol::records::Record;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

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

/// SASL mechanisms accepted by `--sasl-mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`: username and password in clear (use with TLS outside loopback).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512` (what MSK uses for SASL/SCRAM).
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism name as Kafka spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err(format!(
                "unknown SASL mechanism `{s}` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
            )),
        }
    }
}

/// SASL credentials. `Debug` never prints the password.
#[derive(Clone)]
pub struct Sasl {
    /// Mechanism to negotiate.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password (kept out of `Debug`).
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where to reach the cluster.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port` seeds; the first that answers is used for metadata.
    pub bootstrap_servers: Vec<String>,
    /// Optional SASL authentication (no TLS: for loopback and private brokers).
    pub sasl: Option<Sasl>,
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
    /// SASL failed.
    #[error("Kafka SASL: {0}")]
    Auth(String),
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
            Self::Auth(_) => "kafka_auth",
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
    fn sasl_debug_hides_password() {
        let s = Sasl {
            mechanism: SaslMechanism::Plain,
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn mechanism_names_parse() {
        assert_eq!(
            "plain".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::Plain
        );
        assert_eq!(
            "SCRAM_SHA_512".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::ScramSha512
        );
        assert!(
            "GSSAPI"
                .parse::<SaslMechanism>()
                .unwrap_err()
                .contains("GSSAPI")
        );
    }

    #[test]
    fn classification() {
        assert!(check(6, "Fetch").unwrap_err().is_transient()); // NOT_LEADER_OR_FOLLOWER
        assert!(!check(1, "Fetch").unwrap_err().is_transient()); // OFFSET_OUT_OF_RANGE
        assert!(check(0, "Fetch").is_ok());
    }
}
