//! The [`Secret`] value: a cheap-to-clone string that never prints itself.

use std::fmt;
use std::sync::Arc;

/// A secret string (API key). `Debug` and `Display` print `[REDACTED]`.
///
/// ```
/// use lambda_kit::secrets::Secret;
/// let s = Secret::new("sk-live-123");
/// assert_eq!(format!("{s} {s:?}"), "[REDACTED] Secret([REDACTED])");
/// assert_eq!(s.expose(), "sk-live-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}
