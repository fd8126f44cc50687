//! Content hashes that decide whether a chunk must be embedded again.
//!
//! The hash covers the exact text sent to the model (prefix included), the model name and the
//! vector dimension, so a changed text, prefix, model or dimension all count as "changed" and
//! re-embed naturally, while a redelivered or restarted batch finds every hash already stored.

use sha2::{Digest, Sha256};

/// Version of the hashed layout; bump it to force a full re-embed after changing what is hashed.
const LAYOUT: &[u8] = b"page-embedder/v1";

/// Hex SHA-256 over (layout version, model, dimension, embedded text), with length prefixes so no
/// two different triples hash the same bytes.
///
/// ```
/// use page_embedder::hash::content_hash;
/// let h = content_hash("nomic-embed-text", 768, "search_document: hello");
/// assert_eq!(h.len(), 64);
/// assert_ne!(h, content_hash("nomic-embed-text", 512, "search_document: hello"));
/// assert_ne!(h, content_hash("other-model", 768, "search_document: hello"));
/// ```
pub fn content_hash(model: &str, dimensions: usize, embedded_text: &str) -> String {
    let mut h = Sha256::new();
    h.update(LAYOUT);
    for part in [
        model.as_bytes(),
        dimensions.to_string().as_bytes(),
        embedded_text.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_sensitive_to_every_input() {
        let a = content_hash("m", 3, "text");
        assert_eq!(a, content_hash("m", 3, "text"));
        assert_ne!(a, content_hash("m", 3, "text "));
        assert_ne!(a, content_hash("m", 4, "text"));
        assert_ne!(a, content_hash("m2", 3, "text"));
        // Length prefixes: moving bytes between fields changes the hash.
        assert_ne!(content_hash("ab", 3, "c"), content_hash("a", 3, "bc"));
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
