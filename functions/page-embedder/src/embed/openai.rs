//! The OpenAI embeddings API `POST /v1/embeddings` (also served by vLLM, TEI, LM Studio, LiteLLM
//! and Ollama's `/v1`): `input` array, optional `dimensions`, answer `data[].embedding` with an
//! `index` per input; errors `{"error": {"message", "type", "code"}}`.

use lambda_kit::secrets::Credential;
use serde::Deserialize;

use super::{HttpEmbedder, Wire};

/// Client of an OpenAI-compatible `/v1/embeddings`.
pub type OpenAiEmbedder = HttpEmbedder<OpenAiApi>;

/// The OpenAI answer format.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiApi;

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl Wire for OpenAiApi {
    const SHAPE: &'static str = "{\"data\": [{\"index\", \"embedding\"}]}";

    /// Each embedding with its `index` (the order of `data` is not promised).
    fn vectors(body: &[u8]) -> serde_json::Result<Vec<(usize, Vec<f32>)>> {
        let answer: Answer = serde_json::from_slice(body)?;
        Ok(answer
            .data
            .into_iter()
            .map(|i| (i.index, i.embedding))
            .collect())
    }
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
        api_key: Option<Credential>,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        let url = match base.ends_with("/v1") {
            true => format!("{base}/embeddings"),
            false => format!("{base}/v1/embeddings"),
        };
        let mut e = Self::with_url(client, url, model).with_dimensions(dimensions, send_dimensions);
        e.options.encoding_format = Some("float");
        e.api_key = api_key;
        e
    }
}
