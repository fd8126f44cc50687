//! [`RegistryError`], the one error of both registry clients (Confluent-compatible and Glue): a
//! writer schema that cannot be had is never the record's fault, so no variant is
//! [`ErrorClass::Data`]; each message names the registry it comes from as its users know it.

use std::fmt;

use event_decoding::SchemaUnavailable;

use crate::error::{Classify, ErrorClass};
use crate::secrets::Refusal;

/// The IAM action a function needs to resolve Glue schemas itself.
pub const GET_SCHEMA_VERSION: &str = "glue:GetSchemaVersion";

/// Which client a [`RegistryError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// A Confluent-compatible registry ([`SchemaRegistry`](super::SchemaRegistry)).
    Confluent,
    /// The AWS Glue Schema Registry ([`GlueRegistry`](super::GlueRegistry)).
    Glue,
}

/// Fetching a schema failed.
///
/// ```
/// use lambda_kit::error::{Classify, ErrorClass};
/// use lambda_kit::schema_registry::{Registry, RegistryError};
/// let e = RegistryError::NotFound { registry: Registry::Confluent, id: "7".into(), message: "Schema 7 not found".into() };
/// assert_eq!((e.error_code(), e.class()), ("unknown_schema_id", ErrorClass::Environment));
/// assert_eq!(e.to_string(), "schema registry has no schema 7: Schema 7 not found");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum RegistryError {
    /// The client could not be built.
    Build(String),
    /// The registry has no schema with this id (Confluent: 404, `error_code` 40403; Glue:
    /// `EntityNotFoundException`).
    NotFound {
        /// The client.
        registry: Registry,
        /// The id.
        id: String,
        /// The registry's message.
        message: String,
    },
    /// The function's role may not read Glue schema versions (`AccessDeniedException`).
    AccessDenied {
        /// The id.
        id: String,
        /// Glue's message.
        message: String,
    },
    /// The id is not one this registry names, or the schema cannot be used (an unknown type, a
    /// reference that cannot be had, does not parse).
    Unusable {
        /// The client.
        registry: Registry,
        /// The id.
        id: String,
        /// What is wrong.
        problem: String,
    },
    /// Any other answer, or none: network, throttling, 5xx, a refused request, the deadline.
    Request {
        /// The client.
        registry: Registry,
        /// The id.
        id: String,
        /// Low-cardinality code.
        code: &'static str,
        /// What happened (never the credentials).
        message: String,
        /// Transient (with the wait asked for) or [`ErrorClass::Environment`].
        class: ErrorClass,
    },
}

impl RegistryError {
    /// The error of a fetch the invocation's deadline left no time for.
    pub(super) fn deadline(registry: Registry, id: &str) -> Self {
        Self::Request {
            registry,
            id: id.to_string(),
            code: "deadline",
            message: "the invocation deadline passed before the schema could be fetched".into(),
            class: ErrorClass::TRANSIENT,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Registry::{Confluent, Glue};
        match self {
            Self::Build(problem) => write!(f, "schema registry client: {problem}"),
            Self::NotFound {
                registry: Confluent,
                id,
                message,
            } => write!(f, "schema registry has no schema {id}: {message}"),
            Self::NotFound {
                registry: Glue,
                id,
                message,
            } => write!(
                f,
                "the Glue schema registry has no schema version {id}: {message}"
            ),
            Self::AccessDenied { id, message } => write!(
                f,
                "the Glue schema registry refused schema version {id}: the function's role needs {GET_SCHEMA_VERSION} ({message})"
            ),
            Self::Unusable {
                registry: Confluent,
                id,
                problem,
            } => write!(f, "schema {id} cannot be used: {problem}"),
            Self::Unusable {
                registry: Glue,
                id,
                problem,
            } => write!(f, "Glue schema version {id} cannot be used: {problem}"),
            Self::Request {
                registry: Confluent,
                id,
                code,
                message,
                ..
            } => write!(
                f,
                "schema registry request for schema {id} failed ({code}): {message}"
            ),
            Self::Request {
                registry: Glue,
                id,
                code,
                message,
                ..
            } => write!(
                f,
                "Glue GetSchemaVersion for {id} failed ({code}): {message}"
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

/// Never the record's fault: a schema that cannot be had is the environment's, or transient.
impl Classify for RegistryError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Request {
                class: class @ ErrorClass::Transient { .. },
                ..
            } => *class,
            Self::Build(_)
            | Self::NotFound { .. }
            | Self::AccessDenied { .. }
            | Self::Unusable { .. }
            | Self::Request { .. } => ErrorClass::Environment,
        }
    }

    fn error_code(&self) -> &'static str {
        match self {
            Self::Build(_) => "schema_registry_build",
            Self::NotFound { .. } => "unknown_schema_id",
            Self::AccessDenied { .. } => "schema_registry_auth",
            Self::Unusable { .. } => "schema_unusable",
            Self::Request { .. } => "schema_fetch_failed",
        }
    }
}

/// What a record that needs the schema is told: an id the registry does not have or cannot use
/// is unknown; any other failure is a failed fetch.
impl From<&RegistryError> for SchemaUnavailable {
    fn from(e: &RegistryError) -> Self {
        match e {
            RegistryError::NotFound { .. } | RegistryError::Unusable { .. } => {
                SchemaUnavailable::Unknown(e.to_string())
            }
            RegistryError::Build(_)
            | RegistryError::AccessDenied { .. }
            | RegistryError::Request { .. } => SchemaUnavailable::FetchFailed(e.to_string()),
        }
    }
}

/// A 401/403 is the Confluent registry refusing the credentials; one that stands after they were
/// re-read says which setting to fix.
impl Refusal for RegistryError {
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Request { code, .. } if *code == "schema_registry_auth")
    }

    fn with_note(self, note: String) -> Self {
        match self {
            Self::Request {
                registry,
                id,
                code,
                message,
                class,
            } => Self::Request {
                registry,
                id,
                code,
                message: format!("{message}; {note}"),
                class,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fate::{Fate, Fault};

    #[test]
    fn messages_name_the_registry() {
        let id = || "7".to_string();
        let request = |registry| RegistryError::Request {
            registry,
            id: id(),
            code: "http_connect",
            message: "refused".into(),
            class: ErrorClass::TRANSIENT,
        };
        assert_eq!(
            request(Registry::Confluent).to_string(),
            "schema registry request for schema 7 failed (http_connect): refused"
        );
        assert_eq!(
            request(Registry::Glue).to_string(),
            "Glue GetSchemaVersion for 7 failed (http_connect): refused"
        );
        let unusable = |registry| RegistryError::Unusable {
            registry,
            id: id(),
            problem: "p".into(),
        };
        assert_eq!(
            unusable(Registry::Confluent).to_string(),
            "schema 7 cannot be used: p"
        );
        assert_eq!(
            unusable(Registry::Glue).to_string(),
            "Glue schema version 7 cannot be used: p"
        );
        let e = RegistryError::NotFound {
            registry: Registry::Glue,
            id: id(),
            message: "m".into(),
        };
        assert_eq!(
            e.to_string(),
            "the Glue schema registry has no schema version 7: m"
        );
    }

    #[test]
    fn no_registry_error_dead_letters_a_record() {
        let refused = RegistryError::Request {
            registry: Registry::Confluent,
            id: "7".into(),
            code: "schema_registry_refused",
            message: "HTTP 400: bad".into(),
            // Even if a client said so: a registry's refusal is never the record's fault.
            class: ErrorClass::Data,
        };
        assert_eq!(refused.class(), ErrorClass::Environment);
        let not_found = RegistryError::NotFound {
            registry: Registry::Confluent,
            id: "7".into(),
            message: "Schema 7 not found".into(),
        };
        assert!(matches!(
            Fate::from_error(&not_found),
            Fate::Failed {
                code: "unknown_schema_id",
                fault: Fault::Environment,
                ..
            }
        ));
        let down = RegistryError::deadline(Registry::Glue, "7");
        assert!(matches!(
            Fate::from_error(&down),
            Fate::Failed {
                code: "schema_fetch_failed",
                fault: Fault::Transient,
                ..
            }
        ));
    }
}
