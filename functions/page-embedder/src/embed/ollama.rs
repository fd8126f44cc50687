//! Ollama's native batch endpoint `POST /api/embed`: `input` is an array (many texts per
//! request), `truncate: false` makes an over-long input an error instead of silently cutting it,
//! the answer is `{"model", "embeddings": [[..], ..]}` in input order.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder, check_count, send_json};

/// Client of Ollama's `/api/embed`.
#[derive(Debug, Clone)]
pub struct OllamaEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    keep_alive: Option<String>,
    timeout: Duration,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    truncate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

#[derive(Deserialize)]
struct Response {
    embeddings: Vec<Vec<f32>>,
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
        Self {
            client,
            url: format!("{}/api/embed", base_url.trim_end_matches('/')),
            model: model.to_owned(),
            dimensions,
            send_dimensions,
            keep_alive: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// How long Ollama keeps the model loaded after a request (`keep_alive`, e.g. `10m`).
    pub fn with_keep_alive(mut self, keep_alive: Option<String>) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Timeout of one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Embedder for OllamaEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = Request {
            model: &self.model,
            input: texts,
            truncate: false,
            dimensions: self.send_dimensions.then_some(self.dimensions),
            keep_alive: self.keep_alive.as_deref(),
        };
        let request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .json(&body);
        let response: Response =
            send_json(request, &self.model, None, "{\"embeddings\": [[number]]}").await?;
        check_count(&self.model, response.embeddings.len(), texts.len())?;
        Ok(response.embeddings)
    }
}
