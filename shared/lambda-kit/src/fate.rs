//! What became of one record (or one row written for it): the one outcome vocabulary of the
//! workspace. A function's decode and write steps return [`Fate`]s; the batch runner
//! ([`crate::runner`]) turns them into dead letters, the partial batch response, logs and metrics.

use std::fmt;

use event_decoding::{ErrorCode, Outcome, RecordError};

use crate::error::Classify;

/// The fate of one record.
///
/// The rule behind the two unhappy variants: a dead letter is for what the record itself causes
/// ([`Fate::Rejected`]); a fault of the environment (configuration, schema, auth, a dependency
/// down) is [`Fate::Failed`], reported so the event source mapping redelivers the record.
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
        /// `true` when retrying alone will not help (configuration, schema, auth): an operator
        /// must fix something. `false` for transient faults (network, throttling, 5xx).
        environment: bool,
    },
}

impl Fate {
    /// A record to dead-letter.
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            message: message.into(),
        }
    }

    /// A record to redeliver because of `error`, whatever its class.
    pub fn failed<E: Classify + fmt::Display + ?Sized>(error: &E) -> Self {
        Self::Failed {
            code: error.error_code(),
            message: error.to_string(),
            environment: error.class().is_permanent(),
        }
    }

    /// The fate `error` implies: [`Fate::Rejected`] when it is permanent and
    /// [blames the input](Classify::blames_input), [`Fate::Failed`] otherwise.
    ///
    /// ```
    /// use lambda_kit::error::{Classify, ErrorClass};
    /// use lambda_kit::fate::Fate;
    ///
    /// #[derive(Debug)]
    /// struct MissingTable;
    /// impl std::fmt::Display for MissingTable {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("no table vault") }
    /// }
    /// impl Classify for MissingTable {
    ///     fn class(&self) -> ErrorClass { ErrorClass::Permanent }
    ///     fn error_code(&self) -> &'static str { "db_missing_table" }
    ///     fn blames_input(&self) -> bool { false }
    /// }
    /// assert!(matches!(Fate::from_error(&MissingTable), Fate::Failed { environment: true, .. }));
    /// ```
    pub fn from_error<E: Classify + fmt::Display + ?Sized>(error: &E) -> Self {
        if error.class().is_permanent() && error.blames_input() {
            Self::rejected(error.error_code(), error.to_string())
        } else {
            Self::failed(error)
        }
    }

    /// The fate of a record that did not decode: [`Fate::Rejected`] when its bytes are bad
    /// ([`RecordError::is_permanent`]), [`Fate::Failed`] when a writer schema could not be had or
    /// its format is not decoded (an environment fault, or a transient one for
    /// `schema_fetch_failed`).
    ///
    /// ```
    /// use event_decoding::{ErrorCode, RecordError, RecordId};
    /// use lambda_kit::fate::Fate;
    /// let id = RecordId::new("t", 0, 1);
    /// let bad = RecordError::new(id.clone(), ErrorCode::SchemaMismatch, "value does not match");
    /// assert_eq!(Fate::undecodable(&bad), Fate::rejected("schema_mismatch", "value does not match"));
    /// let down = RecordError::new(id, ErrorCode::SchemaFetchFailed, "HTTP 503");
    /// assert!(matches!(Fate::undecodable(&down), Fate::Failed { environment: false, .. }));
    /// ```
    pub fn undecodable(error: &RecordError) -> Self {
        if error.is_permanent() {
            return Self::rejected(error.error_code(), error.message.clone());
        }
        Self::Failed {
            code: error.error_code(),
            message: error.to_string(),
            environment: error.code != ErrorCode::SchemaFetchFailed,
        }
    }

    /// The fate of a record whose result never came back: failed, so it is redelivered instead of
    /// acknowledged.
    pub fn missing() -> Self {
        Self::Failed {
            code: "missing_result",
            message: "no result was returned for this record".into(),
            environment: false,
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
    use crate::error::ErrorClass;

    #[derive(Debug)]
    struct E(ErrorClass, bool);
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
        fn blames_input(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn errors_map_to_rejected_only_when_permanent_and_about_the_input() {
        assert_eq!(
            Fate::from_error(&E(ErrorClass::Permanent, true)),
            Fate::rejected("e", "boom")
        );
        assert!(matches!(
            Fate::from_error(&E(ErrorClass::Permanent, false)),
            Fate::Failed {
                environment: true,
                ..
            }
        ));
        // A transient error never dead-letters, even if it claims to be about the input.
        assert!(matches!(
            Fate::from_error(&E(ErrorClass::TRANSIENT, true)),
            Fate::Failed {
                environment: false,
                ..
            }
        ));
        assert_eq!(Fate::missing().outcome(), Outcome::Failed);
        assert_eq!(Fate::Skipped.code(), None);
    }
}
