//! Ollama's native batch endpoint `POST /api/embed`: `input` is an array (many texts per
//! request), `truncate: false` makes an over-long input an error instead of silently cutting it,
//! the answer is `{"model", "embeddings": [[..], ..]}` in input order.

use serde::Deserialize;

use super::{HttpEmbedder, Wire};

/// Client of Ollama's `/api/embed`.
pub type OllamaEmbedder = HttpEmbedder<OllamaApi>;

/// Ollama's answer format.
#[derive(Debug, Clone, Copy, Default)]
pub struct OllamaApi;

#[derive(Deserialize)]
struct Answer {
    embeddings: Vec<Vec<f32>>,
}

impl Wire for OllamaApi {
    const SHAPE: &'static str = "{\"embeddings\": [[number]]}";

    fn vectors(body: &[u8]) -> serde_json::Result<Vec<(usize, Vec<f32>)>> {
        let answer: Answer = serde_json::from_slice(body)?;
        Ok(answer.embeddings.into_iter().enumerate().collect())
    }
}

impl OllamaEmbedder {
    /// A client for `base_url` (e.g. `http://localhost:11434`). `send_dimensions` adds
    /// `dimensions` to each request (only when `EMBED_DIM` was set explicitly: not every model
    /// supports it).
    ///
    /// ```
    /// use page_embedder::embed::{Embedder, OllamaEmbedder};
    /// let e = OllamaEmbedder::new(reqwest::Client::new(), "http://localhost:11434/", "nomic-embed-text", 768, false);
    /// assert_eq!(e.model(), "nomic-embed-text");
    /// ```
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        model: &str,
        dimensions: usize,
        send_dimensions: bool,
    ) -> Self {
        let url = format!("{}/api/embed", base_url.trim_end_matches('/'));
        let mut e = Self::with_url(client, url, model).with_dimensions(dimensions, send_dimensions);
        e.options.truncate = Some(false);
        e
    }

    /// How long Ollama keeps the model loaded after a request (`keep_alive`, e.g. `10m`).
    pub fn with_keep_alive(mut self, keep_alive: Option<String>) -> Self {
        self.options.keep_alive = keep_alive;
        self
    }
}
