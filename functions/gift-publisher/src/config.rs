//! Configuration of the function, read once at cold start.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `KAFKA_BOOTSTRAP_SERVERS` | required | brokers, `host:port,host:port` |
//! | `GIFT_TOPIC` | `gift_events` | topic gifts are published to |
//! | `KAFKA_SECURITY` | `tls` | `tls`, or `plaintext` (local brokers only) |
//! | `KAFKA_AUTH` | `none` | `none`, `msk-iam` (SASL/OAUTHBEARER, needs `tls`), `scram-sha-512` or `scram-sha-256` |
//! | `KAFKA_SASL_USERNAME` + `KAFKA_SASL_PASSWORD` / `KAFKA_SASL_SECRET_ID` | for SCRAM | credentials, or a Secrets Manager secret `{"username": .., "password": ..}` (the format MSK and the ESM use) |
//! | `KAFKA_CA_PEM` / `KAFKA_ROOT_CA_SECRET_ID` | system roots | PEM of the CA that signed the brokers' certificates, or a secret holding it (plain PEM or JSON `certificate`) |
//! | `PUBLISH_TIMEOUT_MS` | 5000 | longest a publish may take, connecting included, before 503 |
//! | `PUBLISH_RETRY_AFTER_SECONDS` | 1 | `Retry-After` of a 503 |
//! | `GIFT_MAX_BODY_BYTES` | 262144 | larger bodies get 413 |
//! | `GIFT_MAX_TEXT_CHARS` | 10000 | max characters of `question` / `answer` (as gift-persister) |
//! | `DEADLINE_SAFETY_MARGIN_MS` | 500 | kept before the Lambda deadline |
//! | `METRICS_ENABLED` / `METRICS_NAMESPACE` | `true` / `KafkaLambdas` | one EMF metrics line per request |

use std::sync::Arc;
use std::time::Duration;

use gift_persister::gift::GiftLimits;
use lambda_kit::config::{ConfigError, Env};
use lambda_kit::init::InitError;
use lambda_kit::metrics::Metrics;
use lambda_kit::retry::DeadlineSettings;
use lambda_kit::secrets::{Credential, SecretSpec, resolve};

use crate::handler::{Publisher, RequestLimits};
use crate::kafka::{Auth, KafkaBroker, KafkaSettings};

/// Name of the function (metrics dimension, logs).
pub const FUNCTION_NAME: &str = "gift-publisher";

/// Everything the function needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The producer's settings.
    pub kafka: KafkaSettings,
    /// What a request may carry.
    pub limits: RequestLimits,
    /// Deadline handling.
    pub deadline: DeadlineSettings,
    /// `Retry-After` of a 503.
    pub retry_after: Duration,
    /// Metrics.
    pub metrics: Metrics,
}

impl Config {
    /// Reads every setting from `env` and resolves the broker's credentials and CA (the
    /// environment or Secrets Manager), once at cold start: `main` passes `Env::process()`,
    /// tests and `esm-local` `Env::from_pairs(..)`.
    pub async fn load(env: &Env) -> Result<Self, InitError> {
        let bootstrap: Vec<String> = env
            .required("KAFKA_BOOTSTRAP_SERVERS")?
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if bootstrap.is_empty() {
            return Err(ConfigError::new("KAFKA_BOOTSTRAP_SERVERS", "lists no broker").into());
        }
        let topic = env.string_or("GIFT_TOPIC", "gift_events");
        if topic.is_empty()
            || topic.len() > 249
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ConfigError::new(
                "GIFT_TOPIC",
                "a Kafka topic name is 1-249 characters of [a-zA-Z0-9._-]",
            )
            .into());
        }
        let tls = match env.string_or("KAFKA_SECURITY", "tls").as_str() {
            "tls" => Some(tls_config(env).await?),
            "plaintext" => None,
            other => {
                return Err(ConfigError::new(
                    "KAFKA_SECURITY",
                    format!("must be tls or plaintext, got {other:?}"),
                )
                .into());
            }
        };
        let auth = auth_from_env(env, tls.is_some()).await?;
        let d = RequestLimits::default();
        let limits = RequestLimits {
            max_body_bytes: env.positive_or("GIFT_MAX_BODY_BYTES", d.max_body_bytes)?,
            gift: GiftLimits {
                max_text_chars: env.positive_or("GIFT_MAX_TEXT_CHARS", d.gift.max_text_chars)?,
                ..d.gift
            },
        };
        let deadline = DeadlineSettings {
            safety_margin: env
                .millis_or("DEADLINE_SAFETY_MARGIN_MS", Duration::from_millis(500))?,
            default_budget: env.millis_or("DEFAULT_BUDGET_MS", Duration::from_secs(30))?,
        };
        Ok(Self {
            kafka: KafkaSettings {
                bootstrap,
                topic,
                tls,
                auth,
                timeout: env.millis_or("PUBLISH_TIMEOUT_MS", Duration::from_secs(5))?,
            },
            limits,
            deadline,
            retry_after: Duration::from_secs(env.parse_or("PUBLISH_RETRY_AFTER_SECONDS", 1u64)?),
            metrics: Metrics::from_env(env, FUNCTION_NAME)?,
        })
    }

    /// The handler `main` runs.
    pub fn build(&self) -> Publisher<KafkaBroker> {
        Publisher::new(
            KafkaBroker::new(self.kafka.clone()),
            self.kafka.topic.clone(),
            self.limits,
            self.deadline.clone(),
            self.retry_after,
        )
        .with_metrics(self.metrics.clone())
    }
}

/// `KAFKA_AUTH` and the credentials it needs; `tls`: whether `KAFKA_SECURITY` is `tls`.
async fn auth_from_env(env: &Env, tls: bool) -> Result<Auth, InitError> {
    Ok(match env.string_or("KAFKA_AUTH", "none").as_str() {
        "none" => Auth::None,
        mechanism @ ("scram-sha-512" | "scram-sha-256") => {
            let spec = |var, field| SecretSpec::new(var, "KAFKA_SASL_SECRET_ID", field);
            Auth::Scram {
                sha512: mechanism == "scram-sha-512",
                username: Credential::from_env(env, &spec("KAFKA_SASL_USERNAME", "username"))
                    .await?,
                password: Credential::from_env(env, &spec("KAFKA_SASL_PASSWORD", "password"))
                    .await?,
            }
        }
        "msk-iam" => {
            if !tls {
                return Err(ConfigError::new(
                    "KAFKA_AUTH",
                    "msk-iam needs KAFKA_SECURITY=tls (MSK serves IAM on its TLS listener)",
                )
                .into());
            }
            Auth::MskIam {
                region: env
                    .get("AWS_REGION")
                    .or_else(|| env.get("AWS_DEFAULT_REGION"))
                    .ok_or_else(|| {
                        ConfigError::new("AWS_REGION", "msk-iam signs for a region; set it")
                    })?,
            }
        }
        other => {
            return Err(ConfigError::new(
                "KAFKA_AUTH",
                format!("must be none, msk-iam, scram-sha-512 or scram-sha-256, got {other:?}"),
            )
            .into());
        }
    })
}

/// TLS with the system's roots, or only the given CA.
async fn tls_config(env: &Env) -> Result<Arc<rustls::ClientConfig>, InitError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| InitError::Client(format!("TLS: {e}")))?;
    let spec = SecretSpec::new("KAFKA_CA_PEM", "KAFKA_ROOT_CA_SECRET_ID", "certificate");
    let config = match resolve(env, &spec).await {
        Ok(pem) => builder
            .with_root_certificates(root_store(pem.expose())?)
            .with_no_client_auth(),
        Err(lambda_kit::secrets::SecretError::NotConfigured { .. }) => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| InitError::Client(format!("TLS: system roots: {e}")))?
                .with_no_client_auth()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Arc::new(config))
}

/// The certificates of a PEM bundle as trust anchors.
fn root_store(pem: &str) -> Result<rustls::RootCertStore, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let var = "KAFKA_CA_PEM";
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| ConfigError::new(var, format!("not PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| ConfigError::new(var, format!("not a usable CA certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(ConfigError::new(var, "holds no CERTIFICATE block"));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn err(pairs: &[(&str, &str)]) -> String {
        Config::load(&Env::from_pairs(pairs.iter().copied()))
            .await
            .unwrap_err()
            .to_string()
    }

    #[tokio::test]
    async fn defaults_and_local_settings() {
        let c = Config::load(&Env::from_pairs([
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092, 127.0.0.1:9093"),
            ("KAFKA_SECURITY", "plaintext"),
        ]))
        .await
        .unwrap();
        assert_eq!(c.kafka.bootstrap, ["127.0.0.1:9092", "127.0.0.1:9093"]);
        assert_eq!(c.kafka.topic, "gift_events");
        assert!(c.kafka.tls.is_none());
        assert!(matches!(c.kafka.auth, Auth::None));
        assert_eq!(c.kafka.timeout, Duration::from_secs(5));
        assert_eq!(c.limits, RequestLimits::default());
        // TLS is the default, with the system's roots.
        let c = Config::load(&Env::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", "b:9094")]))
            .await
            .unwrap();
        assert!(c.kafka.tls.is_some());
    }

    #[tokio::test]
    async fn errors_name_the_variable() {
        assert!(err(&[]).await.contains("KAFKA_BOOTSTRAP_SERVERS"));
        assert!(
            err(&[("KAFKA_BOOTSTRAP_SERVERS", " , ")])
                .await
                .contains("lists no broker")
        );
        let base = ("KAFKA_BOOTSTRAP_SERVERS", "b:9092");
        assert!(
            err(&[base, ("GIFT_TOPIC", "gift events")])
                .await
                .contains("GIFT_TOPIC")
        );
        assert!(
            err(&[base, ("KAFKA_SECURITY", "ssl")])
                .await
                .contains("KAFKA_SECURITY")
        );
        assert!(
            err(&[base, ("KAFKA_AUTH", "kerberos")])
                .await
                .contains("KAFKA_AUTH")
        );
        let e = err(&[
            base,
            ("KAFKA_SECURITY", "plaintext"),
            ("KAFKA_AUTH", "msk-iam"),
        ])
        .await;
        assert!(e.contains("needs KAFKA_SECURITY=tls"), "{e}");
        let e = err(&[base, ("KAFKA_AUTH", "scram-sha-512")]).await;
        assert!(e.contains("KAFKA_SASL_SECRET_ID"), "{e}");
        let e = err(&[base, ("KAFKA_CA_PEM", "not a pem")]).await;
        assert!(e.contains("KAFKA_CA_PEM"), "{e}");
        let e = err(&[base, ("GIFT_MAX_BODY_BYTES", "0")]).await;
        assert!(e.contains("GIFT_MAX_BODY_BYTES"), "{e}");
    }

    #[tokio::test]
    async fn a_custom_ca_is_the_only_trust_anchor() {
        // testdata/ca.pem: a self-signed test CA (its key was thrown away).
        let ca = include_str!("../testdata/ca.pem");
        let c = Config::load(&Env::from_pairs([
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9094"),
            ("KAFKA_CA_PEM", ca),
        ]))
        .await
        .unwrap();
        assert!(c.kafka.tls.is_some());
        assert_eq!(root_store(ca).unwrap().len(), 1);
        assert_eq!(root_store(&format!("{ca}{ca}")).unwrap().len(), 2);
        let e = root_store("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
    }

    #[tokio::test]
    async fn scram_credentials_never_show_in_debug_output() {
        let c = Config::load(&Env::from_pairs([
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9096"),
            ("KAFKA_AUTH", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "vault"),
            ("KAFKA_SASL_PASSWORD", "pa55-w0rd-xyz"),
        ]))
        .await
        .unwrap();
        let Auth::Scram {
            sha512: true,
            username,
            password,
        } = &c.kafka.auth
        else {
            panic!("scram expected")
        };
        assert_eq!(
            (
                username.current().await.expose(),
                password.current().await.expose()
            ),
            ("vault", "pa55-w0rd-xyz")
        );
        assert!(!format!("{c:?}").contains("pa55-w0rd-xyz"));
    }
}
