//! Writer schemas by schema version id from the AWS Glue Schema Registry (`GetSchemaVersion`):
//! the function's IAM role (or any credentials the SDK finds), the workspace's retry and deadline
//! rules instead of the SDK's own retries, and a per-process cache, since a schema version id
//! never changes what it names.
//!
//! Chosen when `SCHEMA_REGISTRY_URL` holds a Glue registry ARN
//! (`arn:aws:glue:<region>:<account>:registry/<name>`, the value an event source mapping's
//! `SchemaRegistryURI` takes). The client talks to the registry's region; `AWS_ENDPOINT_URL_GLUE`
//! overrides the endpoint (the SDK's standard variable; tests point it at moto).
//!
//! Errors are classified where they are made: throttling, 5xx and network failures are transient
//! (retried within the deadline, then `schema_fetch_failed`); `EntityNotFoundException` is an
//! unknown schema id and `AccessDeniedException` a missing `glue:GetSchemaVersion` permission:
//! both the environment's fault, never the record's.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_glue::operation::get_schema_version::GetSchemaVersionError;
use event_decoding::{DataFormat, SchemaLookup, SchemaUnavailable, WriterSchema};

use crate::config::{ConfigError, Env};
use crate::error::ErrorClass;
use crate::init::InitError;
use crate::retry::{Deadline, RetryPolicy, retry};
use crate::schema_cache::{SchemaCache, debug_registry_client};

use super::error::{Registry, RegistryError};

/// A Glue registry ARN, split.
///
/// ```
/// use lambda_kit::schema_registry::GlueRegistryArn;
/// let arn: GlueRegistryArn = "arn:aws:glue:eu-west-1:123456789012:registry/gifts".parse().unwrap();
/// assert_eq!((arn.region.as_str(), arn.name.as_str()), ("eu-west-1", "gifts"));
/// assert!(GlueRegistryArn::looks_like("arn:aws:glue:eu-west-1:123456789012:registry/gifts"));
/// assert!(!GlueRegistryArn::looks_like("https://registry.example"));
/// assert!("arn:aws:glue:eu-west-1:123456789012:schema/gifts/x".parse::<GlueRegistryArn>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueRegistryArn {
    /// The whole ARN.
    pub arn: String,
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The registry's region: the client talks to it.
    pub region: String,
    /// The account id.
    pub account: String,
    /// The registry name.
    pub name: String,
}

impl GlueRegistryArn {
    /// Whether `s` is meant as an ARN (and so must parse as a Glue registry ARN).
    pub fn looks_like(s: &str) -> bool {
        s.trim_start().starts_with("arn:")
    }
}

impl std::str::FromStr for GlueRegistryArn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "`{s}` is not a Glue registry ARN (arn:aws:glue:<region>:<account>:registry/<name>)"
            )
        };
        let mut parts = s.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("glue"), Some(region), Some(account), Some(res)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let name = res.strip_prefix("registry/").ok_or_else(bad)?;
        let ok_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_$#.".contains(c));
        let ok_region = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if partition.is_empty() || !ok_region || !ok_name || account.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            arn: s.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }
}

/// Whether `id` is a schema version id as Glue writes them: canonical UUID text.
///
/// ```
/// use lambda_kit::schema_registry::is_schema_version_id;
/// assert!(is_schema_version_id("0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9"));
/// assert!(!is_schema_version_id("17"));
/// assert!(!is_schema_version_id("0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f"));
/// ```
pub fn is_schema_version_id(id: &str) -> bool {
    event_decoding::is_glue_schema_version_id(id)
}

/// How to reach the Glue registry.
#[derive(Clone)]
pub struct GlueRegistryConfig {
    /// The registry.
    pub arn: GlueRegistryArn,
    /// Timeout of one `GetSchemaVersion` call (further capped by the deadline).
    pub timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// The SDK configuration (credentials, endpoint) loaded at cold start; `None`: the region
    /// of the ARN and nothing else (tests that hand a client to [`GlueRegistry::with_client`]).
    pub sdk: Option<aws_config::SdkConfig>,
}

impl fmt::Debug for GlueRegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlueRegistryConfig")
            .field("arn", &self.arn.arn)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl GlueRegistryConfig {
    /// The registry `arn` with the workspace's default timeout and retries.
    pub fn new(arn: GlueRegistryArn) -> Self {
        Self {
            arn,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            sdk: None,
        }
    }

    /// Reads `HTTP_TIMEOUT_MS` and the `RETRY_*` settings and loads the SDK configuration for the
    /// registry's region (credentials, `AWS_ENDPOINT_URL_GLUE`), once, at cold start.
    pub async fn from_env(env: &Env, arn: &str) -> Result<Self, InitError> {
        let arn: GlueRegistryArn = arn
            .parse()
            .map_err(|e: String| ConfigError::new("SCHEMA_REGISTRY_URL", e))?;
        let mut config = Self::new(arn);
        config.timeout = env.millis_or("HTTP_TIMEOUT_MS", config.timeout)?;
        config.retry = RetryPolicy::from_env(env, "RETRY_")?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.arn.region.clone()))
            .load()
            .await;
        config.sdk = Some(sdk);
        Ok(config)
    }
}

/// A schema version as `GetSchemaVersion` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueSchemaVersion {
    /// `AVRO`, `JSON` or `PROTOBUF`.
    pub data_format: DataFormat,
    /// The schema text: an Avro schema, a JSON Schema or a `.proto` file.
    pub definition: String,
    /// The schema it is a version of.
    pub schema_arn: Option<String>,
}

/// Error codes of AWS's JSON protocols that mean "slow down".
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "SlowDown",
];

/// Error codes that mean the caller's credentials or permissions are wrong.
const AUTH: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

fn classify(id: &str, e: SdkError<GetSchemaVersionError>) -> RegistryError {
    let message = DisplayErrorContext(&e).to_string();
    let request = |code, class| RegistryError::Request {
        registry: Registry::Glue,
        id: id.to_string(),
        code,
        message: message.clone(),
        class,
    };
    match &e {
        SdkError::TimeoutError(_) => request("glue_timeout", ErrorClass::TRANSIENT),
        SdkError::DispatchFailure(d) if d.is_user() => {
            request("glue_client", ErrorClass::Environment)
        }
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            request("glue_unreachable", ErrorClass::TRANSIENT)
        }
        SdkError::ServiceError(se) => {
            let err = se.err();
            let status = se.raw().status().as_u16();
            let text = err.message().unwrap_or("no message").to_string();
            match err {
                GetSchemaVersionError::EntityNotFoundException(_) => RegistryError::NotFound {
                    registry: Registry::Glue,
                    id: id.to_string(),
                    message: text,
                },
                GetSchemaVersionError::AccessDeniedException(_) => RegistryError::AccessDenied {
                    id: id.to_string(),
                    message: text,
                },
                GetSchemaVersionError::InvalidInputException(_) => RegistryError::Unusable {
                    registry: Registry::Glue,
                    id: id.to_string(),
                    problem: format!("Glue refused the id: {text}"),
                },
                GetSchemaVersionError::InternalServiceException(_) => {
                    request("glue_unavailable", ErrorClass::TRANSIENT)
                }
                // The error is `#[non_exhaustive]`: the others by their code and status, none of
                // them the record's fault.
                _ => match err.code() {
                    Some(c) if THROTTLING.contains(&c) => {
                        request("glue_throttled", ErrorClass::TRANSIENT)
                    }
                    Some(c) if AUTH.contains(&c) => RegistryError::AccessDenied {
                        id: id.to_string(),
                        message: format!("{c}: {text}"),
                    },
                    _ if status == 429 => request("glue_throttled", ErrorClass::TRANSIENT),
                    _ if status >= 500 => request("glue_unavailable", ErrorClass::TRANSIENT),
                    _ if status == 401 || status == 403 => RegistryError::AccessDenied {
                        id: id.to_string(),
                        message: format!("HTTP {status}: {text}"),
                    },
                    _ => request("glue_refused", ErrorClass::Environment),
                },
            }
        }
        // A request that could not be built, or a failure the SDK does not name.
        _ => request("glue_client", ErrorClass::Environment),
    }
}

/// A Glue Schema Registry client with a per-process cache of parsed schemas.
///
/// Schemas are cached for the life of the execution environment; a failure is remembered only
/// until the next [`prefetch`](Self::prefetch), which asks again.
pub struct GlueRegistry {
    client: aws_sdk_glue::Client,
    arn: String,
    timeout: Duration,
    retry: RetryPolicy,
    cache: SchemaCache<RegistryError>,
    fetches: AtomicU64,
}

debug_registry_client!(GlueRegistry, arn);

impl GlueRegistry {
    /// A client for `config`. The SDK's own retries are off: [`RetryPolicy`] and the batch's
    /// [`Deadline`] bound them instead.
    pub fn new(config: GlueRegistryConfig) -> Self {
        let sdk = config.sdk.clone().unwrap_or_else(|| {
            aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(config.arn.region.clone()))
                .build()
        });
        let glue = aws_sdk_glue::config::Builder::from(&sdk)
            .retry_config(aws_sdk_glue::config::retry::RetryConfig::disabled())
            .build();
        Self::with_client(config, aws_sdk_glue::Client::from_conf(glue))
    }

    /// Like [`new`](Self::new), on a client built elsewhere (its retries should be disabled).
    pub fn with_client(config: GlueRegistryConfig, client: aws_sdk_glue::Client) -> Self {
        Self {
            client,
            arn: config.arn.arn,
            timeout: config.timeout,
            retry: config.retry,
            cache: SchemaCache::default(),
            fetches: AtomicU64::new(0),
        }
    }

    /// The registry's ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Schema versions asked for so far (cache misses; retries count once).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Relaxed)
    }

    /// `GetSchemaVersion` of `id` (no cache), retried within `deadline`.
    pub async fn fetch(
        &self,
        id: &str,
        deadline: &Deadline,
    ) -> Result<GlueSchemaVersion, RegistryError> {
        if !is_schema_version_id(id) {
            return Err(RegistryError::Unusable {
                registry: Registry::Glue,
                id: id.to_string(),
                problem: "not a Glue schema version id (a UUID): the value names a Confluent schema id, but SCHEMA_REGISTRY_URL is a Glue registry".into(),
            });
        }
        self.fetches.fetch_add(1, Relaxed);
        let expired = || RegistryError::deadline(Registry::Glue, id);
        let out = retry(&self.retry, deadline, expired, |attempt| async move {
            let call = self
                .client
                .get_schema_version()
                .schema_version_id(id)
                .send();
            match tokio::time::timeout(self.timeout.min(attempt.remaining), call).await {
                Ok(r) => r.map_err(|e| classify(id, e)),
                Err(_) => Err(RegistryError::Request {
                    registry: Registry::Glue,
                    id: id.to_string(),
                    code: "glue_timeout",
                    message: format!(
                        "no answer within {} ms",
                        self.timeout.min(attempt.remaining).as_millis()
                    ),
                    class: ErrorClass::TRANSIENT,
                }),
            }
        })
        .await?;
        let unusable = |problem: String| RegistryError::Unusable {
            registry: Registry::Glue,
            id: id.to_string(),
            problem,
        };
        let data_format = match out.data_format().map(|f| f.as_str()) {
            Some("AVRO") => DataFormat::Avro,
            Some("JSON") => DataFormat::Json,
            Some("PROTOBUF") => DataFormat::Protobuf,
            other => {
                return Err(unusable(format!(
                    "data format {} is not AVRO, JSON or PROTOBUF",
                    other.unwrap_or("(none)")
                )));
            }
        };
        let definition = out
            .schema_definition()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| unusable("Glue returned no schema definition".into()))?
            .to_string();
        Ok(GlueSchemaVersion {
            data_format,
            definition,
            schema_arn: out.schema_arn().map(str::to_string),
        })
    }

    /// The writer schema of a fetched version (Glue schemas have no references).
    fn parse(id: &str, version: &GlueSchemaVersion) -> Result<Arc<WriterSchema>, RegistryError> {
        WriterSchema::parse(version.data_format, &version.definition, &[])
            .map(Arc::new)
            .map_err(|problem| RegistryError::Unusable {
                registry: Registry::Glue,
                id: id.to_string(),
                problem,
            })
    }

    /// Makes every id in `ids` that is not cached available to the [`SchemaLookup`]: fetched and
    /// parsed, or its failure remembered for the records that need it (bounded). Ids are fetched 8
    /// at a time within `deadline`.
    pub async fn prefetch(&self, ids: &BTreeSet<String>, deadline: &Deadline) {
        self.cache
            .prefetch(ids, |id| async move {
                self.fetch(&id, deadline)
                    .await
                    .and_then(|v| Self::parse(&id, &v))
            })
            .await
    }
}

impl SchemaLookup for GlueRegistry {
    fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        self.cache.lookup(id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::Classify;
    use crate::testing::MockServer;

    const ID: &str = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9";
    pub(crate) const ARN: &str = "arn:aws:glue:us-east-1:123456789012:registry/gifts";
    const GIFT: &str =
        r#"{"type":"record","name":"Gift","fields":[{"name":"page_id","type":"long"}]}"#;

    /// A client of the loopback server at `url`, as the function builds it (SDK retries off),
    /// with static test credentials.
    pub(crate) fn registry(url: String, attempts: u32) -> GlueRegistry {
        let conf = aws_sdk_glue::Config::builder()
            .behavior_version(aws_sdk_glue::config::BehaviorVersion::latest())
            .region(aws_sdk_glue::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_glue::config::Credentials::new(
                "AKIDTEST", "s3cr3t", None, None, "test",
            ))
            .endpoint_url(url)
            .retry_config(aws_sdk_glue::config::retry::RetryConfig::disabled())
            .build();
        let mut c = GlueRegistryConfig::new(ARN.parse().unwrap());
        c.retry = RetryPolicy {
            max_attempts: attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        GlueRegistry::with_client(c, aws_sdk_glue::Client::from_conf(conf))
    }

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(10))
    }

    /// A GetSchemaVersion answer (AWS JSON 1.1).
    pub(crate) fn version(format: &str, definition: &str) -> String {
        serde_json::json!({
            "SchemaVersionId": ID, "DataFormat": format, "SchemaDefinition": definition,
            "SchemaArn": "arn:aws:glue:us-east-1:123456789012:schema/gifts/gift-value",
            "VersionNumber": 1, "Status": "AVAILABLE"
        })
        .to_string()
    }

    /// An AWS JSON 1.1 error body: the type in `__type`.
    pub(crate) fn error(kind: &str, message: &str) -> String {
        serde_json::json!({"__type": kind, "message": message}).to_string()
    }

    #[tokio::test]
    async fn fetches_by_version_id_once_and_decodes() {
        let server = MockServer::start(vec![(200, vec![], version("AVRO", GIFT))]).await;
        let r = registry(server.url(), 3);
        let ids = BTreeSet::from([ID.to_string()]);
        r.prefetch(&ids, &deadline()).await;
        r.prefetch(&ids, &deadline()).await;
        assert_eq!(r.fetches(), 1);
        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        let head = seen[0].head.to_ascii_lowercase();
        assert!(head.starts_with("post / "), "{head}");
        assert!(
            head.contains("x-amz-target: awsglue.getschemaversion"),
            "{head}"
        );
        assert!(head.contains("authorization: aws4-hmac-sha256"), "{head}");
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body, serde_json::json!({"SchemaVersionId": ID}));
        let schema = r.schema(ID).unwrap();
        let WriterSchema::Avro(avro) = &*schema else {
            panic!("{schema:?}")
        };
        assert_eq!(avro.decode(&[84]).unwrap()["page_id"], 42);
    }

    #[tokio::test]
    async fn entity_not_found_is_an_unknown_id_not_retried() {
        let server = MockServer::start(vec![
            (
                400,
                vec![],
                error(
                    "EntityNotFoundException",
                    "Schema version is not found. SchemaVersionId: x",
                ),
            ),
            (200, vec![], version("AVRO", GIFT)),
        ])
        .await;
        let r = registry(server.url(), 3);
        let ids = BTreeSet::from([ID.to_string()]);
        r.prefetch(&ids, &deadline()).await;
        assert_eq!(server.requests().len(), 1, "not retried");
        match r.schema(ID).unwrap_err() {
            SchemaUnavailable::Unknown(m) => {
                assert!(m.contains("Schema version is not found"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // The next batch asks again.
        r.prefetch(&ids, &deadline()).await;
        assert!(r.schema(ID).is_ok());
    }

    #[tokio::test]
    async fn throttling_and_5xx_are_retried_then_transient() {
        for (status, kind) in [
            (400, "ThrottlingException"),
            (500, "InternalServiceException"),
            (503, "ServiceUnavailableException"),
        ] {
            let server = MockServer::start(vec![(status, vec![], error(kind, "slow down"))]).await;
            let r = registry(server.url(), 3);
            let e = r.fetch(ID, &deadline()).await.unwrap_err();
            assert_eq!(server.requests().len(), 3, "{kind}: three attempts");
            assert!(e.class().is_transient(), "{kind}: {e}");
            assert_eq!(e.error_code(), "schema_fetch_failed");
            assert_ne!(e.class(), ErrorClass::Data);
            assert!(!e.to_string().contains("s3cr3t"));
        }
        // Throttled once, then answered.
        let server = MockServer::start(vec![
            (400, vec![], error("ThrottlingException", "Rate exceeded")),
            (200, vec![], version("AVRO", GIFT)),
        ])
        .await;
        let r = registry(server.url(), 3);
        assert_eq!(
            r.fetch(ID, &deadline()).await.unwrap().data_format,
            DataFormat::Avro
        );
    }

    #[tokio::test]
    async fn access_denied_names_the_permission() {
        let server = MockServer::start(vec![(
            400,
            vec![],
            error(
                "AccessDeniedException",
                "User is not authorized to perform: glue:GetSchemaVersion",
            ),
        )])
        .await;
        let r = registry(server.url(), 3);
        let e = r.fetch(ID, &deadline()).await.unwrap_err();
        assert!(matches!(e, RegistryError::AccessDenied { .. }), "{e}");
        assert_eq!(server.requests().len(), 1, "not retried");
        assert!(e.to_string().contains("needs glue:GetSchemaVersion"), "{e}");
        assert_eq!(e.class(), ErrorClass::Environment);
        assert_eq!(
            SchemaUnavailable::from(&e),
            SchemaUnavailable::FetchFailed(e.to_string())
        );
    }

    #[tokio::test]
    async fn unusable_versions_and_ids() {
        let server = MockServer::start(vec![
            (
                200,
                vec![],
                version("PROTOBUF", "syntax = \"proto3\"; message {"),
            ),
            (200, vec![], version("AVRO", "{\"type\":\"nope\"}")),
            (200, vec![], version("AVRO", "")),
        ])
        .await;
        let r = registry(server.url(), 1);
        let id2 = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8fa";
        let id3 = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8fb";
        // One id at a time: the scripted answers come in the order of the requests.
        for id in [ID, id2, id3, "17"] {
            r.prefetch(&BTreeSet::from([id.to_string()]), &deadline())
                .await;
        }
        for (id, want) in [
            (ID, "not a valid Protobuf schema"),
            (id2, "not a valid Avro schema"),
            (id3, "no schema definition"),
            ("17", "not a Glue schema version id"),
        ] {
            match r.schema(id).unwrap_err() {
                SchemaUnavailable::Unknown(m) => assert!(m.contains(want), "{id}: {m}"),
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(server.requests().len(), 3, "the Confluent id is never sent");
    }

    #[tokio::test]
    async fn unreachable_and_spent_deadline_are_transient() {
        let port = crate::testing::unused_port();
        let r = registry(format!("http://127.0.0.1:{port}"), 2);
        let e = r.fetch(ID, &deadline()).await.unwrap_err();
        assert!(e.class().is_transient(), "{e}");
        let e = r
            .fetch(ID, &Deadline::after(Duration::ZERO))
            .await
            .unwrap_err();
        assert!(e.class().is_transient(), "{e}");
        assert!(e.to_string().contains("deadline"), "{e}");
    }

    #[tokio::test]
    async fn config_from_env_takes_the_arn() {
        let env = Env::from_pairs([("RETRY_MAX_ATTEMPTS", "2")]);
        let c = GlueRegistryConfig::from_env(&env, ARN).await.unwrap();
        assert_eq!(c.arn.name, "gifts");
        assert_eq!(c.retry.max_attempts, 2);
        assert_eq!(
            c.sdk.as_ref().and_then(|s| s.region()).map(|r| r.as_ref()),
            Some("us-east-1")
        );
        let e = GlueRegistryConfig::from_env(&env, "arn:aws:glue:us-east-1:1:schema/a/b")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SCHEMA_REGISTRY_URL"), "{e}");
        assert!(!format!("{c:?}").contains("Credentials"));
    }
}
