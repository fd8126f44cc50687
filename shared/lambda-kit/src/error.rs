//! Error classes shared by every function: whose fault a failure is (the record's, the
//! environment's, or nobody's yet), and how to name it in logs and dead letters.

use std::time::Duration;

use event_decoding::{ErrorCode, RecordError};

/// Whose fault an error is, decided where the error is created: the one vocabulary behind
/// retries ([`crate::retry`]), bisection ([`crate::bulk`]) and a record's [`Fate`](crate::fate::Fate).
///
/// ```
/// use lambda_kit::error::ErrorClass;
/// use std::time::Duration;
///
/// let throttled = ErrorClass::Transient { retry_after: Some(Duration::from_secs(2)) };
/// assert!(throttled.is_transient());
/// assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
/// assert!(!ErrorClass::Data.is_transient() && !ErrorClass::Environment.is_transient());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The record itself is bad (a rejected value, bytes that do not decode): dead-letter it,
    /// never retry.
    Data,
    /// Configuration, schema, credentials, a wrong vector dimension: retrying alone cannot help
    /// and the record is not to blame. Report it for redelivery; the message names the setting.
    Environment,
    /// Network, timeouts, 408/429/5xx: retry within the deadline, then report for redelivery.
    Transient {
        /// Wait requested by the server (`Retry-After`), if any.
        retry_after: Option<Duration>,
    },
}

impl ErrorClass {
    /// A transient class without a server-requested wait.
    pub const TRANSIENT: Self = Self::Transient { retry_after: None };

    /// `true` for [`ErrorClass::Transient`].
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The wait requested by the server, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after } => retry_after,
            Self::Data | Self::Environment => None,
        }
    }
}

/// Implemented by every error that can reach a retry loop or a dead letter. There is no default
/// class: each error says whose fault it is.
///
/// ```
/// use lambda_kit::error::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum WriteError { Timeout, BadValue, MissingTable }
/// impl Classify for WriteError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             Self::Timeout => ErrorClass::TRANSIENT,
///             Self::BadValue => ErrorClass::Data,
///             Self::MissingTable => ErrorClass::Environment,
///         }
///     }
///     fn error_code(&self) -> &'static str { "write" }
/// }
/// assert!(WriteError::Timeout.class().is_transient());
/// assert_eq!(WriteError::MissingTable.class(), ErrorClass::Environment);
/// ```
pub trait Classify {
    /// Whose fault the error is, and whether retrying may help.
    fn class(&self) -> ErrorClass;

    /// Low-cardinality name for logs, metrics and dead letters (`snake_case`).
    fn error_code(&self) -> &'static str;
}

impl<E: Classify + ?Sized> Classify for std::sync::Arc<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn error_code(&self) -> &'static str {
        (**self).error_code()
    }
}

/// The one place that decides the class of each decoding failure ([`ErrorCode`]): bytes that do
/// not decode are the record's fault; a writer schema that is unknown or whose format is not
/// decoded is the environment's; a schema that could not be fetched is transient.
///
/// ```
/// use event_decoding::{ErrorCode, RecordError, RecordId};
/// use lambda_kit::error::{Classify, ErrorClass};
/// let id = RecordId::new("t", 0, 0);
/// let class = |code| RecordError::new(id.clone(), code, "").class();
/// assert_eq!(class(ErrorCode::SchemaMismatch), ErrorClass::Data);
/// assert_eq!(class(ErrorCode::UnknownSchemaId), ErrorClass::Environment);
/// assert_eq!(class(ErrorCode::SchemaFetchFailed), ErrorClass::TRANSIENT);
/// ```
impl Classify for RecordError {
    fn class(&self) -> ErrorClass {
        match self.code {
            ErrorCode::InvalidBase64
            | ErrorCode::InvalidUtf8
            | ErrorCode::InvalidJson
            | ErrorCode::MissingValue
            | ErrorCode::MissingKey
            | ErrorCode::InvalidField
            | ErrorCode::UnknownOp
            | ErrorCode::InvalidEnvelope
            | ErrorCode::MissingSchemaId
            | ErrorCode::SchemaMismatch => ErrorClass::Data,
            ErrorCode::UnknownSchemaId | ErrorCode::UnsupportedFormat => ErrorClass::Environment,
            ErrorCode::SchemaFetchFailed => ErrorClass::TRANSIENT,
            // `ErrorCode` is `#[non_exhaustive]`: a code added later never dead-letters a record
            // before it is classified here.
            _ => ErrorClass::Environment,
        }
    }

    fn error_code(&self) -> &'static str {
        self.code.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Missing;
    impl Classify for Missing {
        fn class(&self) -> ErrorClass {
            ErrorClass::Environment
        }
        fn error_code(&self) -> &'static str {
            "missing"
        }
    }

    #[test]
    fn an_arc_keeps_the_class_and_code() {
        let e = std::sync::Arc::new(Missing);
        assert_eq!(e.class(), ErrorClass::Environment);
        assert_eq!(e.error_code(), "missing");
    }

    #[test]
    fn decoding_failures_are_data_but_for_the_writer_schema() {
        use event_decoding::RecordId;
        let all = [
            ErrorCode::InvalidBase64,
            ErrorCode::InvalidUtf8,
            ErrorCode::InvalidJson,
            ErrorCode::MissingValue,
            ErrorCode::MissingKey,
            ErrorCode::InvalidField,
            ErrorCode::UnknownOp,
            ErrorCode::InvalidEnvelope,
            ErrorCode::MissingSchemaId,
            ErrorCode::SchemaMismatch,
            ErrorCode::UnknownSchemaId,
            ErrorCode::SchemaFetchFailed,
            ErrorCode::UnsupportedFormat,
        ];
        for code in all {
            let e = RecordError::new(RecordId::new("t", 0, 0), code, "m");
            // The decoding crate's own reading ("the bytes are at fault") agrees.
            assert_eq!(e.class() == ErrorClass::Data, e.is_permanent(), "{code}");
            assert_eq!(e.error_code(), code.as_str());
        }
    }

    #[test]
    fn retry_after_only_on_transient() {
        let d = Duration::from_millis(5);
        assert_eq!(
            ErrorClass::Transient {
                retry_after: Some(d)
            }
            .retry_after(),
            Some(d)
        );
        assert_eq!(ErrorClass::Data.retry_after(), None);
        assert_eq!(ErrorClass::Environment.retry_after(), None);
        assert!(!ErrorClass::Data.is_transient());
        assert!(!ErrorClass::Environment.is_transient());
    }
}
