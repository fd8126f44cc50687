//! Error classes shared by every function: is a failure worth retrying, and how to name it in
//! logs and dead letters.

use std::time::Duration;

/// What to do about an error, decided where the error is created.
///
/// ```
/// use lambda_kit::error::ErrorClass;
/// use std::time::Duration;
///
/// let throttled = ErrorClass::Transient { retry_after: Some(Duration::from_secs(2)) };
/// assert!(throttled.is_transient());
/// assert!(ErrorClass::Permanent.is_permanent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Retrying cannot help (bad input, rejected request, bad configuration).
    Permanent,
    /// Retrying may help (network, timeouts, 408/429/5xx); the server may ask for a wait.
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

    /// `true` for [`ErrorClass::Permanent`].
    pub fn is_permanent(self) -> bool {
        matches!(self, Self::Permanent)
    }

    /// The wait requested by the server, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after } => retry_after,
            Self::Permanent => None,
        }
    }
}

/// Implemented by every error that can reach a retry loop or a dead letter.
///
/// ```
/// use lambda_kit::error::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct Timeout;
/// impl Classify for Timeout {
///     fn class(&self) -> ErrorClass { ErrorClass::TRANSIENT }
///     fn error_code(&self) -> &'static str { "timeout" }
/// }
/// assert!(Timeout.class().is_transient());
/// assert!(!Timeout.blames_input());
/// ```
pub trait Classify {
    /// Retry or not.
    fn class(&self) -> ErrorClass;

    /// Low-cardinality name for logs, metrics and dead letters (`snake_case`).
    fn error_code(&self) -> &'static str;

    /// `true` when the error is about the data that was sent (so isolating and dead-lettering
    /// the offending rows is right), `false` when it is about the environment (bad credentials,
    /// missing table): then nothing should be dead-lettered, the records are reported as failed
    /// so they are redelivered once the configuration is fixed.
    ///
    /// Defaults to "permanent errors blame the input".
    fn blames_input(&self) -> bool {
        self.class().is_permanent()
    }
}

impl<E: Classify + ?Sized> Classify for std::sync::Arc<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn error_code(&self) -> &'static str {
        (**self).error_code()
    }
    fn blames_input(&self) -> bool {
        (**self).blames_input()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Bad;
    impl Classify for Bad {
        fn class(&self) -> ErrorClass {
            ErrorClass::Permanent
        }
        fn error_code(&self) -> &'static str {
            "bad"
        }
    }

    #[test]
    fn permanent_errors_blame_input_by_default() {
        assert!(Bad.blames_input());
        assert!(std::sync::Arc::new(Bad).blames_input());
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
        assert_eq!(ErrorClass::Permanent.retry_after(), None);
        assert!(!ErrorClass::Permanent.is_transient());
    }
}
