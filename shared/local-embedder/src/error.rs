//! Errors of the local embedder, each classified where it is created.

use std::path::PathBuf;

/// Why loading the model or embedding texts failed.
///
/// Loading errors ([`error_code`](Self::error_code) `local_model_*`) are configuration faults:
/// they should fail the cold start. Of the embedding errors, a text the tokenizer rejects is
/// permanent (the record is bad input), an inference failure is transient (it says nothing about
/// the record, so the batch should be redelivered rather than the record dead-lettered).
///
/// ```
/// use local_embedder::{LocalEmbedder, LocalEmbedderError};
///
/// let err = LocalEmbedder::load("no/such/dir").unwrap_err();
/// assert!(matches!(err, LocalEmbedderError::ReadFile { .. }));
/// assert_eq!(err.error_code(), "local_model_missing_file");
/// assert!(!err.is_transient());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalEmbedderError {
    /// `LOCAL_MODEL_DIR` is unset or empty.
    #[error(
        "LOCAL_MODEL_DIR is not set: point it at a directory holding config.json, tokenizer.json and model.safetensors (scripts/model prints one)"
    )]
    NotConfigured,
    /// A file of the model directory could not be read.
    #[error("cannot read model file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` (or `sentence_bert_config.json`) is not a BERT configuration.
    #[error("invalid model configuration {path}: {source}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// `tokenizer.json` could not be parsed or configured.
    #[error("invalid tokenizer {path}: {message}")]
    InvalidTokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer library's message.
        message: String,
    },
    /// `model.safetensors` does not hold the weights `config.json` describes.
    #[error("invalid model weights {path}: {source}")]
    InvalidWeights {
        /// The file.
        path: PathBuf,
        /// The tensor library's error.
        #[source]
        source: candle_core::Error,
    },
    /// The tokenizer rejected a text.
    #[error("cannot tokenize text {index}: {message}")]
    Tokenize {
        /// Position of the text in the batch (the text itself is not repeated: it may be large or
        /// private).
        index: usize,
        /// The tokenizer library's message.
        message: String,
    },
    /// The forward pass failed.
    #[error("model inference failed: {0}")]
    Inference(#[source] candle_core::Error),
}

impl LocalEmbedderError {
    /// A short, low-cardinality code for logs and metrics.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "local_model_not_configured",
            Self::ReadFile { .. } => "local_model_missing_file",
            Self::InvalidConfig { .. } => "local_model_invalid_config",
            Self::InvalidTokenizer { .. } => "local_model_invalid_tokenizer",
            Self::InvalidWeights { .. } => "local_model_invalid_weights",
            Self::Tokenize { .. } => "local_embed_tokenize",
            Self::Inference(_) => "local_embed_inference",
        }
    }

    /// Whether trying again (redelivering the batch) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Inference(_))
    }
}
