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
use event_decoding::{
    AvroSchema, DataFormat, Decoding, KafkaRecord, KeyFormat, NoSchemas, ProtoSchema, SchemaLookup,
    SchemaUnavailable, ValueFormat, WriterSchema, key_and_value_schema_ids,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};

use crate::config::{ConfigError, Env};
use crate::error::{Classify, ErrorClass};
use crate::glue_registry::{GlueRegistry, GlueRegistryArn, GlueRegistryConfig};
use crate::http::{self, Failure, Sender};
use crate::init::InitError;
use crate::retry::{Deadline, RetryPolicy};
use crate::schema_cache::SchemaCache;
use crate::secrets::{Credential, Refusal, Secret, SecretSpec};

/// What a function reads about values and the registry, at cold start.
///
/// | variable | meaning |
/// | --- | --- |
/// | `VALUE_FORMAT` | `json` (default), `avro`, `protobuf` or `auto` ([`ValueFormat`]); JSON Schema values are read by all but `json` |
/// | `SCHEMA_REGISTRY_URL` | the registry's base URL, or an AWS Glue registry ARN (`arn:aws:glue:<region>:<account>:registry/<name>`: [`GlueRegistry`]); required for `avro`, `protobuf` and `auto` |
/// | `SCHEMA_REGISTRY_USERNAME`, `SCHEMA_REGISTRY_PASSWORD` | basic auth (or an API key and its secret) |
/// | `SCHEMA_REGISTRY_SECRET_ID` | instead: a Secrets Manager secret `{"username": .., "password": ..}` (the one the ESM's `BASIC_AUTH` access config uses) |
/// | `PROTOBUF_DESCRIPTOR_SET`, `PROTOBUF_MESSAGE` | with `protobuf`: a binary `FileDescriptorSet` file (`protoc --include_imports --descriptor_set_out`) and the full name of the message of values that carry no schema id (plain Protobuf bytes); then `SCHEMA_REGISTRY_URL` is optional, and without it the message also reads values whose prefix or metadata names a schema id (their message index skipped) |
/// | `AVRO_SCHEMA_FILE` | with `avro`: an Avro schema file (`.avsc`, JSON) of values that carry no schema id (plain Avro bytes); then `SCHEMA_REGISTRY_URL` is optional, and without it the schema also reads values whose prefix or metadata names a schema id |
/// | `KEY_FORMAT` | `auto` (default: keys as they always were read, [`KeyFormat::Auto`]), `string`, `json`, `avro` or `protobuf`: keys decoded with their own schemas ([`KeyFormat`]); `avro` and `protobuf` need `SCHEMA_REGISTRY_URL` or a shipped key schema |
/// | `KEY_AVRO_SCHEMA_FILE`, `KEY_PROTOBUF_DESCRIPTOR_SET` + `KEY_PROTOBUF_MESSAGE` | the keys' twins of `AVRO_SCHEMA_FILE` (with `KEY_FORMAT=avro`) and `PROTOBUF_DESCRIPTOR_SET` + `PROTOBUF_MESSAGE` (with `KEY_FORMAT=protobuf`) |
///
/// A Glue registry is read with the function's AWS credentials (`glue:GetSchemaVersion`);
/// `AWS_ENDPOINT_URL_GLUE` overrides its endpoint. Requests use `HTTP_TIMEOUT_MS`, `HTTP_CONNECT_TIMEOUT_MS` and the `RETRY_*` settings.
///
/// ```
/// use lambda_kit::config::Env;
/// use lambda_kit::schema_registry::ValueSettings;
/// use event_decoding::ValueFormat;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let s = ValueSettings::from_env(&Env::empty()).await.unwrap();
/// assert_eq!(s.format, ValueFormat::Json);
/// assert!(s.registry.is_none());
/// let e = ValueSettings::from_env(&Env::from_pairs([("VALUE_FORMAT", "avro")])).await.unwrap_err();
/// assert!(e.to_string().contains("SCHEMA_REGISTRY_URL"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ValueSettings {
    /// `VALUE_FORMAT`.
    pub format: ValueFormat,
    /// The Confluent-compatible registry, when values may be described by one.
    pub registry: Option<RegistryConfig>,
    /// Instead: the AWS Glue Schema Registry (`SCHEMA_REGISTRY_URL` is its ARN).
    pub glue: Option<GlueRegistryConfig>,
    /// The schema of plain values: Protobuf (`PROTOBUF_DESCRIPTOR_SET` + `PROTOBUF_MESSAGE`) or
    /// Avro (`AVRO_SCHEMA_FILE`).
    pub plain: Option<Arc<WriterSchema>>,
    /// `KEY_FORMAT`.
    pub key_format: KeyFormat,
    /// The schema of plain keys: `KEY_PROTOBUF_DESCRIPTOR_SET` + `KEY_PROTOBUF_MESSAGE` or
    /// `KEY_AVRO_SCHEMA_FILE`.
    pub key_plain: Option<Arc<WriterSchema>>,
}

/// The settings that ship a schema for one part of a record (values, or keys).
struct ShippedNames {
    /// The part's format setting.
    format: &'static str,
    avro: &'static str,
    descriptor_set: &'static str,
    message: &'static str,
    /// `values'` or `keys'`.
    whose: &'static str,
}

const VALUE_SCHEMAS: ShippedNames = ShippedNames {
    format: "VALUE_FORMAT",
    avro: "AVRO_SCHEMA_FILE",
    descriptor_set: "PROTOBUF_DESCRIPTOR_SET",
    message: "PROTOBUF_MESSAGE",
    whose: "values'",
};

const KEY_SCHEMAS: ShippedNames = ShippedNames {
    format: "KEY_FORMAT",
    avro: "KEY_AVRO_SCHEMA_FILE",
    descriptor_set: "KEY_PROTOBUF_DESCRIPTOR_SET",
    message: "KEY_PROTOBUF_MESSAGE",
    whose: "keys'",
};

/// Which shipped schema a format reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shippable {
    Avro,
    Protobuf,
    Neither,
}

impl From<ValueFormat> for Shippable {
    fn from(f: ValueFormat) -> Self {
        match f {
            ValueFormat::Avro => Shippable::Avro,
            ValueFormat::Protobuf => Shippable::Protobuf,
            ValueFormat::Json | ValueFormat::Auto => Shippable::Neither,
        }
    }
}

impl From<KeyFormat> for Shippable {
    fn from(f: KeyFormat) -> Self {
        match f {
            KeyFormat::Avro => Shippable::Avro,
            KeyFormat::Protobuf => Shippable::Protobuf,
            KeyFormat::Auto | KeyFormat::String | KeyFormat::Json => Shippable::Neither,
        }
    }
}

/// The shipped schema of one part, read at cold start.
fn shipped_schema(
    env: &Env,
    names: &ShippedNames,
    format: impl Into<Shippable> + fmt::Display + Copy,
) -> Result<Option<Arc<WriterSchema>>, ConfigError> {
    match plain_protobuf(env, names, format)? {
        Some(p) => Ok(Some(p)),
        None => plain_avro(env, names, format),
    }
}

impl ValueSettings {
    /// Reads the settings; credentials from Secrets Manager are fetched here, once.
    pub async fn from_env(env: &Env) -> Result<Self, InitError> {
        let format = env.parse_or("VALUE_FORMAT", ValueFormat::Json)?;
        let plain = shipped_schema(env, &VALUE_SCHEMAS, format)?;
        let key_format = env.parse_or("KEY_FORMAT", KeyFormat::Auto)?;
        let key_plain = shipped_schema(env, &KEY_SCHEMAS, key_format)?;
        let (mut registry, mut glue) = (None, None);
        match env.get("SCHEMA_REGISTRY_URL") {
            Some(arn) if GlueRegistryArn::looks_like(&arn) => {
                // Glue is read with the function's role: basic-auth settings would be ignored.
                if let Some(var) = [
                    "SCHEMA_REGISTRY_USERNAME",
                    "SCHEMA_REGISTRY_PASSWORD",
                    "SCHEMA_REGISTRY_SECRET_ID",
                ]
                .into_iter()
                .find(|v| env.get(v).is_some())
                {
                    return Err(ConfigError::new(
                        var,
                        "does not apply to an AWS Glue registry (SCHEMA_REGISTRY_URL is a Glue registry ARN, read with the function's IAM role and glue:GetSchemaVersion); unset it",
                    )
                    .into());
                }
                glue = Some(GlueRegistryConfig::from_env(env, &arn).await?);
            }
            Some(url) => registry = Some(RegistryConfig::from_env(env, &url).await?),
            None if format != ValueFormat::Json && plain.is_none() => {
                return Err(ConfigError::new(
                    "SCHEMA_REGISTRY_URL",
                    format!("required with VALUE_FORMAT={format}: the registry to fetch writer schemas from"),
                )
                .into());
            }
            None if Shippable::from(key_format) != Shippable::Neither && key_plain.is_none() => {
                let shipped = match key_format {
                    KeyFormat::Avro => "KEY_AVRO_SCHEMA_FILE",
                    _ => "KEY_PROTOBUF_DESCRIPTOR_SET",
                };
                return Err(ConfigError::new(
                    "SCHEMA_REGISTRY_URL",
                    format!("required with KEY_FORMAT={key_format} unless {shipped} ships the keys' schema: the registry to fetch the keys' writer schemas from"),
                )
                .into());
            }
            None => {}
        };
        Ok(Self {
            format,
            registry,
            glue,
            plain,
            key_format,
            key_plain,
        })
    }

    /// What the function decodes with.
    pub fn build(&self) -> Result<Values, RegistryError> {
        Ok(Values {
            format: self.format,
            registry: self.registry.clone().map(SchemaRegistry::new).transpose()?,
            glue: self.glue.clone().map(GlueRegistry::new),
            plain: self.plain.clone().map(Shipped),
            key_format: self.key_format,
            key_plain: self.key_plain.clone().map(Shipped),
        })
    }

    /// Like [`build`](Self::build), the registry on a connection pool the function already has.
    pub fn build_on(&self, http: &reqwest::Client) -> Result<Values, RegistryError> {
        Ok(Values {
            format: self.format,
            registry: self
                .registry
                .clone()
                .map(|c| SchemaRegistry::with_http(c, http.clone()))
                .transpose()?,
            glue: self.glue.clone().map(GlueRegistry::new),
            plain: self.plain.clone().map(Shipped),
            key_format: self.key_format,
            key_plain: self.key_plain.clone().map(Shipped),
        })
    }
}

/// `VALUE_FORMAT` and the registry client, built once per process: a function fetches a batch's
/// schemas with [`prepare`](Self::prepare) (its
/// [`BatchFunction::prepare`](crate::runner::BatchFunction::prepare)) and decodes each record with
/// [`decoding`](Self::decoding).
///
/// ```
/// use lambda_kit::schema_registry::Values;
/// let v = Values::default();
/// assert_eq!(v.decoding().format, event_decoding::ValueFormat::Json);
/// ```
#[derive(Debug, Default)]
pub struct Values {
    format: ValueFormat,
    registry: Option<SchemaRegistry>,
    glue: Option<GlueRegistry>,
    plain: Option<Shipped>,
    key_format: KeyFormat,
    key_plain: Option<Shipped>,
}

/// A schema shipped with the function ([`ValueSettings::plain`]). Without a registry it also
/// answers for every schema id a record names (metadata, Confluent prefix, Glue header): the
/// producer's registry is not reachable from here, and the user said what the values are, so such
/// a record is decoded with it (dead-lettered `schema_mismatch` if it does not fit) rather than
/// redelivered forever for a schema nothing can fetch. The id is not checked; a Protobuf
/// framing's message index is read past and `PROTOBUF_MESSAGE` read
/// ([`ProtoSchema::is_pinned`]).
#[derive(Debug)]
struct Shipped(Arc<WriterSchema>);

impl SchemaLookup for Shipped {
    fn schema(&self, _id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        Ok(self.0.clone())
    }
}

impl Values {
    /// `format` with `registry`.
    pub fn new(format: ValueFormat, registry: Option<SchemaRegistry>) -> Self {
        Self {
            format,
            registry,
            glue: None,
            plain: None,
            key_format: KeyFormat::Auto,
            key_plain: None,
        }
    }

    /// With `schema` for plain values (no metadata, no wire prefix) under `VALUE_FORMAT=protobuf`
    /// or `avro` ([`Decoding::with_plain`]).
    pub fn with_plain(mut self, schema: Arc<WriterSchema>) -> Self {
        self.plain = Some(Shipped(schema));
        self
    }

    /// `format` with the Glue registry `glue`.
    pub fn with_glue(format: ValueFormat, glue: GlueRegistry) -> Self {
        Self {
            format,
            registry: None,
            glue: Some(glue),
            plain: None,
            key_format: KeyFormat::Auto,
            key_plain: None,
        }
    }

    /// Keys decoded as `format` says (`KEY_FORMAT`), with `plain` for keys that name no schema
    /// ([`Decoding::with_keys`]).
    pub fn with_keys(mut self, format: KeyFormat, plain: Option<Arc<WriterSchema>>) -> Self {
        self.key_format = format;
        self.key_plain = plain.map(Shipped);
        self
    }

    /// How records are decoded.
    pub fn decoding(&self) -> Decoding<'_> {
        let d = match (&self.registry, &self.glue) {
            (Some(r), _) => Decoding::new(self.format, r),
            (None, Some(g)) => Decoding::new(self.format, g),
            (None, None) => match &self.plain {
                Some(s) => Decoding::new(self.format, s),
                None => Decoding::new(self.format, &NoSchemas),
            },
        };
        let d = match &self.plain {
            Some(p) => d.with_plain(&p.0),
            None => d,
        };
        // Keys name ids of the registry when there is one; without, the shipped key schema
        // answers for them as the values' does for values.
        let key_schemas = match (&self.registry, &self.glue, &self.key_plain) {
            (None, None, Some(k)) => Some(k as &dyn SchemaLookup),
            _ => None,
        };
        d.with_keys(
            self.key_format,
            key_schemas,
            self.key_plain.as_ref().map(|k| &*k.0),
        )
    }

    /// `KEY_FORMAT`.
    pub fn key_format(&self) -> KeyFormat {
        self.key_format
    }

    /// The Glue registry client, when `SCHEMA_REGISTRY_URL` is a Glue registry ARN.
    pub fn glue(&self) -> Option<&GlueRegistry> {
        self.glue.as_ref()
    }

    /// The registry client, when one is configured.
    pub fn registry(&self) -> Option<&SchemaRegistry> {
        self.registry.as_ref()
    }

    /// Fetches the writer schemas `records` need that are not cached yet (nothing for JSON).
    pub async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        if self.registry.is_none() && self.glue.is_none() {
            return;
        }
        let ids = key_and_value_schema_ids(records, self.format, self.key_format);
        if ids.is_empty() {
            return;
        }
        if let Some(registry) = &self.registry {
            registry.prefetch(&ids, deadline).await;
        } else if let Some(glue) = &self.glue {
            glue.prefetch(&ids, deadline).await;
        }
    }
}

/// The bytes of the shipped schema file `path`, read at cold start, when `format` (of the setting
/// `names.format`) is `wanted`, the one the file's setting `var` goes with; the errors name `var`.
fn shipped_file(
    names: &ShippedNames,
    var: &'static str,
    path: &str,
    format: impl Into<Shippable> + fmt::Display + Copy,
    wanted: Shippable,
) -> Result<Vec<u8>, ConfigError> {
    if format.into() != wanted {
        let wanted = if wanted == Shippable::Avro {
            "avro"
        } else {
            "protobuf"
        };
        return Err(ConfigError::new(
            var,
            format!("only read with {}={wanted} (it is {format})", names.format),
        ));
    }
    std::fs::read(path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))
}

/// `AVRO_SCHEMA_FILE` (or the keys' twin), read and parsed at cold start, only with the format
/// `avro`.
fn plain_avro(
    env: &Env,
    names: &ShippedNames,
    format: impl Into<Shippable> + fmt::Display + Copy,
) -> Result<Option<Arc<WriterSchema>>, ConfigError> {
    let var = names.avro;
    let Some(path) = env.get(var) else {
        return Ok(None);
    };
    let bytes = shipped_file(names, var, &path, format, Shippable::Avro)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::new(var, format!("{path} is not UTF-8 text")))?;
    let schema = AvroSchema::parse(&text)
        .map_err(|e| ConfigError::new(var, format!("{path} is not a valid Avro schema: {e}")))?;
    Ok(Some(Arc::new(WriterSchema::from(schema))))
}

/// `PROTOBUF_DESCRIPTOR_SET` and `PROTOBUF_MESSAGE` (or the keys' twins), read and compiled at
/// cold start: both or neither, and only with the format `protobuf`.
fn plain_protobuf(
    env: &Env,
    names: &ShippedNames,
    format: impl Into<Shippable> + fmt::Display + Copy,
) -> Result<Option<Arc<WriterSchema>>, ConfigError> {
    let (path, message) = match (env.get(names.descriptor_set), env.get(names.message)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ConfigError::new(
                names.message,
                format!(
                    "required with {}: the full name of the {} message (package.Message)",
                    names.descriptor_set, names.whose
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                names.descriptor_set,
                format!(
                    "required with {}: the path of a binary FileDescriptorSet",
                    names.message
                ),
            ));
        }
        (Some(p), Some(m)) => (p, m),
    };
    let bytes = shipped_file(
        names,
        names.descriptor_set,
        &path,
        format,
        Shippable::Protobuf,
    )?;
    let schema = ProtoSchema::from_descriptor_set(&bytes, &message).map_err(|e| {
        let var = if e.contains("has no message") {
            names.message
        } else {
            names.descriptor_set
        };
        ConfigError::new(var, e)
    })?;
    Ok(Some(Arc::new(WriterSchema::from(schema))))
}

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

    async fn from_env(env: &Env, url: &str) -> Result<Self, InitError> {
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

/// Fetching a schema failed.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The client could not be built.
    #[error("schema registry client: {0}")]
    Build(String),
    /// The registry has no schema with this id (404, `error_code` 40403).
    #[error("schema registry has no schema {id}: {message}")]
    NotFound {
        /// The id.
        id: String,
        /// The registry's message.
        message: String,
    },
    /// The schema is not one this client can use (an unknown type, a reference that cannot be
    /// had, does not parse).
    #[error("schema {id} cannot be used: {problem}")]
    Unusable {
        /// The id.
        id: String,
        /// What is wrong.
        problem: String,
    },
    /// Any other answer, or none: network, 5xx, 401/403, deadline.
    #[error("schema registry request for schema {id} failed ({code}): {message}")]
    Request {
        /// The id.
        id: String,
        /// Low-cardinality code.
        code: &'static str,
        /// What happened (never the credentials).
        message: String,
        /// [`ErrorClass`] of the failure.
        class: ErrorClass,
    },
}

impl Classify for RegistryError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Request { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }
    fn error_code(&self) -> &'static str {
        match self {
            Self::Build(_) => "schema_registry_build",
            Self::NotFound { .. } => "unknown_schema_id",
            Self::Unusable { .. } => "schema_unusable",
            Self::Request { .. } => "schema_fetch_failed",
        }
    }
    /// Never the record's fault: a schema that cannot be had is the environment's.
    fn blames_input(&self) -> bool {
        false
    }
}

impl From<&RegistryError> for SchemaUnavailable {
    fn from(e: &RegistryError) -> Self {
        match e {
            RegistryError::NotFound { .. } | RegistryError::Unusable { .. } => {
                SchemaUnavailable::Unknown(e.to_string())
            }
            RegistryError::Build(_) | RegistryError::Request { .. } => {
                SchemaUnavailable::FetchFailed(e.to_string())
            }
        }
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

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

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
                id: id.to_string(),
                problem: "not a Confluent schema id (a decimal number); a Glue schema version id needs a Glue registry".into(),
            });
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unusable = |problem: String| RegistryError::Unusable {
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
        let expired = || RegistryError::Request {
            id: id.to_string(),
            code: "deadline",
            message: "the invocation deadline passed before the schema could be fetched".into(),
            class: ErrorClass::TRANSIENT,
        };
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

/// A 401/403 is the registry refusing the credentials; one that stands after they were re-read
/// says which setting to fix.
impl Refusal for RegistryError {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Request { code, .. } if *code == "schema_registry_auth")
    }

    fn with_note(self, note: String) -> Self {
        match self {
            Self::Request {
                id,
                code,
                message,
                class,
            } => Self::Request {
                id,
                code,
                message: format!("{message}; {note}"),
                class,
            },
            other => other,
        }
    }
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
                    id: id.to_string(),
                    message,
                };
            }
            RegistryError::Request {
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
    use crate::schema_cache::{MAX_REMEMBERED_FAILURES, PREFETCH_CONCURRENCY};
    use crate::testing::MockServer;
    use event_decoding::ErrorCode;

    const GIFT: &str =
        r#"{"type":"record","name":"Gift","fields":[{"name":"page_id","type":"long"}]}"#;

    fn ok_body() -> String {
        serde_json::json!({ "schema": GIFT }).to_string()
    }

    fn registry(url: String) -> SchemaRegistry {
        let mut c = RegistryConfig::new(url);
        c.retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        c.auth = Some((Secret::new("key-1").into(), Secret::new("pw-s3cr3t").into()));
        SchemaRegistry::new(c).unwrap()
    }

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(10))
    }

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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = registry(format!("http://127.0.0.1:{port}"));
        let e = r.fetch("1", &deadline()).await.unwrap_err();
        assert!(e.class().is_transient(), "{e}");
        assert!(!e.blames_input());
        let e = r
            .fetch("1", &Deadline::after(Duration::ZERO))
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "schema_fetch_failed");
        assert!(e.class().is_transient());
    }

    #[tokio::test]
    async fn settings_from_env() {
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "auto"),
            ("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"),
            ("SCHEMA_REGISTRY_USERNAME", "u"),
            ("SCHEMA_REGISTRY_PASSWORD", "p"),
        ]);
        let s = ValueSettings::from_env(&env).await.unwrap();
        assert_eq!(s.format, ValueFormat::Auto);
        let reg = s.registry.unwrap();
        assert_eq!(reg.auth.as_ref().unwrap().0.current().await.expose(), "u");
        assert!(!format!("{reg:?}").contains("\"p\""));
        let bad = Env::from_pairs([("VALUE_FORMAT", "xml")]);
        let e = ValueSettings::from_env(&bad).await.unwrap_err();
        assert!(e.to_string().contains("VALUE_FORMAT"), "{e}");
        let bad = Env::from_pairs([("SCHEMA_REGISTRY_URL", "https://u:p@reg.example")]);
        let e = ValueSettings::from_env(&bad).await.unwrap_err();
        assert!(e.to_string().contains("SCHEMA_REGISTRY_URL"), "{e}");
        assert!(!e.to_string().contains("u:p"), "{e}");
        // Basic auth over http to another host would travel in clear text.
        let bad = Env::from_pairs([
            ("SCHEMA_REGISTRY_URL", "http://registry.internal:8081"),
            ("SCHEMA_REGISTRY_USERNAME", "u"),
            ("SCHEMA_REGISTRY_PASSWORD", "p"),
        ]);
        let e = ValueSettings::from_env(&bad).await.unwrap_err();
        assert!(e.to_string().contains("SCHEMA_REGISTRY_URL"), "{e}");
        assert!(e.to_string().contains("https://"), "{e}");
        let open = Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("SCHEMA_REGISTRY_URL", "http://registry.internal:8081"),
        ]);
        assert!(ValueSettings::from_env(&open).await.is_ok());
        // A password without its user is a configuration error naming the variable.
        let bad = Env::from_pairs([
            ("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"),
            ("SCHEMA_REGISTRY_PASSWORD", "p"),
        ]);
        let e = ValueSettings::from_env(&bad).await.unwrap_err();
        assert!(e.to_string().contains("SCHEMA_REGISTRY_USERNAME"), "{e}");
    }

    #[test]
    fn schema_ids_of_a_batch_feed_prefetch() {
        let records = [KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 5, 2])];
        assert_eq!(
            event_decoding::schema_ids(&records, ValueFormat::Auto),
            BTreeSet::from(["5".to_string()])
        );
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
        assert!(!e.blames_input());
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
    async fn plain_protobuf_values_from_a_descriptor_set_file() {
        let set = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/schemas/gift.pb");
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "protobuf"),
            ("PROTOBUF_DESCRIPTOR_SET", set),
            ("PROTOBUF_MESSAGE", "vault.Gift"),
        ]);
        // No registry needed then.
        let s = ValueSettings::from_env(&env).await.unwrap();
        let values = s.build().unwrap();
        let record = KafkaRecord::new("t", 0, 0, 0).with_value([16, 9, 26, 1, b'q']);
        values
            .prepare(std::slice::from_ref(&record), &deadline())
            .await;
        let v: serde_json::Value = record.value_json_via(values.decoding()).unwrap();
        assert_eq!(v["page_id"], 9);
        // Each mistake names its variable.
        for (pairs, var) in [
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_DESCRIPTOR_SET", set),
                ],
                "PROTOBUF_MESSAGE",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "avro"),
                    ("PROTOBUF_DESCRIPTOR_SET", set),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_DESCRIPTOR_SET", set),
                    ("PROTOBUF_MESSAGE", "vault.Nope"),
                ],
                "PROTOBUF_MESSAGE",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_DESCRIPTOR_SET", "/nonexistent/set.pb"),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    (
                        "PROTOBUF_DESCRIPTOR_SET",
                        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
                    ),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            // Basic auth means nothing to a Glue registry (read with the function's role).
            (
                vec![
                    ("VALUE_FORMAT", "avro"),
                    (
                        "SCHEMA_REGISTRY_URL",
                        "arn:aws:glue:eu-west-1:123456789012:registry/gifts",
                    ),
                    ("SCHEMA_REGISTRY_SECRET_ID", "registry-creds"),
                ],
                "SCHEMA_REGISTRY_SECRET_ID",
            ),
        ] {
            let e = ValueSettings::from_env(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err();
            assert!(e.to_string().contains(var), "{pairs:?}: {e}");
        }
    }

    /// `AVRO_SCHEMA_FILE` without a registry, on the fastavro sample `gift-avro-plain.json`: plain
    /// bodies (also one starting with byte 0), and bodies whose prefix or metadata names a schema
    /// id, all decode with the shipped schema; a body cut short is `schema_mismatch`.
    #[tokio::test]
    async fn plain_avro_values_from_a_schema_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let avsc = format!("{dir}schemas/1-gift.avsc");
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("AVRO_SCHEMA_FILE", avsc.as_str()),
        ]);
        let values = ValueSettings::from_env(&env)
            .await
            .unwrap()
            .build()
            .unwrap();
        let bytes = std::fs::read(format!("{dir}gift-avro-plain.json")).unwrap();
        let batch = event_decoding::KafkaBatch::from_slice(&bytes).unwrap();
        values.prepare(batch.as_slice(), &deadline()).await;
        let results: Vec<_> = batch
            .records()
            .map(|r| r.value_json_via::<serde_json::Value>(values.decoding()))
            .collect();
        for (i, r) in results[..4].iter().enumerate() {
            let gift = r.as_ref().unwrap();
            assert_eq!(gift["page_id"], 708 + i, "{gift}");
            assert_eq!(gift["answer"], format!("Avro answer {}", 8 + i), "{gift}");
        }
        assert_eq!(
            results[1].as_ref().unwrap()["event_id"],
            serde_json::Value::Null
        );
        let cut = results[4].as_ref().unwrap_err();
        assert_eq!(cut.code, ErrorCode::SchemaMismatch, "{cut}");
        assert!(cut.is_permanent());
        // A body behind a prefix that does not fit names the shipped schema, not only its id.
        let cut = KafkaRecord::new("t", 0, 0, 0)
            .with_value([0, 0, 0, 0, 1, 2, 2, b'e'])
            .value_json_via::<serde_json::Value>(values.decoding())
            .unwrap_err();
        assert_eq!(cut.code, ErrorCode::SchemaMismatch, "{cut}");
        assert!(cut.message.contains("AVRO_SCHEMA_FILE"), "{cut}");
    }

    #[tokio::test]
    async fn avro_schema_file_mistakes_name_the_variable() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let avsc = format!("{dir}schemas/1-gift.avsc");
        let tmp = std::env::temp_dir().join(format!("avro-schema-file-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let bad = tmp.join("bad.avsc");
        std::fs::write(
            &bad,
            r#"{"type": "record", "name": "G", "fields": [{"name": "x"}]}"#,
        )
        .unwrap();
        let binary = tmp.join("binary.avsc");
        std::fs::write(&binary, [0xff, 0xfe, 0]).unwrap();
        let (bad, binary) = (bad.to_str().unwrap(), binary.to_str().unwrap());
        for (pairs, says) in [
            (
                vec![
                    ("VALUE_FORMAT", "avro"),
                    ("AVRO_SCHEMA_FILE", "/nonexistent/gift.avsc"),
                ],
                "cannot read",
            ),
            (
                vec![("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", dir)],
                "cannot read",
            ),
            (
                vec![("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", bad)],
                "not a valid Avro schema",
            ),
            (
                vec![("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", binary)],
                "not UTF-8",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("AVRO_SCHEMA_FILE", avsc.as_str()),
                ],
                "only read with VALUE_FORMAT=avro",
            ),
            (
                vec![("AVRO_SCHEMA_FILE", avsc.as_str())],
                "only read with VALUE_FORMAT=avro",
            ),
        ] {
            let e = ValueSettings::from_env(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("AVRO_SCHEMA_FILE") && e.contains(says),
                "{pairs:?}: {e}"
            );
        }
        std::fs::remove_dir_all(&tmp).unwrap();
        // With a registry the shipped schema reads plain values only: ids go to the registry.
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("AVRO_SCHEMA_FILE", avsc.as_str()),
            ("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9"),
        ]);
        let values = ValueSettings::from_env(&env)
            .await
            .unwrap()
            .build()
            .unwrap();
        let plain =
            KafkaRecord::new("t", 0, 0, 0).with_value([2, 2, b'e', 14, 2, b'q', 2, b'a', 0]);
        let v: serde_json::Value = plain.value_json_via(values.decoding()).unwrap();
        assert_eq!(
            (v["event_id"].as_str(), v["page_id"].as_i64()),
            (Some("e"), Some(7))
        );
    }

    /// `Values` with the shipped descriptor set `events/schemas/gift.pb` (message `vault.Gift`)
    /// and no registry.
    async fn shipped_gift() -> Values {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let set = format!("{dir}schemas/gift.pb");
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "protobuf"),
            ("PROTOBUF_DESCRIPTOR_SET", set.as_str()),
            ("PROTOBUF_MESSAGE", "vault.Gift"),
        ]);
        ValueSettings::from_env(&env)
            .await
            .unwrap()
            .build()
            .unwrap()
    }

    /// A shipped descriptor set without a registry reads every framing (the id is not checked,
    /// the message index is read past and `vault.Gift` read); a body that does not fit is a
    /// dead letter (`schema_mismatch`), never a redelivery.
    #[tokio::test]
    async fn shipped_descriptor_set_reads_every_framing() {
        let values = shipped_gift().await;
        let uuid = "2b9d0c6e-51a4-4f87-b3e2-9c0d1e2f3a4b";
        let glue_header: Vec<u8> = [3, 0]
            .into_iter()
            .chain(
                uuid.replace('-', "")
                    .as_bytes()
                    .chunks(2)
                    .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap()),
            )
            .collect();
        // Each framing before `body`, and the metadata naming an id, if any.
        let framings = |body: &[u8]| -> Vec<(Vec<u8>, Option<&str>)> {
            let with = |head: &[u8]| [head, body].concat();
            vec![
                (body.to_vec(), None),
                // Confluent prefix, id 11: message indexes [0] (`0`) and [1] (`2, 2`).
                (with(&[0, 0, 0, 0, 11, 0]), None),
                (with(&[0, 0, 0, 0, 11, 2, 2]), None),
                // SOURCE with a Confluent id: without and with the message indexes.
                (body.to_vec(), Some("11")),
                (with(&[2, 2]), Some("11")),
                // SOURCE with a Glue id: Glue's index 1 (an unsigned varint).
                (with(&[1]), Some(uuid)),
                // The whole Glue header, then Glue's index 1.
                (with(&[glue_header.as_slice(), &[1]].concat()), None),
            ]
        };
        // page_id 7 (field 2), question "q" (field 3); cut: question says 9 bytes, has 1.
        let (good, cut) = ([16, 7, 26, 1, b'q'], [16, 7, 26, 9, b'q']);
        let record = |(bytes, id): (Vec<u8>, Option<&str>)| {
            let r = KafkaRecord::new("t", 0, 0, 0).with_value(bytes);
            match id {
                Some(id) => r.with_value_schema_metadata(event_decoding::SchemaMetadata::new(
                    "PROTOBUF", id,
                )),
                None => r,
            }
        };
        let goods: Vec<KafkaRecord> = framings(&good).into_iter().map(record).collect();
        let cuts: Vec<KafkaRecord> = framings(&cut).into_iter().map(record).collect();
        values.prepare(&goods, &deadline()).await;
        for (i, r) in goods.iter().enumerate() {
            let v: serde_json::Value = r
                .value_json_via(values.decoding())
                .unwrap_or_else(|e| panic!("framing {i}: {e}"));
            assert_eq!(
                (v["page_id"].as_i64(), v["question"].as_str()),
                (Some(7), Some("q")),
                "framing {i}: {v}"
            );
        }
        for (i, r) in cuts.iter().enumerate() {
            let e = r
                .value_json_via::<serde_json::Value>(values.decoding())
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::SchemaMismatch, "framing {i}: {e}");
            assert!(e.is_permanent(), "framing {i}: {e}");
            assert!(
                e.message.contains("PROTOBUF_DESCRIPTOR_SET"),
                "framing {i}: {e}"
            );
        }
    }

    /// The Protobuf samples (Google's runtime behind the Confluent prefix and in SOURCE mode;
    /// AWS's Glue package behind the Glue header and in SOURCE mode) with the shipped descriptor
    /// set and no registry: every gift decodes as `vault.Gift` (a `TaggedGift` too: its extra
    /// fields are unknown to `vault.Gift`), an unregistered id 99 included; the cut body is
    /// `schema_mismatch`; nothing is left for redelivery.
    #[tokio::test]
    async fn protobuf_samples_with_a_shipped_descriptor_set() {
        let values = shipped_gift().await;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let mut pages = Vec::new();
        for name in [
            "gift-protobuf.json",
            "gift-protobuf-glue.json",
            "gift-protobuf-glue-source.json",
        ] {
            let bytes = std::fs::read(format!("{dir}{name}")).unwrap();
            let batch = event_decoding::KafkaBatch::from_slice(&bytes).unwrap();
            values.prepare(batch.as_slice(), &deadline()).await;
            for r in batch.records() {
                match r.value_json_via::<serde_json::Value>(values.decoding()) {
                    Ok(v) => pages.push((name, r.offset, v["page_id"].as_i64(), None)),
                    Err(e) => {
                        assert!(e.is_permanent(), "{name} {}: {e}", r.offset);
                        pages.push((name, r.offset, None, Some(e.code)));
                    }
                }
            }
        }
        let (c, g, s, mismatch) = (
            "gift-protobuf.json",
            "gift-protobuf-glue.json",
            "gift-protobuf-glue-source.json",
            Some(ErrorCode::SchemaMismatch),
        );
        let page = |n| (Some(n), None);
        #[rustfmt::skip]
        let want = [
            // Confluent prefix with indexes [0], [0], [1] (a TaggedGift); SOURCE without and
            // with indexes; id 99, which no registry holds; a body cut short.
            (c, 0, page(800)), (c, 1, page(801)), (c, 2, page(802)), (c, 3, page(803)),
            (c, 4, page(805)), (c, 5, page(804)), (c, 6, (None, mismatch)),
            // Glue header: index 0, index 1 zlib-compressed, a JSON Schema value (not
            // Protobuf), index 4 (no message of the file: read past all the same).
            (g, 0, page(800)), (g, 1, page(802)), (g, 2, (None, mismatch)), (g, 3, page(800)),
            // Glue SOURCE: Glue's index 0, 1, 3 (a TaggedGift.Note `{text: "a note"}`, which
            // fits vault.Gift's field 1: the index is not checked), 4.
            (s, 0, page(810)), (s, 1, page(811)), (s, 2, page(0)), (s, 3, page(810)),
        ];
        let got: Vec<_> = pages.into_iter().map(|p| (p.0, p.1, (p.2, p.3))).collect();
        assert_eq!(got, want);
    }

    /// `KEY_FORMAT` and the shipped key schemas: read at cold start, every mistake naming its
    /// variable; `auto` (keys as they always were read) by default.
    #[tokio::test]
    async fn key_settings_name_the_variable() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/schemas/");
        let (avsc, set) = (format!("{dir}2-page-key.avsc"), format!("{dir}gift.pb"));
        let s = ValueSettings::from_env(&Env::empty()).await.unwrap();
        assert_eq!(s.key_format, KeyFormat::Auto);
        assert!(s.key_plain.is_none());
        for (pairs, var, says) in [
            (
                vec![("KEY_FORMAT", "raw")],
                "KEY_FORMAT",
                "auto, string, json, avro or protobuf",
            ),
            (
                vec![("KEY_FORMAT", "avro")],
                "SCHEMA_REGISTRY_URL",
                "KEY_FORMAT=avro unless KEY_AVRO_SCHEMA_FILE",
            ),
            (
                vec![("KEY_FORMAT", "protobuf")],
                "SCHEMA_REGISTRY_URL",
                "KEY_PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![("KEY_AVRO_SCHEMA_FILE", avsc.as_str())],
                "KEY_AVRO_SCHEMA_FILE",
                "only read with KEY_FORMAT=avro (it is auto)",
            ),
            (
                vec![
                    ("KEY_FORMAT", "avro"),
                    ("KEY_AVRO_SCHEMA_FILE", "/nonexistent/key.avsc"),
                ],
                "KEY_AVRO_SCHEMA_FILE",
                "cannot read",
            ),
            (
                vec![
                    ("KEY_FORMAT", "avro"),
                    ("KEY_AVRO_SCHEMA_FILE", set.as_str()),
                ],
                "KEY_AVRO_SCHEMA_FILE",
                "not UTF-8",
            ),
            // The values' file is not the keys'.
            (
                vec![("KEY_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", avsc.as_str())],
                "AVRO_SCHEMA_FILE",
                "only read with VALUE_FORMAT=avro",
            ),
            (
                vec![
                    ("KEY_FORMAT", "protobuf"),
                    ("KEY_PROTOBUF_DESCRIPTOR_SET", set.as_str()),
                ],
                "KEY_PROTOBUF_MESSAGE",
                "keys' message",
            ),
            (
                vec![
                    ("KEY_FORMAT", "protobuf"),
                    ("KEY_PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "KEY_PROTOBUF_DESCRIPTOR_SET",
                "required with KEY_PROTOBUF_MESSAGE",
            ),
            (
                vec![
                    ("KEY_FORMAT", "protobuf"),
                    ("KEY_PROTOBUF_DESCRIPTOR_SET", set.as_str()),
                    ("KEY_PROTOBUF_MESSAGE", "vault.Nope"),
                ],
                "KEY_PROTOBUF_MESSAGE",
                "Nope",
            ),
            (
                vec![
                    ("KEY_FORMAT", "json"),
                    ("KEY_PROTOBUF_DESCRIPTOR_SET", set.as_str()),
                    ("KEY_PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "KEY_PROTOBUF_DESCRIPTOR_SET",
                "only read with KEY_FORMAT=protobuf",
            ),
        ] {
            let e = ValueSettings::from_env(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(var) && e.contains(says), "{pairs:?}: {e}");
        }
        let s = ValueSettings::from_env(&Env::from_pairs([
            ("KEY_FORMAT", "protobuf"),
            ("KEY_PROTOBUF_DESCRIPTOR_SET", set.as_str()),
            ("KEY_PROTOBUF_MESSAGE", "vault.Gift"),
        ]))
        .await
        .unwrap();
        assert_eq!(
            (s.format, s.key_format),
            (ValueFormat::Json, KeyFormat::Protobuf)
        );
        assert!(s.key_plain.is_some() && s.registry.is_none());
    }

    /// A shipped key schema beside a shipped value schema, no registry: each part is read with its
    /// own schema, whatever framing it has.
    #[tokio::test]
    async fn shipped_key_and_value_schemas_are_each_parts_own() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/schemas/");
        let (key, value) = (format!("{dir}2-page-key.avsc"), format!("{dir}1-gift.avsc"));
        let values = ValueSettings::from_env(&Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("AVRO_SCHEMA_FILE", value.as_str()),
            ("KEY_FORMAT", "avro"),
            ("KEY_AVRO_SCHEMA_FILE", key.as_str()),
        ]))
        .await
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(values.key_format(), KeyFormat::Avro);
        // Key: page_id "42" behind a Confluent prefix; value: a plain gift (page_id 7).
        let gift = [2, 2, b'e', 14, 2, b'q', 2, b'a', 0];
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key([0, 0, 0, 0, 2, 4, b'4', b'2'])
            .with_value(gift);
        values.prepare(std::slice::from_ref(&r), &deadline()).await;
        let d = values.decoding();
        assert_eq!(
            r.key_via(d).unwrap(),
            Some(serde_json::json!({"page_id": "42"}))
        );
        assert_eq!(
            r.value_json_via::<serde_json::Value>(d).unwrap()["page_id"],
            7
        );
        // A key that is a gift, not a page key: dead letter naming the key's schema setting.
        let wrong = KafkaRecord::new("t", 0, 1, 0)
            .with_key([0, 0, 0, 0, 2, 1])
            .with_value(gift);
        let e = wrong.key_via(d).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaMismatch);
        assert!(e.message.contains("KEY_AVRO_SCHEMA_FILE"), "{e}");
    }

    /// `KEY_FORMAT=avro` with JSON values and a registry: the key's id is fetched before the
    /// batch is decoded (values alone would fetch nothing), and a registry that keeps failing
    /// leaves the key `schema_fetch_failed` (redelivered), not a dead letter.
    #[tokio::test]
    async fn registry_keys_of_json_values_are_fetched() {
        let server = MockServer::start(vec![(200, vec![], ok_body())]).await;
        let values = Values::new(ValueFormat::Json, Some(registry(server.url())))
            .with_keys(KeyFormat::Avro, None);
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key([0, 0, 0, 0, 5, 14])
            .with_value(r#"{"plan":"pro"}"#);
        values.prepare(std::slice::from_ref(&r), &deadline()).await;
        assert_eq!(server.requests().len(), 1);
        assert_eq!(
            r.key_via(values.decoding()).unwrap(),
            Some(serde_json::json!({"page_id": 7}))
        );

        let down = MockServer::start(vec![(503, vec![], "{}".into())]).await;
        let values = Values::new(ValueFormat::Json, Some(registry(down.url())))
            .with_keys(KeyFormat::Avro, None);
        values.prepare(std::slice::from_ref(&r), &deadline()).await;
        let e = r.key_via(values.decoding()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaFetchFailed);
        assert!(!e.is_permanent());
        assert!(e.message.starts_with("key: writer schema 5"), "{e}");
    }

    /// A Debezium change stream in Avro without a registry (fastavro's sample
    /// `events/pages-debezium-avro.json`: keys behind the Confluent prefix of schema 2, values
    /// of schema 3), its key and envelope schemas shipped: every change carries its key decoded
    /// with the key schema, the tombstone included. Before `KEY_FORMAT` a key naming an id was
    /// read with the values' shipped schema (the envelope), which no key fits.
    #[tokio::test]
    async fn debezium_avro_keys_with_their_own_shipped_schema() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let (key, envelope) = (
            format!("{dir}schemas/2-page-key.avsc"),
            format!("{dir}schemas/3-page-envelope.avsc"),
        );
        let settings = |keys: bool| {
            let mut pairs = vec![
                ("VALUE_FORMAT", "avro"),
                ("AVRO_SCHEMA_FILE", envelope.as_str()),
            ];
            if keys {
                pairs.extend([
                    ("KEY_FORMAT", "avro"),
                    ("KEY_AVRO_SCHEMA_FILE", key.as_str()),
                ]);
            }
            Env::from_pairs(pairs)
        };
        let bytes = std::fs::read(format!("{dir}pages-debezium-avro.json")).unwrap();
        let batch = event_decoding::KafkaBatch::from_slice(&bytes).unwrap();
        let values = ValueSettings::from_env(&settings(true))
            .await
            .unwrap()
            .build()
            .unwrap();
        let keys: Vec<_> = batch
            .records()
            .map(|r| r.change_via(values.decoding()).unwrap().key().cloned())
            .collect();
        assert_eq!(keys.len(), 4);
        assert!(
            keys.iter()
                .all(|k| k.as_ref().is_some_and(|k| k["page_id"].is_string())),
            "{keys:?}"
        );
        let tombstone = batch.records().last().unwrap();
        assert!(matches!(
            tombstone.change_via(values.decoding()).unwrap(),
            event_decoding::Change::Tombstone { .. }
        ));
        // The default: the tombstone's key is read with the envelope schema and does not fit.
        let values = ValueSettings::from_env(&settings(false))
            .await
            .unwrap()
            .build()
            .unwrap();
        let e = tombstone.change_via(values.decoding()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaMismatch, "{e}");
    }

    #[tokio::test]
    async fn values_with_a_glue_arn_resolve_glue_framed_records() {
        use crate::glue_registry::tests::{ARN, error, registry as glue_registry, version};
        use event_decoding::{ErrorCode, KafkaRecord, ValueFormat};
        let env = Env::from_pairs([("VALUE_FORMAT", "auto"), ("SCHEMA_REGISTRY_URL", ARN)]);
        let s = ValueSettings::from_env(&env).await.unwrap();
        assert!(s.registry.is_none());
        assert_eq!(s.glue.as_ref().unwrap().arn.name, "gifts");
        assert!(s.build().unwrap().glue().is_some());

        let server = MockServer::start(vec![
            (200, vec![], version("AVRO", GIFT)),
            (
                400,
                vec![],
                error("EntityNotFoundException", "Schema version is not found."),
            ),
        ])
        .await;
        let values = Values::with_glue(ValueFormat::Auto, glue_registry(server.url(), 3));
        let id = [
            0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x40, 0x71, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7,
            0xe8, 0xf9,
        ];
        let framed = |id: &[u8], body: &[u8]| {
            let mut v = vec![3, 0];
            v.extend_from_slice(id);
            v.extend_from_slice(body);
            v
        };
        let mut other = id;
        other[15] = 0xff; // sorts after `id`: fetched second, answered 404
        let records = [
            KafkaRecord::new("t", 0, 0, 0).with_value(framed(&id, &[84])),
            KafkaRecord::new("t", 0, 1, 0).with_value(framed(&other, &[84])),
            KafkaRecord::new("t", 0, 2, 0).with_value(r#"{"page_id": 5}"#),
        ];
        values.prepare(&records, &deadline()).await;
        assert_eq!(
            server.requests().len(),
            2,
            "one GetSchemaVersion per version id"
        );
        let d = values.decoding();
        let v: serde_json::Value = records[0].value_json_via(d).unwrap();
        assert_eq!(v, serde_json::json!({"page_id": 42}));
        let e = records[1]
            .value_json_via::<serde_json::Value>(d)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownSchemaId);
        assert!(!e.is_permanent());
        let v: serde_json::Value = records[2].value_json_via(d).unwrap();
        assert_eq!(v["page_id"], 5);
    }
}
