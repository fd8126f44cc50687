//! The [`Secret`] value: a cheap-to-clone string that never prints itself.
//!
//! Ours rather than `secrecy::SecretString` (0.10.3, last released 2024-10-09): a value is cloned
//! on every request (`Credential::current`, `Credential::call`) and compared where a re-read is
//! told from the value held and where a client's headers are made again only for a new value
//! (`Stored::read_now`, `Credential::refresh_after_auth_failure`, [`PerValue`](super::PerValue)).
//! `SecretString` is a `Box<str>`: each clone is an allocation and a copy, and it has no
//! `PartialEq` (by design), no `Display` and a `Debug` naming the type
//! (`SecretBox<str>([REDACTED])`), so it would need a wrapper giving back what this type is. Its
//! zeroing on drop would not make the key leave memory either: every request copies it into a
//! `reqwest` header value, and it arrives in Secrets Manager's response and `serde_json`'s parse,
//! none of them zeroed. Size is not the reason: measured 2026-12-07 on a minimal Lambda binary
//! (lambda_runtime, tokio, reqwest with rustls, serde_json; the workspace's release profile), it
//! adds 1 crate (`zeroize` is in the tree already, through aws-lc-rs) and 4,376 bytes.

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
