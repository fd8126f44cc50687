//! What became of one record (or one row written for it): the one outcome vocabulary of the
//! workspace. A function's decode and write steps return [`Fate`]s; the batch runner
//! ([`crate::runner`]) turns them into dead letters, the partial batch response, logs and metrics.

use std::fmt;

use event_decoding::{Outcome, RecordError};

use crate::error::{Classify, ErrorClass};

/// The fate of one record.
///
/// The rule behind the two unhappy variants: a dead letter is for what the record itself causes
/// ([`Fate::Rejected`], an [`ErrorClass::Data`] error); a fault of the environment
/// (configuration, schema, auth) or a dependency down is [`Fate::Failed`], reported so the event
/// source mapping redelivers the record.
///
/// ```
/// use event_decoding::{ErrorCode, Outcome, RecordError};
/// use lambda_kit::fate::Fate;
///
/// let bad = Fate::rejected("invalid_json", "expected value at line 1 column 1");
/// assert_eq!(bad.outcome(), Outcome::DeadLettered);
/// assert_eq!(bad.code(), Some("invalid_json"));
/// assert_eq!(Fate::Stored.outcome(), Outcome::Stored);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Durably written.
    Stored,
    /// Deliberately not written: a duplicate, a record without a change, a superseded change.
    Skipped,
    /// The record itself is bad: dead-letter it, never retry.
    Rejected {
        /// Low-cardinality reason (`snake_case`).
        code: &'static str,
        /// What is wrong (never a secret, never the payload).
        message: String,
    },
    /// Not the record's fault: report it so it is redelivered.
    Failed {
        /// Low-cardinality reason (`snake_case`).
        code: &'static str,
        /// What happened (never a secret).
        message: String,
        /// Whether an operator must fix something or redelivery alone may do.
        fault: Fault,
    },
}

/// Why a [`Fate::Failed`] record is redelivered: the two classes of [`ErrorClass`] that are not
/// the record's fault.
///
/// ```
/// use lambda_kit::error::ErrorClass;
/// use lambda_kit::fate::Fault;
/// assert_eq!(Fault::of(ErrorClass::TRANSIENT), Fault::Transient);
/// assert_eq!(Fault::of(ErrorClass::Environment), Fault::Environment);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Retrying alone will not help (configuration, schema, auth): an operator must fix
    /// something. Logged at error level.
    Environment,
    /// Network, throttling, 5xx: redelivery may be enough. Logged as a warning.
    Transient,
}

impl Fault {
    /// The fault of a record reported for redelivery because of an error of `class`. A data
    /// error reported for redelivery instead of dead-lettered (its record has another fate to
    /// keep) needs an operator as much as the environment does.
    pub fn of(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Transient { .. } => Self::Transient,
            ErrorClass::Data | ErrorClass::Environment => Self::Environment,
        }
    }
}

impl Fate {
    /// A record to dead-letter.
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            message: message.into(),
        }
    }

    /// A record to redeliver because of `error`, whatever its class ([`Fault::of`]).
    pub fn failed<E: Classify + fmt::Display + ?Sized>(error: &E) -> Self {
        Self::Failed {
            code: error.error_code(),
            message: error.to_string(),
            fault: Fault::of(error.class()),
        }
    }

    /// The fate `error` implies: [`Fate::Rejected`] for an [`ErrorClass::Data`] error,
    /// [`Fate::Failed`] with the matching [`Fault`] for the two others.
    ///
    /// ```
    /// use lambda_kit::error::{Classify, ErrorClass};
    /// use lambda_kit::fate::{Fate, Fault};
    ///
    /// #[derive(Debug)]
    /// struct MissingTable;
    /// impl std::fmt::Display for MissingTable {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("no table vault") }
    /// }
    /// impl Classify for MissingTable {
    ///     fn class(&self) -> ErrorClass { ErrorClass::Environment }
    ///     fn error_code(&self) -> &'static str { "db_missing_table" }
    /// }
    /// assert!(matches!(Fate::from_error(&MissingTable), Fate::Failed { fault: Fault::Environment, .. }));
    /// ```
    pub fn from_error<E: Classify + fmt::Display + ?Sized>(error: &E) -> Self {
        match error.class() {
            ErrorClass::Data => Self::rejected(error.error_code(), error.to_string()),
            ErrorClass::Environment | ErrorClass::Transient { .. } => Self::failed(error),
        }
    }

    /// The fate of a record that did not decode, by the class of its [`ErrorCode`](event_decoding::ErrorCode)
    /// (decided once, in [`RecordError`]'s [`Classify`]): [`Fate::Rejected`] when its bytes are
    /// bad, [`Fate::Failed`] when a writer schema is unknown or its format is not decoded (an
    /// environment fault) or could not be fetched (a transient one).
    ///
    /// ```
    /// use event_decoding::{ErrorCode, RecordError, RecordId};
    /// use lambda_kit::fate::{Fate, Fault};
    /// let id = RecordId::new("t", 0, 1);
    /// let bad = RecordError::new(id.clone(), ErrorCode::SchemaMismatch, "value does not match");
    /// assert_eq!(Fate::undecodable(&bad), Fate::rejected("schema_mismatch", "value does not match"));
    /// let down = RecordError::new(id, ErrorCode::SchemaFetchFailed, "HTTP 503");
    /// assert!(matches!(Fate::undecodable(&down), Fate::Failed { fault: Fault::Transient, .. }));
    /// ```
    pub fn undecodable(error: &RecordError) -> Self {
        match error.class() {
            // The dead letter holds the record: its message need not name it again.
            ErrorClass::Data => Self::rejected(error.error_code(), error.message.clone()),
            ErrorClass::Environment | ErrorClass::Transient { .. } => Self::failed(error),
        }
    }

    /// The fate of a record whose result never came back: failed, so it is redelivered instead of
    /// acknowledged.
    pub fn missing() -> Self {
        Self::Failed {
            code: "missing_result",
            message: "no result was returned for this record".into(),
            fault: Fault::Transient,
        }
    }

    /// The summary the partial batch response is built from.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Stored => Outcome::Stored,
            Self::Skipped => Outcome::Skipped,
            Self::Rejected { .. } => Outcome::DeadLettered,
            Self::Failed { .. } => Outcome::Failed,
        }
    }

    /// The error code of a rejected or failed record.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Rejected { code, .. } | Self::Failed { code, .. } => Some(code),
            Self::Stored | Self::Skipped => None,
        }
    }

    /// `true` for [`Fate::Stored`].
    pub fn is_stored(&self) -> bool {
        matches!(self, Self::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_decoding::{ErrorCode, RecordId};

    #[derive(Debug)]
    struct E(ErrorClass);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("boom")
        }
    }
    impl Classify for E {
        fn class(&self) -> ErrorClass {
            self.0
        }
        fn error_code(&self) -> &'static str {
            "e"
        }
    }

    fn failed(fault: Fault) -> Fate {
        Fate::Failed {
            code: "e",
            message: "boom".into(),
            fault,
        }
    }

    #[test]
    fn each_class_has_its_fate() {
        assert_eq!(
            Fate::from_error(&E(ErrorClass::Data)),
            Fate::rejected("e", "boom")
        );
        assert_eq!(
            Fate::from_error(&E(ErrorClass::Environment)),
            failed(Fault::Environment)
        );
        let throttled = ErrorClass::Transient {
            retry_after: Some(std::time::Duration::from_secs(1)),
        };
        assert_eq!(Fate::from_error(&E(throttled)), failed(Fault::Transient));
        assert_eq!(
            Fate::from_error(&E(ErrorClass::TRANSIENT)),
            failed(Fault::Transient)
        );
        assert_eq!(Fate::missing().outcome(), Outcome::Failed);
        assert_eq!(Fate::Skipped.code(), None);
    }

    #[test]
    fn failed_reports_every_class_for_redelivery() {
        // A data error reported instead of dead-lettered is the operator's to look at.
        assert_eq!(
            Fate::failed(&E(ErrorClass::Data)),
            failed(Fault::Environment)
        );
        assert_eq!(
            Fate::failed(&E(ErrorClass::Environment)),
            failed(Fault::Environment)
        );
        assert_eq!(
            Fate::failed(&E(ErrorClass::TRANSIENT)),
            failed(Fault::Transient)
        );
    }

    #[test]
    fn undecodable_records_by_code() {
        let id = RecordId::new("t", 0, 1);
        let fate = |code| Fate::undecodable(&RecordError::new(id.clone(), code, "m"));
        assert_eq!(
            fate(ErrorCode::InvalidJson),
            Fate::rejected("invalid_json", "m")
        );
        assert_eq!(
            fate(ErrorCode::UnknownSchemaId),
            Fate::Failed {
                code: "unknown_schema_id",
                message: "t-0@1: unknown_schema_id: m".into(),
                fault: Fault::Environment,
            }
        );
        assert_eq!(
            fate(ErrorCode::UnsupportedFormat).code(),
            Some("unsupported_format")
        );
        assert!(matches!(
            fate(ErrorCode::UnsupportedFormat),
            Fate::Failed {
                fault: Fault::Environment,
                ..
            }
        ));
        assert_eq!(
            fate(ErrorCode::SchemaFetchFailed),
            Fate::Failed {
                code: "schema_fetch_failed",
                message: "t-0@1: schema_fetch_failed: m".into(),
                fault: Fault::Transient,
            }
        );
    }
}
