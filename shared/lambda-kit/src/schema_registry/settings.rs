//! [`ValueSettings`]: what a function reads about its records' values and keys at cold start
//! (`VALUE_FORMAT`, `KEY_FORMAT`, `SCHEMA_REGISTRY_URL` and its credentials, the shipped schema
//! files), and the [`Values`](super::Values) built from them.

use std::sync::Arc;

use event_decoding::{KeyFormat, ValueFormat, WriterSchema};

use crate::config::{ConfigError, Env};
use crate::init::InitError;

use super::shipped::{KEY_SCHEMAS, Shippable, Shipped, VALUE_SCHEMAS, shipped_schema};
use super::{
    GlueRegistry, GlueRegistryArn, GlueRegistryConfig, RegistryConfig, RegistryError,
    SchemaRegistry, Values,
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
