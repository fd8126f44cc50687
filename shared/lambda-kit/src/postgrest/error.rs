//! [`PostgrestError`], a failed PostgREST call, and its classification: which answers are
//! transient, which blame the rows (a rejected value) and which the environment (the key, the
//! schema, a vector dimension); PostgREST's error JSON read from a failed attempt.

use crate::error::{Classify, ErrorClass};
use crate::http;
use crate::init::InitError;
use crate::secrets::Refusal;

/// A failed PostgREST call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PostgrestError {
    /// PostgREST answered with an error status.
    #[error("PostgREST {status}: {message}{}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// PostgREST / PostgreSQL error code (`23505`, `PGRST204`, ...).
        code: Option<String>,
        /// Error message (short, secret-free).
        message: String,
        /// `details` of the error JSON.
        details: Option<String>,
        /// `hint` of the error JSON.
        hint: Option<String>,
        /// [`http::classify_status`] of the answer: transient (with the wait asked for) or not.
        /// Whether a refusal is the rows' fault is read from the status and code
        /// ([`Classify::class`]).
        class: ErrorClass,
    },
    /// The request did not complete (connection refused/reset, timeout, ...).
    #[error("PostgREST request failed: {message}")]
    Transport {
        /// Low-cardinality code (`http_connect`, `http_timeout`, ...).
        code: &'static str,
        /// Class of the transport error.
        class: ErrorClass,
        /// Description with causes.
        message: String,
    },
    /// A successful response could not be decoded.
    #[error("PostgREST response could not be decoded: {0}")]
    Decode(String),
    /// The deadline passed before the call could be (re)tried.
    #[error("deadline reached before the PostgREST call could complete")]
    DeadlineExceeded,
    /// The client could not be built (bad URL or TLS setup).
    #[error("PostgREST client could not be built: {0}")]
    Build(String),
    /// The key read (at cold start or re-read after a rotation) cannot be used: a key that
    /// cannot write ([`KeyKind::refusal`](super::KeyKind::refusal)) or cannot be sent in a header. No request is sent
    /// with it; the message names the secret or variable to fix, never the key.
    #[error("Supabase key not used: {0}")]
    Key(String),
}

impl From<PostgrestError> for InitError {
    fn from(e: PostgrestError) -> Self {
        Self::Client(e.to_string())
    }
}

impl PostgrestError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request names something the database or the API's schema cache does not have: a
    /// column (`PGRST204`, `42703`), a table (`PGRST205`, `42P01`), a type or operator (`42704`,
    /// `42883`: pgvector's `vector` when the API's search path lacks the `extensions` schema), a
    /// unique constraint for the conflict target (`42P10`), a query string the API cannot parse
    /// (`PGRST100`: the client's own `on_conflict`, `columns` or `select`). The schema and the
    /// code disagree: every row would fail alike, so no row is to blame.
    ///
    /// ```
    /// use lambda_kit::error::{Classify, ErrorClass};
    /// use lambda_kit::postgrest::PostgrestError;
    /// let e = PostgrestError::Api {
    ///     status: 400,
    ///     code: Some("PGRST204".into()),
    ///     message: "Could not find the 'answer' column of 'vault' in the schema cache".into(),
    ///     details: None,
    ///     hint: None,
    ///     class: ErrorClass::Environment,
    /// };
    /// assert!(e.is_schema_mismatch());
    /// assert_eq!(e.class(), ErrorClass::Environment);
    /// assert_eq!(e.error_code(), "db_schema");
    /// ```
    pub fn is_schema_mismatch(&self) -> bool {
        const SCHEMA_CODES: [&str; 8] = [
            "PGRST100", "PGRST204", "PGRST205", "42703", "42P01", "42P10", "42704", "42883",
        ];
        matches!(self, Self::Api { code: Some(code), .. } if SCHEMA_CODES.contains(&code.as_str()))
    }

    /// `true` for pgvector's refusal of a vector whose length is not the column's `vector(N)`
    /// (SQLSTATE `22000`, "expected N dimensions, not M"): the writer's configured dimension
    /// (`EMBED_DIM`, the model) does not match the table, a configuration error that every row
    /// would hit, not a fault of one row.
    ///
    /// ```
    /// use lambda_kit::error::{Classify, ErrorClass};
    /// use lambda_kit::postgrest::PostgrestError;
    /// let e = PostgrestError::Api {
    ///     status: 400,
    ///     code: Some("22000".into()),
    ///     message: "expected 768 dimensions, not 3".into(),
    ///     details: None,
    ///     hint: None,
    ///     class: ErrorClass::Environment,
    /// };
    /// assert!(e.is_vector_dimension_mismatch());
    /// assert_eq!(e.class(), ErrorClass::Environment);
    /// assert_eq!(e.error_code(), "db_vector_dimensions");
    /// ```
    pub fn is_vector_dimension_mismatch(&self) -> bool {
        match self {
            Self::Api {
                status: 400,
                code: Some(code),
                message,
                ..
            } => {
                code == "22000"
                    && message.starts_with("expected ")
                    && message.contains(" dimensions, not ")
            }
            _ => false,
        }
    }
}

/// Only a rejection of the data itself (400 bad value, 409 constraint, 413 too large, 422) is
/// [`ErrorClass::Data`]: bad credentials (401/403), a missing table (404), a method not allowed, a
/// schema that lacks what the rows name
/// ([`is_schema_mismatch`](PostgrestError::is_schema_mismatch)) or a vector column of another
/// dimension ([`is_vector_dimension_mismatch`](PostgrestError::is_vector_dimension_mismatch))
/// are the environment's, and the rows must not be dead-lettered for them.
impl Classify for PostgrestError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Api {
                class: class @ ErrorClass::Transient { .. },
                ..
            }
            | Self::Transport {
                class: class @ ErrorClass::Transient { .. },
                ..
            } => *class,
            Self::Api {
                status: 400 | 409 | 413 | 422,
                ..
            } if !self.is_schema_mismatch() && !self.is_vector_dimension_mismatch() => {
                ErrorClass::Data
            }
            Self::Api { .. }
            | Self::Transport { .. }
            | Self::Decode(_)
            | Self::Build(_)
            | Self::Key(_) => ErrorClass::Environment,
            Self::DeadlineExceeded => ErrorClass::TRANSIENT,
        }
    }

    fn error_code(&self) -> &'static str {
        match self {
            _ if self.is_vector_dimension_mismatch() => "db_vector_dimensions",
            _ if self.is_schema_mismatch() => "db_schema",
            Self::Api { status, .. } => match *status {
                400 => "db_bad_request",
                401 | 403 => "db_unauthorized",
                404 => "db_not_found",
                409 => "db_conflict",
                413 => "db_payload_too_large",
                408 | 429 => "db_throttled",
                500..=599 => "db_server_error",
                _ => "db_rejected",
            },
            Self::Transport { code, .. } => code,
            Self::Decode(_) => "db_decode",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Build(_) => "db_client_build",
            Self::Key(_) => "db_key_unusable",
        }
    }
}

/// A 401/403 is PostgREST refusing the key; one that stands after the key was re-read says
/// which setting to fix.
impl Refusal for PostgrestError {
    fn is_refusal(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    fn with_note(self, note: String) -> Self {
        match self {
            Self::Api {
                status,
                code,
                message,
                details,
                hint,
                class,
            } => Self::Api {
                status,
                code,
                message: format!("{message}; {note}"),
                details,
                hint,
                class,
            },
            other => other,
        }
    }
}

/// PostgREST's reading of a failed attempt: its error JSON (`code`, `message`, `details`,
/// `hint`), or the raw body when it sent none.
pub(super) fn postgrest_error(failure: http::Failure<'_>) -> PostgrestError {
    let r = match failure {
        http::Failure::Status(r) => r,
        http::Failure::Transport(t) => {
            return PostgrestError::Transport {
                code: t.code,
                class: t.class,
                message: t.message,
            };
        }
    };
    #[derive(serde::Deserialize)]
    struct Body {
        code: Option<serde_json::Value>,
        message: Option<String>,
        details: Option<serde_json::Value>,
        hint: Option<serde_json::Value>,
    }
    let text = |v: Option<serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(r.clean(&s)),
        Some(other) => Some(r.clean(&other.to_string())),
    };
    let (code, message, details, hint) = match serde_json::from_slice::<Body>(&r.body) {
        Ok(b) => (
            text(b.code),
            r.clean(b.message.as_deref().unwrap_or("(no message)")),
            text(b.details),
            text(b.hint),
        ),
        Err(_) => (None, r.clean(&r.text()), None, None),
    };
    PostgrestError::Api {
        status: r.status.as_u16(),
        code,
        message,
        details,
        hint,
        class: r.class(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgrest::Filter;
    use crate::postgrest::test_support::{client, insert_empty};
    use crate::retry::Deadline;
    use crate::testing::MockServer;
    use std::time::Duration;

    #[tokio::test]
    async fn constraint_error_is_parsed_as_data() {
        let body = r#"{"code":"23502","message":"null value in column \"question\" violates not-null constraint sekret-key","details":null,"hint":null}"#;
        let server = MockServer::start(vec![(400, vec![], body.into())]).await;
        let c = client(&server.url());
        let e = insert_empty(&c, "vault").await.unwrap_err();
        assert_eq!(
            server.requests().len(),
            1,
            "permanent errors are not retried"
        );
        assert_eq!(e.class(), ErrorClass::Data);
        assert_eq!(e.error_code(), "db_bad_request");
        let text = e.to_string();
        assert!(
            text.contains("23502") && text.contains("not-null"),
            "{text}"
        );
        assert!(!text.contains("sekret-key"), "{text}");
    }

    #[tokio::test]
    async fn vector_dimension_mismatch_does_not_blame_rows() {
        // The answer of the local stack (PostgREST + pgvector) to a 3-d vector in vector(768).
        let body = r#"{"code":"22000","details":null,"hint":null,"message":"expected 768 dimensions, not 3"}"#;
        let server = MockServer::start(vec![(400, vec![], body.into())]).await;
        let e = insert_empty(&client(&server.url()), "page_vectors")
            .await
            .unwrap_err();
        assert_eq!(server.requests().len(), 1, "not retried");
        assert!(e.is_vector_dimension_mismatch());
        assert_eq!(e.class(), ErrorClass::Environment);
        assert_eq!(e.error_code(), "db_vector_dimensions");
        assert!(e.to_string().contains("expected 768 dimensions"), "{e}");

        // Another data exception with code 22000 still blames the row.
        let other = PostgrestError::Api {
            status: 400,
            code: Some("22000".into()),
            message: "some other data exception".into(),
            details: None,
            hint: None,
            class: ErrorClass::Environment,
        };
        assert!(!other.is_vector_dimension_mismatch());
        assert_eq!(other.class(), ErrorClass::Data);
        assert_eq!(other.error_code(), "db_bad_request");
    }

    #[tokio::test]
    async fn unauthorized_does_not_blame_rows() {
        let server = MockServer::start(vec![(
            401,
            vec![],
            r#"{"code":"PGRST301","message":"JWT invalid"}"#.into(),
        )])
        .await;
        let e = client(&server.url())
            .delete(
                &Deadline::after(Duration::from_secs(5)),
                "t",
                &[Filter::eq("a", 1)],
            )
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Environment);
        assert_eq!(e.error_code(), "db_unauthorized");
    }

    /// PostgREST's error answer `status` with SQLSTATE or PGRST `code`, classified as the
    /// client classifies it.
    fn api(status: u16, code: &str) -> PostgrestError {
        use reqwest::{StatusCode, header::HeaderMap};
        PostgrestError::Api {
            status,
            code: Some(code.into()),
            message: "m".into(),
            details: None,
            hint: None,
            class: http::classify_status(StatusCode::from_u16(status).unwrap(), &HeaderMap::new()),
        }
    }

    #[test]
    fn schema_codes_are_the_environment_and_data_codes_blame_the_rows() {
        for code in [
            "PGRST100", "PGRST204", "PGRST205", "42703", "42P01", "42P10", "42704", "42883",
        ] {
            let e = api(400, code);
            assert!(e.is_schema_mismatch(), "{code}");
            assert_eq!(e.class(), ErrorClass::Environment, "{code}");
            assert_eq!(e.error_code(), "db_schema", "{code}");
        }
        for (status, code) in [(400, "22P02"), (400, "23514"), (409, "23505")] {
            let e = api(status, code);
            assert!(!e.is_schema_mismatch(), "{code}");
            assert_eq!(e.class(), ErrorClass::Data, "{code}");
        }
    }

    #[test]
    fn answers_keep_their_fates() {
        use crate::fate::{Fate, Fault};
        let failed = |code: &'static str, status: u16, sqlstate: &str, fault| Fate::Failed {
            code,
            message: format!("PostgREST {status}: m (code {sqlstate})"),
            fault,
        };
        // A value the table refuses: the row's fault.
        assert_eq!(
            Fate::from_error(&api(400, "23514")),
            Fate::rejected("db_bad_request", "PostgREST 400: m (code 23514)")
        );
        assert_eq!(
            Fate::from_error(&api(409, "23505")),
            Fate::rejected("db_conflict", "PostgREST 409: m (code 23505)")
        );
        // The key, a missing table, a column the schema lacks: the environment's.
        assert_eq!(
            Fate::from_error(&api(401, "PGRST301")),
            failed("db_unauthorized", 401, "PGRST301", Fault::Environment)
        );
        assert_eq!(
            Fate::from_error(&api(404, "PGRST205")),
            failed("db_schema", 404, "PGRST205", Fault::Environment)
        );
        assert_eq!(
            Fate::from_error(&api(400, "PGRST204")),
            failed("db_schema", 400, "PGRST204", Fault::Environment)
        );
        // The server down: transient.
        assert_eq!(
            Fate::from_error(&api(503, "PGRST500")),
            failed("db_server_error", 503, "PGRST500", Fault::Transient)
        );
        assert_eq!(
            Fate::from_error(&PostgrestError::DeadlineExceeded),
            Fate::Failed {
                code: "deadline_exceeded",
                message: "deadline reached before the PostgREST call could complete".into(),
                fault: Fault::Transient,
            }
        );
    }
}
