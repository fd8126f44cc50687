//! The producer: one connection per execution environment, built on first use and rebuilt after
//! a failure, producing each gift with `acks=all` to the partition of its key.
//!
//! The client is [rskafka](https://docs.rs/rskafka): pure Rust, tokio, rustls, SASL
//! PLAIN/SCRAM/OAUTHBEARER. Its produce requests always ask for `acks=-1` (all in-sync
//! replicas), so an `Ok` means the broker has the record as durably as the topic promises.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_kit::secrets::{Credential, Secret};
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{
    Client, ClientBuilder, Credentials, OauthBearerCredentials, OauthCallback, SaslConfig,
};
use rskafka::record::Record;
use tokio::sync::Mutex;

use crate::partition::partition_for;

/// How the function authenticates to the brokers.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No SASL (local brokers, or TLS client certificates are not used).
    None,
    /// SASL/SCRAM (self-managed Kafka; MSK with SCRAM, which is SHA-512).
    Scram {
        /// SHA-512 (true) or SHA-256.
        sha512: bool,
        /// User name.
        username: Credential,
        /// Password; with the user name, re-read from its secret when the brokers refuse them.
        password: Credential,
    },
    /// MSK IAM (SASL/OAUTHBEARER with a SigV4-signed token); needs TLS.
    MskIam {
        /// The cluster's region.
        region: String,
    },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port`.
    pub bootstrap: Vec<String>,
    /// Topic gifts go to.
    pub topic: String,
    /// TLS: `None` for plaintext, else the client config (system roots or a custom CA).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL.
    pub auth: Auth,
    /// The longest one publish may take (connecting included) before the caller gets a 503.
    pub timeout: Duration,
}

/// A gift on its way to the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Record key (the page id), which picks the partition.
    pub key: Vec<u8>,
    /// Record value (the gift JSON).
    pub value: Vec<u8>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Record timestamp, ms since the epoch.
    pub timestamp_ms: i64,
}

/// Where the broker stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition the record's key hashed to.
    pub partition: i32,
    /// The offset the broker gave the record in that partition.
    pub offset: i64,
}

/// Why a record was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The broker or the connection failed, timed out, or is misconfigured (topic missing,
    /// authentication refused): the caller retries later (503).
    #[error("{0}")]
    Unavailable(String),
    /// The broker refused the record for its size (413).
    #[error("{0}")]
    TooLarge(String),
}

impl SendError {
    /// Low-cardinality code for logs and responses.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "broker_unavailable",
            Self::TooLarge(_) => "record_too_large",
        }
    }
}

/// Something that publishes records (the real producer; tests substitute their own).
pub trait Broker: Send + Sync {
    /// Publishes `record` and returns once the broker acknowledged it.
    fn send(&self, record: OutRecord) -> impl Future<Output = Result<Delivery, SendError>> + Send;
}

struct Connected {
    client: Client,
    partitions: i32,
    partition_clients: HashMap<i32, Arc<PartitionClient>>,
}

/// The Kafka producer of one execution environment.
pub struct KafkaBroker {
    settings: KafkaSettings,
    state: Mutex<Option<Connected>>,
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("bootstrap", &self.settings.bootstrap)
            .field("topic", &self.settings.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// A producer that connects on first use (a broker that is down at cold start makes the first
    /// requests answer 503, not the cold start fail).
    pub fn new(settings: KafkaSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(None),
        }
    }

    /// The SASL configuration; `password` is the SCRAM password to use (the caller's current
    /// or re-read one).
    async fn sasl(&self, password: Option<Secret>) -> Option<SaslConfig> {
        match &self.settings.auth {
            Auth::None => None,
            Auth::Scram {
                sha512,
                username,
                password: held,
            } => {
                let password = match password {
                    Some(p) => p,
                    None => held.current().await,
                };
                let username = username.current().await;
                let c =
                    Credentials::new(username.expose().to_owned(), password.expose().to_owned());
                Some(if *sha512 {
                    SaslConfig::ScramSha512(c)
                } else {
                    SaslConfig::ScramSha256(c)
                })
            }
            Auth::MskIam { region } => {
                let region = region.clone();
                let callback: OauthCallback = Arc::new(move || {
                    let region = region.clone();
                    Box::pin(async move {
                        // The SDK config (and its credentials cache) once per environment.
                        static SDK: tokio::sync::OnceCell<aws_config::SdkConfig> =
                            tokio::sync::OnceCell::const_new();
                        let config = SDK
                            .get_or_init(|| {
                                aws_config::load_defaults(aws_config::BehaviorVersion::latest())
                            })
                            .await;
                        let credentials = crate::msk_iam::current_credentials(config).await?;
                        Ok(crate::msk_iam::token(
                            &region,
                            &credentials,
                            std::time::SystemTime::now(),
                        )?)
                    })
                });
                Some(SaslConfig::Oauthbearer(OauthBearerCredentials {
                    callback,
                    authz_id: None,
                    bearer_kvs: vec![],
                }))
            }
        }
    }

    /// Connects; with SCRAM, a refused authentication re-reads the credentials from their secret
    /// ([`Credential::call`], at most once per 30 s) and connects once more with new ones.
    async fn connect(&self) -> Result<Connected, SendError> {
        let Auth::Scram { password, .. } = &self.settings.auth else {
            return self.connect_with(None).await.map_err(|f| f.error);
        };
        Box::pin(password.call(
            |f: &ConnectFailure| f.auth_refused,
            |f, note| ConnectFailure {
                error: SendError::Unavailable(format!("{}; {note}", f.error)),
                ..f
            },
            |password| self.connect_with(Some(password)),
        ))
        .await
        .map_err(|f| f.error)
    }

    async fn connect_with(&self, password: Option<Secret>) -> Result<Connected, ConnectFailure> {
        let s = &self.settings;
        let mut builder = ClientBuilder::new(s.bootstrap.clone())
            .client_id("gift-publisher")
            // rskafka retries retriable errors with backoff; bound that by our own timeout.
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
                deadline: Some(s.timeout),
            });
        if let Some(tls) = &s.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        if let Some(sasl) = self.sasl(password).await {
            builder = builder.sasl_config(sasl);
        }
        let client = builder.build().await.map_err(|e| ConnectFailure {
            auth_refused: is_auth_refusal(&e.to_string()),
            error: unavailable("connecting", &e),
        })?;
        let topics = client
            .list_topics()
            .await
            .map_err(|e| unavailable("reading metadata", &e))?;
        let partitions = topics
            .iter()
            .find(|t| t.name == s.topic)
            .map(|t| t.partitions.len() as i32)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                SendError::Unavailable(format!(
                    "topic {:?} does not exist on the brokers (GIFT_TOPIC)",
                    s.topic
                ))
            })?;
        Ok(Connected {
            client,
            partitions,
            partition_clients: HashMap::new(),
        })
    }

    /// The partition client for `key`, connecting first when needed.
    async fn partition_client(&self, key: &[u8]) -> Result<(i32, Arc<PartitionClient>), SendError> {
        let mut state = self.state.lock().await;
        if state.is_none() {
            *state = Some(self.connect().await?);
        }
        let connected = state.as_mut().expect("connected above");
        let partition = partition_for(key, connected.partitions);
        if let Some(pc) = connected.partition_clients.get(&partition) {
            return Ok((partition, Arc::clone(pc)));
        }
        let pc = Arc::new(
            connected
                .client
                .partition_client(
                    self.settings.topic.clone(),
                    partition,
                    UnknownTopicHandling::Error,
                )
                .await
                .map_err(|e| unavailable("finding the partition leader", &e))?,
        );
        connected
            .partition_clients
            .insert(partition, Arc::clone(&pc));
        Ok((partition, pc))
    }

    /// Connects now (at cold start), so the first request does not pay for it. A failure is
    /// returned for the caller to log; the next request tries again.
    pub async fn connect_now(&self) -> Result<(), SendError> {
        let mut state = self.state.lock().await;
        if state.is_none() {
            let connected = tokio::time::timeout(self.settings.timeout, self.connect())
                .await
                .map_err(|_| {
                    SendError::Unavailable(format!(
                        "no answer from the brokers within {} ms",
                        self.settings.timeout.as_millis()
                    ))
                })??;
            *state = Some(connected);
        }
        Ok(())
    }

    async fn reset(&self) {
        *self.state.lock().await = None;
    }

    async fn send_once(&self, record: OutRecord) -> Result<Delivery, SendError> {
        let (partition, pc) = self.partition_client(&record.key).await?;
        let timestamp = rskafka::chrono::DateTime::from_timestamp_millis(record.timestamp_ms)
            .unwrap_or_default();
        let out = Record {
            key: Some(record.key),
            value: Some(record.value),
            headers: record.headers.into_iter().collect(),
            timestamp,
        };
        let offsets = pc
            .produce(vec![out], Compression::NoCompression)
            .await
            .map_err(|e| classify(&e))?;
        let offset = *offsets
            .first()
            .ok_or_else(|| SendError::Unavailable("the broker returned no offset".into()))?;
        Ok(Delivery { partition, offset })
    }
}

impl Broker for KafkaBroker {
    async fn send(&self, record: OutRecord) -> Result<Delivery, SendError> {
        let result = match tokio::time::timeout(self.settings.timeout, self.send_once(record)).await
        {
            Ok(r) => r,
            Err(_) => Err(SendError::Unavailable(format!(
                "no acknowledgement from the brokers within {} ms",
                self.settings.timeout.as_millis()
            ))),
        };
        if matches!(result, Err(SendError::Unavailable(_))) {
            // Next request reconnects and re-reads metadata (leaders move, brokers come back).
            self.reset().await;
        }
        result
    }
}

/// A failed connection, and whether the brokers refused the SASL authentication.
#[derive(Debug)]
struct ConnectFailure {
    error: SendError,
    auth_refused: bool,
}

impl From<SendError> for ConnectFailure {
    fn from(error: SendError) -> Self {
        Self {
            error,
            auth_refused: false,
        }
    }
}

/// Whether rskafka's error text says the SASL exchange failed (its `SaslFailed` connection error,
/// "Sasl handshake failed: ...": the broker answered `SaslAuthenticationFailed`, or the SCRAM
/// exchange did not verify): the credentials, not the network.
fn is_auth_refusal(error_text: &str) -> bool {
    error_text.contains("Sasl handshake failed")
}

fn unavailable(what: &str, e: &ClientError) -> SendError {
    SendError::Unavailable(format!("{what}: {}", short(e)))
}

fn classify(e: &ClientError) -> SendError {
    match e {
        ClientError::ServerError {
            protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
            ..
        } => SendError::TooLarge(format!(
            "the broker refused the record as too large ({})",
            short(e)
        )),
        _ => unavailable("producing", e),
    }
}

/// The error without rskafka's request/response dumps (which may hold record contents).
fn short(e: &ClientError) -> String {
    match e {
        ClientError::ServerError {
            protocol_error,
            error_message,
            ..
        } => match error_message {
            Some(m) => format!("broker error {protocol_error}: {m}"),
            None => format!("broker error {protocol_error}"),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod auth_refusal_tests {
    use super::*;

    /// rskafka's texts for a refused SCRAM login (the broker's `SaslAuthenticationFailed`, error
    /// 58) and for other connection failures.
    #[test]
    fn only_a_failed_sasl_exchange_re_reads_the_credentials() {
        assert!(is_auth_refusal(
            "Connection error: Sasl handshake failed: API error: SaslAuthenticationFailed"
        ));
        assert!(!is_auth_refusal(
            "Connection error: all brokers failed: connection refused"
        ));
        assert!(!is_auth_refusal("broker error UnknownTopicOrPartition"));
    }
}
