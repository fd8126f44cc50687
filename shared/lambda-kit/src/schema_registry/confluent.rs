//! Writer schemas by id from a Confluent-compatible schema registry (`GET /schemas/ids/{id}`, and
//! the schemas it references by `GET /subjects/{subject}/versions/{version}`): Avro, Protobuf and
//! JSON Schema (the answer's `schemaType`), basic auth (a user and password, or a Confluent Cloud
//! API key and secret) from the environment or Secrets Manager, the workspace's retry and
//! deadline rules, and a per-process cache, since a schema id never changes what it names.
//!
//! A function resolves the ids a batch needs ([`SchemaRegistry::prefetch`]) before it decodes,
//! then decodes with the registry as the [`SchemaLookup`]: decoding stays synchronous.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use event_decoding::{DataFormat, SchemaLookup, SchemaUnavailable, WriterSchema};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};

use crate::config::Env;
use crate::http::{self, Failure, Sender};
use crate::init::InitError;
use crate::retry::{Deadline, RetryPolicy};
use crate::schema_cache::{SchemaCache, debug_registry_client};
use crate::secrets::{Credential, Secret, SecretSpec};

use super::error::{Registry, RegistryError};

/// How to reach the registry.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Base URL without a trailing `/`.
    pub url: String,
    /// Basic auth user and password; re-read after a 401/403 when they come from Secrets
    /// Manager.
    pub auth: Option<(Credential, Credential)>,
    /// Timeout of one request (further capped by the deadline).
    pub timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RegistryConfig {
    /// A registry at `url` without auth, with the workspace's default timeouts and retries.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_string(),
            auth: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        }
    }

    pub(super) async fn from_env(env: &Env, url: &str) -> Result<Self, InitError> {
        let wants_auth = [
            "SCHEMA_REGISTRY_USERNAME",
            "SCHEMA_REGISTRY_PASSWORD",
            "SCHEMA_REGISTRY_SECRET_ID",
        ]
        .iter()
        .any(|v| env.get(v).is_some());
        // Credentials go in those settings, never in the URL; with them, https (but on loopback).
        crate::config::check_url("SCHEMA_REGISTRY_URL", url, wants_auth)?;
        let mut config = Self::new(url);
        config.timeout = env.millis_or("HTTP_TIMEOUT_MS", config.timeout)?;
        config.connect_timeout =
            env.millis_or("HTTP_CONNECT_TIMEOUT_MS", config.connect_timeout)?;
        config.retry = RetryPolicy::from_env(env, "RETRY_")?;
        if wants_auth {
            let user = Credential::from_env(
                env,
                &SecretSpec::new(
                    "SCHEMA_REGISTRY_USERNAME",
                    "SCHEMA_REGISTRY_SECRET_ID",
                    "username",
                ),
            )
            .await?;
            let password = Credential::from_env(
                env,
                &SecretSpec::new(
                    "SCHEMA_REGISTRY_PASSWORD",
                    "SCHEMA_REGISTRY_SECRET_ID",
                    "password",
                ),
            )
            .await?;
            config.auth = Some((user, password));
        }
        Ok(config)
    }
}

/// A Confluent-compatible registry client with a per-process cache of parsed schemas.
///
/// Schemas are cached for the life of the execution environment (an id always names the same
/// schema); a failure is remembered only until the next [`prefetch`](Self::prefetch), which asks
/// again.
pub struct SchemaRegistry {
    http: reqwest::Client,
    url: String,
    /// User and password of basic auth.
    auth: Option<(Credential, Credential)>,
    /// Timeout, retries and the answer's limit.
    sender: Sender,
    cache: SchemaCache<RegistryError>,
    fetches: std::sync::atomic::AtomicU64,
}

debug_registry_client!(SchemaRegistry, url);

impl SchemaRegistry {
    /// A client for `config`.
    ///
    /// ```
    /// use lambda_kit::schema_registry::{RegistryConfig, SchemaRegistry};
    /// let r = SchemaRegistry::new(RegistryConfig::new("http://127.0.0.1:8081/")).unwrap();
    /// assert_eq!(r.schema_url("7"), "http://127.0.0.1:8081/schemas/ids/7");
    /// ```
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let http = http::client_builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| RegistryError::Build(http::describe_reqwest(&e)))?;
        Self::with_http(config, http)
    }

    /// Like [`new`](Self::new), on a connection pool the function already has.
    pub fn with_http(config: RegistryConfig, http: reqwest::Client) -> Result<Self, RegistryError> {
        Ok(Self {
            http,
            url: config.url.trim_end_matches('/').to_string(),
            auth: config.auth,
            sender: Sender::new(
                "schema_registry",
                config.timeout,
                config.retry,
                http::Limit::new("SCHEMA_REGISTRY_URL", MAX_SCHEMA_ANSWER),
            ),
            cache: SchemaCache::default(),
            fetches: Default::default(),
        })
    }

    /// `{url}/schemas/ids/{id}`, the id percent-encoded.
    pub fn schema_url(&self, id: &str) -> String {
        let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
        format!("{}/schemas/ids/{id}", self.url)
    }

    /// Requests sent so far (cache misses and their retries count once per id).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes every id in `ids` that is not cached available to [`SchemaLookup::schema`]: fetched
    /// and parsed, or its failure remembered for the records that need it (at most 10,000
    /// failures). Ids are fetched 8 at a time within `deadline`; once
    /// it has passed, the rest fail as `schema_fetch_failed`.
    pub async fn prefetch(&self, ids: &BTreeSet<String>, deadline: &Deadline) {
        self.cache
            .prefetch(ids, |id| async move {
                self.fetch(&id, deadline).await.map(Arc::new)
            })
            .await
    }

    /// `{url}/subjects/{subject}/versions/{version}`, the subject percent-encoded.
    ///
    /// ```
    /// use lambda_kit::schema_registry::{RegistryConfig, SchemaRegistry};
    /// let r = SchemaRegistry::new(RegistryConfig::new("http://127.0.0.1:8081")).unwrap();
    /// assert_eq!(r.subject_version_url("google/protobuf/x.proto", 3),
    ///            "http://127.0.0.1:8081/subjects/google%2Fprotobuf%2Fx%2Eproto/versions/3");
    /// ```
    pub fn subject_version_url(&self, subject: &str, version: i64) -> String {
        let subject =
            percent_encoding::utf8_percent_encode(subject, percent_encoding::NON_ALPHANUMERIC);
        format!("{}/subjects/{subject}/versions/{version}", self.url)
    }

    /// Fetches and parses schema `id` with the schemas it references (no cache).
    pub async fn fetch(
        &self,
        id: &str,
        deadline: &Deadline,
    ) -> Result<WriterSchema, RegistryError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegistryError::Unusable {
                registry: Registry::Confluent,
                id: id.to_string(),
                problem: "not a Confluent schema id (a decimal number); a Glue schema version id needs a Glue registry".into(),
            });
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unusable = |problem: String| RegistryError::Unusable {
            registry: Registry::Confluent,
            id: id.to_string(),
            problem,
        };
        let body = self.get(&self.schema_url(id), id, deadline).await?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| unusable(format!("the registry's answer is not a schema: {e}")))?;
        let format = answer.format().map_err(unusable)?;
        let references = self.references(id, &answer.references, deadline).await?;
        WriterSchema::parse(format, &answer.schema, &references).map_err(unusable)
    }

    /// Every schema `direct` refers to, directly or through one another, as `(name, schema)`:
    /// fetched breadth first, each subject version once, at most [`MAX_REFERENCE_DEPTH`] levels
    /// and [`MAX_REFERENCES`] schemas deep.
    async fn references(
        &self,
        id: &str,
        direct: &[Reference],
        deadline: &Deadline,
    ) -> Result<Vec<(String, String)>, RegistryError> {
        let unusable = |problem: String| RegistryError::Unusable {
            registry: Registry::Confluent,
            id: id.to_string(),
            problem,
        };
        let mut found: Vec<(String, String)> = Vec::new();
        let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
        let mut level: Vec<Reference> = direct.to_vec();
        for depth in 0.. {
            if level.is_empty() {
                break;
            }
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(unusable(format!(
                    "its references nest deeper than {MAX_REFERENCE_DEPTH} levels"
                )));
            }
            let mut next = Vec::new();
            for r in level {
                if !seen.insert((r.subject.clone(), r.version)) {
                    continue;
                }
                if seen.len() > MAX_REFERENCES {
                    return Err(unusable(format!(
                        "it refers to more than {MAX_REFERENCES} schemas"
                    )));
                }
                let url = self.subject_version_url(&r.subject, r.version);
                let body = self.get(&url, id, deadline).await.map_err(|e| match e {
                    // The schema names a reference the registry does not have: the schema is
                    // unusable, not the id unknown.
                    RegistryError::NotFound { message, .. } => unusable(format!(
                        "its reference {} ({} version {}) is not in the registry: {message}",
                        r.name, r.subject, r.version
                    )),
                    other => other,
                })?;
                let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
                    unusable(format!(
                        "the registry's answer for reference {} is not a schema: {e}",
                        r.name
                    ))
                })?;
                if !found.iter().any(|(n, _)| *n == r.name) {
                    found.push((r.name, answer.schema));
                }
                next.extend(answer.references);
            }
            level = next;
        }
        Ok(found)
    }

    /// One GET within `deadline`, retried as the workspace retries; the body of a 2xx answer.
    /// A 401/403 re-reads the credentials ([`Credential::call`]) and, when the password changed,
    /// sends once more with the new ones.
    async fn get(
        &self,
        url: &str,
        id: &str,
        deadline: &Deadline,
    ) -> Result<Vec<u8>, RegistryError> {
        let request = || {
            self.http.get(url).header(
                ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            )
        };
        let expired = || RegistryError::deadline(Registry::Confluent, id);
        let error = |failure: Failure<'_>| failed(id, failure);
        let body = match &self.auth {
            None => self.sender.send(deadline, request, expired, error).await?,
            Some((user, password)) => {
                // The user is read with the password: re-reading one re-reads both.
                let basic =
                    |password: Secret| async move { basic_auth(&user.current().await, &password) };
                let with_auth = |auth: &HeaderValue| request().header(AUTHORIZATION, auth.clone());
                self.sender
                    .send_with_credential(deadline, password, basic, with_auth, expired, error)
                    .await?
            }
        };
        Ok(body.to_vec())
    }
}

/// The `Authorization: Basic` header of `user` and `password`, marked sensitive.
fn basic_auth(user: &Secret, password: &Secret) -> Result<HeaderValue, RegistryError> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        user.expose(),
        password.expose()
    ));
    let mut v = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
        RegistryError::Build("the registry credentials are not valid in a header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Largest registry answer read: a schema (JSON-escaped in the answer) of several megabytes is
/// far beyond what Kafka records carry; past it the fetch fails as an environment fault.
pub const MAX_SCHEMA_ANSWER: usize = 8 * 1024 * 1024;

/// How deep references may refer to references.
pub const MAX_REFERENCE_DEPTH: usize = 8;
/// How many schemas one schema may refer to, all levels together.
pub const MAX_REFERENCES: usize = 64;

/// The registry's answer for a schema (`GET /schemas/ids/{id}`) or a subject version
/// (`GET /subjects/{subject}/versions/{version}`, which has more fields, ignored here).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    schema: String,
    /// Absent for Avro, which predates the field.
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

impl Answer {
    fn format(&self) -> Result<DataFormat, String> {
        match self
            .schema_type
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("AVRO") => Ok(DataFormat::Avro),
            Some("PROTOBUF") => Ok(DataFormat::Protobuf),
            Some("JSON") => Ok(DataFormat::Json),
            Some(other) => Err(format!(
                "a {other} schema; this function decodes AVRO, PROTOBUF and JSON"
            )),
        }
    }
}

/// A schema reference: `name` is how the schema refers to it (an Avro full name, a Protobuf
/// import path), `subject` and `version` where the registry keeps it.
#[derive(Clone, Debug, serde::Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

fn failed(id: &str, failure: Failure<'_>) -> RegistryError {
    match failure {
        Failure::Transport(t) => RegistryError::Request {
            registry: Registry::Confluent,
            id: id.to_string(),
            code: t.code,
            message: t.message,
            class: t.class,
        },
        Failure::Status(r) => {
            #[derive(serde::Deserialize)]
            struct Problem {
                #[serde(default)]
                error_code: Option<i64>,
                #[serde(default)]
                message: Option<String>,
            }
            let problem: Option<Problem> = serde_json::from_slice(&r.body).ok();
            let message = problem
                .as_ref()
                .and_then(|p| p.message.clone())
                .unwrap_or_else(|| r.text().into_owned());
            let message = r.clean(&message);
            let code = problem.as_ref().and_then(|p| p.error_code);
            // 40403: no such schema id; 40401 / 40402: no such subject / version (a reference).
            if r.status == reqwest::StatusCode::NOT_FOUND
                && matches!(code, Some(40401..=40403) | None)
            {
                return RegistryError::NotFound {
                    registry: Registry::Confluent,
                    id: id.to_string(),
                    message,
                };
            }
            RegistryError::Request {
                registry: Registry::Confluent,
                id: id.to_string(),
                code: match r.status.as_u16() {
                    401 | 403 => "schema_registry_auth",
                    s if s >= 500 => "schema_registry_unavailable",
                    _ => "schema_registry_refused",
                },
                message: format!("HTTP {}: {message}", r.status.as_u16()),
                class: r.class(),
            }
        }
    }
}

impl SchemaLookup for SchemaRegistry {
    fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        self.cache.lookup(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
    use crate::fate::{Fate, Fault};
    use crate::schema_cache::{MAX_REMEMBERED_FAILURES, PREFETCH_CONCURRENCY};
    use crate::schema_registry::test_support::{deadline, ok_body, registry};
    use crate::testing::MockServer;
    use event_decoding::{Decoding, ErrorCode, KafkaRecord, ValueFormat};

    #[tokio::test]
    async fn fetches_once_with_basic_auth_and_caches() {
        let server = MockServer::start(vec![(200, vec![], ok_body())]).await;
        let r = registry(server.url());
        let ids = BTreeSet::from(["7".to_string()]);
        r.prefetch(&ids, &deadline()).await;
        r.prefetch(&ids, &deadline()).await;
        assert_eq!(r.fetches(), 1);
        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].head.starts_with("GET /schemas/ids/7 "),
            "{}",
            seen[0].head
        );
        // base64("key-1:pw-s3cr3t")
        assert!(
            seen[0]
                .head
                .to_ascii_lowercase()
                .contains("authorization: basic a2v5lte6chctcznjcjn0"),
            "{}",
            seen[0].head
        );
        let record = KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 7, 84]);
        let v: serde_json::Value = record
            .value_json_via(Decoding::new(ValueFormat::Avro, &r))
            .unwrap();
        assert_eq!(v, serde_json::json!({"page_id": 42}));
    }

    /// Confluent's registry answers bad basic-auth credentials 401 `{"error_code":401,
    /// "message":"Unauthorized"}`: the password is re-read from its secret (the user name with
    /// it, one secret) and the fetch sent once more with the rotated pair.
    #[tokio::test]
    async fn unauthorized_re_reads_the_credentials_and_retries_once() {
        let refused = r#"{"error_code":401,"message":"Unauthorized"}"#;
        let server = MockServer::start(vec![
            (401, vec![], refused.into()),
            (200, vec![], ok_body()),
        ])
        .await;
        let value = Arc::new(std::sync::Mutex::new(
            r#"{"username":"u1","password":"p1"}"#.to_owned(),
        ));
        let policy = crate::secrets::RefreshPolicy {
            ttl: None,
            ..Default::default()
        };
        let read = |field: &'static str| {
            let value = value.clone();
            Credential::from_reader(
                "registry",
                "SCHEMA_REGISTRY_SECRET_ID",
                field,
                policy,
                move || {
                    let now = value.lock().unwrap().clone();
                    async move { Ok(Some(Secret::new(now))) }
                },
            )
        };
        let mut c = RegistryConfig::new(server.url());
        let user = read("username").await.unwrap();
        let password = user.other_field("password").await.unwrap().unwrap();
        c.auth = Some((user, password));
        let r = SchemaRegistry::new(c).unwrap();
        *value.lock().unwrap() = r#"{"username":"u2","password":"p2"}"#.into();
        let ids = BTreeSet::from(["7".to_string()]);
        r.prefetch(&ids, &deadline()).await;
        let auths: Vec<String> = server
            .requests()
            .iter()
            .filter_map(|q| {
                let head = q.head.to_ascii_lowercase();
                head.lines()
                    .find_map(|l| l.strip_prefix("authorization: basic ").map(str::to_owned))
            })
            .collect();
        // base64("u1:p1"), then base64("u2:p2").
        assert_eq!(auths, ["dte6cde=", "dti6cdi="]);
        let record = KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 7, 84]);
        let v: serde_json::Value = record
            .value_json_via(Decoding::new(ValueFormat::Avro, &r))
            .unwrap();
        assert_eq!(v, serde_json::json!({"page_id": 42}));
    }

    #[tokio::test]
    async fn a_batch_of_many_unknown_ids_is_fetched_concurrently_and_its_failures_bounded() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache: SchemaCache<RegistryError> = SchemaCache::default();
        let (in_flight, most, calls) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let unknown = |id: String| {
            let (in_flight, most, calls) = (&in_flight, &most, &calls);
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                most.fetch_max(now, Ordering::Relaxed);
                // An answer takes a while: the other fetches start meanwhile.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
                Err(RegistryError::Unusable {
                    registry: Registry::Confluent,
                    id,
                    problem: "unknown".into(),
                })
            }
        };
        let ids: BTreeSet<String> = (0..MAX_REMEMBERED_FAILURES + 50)
            .map(|i| i.to_string())
            .collect();
        cache.prefetch(&ids, unknown).await;
        assert_eq!(
            calls.load(Ordering::Relaxed),
            ids.len(),
            "each id asked once"
        );
        assert_eq!(
            most.load(Ordering::Relaxed),
            PREFETCH_CONCURRENCY,
            "bounded, not one by one"
        );
        assert_eq!(
            cache.failures(),
            MAX_REMEMBERED_FAILURES,
            "failures bounded"
        );
        assert!(cache.lookup("0").is_err());

        // The next batch makes room by forgetting the failures of ids it does not name.
        let next: BTreeSet<String> = ["x".to_string(), "y".to_string()].into();
        cache.prefetch(&next, unknown).await;
        assert_eq!(cache.failures(), 2);
    }

    #[tokio::test]
    async fn not_found_is_unknown_and_asked_again_next_batch() {
        let server = MockServer::start(vec![
            (
                404,
                vec![],
                r#"{"error_code":40403,"message":"Schema 9 not found"}"#.into(),
            ),
            (200, vec![], ok_body()),
        ])
        .await;
        let r = registry(server.url());
        let ids = BTreeSet::from(["9".to_string()]);
        r.prefetch(&ids, &deadline()).await;
        let record = KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 9, 84]);
        let d = Decoding::new(ValueFormat::Avro, &r);
        let err = record.value_json_via::<serde_json::Value>(d).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSchemaId);
        assert!(err.message.contains("Schema 9 not found"), "{err}");
        assert!(!err.is_permanent());
        // 404 is not retried within the batch; the next batch asks again.
        assert_eq!(server.requests().len(), 1);
        r.prefetch(&ids, &deadline()).await;
        assert!(record.value_json_via::<serde_json::Value>(d).is_ok());
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_reported_without_the_password() {
        let server = MockServer::start(vec![(
            503,
            vec![],
            r#"{"error_code":50003,"message":"busy pw-s3cr3t"}"#.into(),
        )])
        .await;
        let r = registry(server.url());
        let ids = BTreeSet::from(["3".to_string()]);
        r.prefetch(&ids, &deadline()).await;
        assert_eq!(server.requests().len(), 3, "three attempts");
        let record = KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 3, 84]);
        let err = record
            .value_json_via::<serde_json::Value>(Decoding::new(ValueFormat::Avro, &r))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaFetchFailed);
        assert!(err.message.contains("HTTP 503"), "{err}");
        assert!(!err.message.contains("pw-s3cr3t"), "{err}");
        assert!(!format!("{r:?}").contains("pw-s3cr3t"));
    }

    #[tokio::test]
    async fn unusable_answers_and_ids() {
        let server = MockServer::start(vec![
            (
                200,
                vec![],
                serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})
                    .to_string(),
            ),
            (
                200,
                vec![],
                serde_json::json!({"schema": "{\"type\":\"nope\"}"}).to_string(),
            ),
        ])
        .await;
        let r = registry(server.url());
        let e = r.fetch("1", &deadline()).await.unwrap_err();
        assert!(matches!(e, RegistryError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains("declares no message"), "{e}");
        let e = r.fetch("2", &deadline()).await.unwrap_err();
        assert!(e.to_string().contains("not a valid Avro schema"), "{e}");
        // A Glue schema version id is not sent to a Confluent registry, and the id is never
        // spliced raw into the URL.
        let e = r.fetch("../subjects", &deadline()).await.unwrap_err();
        assert_eq!(e.error_code(), "schema_unusable");
        assert_eq!(server.requests().len(), 2);
        assert_eq!(
            r.schema_url("a/b"),
            format!("{}/schemas/ids/a%2Fb", server.url())
        );
    }

    #[tokio::test]
    async fn unreachable_registry_and_spent_deadline_are_transient() {
        let port = crate::testing::unused_port();
        let r = registry(format!("http://127.0.0.1:{port}"));
        let e = r.fetch("1", &deadline()).await.unwrap_err();
        assert!(e.class().is_transient(), "{e}");
        assert_ne!(e.class(), ErrorClass::Data);
        let e = r
            .fetch("1", &Deadline::after(Duration::ZERO))
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "schema_fetch_failed");
        assert!(e.class().is_transient());
    }

    /// A Protobuf schema importing `money.proto`, which imports `currency.proto`: the registry
    /// serves the main schema with `schemaType` and `references`, and each reference under its
    /// subject and version (Confluent's REST API, as the Protobuf serializer registers imports).
    #[tokio::test]
    async fn protobuf_schemas_with_nested_references() {
        let main = serde_json::json!({
            "schemaType": "PROTOBUF",
            "schema": "syntax = \"proto3\"; package shop; import \"money.proto\";\n\
                       message Gift { int64 page_id = 1; shop.Money price = 2; }",
            "references": [{"name": "money.proto", "subject": "money.proto", "version": 2}],
        });
        let money = serde_json::json!({
            "subject": "money.proto", "version": 2, "id": 11, "schemaType": "PROTOBUF",
            "schema": "syntax = \"proto3\"; package shop; import \"shop/currency.proto\";\n\
                       message Money { int64 cents = 1; Currency currency = 2; }",
            "references": [{"name": "shop/currency.proto", "subject": "shop/currency.proto", "version": 1}],
        });
        let currency = serde_json::json!({
            "subject": "shop/currency.proto", "version": 1, "id": 12, "schemaType": "PROTOBUF",
            "schema": "syntax = \"proto3\"; package shop; enum Currency { EUR = 0; USD = 1; }",
        });
        let server = MockServer::start(vec![
            (200, vec![], main.to_string()),
            (200, vec![], money.to_string()),
            (200, vec![], currency.to_string()),
        ])
        .await;
        let r = registry(server.url());
        r.prefetch(&BTreeSet::from(["10".to_string()]), &deadline())
            .await;
        let heads: Vec<String> = server
            .requests()
            .iter()
            .map(|q| q.head.lines().next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            heads,
            [
                "GET /schemas/ids/10 HTTP/1.1",
                "GET /subjects/money%2Eproto/versions/2 HTTP/1.1",
                "GET /subjects/shop%2Fcurrency%2Eproto/versions/1 HTTP/1.1",
            ]
        );
        // magic, id 10, message indexes [0], page_id 7, price {cents 250, currency USD}
        let value = [0, 0, 0, 0, 10, 0, 8, 7, 18, 5, 8, 0xfa, 0x01, 16, 1];
        let record = KafkaRecord::new("t", 0, 0, 0).with_value(value);
        let v: serde_json::Value = record
            .value_json_via(Decoding::new(ValueFormat::Auto, &r))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"page_id": 7, "price": {"cents": 250, "currency": "USD"}})
        );
    }

    #[tokio::test]
    async fn avro_references_and_json_schemas() {
        let address = r#"{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}"#;
        let server = MockServer::start(vec![
            (
                200,
                vec![],
                serde_json::json!({
                    "schema": r#"{"type":"record","name":"Gift","namespace":"shop","fields":[{"name":"to","type":"Address"}]}"#,
                    "references": [{"name": "shop.Address", "subject": "address-value", "version": 1}],
                })
                .to_string(),
            ),
            (200, vec![], serde_json::json!({"schema": address}).to_string()),
            (
                200,
                vec![],
                serde_json::json!({"schemaType": "JSON", "schema": r#"{"type":"object"}"#})
                    .to_string(),
            ),
            (
                200,
                vec![],
                serde_json::json!({"schemaType": "XML", "schema": "<x/>"}).to_string(),
            ),
        ])
        .await;
        let r = registry(server.url());
        // One id at a time: the scripted answers come in the order of the requests.
        for id in ["1", "2", "3"] {
            r.prefetch(&BTreeSet::from([id.to_string()]), &deadline())
                .await;
        }
        let d = Decoding::new(ValueFormat::Auto, &r);
        let avro = KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 1, 4, b'O', b'z']);
        let v: serde_json::Value = avro.value_json_via(d).unwrap();
        assert_eq!(v, serde_json::json!({"to": {"city": "Oz"}}));
        let json = KafkaRecord::new("t", 0, 1, 0).with_value(b"\0\0\0\0\x02{\"page_id\":1}");
        let v: serde_json::Value = json.value_json_via(d).unwrap();
        assert_eq!(v, serde_json::json!({"page_id": 1}));
        let xml = KafkaRecord::new("t", 0, 2, 0).with_value([0, 0, 0, 0, 3, b'<']);
        let err = xml.value_json_via::<serde_json::Value>(d).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSchemaId);
        assert!(err.message.contains("XML"), "{err}");
        assert!(!err.is_permanent());
    }

    #[tokio::test]
    async fn a_missing_reference_makes_the_schema_unusable() {
        let server = MockServer::start(vec![
            (
                200,
                vec![],
                serde_json::json!({
                    "schemaType": "PROTOBUF",
                    "schema": "syntax = \"proto3\"; import \"gone.proto\"; message A { int32 a = 1; }",
                    "references": [{"name": "gone.proto", "subject": "gone", "version": 4}],
                })
                .to_string(),
            ),
            (
                404,
                vec![],
                r#"{"error_code":40402,"message":"Version 4 not found."}"#.into(),
            ),
        ])
        .await;
        let r = registry(server.url());
        let e = r.fetch("5", &deadline()).await.unwrap_err();
        assert_eq!(e.error_code(), "schema_unusable", "{e}");
        assert!(e.to_string().contains("gone.proto (gone version 4)"), "{e}");
        assert_eq!(e.class(), ErrorClass::Environment);
        // 404 is not retried.
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn references_that_refer_forever_are_cut_off() {
        // Every subject version refers to the next one: a registry loop or a runaway chain.
        let mut answers = Vec::new();
        for v in 0..=MAX_REFERENCE_DEPTH as i64 + 1 {
            answers.push((
                200,
                vec![],
                serde_json::json!({
                    "schemaType": "PROTOBUF",
                    "schema": format!("syntax = \"proto3\"; message M{v} {{ int32 a = 1; }}"),
                    "references": [{"name": format!("r{v}.proto"), "subject": "r", "version": v + 1}],
                })
                .to_string(),
            ));
        }
        let server = MockServer::start(answers).await;
        let r = registry(server.url());
        let e = r.fetch("1", &deadline()).await.unwrap_err();
        assert!(e.to_string().contains("nest deeper than"), "{e}");
        assert_eq!(server.requests().len(), MAX_REFERENCE_DEPTH + 1);
    }

    #[tokio::test]
    async fn refusals_keep_their_fates() {
        // A 404 is an unknown id, a 401 a refused key: both the environment's, never the
        // record's; a 503 is transient.
        let server = MockServer::start(vec![
            (
                404,
                vec![],
                r#"{"error_code":40403,"message":"Schema 9 not found"}"#.into(),
            ),
            (401, vec![], r#"{"message":"Unauthorized"}"#.into()),
        ])
        .await;
        let r = registry(server.url());
        let missing = r.fetch("9", &deadline()).await.unwrap_err();
        assert_eq!(
            Fate::from_error(&missing),
            Fate::Failed {
                code: "unknown_schema_id",
                message: "schema registry has no schema 9: Schema 9 not found".into(),
                fault: Fault::Environment,
            }
        );
        let refused = r.fetch("9", &deadline()).await.unwrap_err();
        assert!(
            matches!(
                Fate::from_error(&refused),
                Fate::Failed {
                    code: "schema_fetch_failed",
                    fault: Fault::Environment,
                    ..
                }
            ),
            "{refused}"
        );
        let server = MockServer::start(vec![(503, vec![], "busy".into()); 3]).await;
        let down = registry(server.url())
            .fetch("9", &deadline())
            .await
            .unwrap_err();
        assert!(
            matches!(
                Fate::from_error(&down),
                Fate::Failed {
                    code: "schema_fetch_failed",
                    fault: Fault::Transient,
                    ..
                }
            ),
            "{down}"
        );
    }
}
