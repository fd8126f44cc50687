//! The OpenAI embeddings API `POST /v1/embeddings` (also served by vLLM, TEI, LM Studio, LiteLLM
//! and Ollama's `/v1`): `input` array, optional `dimensions`, answer `data[].embedding` with an
//! `index` per input; errors `{"error": {"message", "type", "code"}}`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder, check_count, invalid_response, send_json};

/// Client of an OpenAI-compatible `/v1/embeddings`.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    api_key: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// A client for `base_url`: `https://api.openai.com` gets `/v1/embeddings`; a base that
    /// already ends in `/v1` (the form most compatible servers document) gets `/embeddings`.
    ///
    /// ```
    /// use page_embedder::embed::OpenAiEmbedder;
    /// let e = OpenAiEmbedder::new(reqwest::Client::new(), "http://127.0.0.1:11434/v1", "m", 8, false, None);
    /// assert_eq!(e.url(), "http://127.0.0.1:11434/v1/embeddings");
    /// let e = OpenAiEmbedder::new(reqwest::Client::new(), "https://api.openai.com", "m", 8, false, None);
    /// assert_eq!(e.url(), "https://api.openai.com/v1/embeddings");
    /// ```
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        model: &str,
        dimensions: usize,
        send_dimensions: bool,
        api_key: Option<String>,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        let url = if base.ends_with("/v1") {
            format!("{base}/embeddings")
        } else {
            format!("{base}/v1/embeddings")
        };
        Self {
            client,
            url,
            model: model.to_owned(),
            dimensions,
            send_dimensions,
            api_key: api_key.filter(|k| !k.is_empty()),
            timeout: Duration::from_secs(30),
        }
    }

    /// Timeout of one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Embedder for OpenAiEmbedder {
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
            encoding_format: "float",
            dimensions: self.send_dimensions.then_some(self.dimensions),
        };
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response: Response = send_json(
            request,
            &self.model,
            self.api_key.as_deref(),
            "{\"data\": [{\"index\", \"embedding\"}]}",
        )
        .await?;
        check_count(&self.model, response.data.len(), texts.len())?;
        let invalid = |message: String| invalid_response(&self.model, message);
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for item in response.data {
            let slot = out
                .get_mut(item.index)
                .ok_or_else(|| invalid(format!("index {} out of range", item.index)))?;
            if slot.replace(item.embedding).is_some() {
                return Err(invalid(format!("index {} repeated", item.index)));
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or_default()).collect())
    }
}
