//! Sentence embeddings computed inside the function: a BERT encoder (candle, CPU) with mean
//! pooling and L2 normalisation, the `sentence-transformers` recipe of all-MiniLM-L6-v2.
//!
//! The model directory holds the Hugging Face files `config.json`, `tokenizer.json` and
//! `model.safetensors` (and optionally `sentence_bert_config.json` for the maximum sequence
//! length). `scripts/model` fetches all-MiniLM-L6-v2 (384 dimensions) and prints such a
//! directory.
//!
//! Texts longer than the maximum sequence length (256 tokens for all-MiniLM-L6-v2) are truncated,
//! as `sentence-transformers` does: callers embed chunks, not whole documents.

mod error;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

pub use error::LocalEmbedderError;

/// Environment variable naming the model directory.
pub const MODEL_DIR_VAR: &str = "LOCAL_MODEL_DIR";

/// Maximum sequence length when the directory has no `sentence_bert_config.json`.
const DEFAULT_MAX_TOKENS: usize = 256;

/// Texts per forward pass. Texts are sorted by length before they are grouped, so padding stays
/// small; the cap bounds the activations' memory (batch x tokens x hidden x layers).
const MAX_BATCH: usize = 32;

/// A sentence-embedding model loaded in memory.
///
/// Loading reads about 90 MB of weights (all-MiniLM-L6-v2) and takes a fraction of a second:
/// do it once per execution environment (at cold start) and share the value; `embed` takes
/// `&self` and the type is `Send + Sync`.
///
/// ```no_run
/// use local_embedder::LocalEmbedder;
///
/// let embedder = LocalEmbedder::load("/path/to/all-minilm-l6-v2")?;
/// let vectors = embedder.embed(&["The cat sat on the mat.", "A dog barked."])?;
/// assert_eq!(vectors.len(), 2);
/// assert_eq!(vectors[0].len(), embedder.dimensions());
/// # Ok::<(), local_embedder::LocalEmbedderError>(())
/// ```
pub struct LocalEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
    max_tokens: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dir", &self.dir)
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl LocalEmbedder {
    /// Loads the model from the directory named by `LOCAL_MODEL_DIR`.
    ///
    /// ```no_run
    /// let embedder = local_embedder::LocalEmbedder::from_env()?;
    /// # Ok::<(), local_embedder::LocalEmbedderError>(())
    /// ```
    pub fn from_env() -> Result<Self, LocalEmbedderError> {
        match std::env::var_os(MODEL_DIR_VAR) {
            Some(dir) if !dir.is_empty() => Self::load(dir),
            _ => Err(LocalEmbedderError::NotConfigured),
        }
    }

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    ///
    /// ```
    /// let err = local_embedder::LocalEmbedder::load("missing-model-dir").unwrap_err();
    /// assert!(err.to_string().contains("config.json"));
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LocalEmbedderError> {
        let dir = dir.as_ref().to_path_buf();

        let config_path = dir.join("config.json");
        let config: BertConfig = parse_json(&config_path)?;

        let sbert_path = dir.join("sentence_bert_config.json");
        let max_tokens = if sbert_path.exists() {
            let sbert: SentenceBertConfig = parse_json(&sbert_path)?;
            sbert.max_seq_length.unwrap_or(DEFAULT_MAX_TOKENS)
        } else {
            DEFAULT_MAX_TOKENS
        }
        .min(config.max_position_embeddings);

        let tokenizer_path = dir.join("tokenizer.json");
        let bytes = read(&tokenizer_path)?;
        let mut tokenizer =
            Tokenizer::from_bytes(&bytes).map_err(|e| LocalEmbedderError::InvalidTokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        // The shipped tokenizer.json pads every text to a fixed 128 tokens and truncates there;
        // we pad per batch ourselves and truncate where sentence-transformers does.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| LocalEmbedderError::InvalidTokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;

        let device = Device::Cpu;
        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let invalid_weights = |source| LocalEmbedderError::InvalidWeights {
            path: weights_path.clone(),
            source,
        };
        // Buffered rather than memory-mapped: mapping needs `unsafe`, which the workspace forbids,
        // and the file is small next to a Lambda's memory.
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(invalid_weights)?;
        let model = BertModel::load(vb, &config).map_err(invalid_weights)?;

        Ok(Self {
            model,
            tokenizer,
            device,
            dimensions: config.hidden_size,
            max_tokens,
            dir,
        })
    }

    /// Length of every vector [`embed`](Self::embed) returns (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens per text beyond which the text is truncated (special tokens included).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// Embeds each text into a unit-length vector, in the order given.
    ///
    /// The result does not depend on how texts are grouped: a text's vector is the same (to
    /// float rounding) whether it is embedded alone or among others. An empty slice gives an
    /// empty result; an empty text gives a valid vector.
    ///
    /// ```no_run
    /// # let embedder = local_embedder::LocalEmbedder::from_env()?;
    /// let v = embedder.embed(&["hello"])?;
    /// let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    /// assert!((norm - 1.0).abs() < 1e-4);
    /// # Ok::<(), local_embedder::LocalEmbedderError>(())
    /// ```
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LocalEmbedderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut encodings = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let encoding =
                self.tokenizer
                    .encode(*text, true)
                    .map_err(|e| LocalEmbedderError::Tokenize {
                        index,
                        message: e.to_string(),
                    })?;
            encodings.push(encoding);
        }

        // Longest first, so that each forward pass pads to similar lengths.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));

        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(MAX_BATCH) {
            let batch: Vec<&Encoding> = group.iter().map(|&i| &encodings[i]).collect();
            let vectors = self
                .forward(&batch)
                .map_err(LocalEmbedderError::Inference)?;
            for (&i, vector) in group.iter().zip(vectors) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    fn forward(&self, batch: &[&Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let rows = batch.len();
        let mut ids = vec![0u32; rows * len];
        let mut types = vec![0u32; rows * len];
        let mut mask = vec![0u32; rows * len];
        for (row, encoding) in batch.iter().enumerate() {
            let start = row * len;
            let n = encoding.len();
            ids[start..start + n].copy_from_slice(encoding.get_ids());
            types[start..start + n].copy_from_slice(encoding.get_type_ids());
            mask[start..start + n].copy_from_slice(encoding.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, len), &self.device)?;
        let types = Tensor::from_vec(types, (rows, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        mean_pool_normalize(&hidden, &mask)?.to_vec2::<f32>()
    }
}

/// Mean of the token vectors that the mask keeps, scaled to unit length.
///
/// `hidden` is `[batch, tokens, dims]`, `mask` is `[batch, tokens]` of 0/1; the result is
/// `[batch, dims]`. Norms are floored at 1e-12 like `torch.nn.functional.normalize`, so an
/// all-zero row stays zero instead of becoming NaN.
fn mean_pool_normalize(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // At least one token per row in practice ([CLS] and [SEP]); the floor guards the division.
    let counts = mask.sum(1)?.maximum(1e-9)?;
    let mean = summed.broadcast_div(&counts)?;
    let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
    mean.broadcast_div(&norms)
}

fn read(path: &Path) -> Result<Vec<u8>, LocalEmbedderError> {
    std::fs::read(path).map_err(|source| LocalEmbedderError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LocalEmbedderError> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|source| LocalEmbedderError::InvalidConfig {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn pooling_averages_only_unmasked_tokens_and_normalises() {
        // One row, three tokens of two dims; the third token is padding with huge values that
        // must not leak into the mean.
        let hidden = tensor(&[1.0, 0.0, 3.0, 4.0, 100.0, -100.0], &[1, 3, 2]);
        let mask = Tensor::from_slice(&[1u32, 1, 0], &[1, 3], &Device::Cpu).unwrap();
        let out = mean_pool_normalize(&hidden, &mask)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // mean = (2, 2) -> unit vector (1/sqrt2, 1/sqrt2)
        let expected = std::f32::consts::FRAC_1_SQRT_2;
        assert!((out[0][0] - expected).abs() < 1e-6, "{out:?}");
        assert!((out[0][1] - expected).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn pooling_keeps_a_zero_row_finite() {
        let hidden = tensor(&[0.0; 4], &[1, 2, 2]);
        let mask = Tensor::from_slice(&[1u32, 1], &[1, 2], &Device::Cpu).unwrap();
        let out = mean_pool_normalize(&hidden, &mask)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(out[0].iter().all(|x| *x == 0.0), "{out:?}");
    }

    #[test]
    fn pooling_rows_are_independent() {
        let hidden = tensor(&[1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 2.0], &[2, 2, 2]);
        let mask = Tensor::from_slice(&[1u32, 0, 1, 1], &[2, 2], &Device::Cpu).unwrap();
        let out = mean_pool_normalize(&hidden, &mask)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(out[0], vec![1.0, 0.0]);
        assert!((out[1][1] - 1.0).abs() < 1e-6 && out[1][0].abs() < 1e-6);
    }

    #[test]
    fn missing_directory_names_the_file() {
        let err = LocalEmbedder::load("definitely/not/here").unwrap_err();
        assert_eq!(err.error_code(), "local_model_missing_file");
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn invalid_config_is_reported_as_such() {
        let dir = std::env::temp_dir().join(format!("local-embedder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), br#"{"hidden_size": "big"}"#).unwrap();
        let err = LocalEmbedder::load(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.error_code(), "local_model_invalid_config");
        assert!(!err.is_transient());
    }

    #[test]
    fn embedder_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalEmbedder>();
    }
}
