//! Embedding providers: the [`Embedder`] trait the handler depends on, the error classes of a
//! provider call, the vector checks every provider's answer goes through, and the HTTP clients
//! for Ollama's native API and the OpenAI-compatible API.

#[cfg(feature = "local-embedder")]
mod local;
mod ollama;
mod openai;

use std::future::Future;
use std::time::Duration;

use lambda_kit::error::{Classify, ErrorClass};

#[cfg(feature = "local-embedder")]
pub use local::LocalProvider;
pub use ollama::OllamaEmbedder;
pub use openai::OpenAiEmbedder;

/// Turns texts into vectors. Implementations make one provider request per call (the caller
/// batches and bounds concurrency) and return one vector per input, in input order.
///
/// ```
/// use page_embedder::embed::{EmbedError, Embedder};
///
/// /// A toy embedder: the vector is the text's length, repeated.
/// struct Lengths;
/// impl Embedder for Lengths {
///     fn model(&self) -> &str { "lengths" }
///     fn dimensions(&self) -> usize { 2 }
///     async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
///         Ok(texts.iter().map(|t| vec![t.len() as f32; 2]).collect())
///     }
/// }
/// ```
pub trait Embedder: Send + Sync {
    /// The model name, stored with every vector and part of the content hash.
    fn model(&self) -> &str;
    /// The expected vector length; any other length is rejected.
    fn dimensions(&self) -> usize;
    /// Embeds `texts` (one request), returning vectors in the same order.
    fn embed(
        &self,
        texts: &[String],
    ) -> impl Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send;
}

/// A failed provider call, classified where it is created.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// Network failure, timeout, 408, 429 or 5xx: retried with backoff, then reported as a batch
    /// item failure so the batch is redelivered.
    #[error("embedding provider unavailable ({code}): {message}")]
    Unavailable {
        /// `embed_throttled`, `embed_server_error`, `http_timeout`, `http_connect`, ...
        code: &'static str,
        /// What happened (sanitised, no secret).
        message: String,
        /// Wait asked for by `retry-after-ms` / `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The provider refuses an input as longer than the model's context (Ollama with
    /// `truncate: false`, OpenAI `context_length_exceeded`, HTTP 413): split further.
    #[error("input too long for model {model}: {message}")]
    InputTooLong {
        /// The model.
        model: String,
        /// The provider's message.
        message: String,
    },
    /// Another 400/422 about the request's content: isolate the input and dead-letter it.
    #[error("input rejected by the embedding provider (HTTP {status}): {message}")]
    InputRejected {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// 401, 403, 404 (model not found) and other statuses that are about the configuration, not
    /// the input: nothing is dead-lettered, the records are reported failed and redelivered once
    /// the configuration is fixed.
    #[error(
        "embedding provider rejects the configuration (HTTP {status}, model {model}): {message}"
    )]
    Config {
        /// HTTP status.
        status: u16,
        /// The model.
        model: String,
        /// The provider's message.
        message: String,
    },
    /// A 2xx answer that is not the documented shape (bad JSON, wrong number of vectors).
    #[error("invalid embedding response from model {model}: {message}")]
    InvalidResponse {
        /// The model.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// A vector of the wrong length or with non-finite values: nothing is written for the page.
    #[error("invalid vector from model {model} (expected {expected} dimensions): {problem}")]
    InvalidVector {
        /// The model.
        model: String,
        /// Configured dimension (`EMBED_DIM`).
        expected: usize,
        /// What is wrong.
        problem: String,
    },
}

impl Classify for EmbedError {
    fn class(&self) -> ErrorClass {
        match self {
            EmbedError::Unavailable { retry_after, .. } => ErrorClass::Transient {
                retry_after: *retry_after,
            },
            EmbedError::InvalidResponse { .. } => ErrorClass::TRANSIENT,
            EmbedError::InputTooLong { .. }
            | EmbedError::InputRejected { .. }
            | EmbedError::Config { .. }
            | EmbedError::InvalidVector { .. } => ErrorClass::Permanent,
        }
    }

    fn error_code(&self) -> &'static str {
        match self {
            EmbedError::Unavailable { code, .. } => code,
            EmbedError::InputTooLong { .. } => "embed_input_too_long",
            EmbedError::InputRejected { .. } => "embed_input_rejected",
            EmbedError::Config { .. } => "embed_config",
            EmbedError::InvalidResponse { .. } => "embed_invalid_response",
            EmbedError::InvalidVector { .. } => "embed_invalid_vector",
        }
    }

    fn blames_input(&self) -> bool {
        matches!(
            self,
            EmbedError::InputTooLong { .. }
                | EmbedError::InputRejected { .. }
                | EmbedError::InvalidVector { .. }
        )
    }
}

/// Checks one vector: exactly `expected` values, all finite.
///
/// ```
/// use page_embedder::embed::check_vector;
/// assert!(check_vector("m", 3, &[0.1, 0.2, 0.3]).is_ok());
/// let err = check_vector("m", 3, &[0.1, 0.2]).unwrap_err();
/// assert!(err.to_string().contains("model m") && err.to_string().contains("got 2"));
/// assert!(check_vector("m", 2, &[0.1, f32::NAN]).is_err());
/// ```
pub fn check_vector(model: &str, expected: usize, v: &[f32]) -> Result<(), EmbedError> {
    let invalid = |problem: String| EmbedError::InvalidVector {
        model: model.to_owned(),
        expected,
        problem,
    };
    if v.len() != expected {
        return Err(invalid(format!("got {} dimensions", v.len())));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(invalid(format!("value {i} is not finite")));
    }
    Ok(())
}

/// Maps a non-success HTTP answer of either API to an [`EmbedError`]. `message` is the provider's
/// error text, already extracted and sanitised.
fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    model: &str,
    message: String,
    provider_code: Option<&str>,
) -> EmbedError {
    let class = lambda_kit::http::classify_status(status, headers);
    if class.is_transient() {
        let code = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            "embed_throttled"
        } else {
            "embed_server_error"
        };
        return EmbedError::Unavailable {
            code,
            message: format!("HTTP {}: {message}", status.as_u16()),
            retry_after: class.retry_after(),
        };
    }
    let too_long = status == reqwest::StatusCode::PAYLOAD_TOO_LARGE
        || provider_code == Some("context_length_exceeded")
        || looks_too_long(&message);
    match status.as_u16() {
        400 | 413 | 422 if too_long => EmbedError::InputTooLong {
            model: model.to_owned(),
            message,
        },
        400 | 422 => EmbedError::InputRejected {
            status: status.as_u16(),
            message,
        },
        s => EmbedError::Config {
            status: s,
            model: model.to_owned(),
            message,
        },
    }
}

/// Wording of "input longer than the context" across Ollama, OpenAI, vLLM and TEI.
fn looks_too_long(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context length",
        "maximum context",
        "too long",
        "exceeds",
        "input length",
        "must have less than",
        "maximum input",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The error text of an error body: Ollama's `{"error": "..."}`, OpenAI's
/// `{"error": {"message", "type", "code"}}` (returning the code too), or the raw body.
fn error_message(body: &str, secret: Option<&str>) -> (String, Option<String>) {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let (message, code) = match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(serde_json::Value::String(s)) => (s.clone(), None),
        Some(serde_json::Value::Object(o)) => {
            let msg = o
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_owned();
            let code = o.get("code").and_then(|c| c.as_str()).map(str::to_owned);
            (msg, code)
        }
        _ => (body.to_owned(), None),
    };
    (lambda_kit::http::sanitize_body(&message, secret), code)
}

/// Maps a transport failure (connect, timeout, reset) to [`EmbedError`].
fn transport_error(err: &reqwest::Error, model: &str, secret: Option<&str>) -> EmbedError {
    let message = lambda_kit::http::sanitize_body(&lambda_kit::http::describe_reqwest(err), secret);
    if lambda_kit::http::classify_reqwest(err).is_transient() {
        EmbedError::Unavailable {
            code: lambda_kit::http::reqwest_error_code(err),
            message,
            retry_after: None,
        }
    } else {
        invalid_response(model, message)
    }
}

/// An [`EmbedError::InvalidResponse`] from `model`'s provider.
fn invalid_response(model: &str, message: String) -> EmbedError {
    EmbedError::InvalidResponse {
        model: model.to_owned(),
        message,
    }
}

/// Sends a prepared JSON request and parses the body of a 2xx answer as `T`; a body that does not
/// parse is an [`EmbedError::InvalidResponse`] naming the `shape` expected.
async fn send_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    model: &str,
    secret: Option<&str>,
    shape: &str,
) -> Result<T, EmbedError> {
    let text = send(request, model, secret).await?;
    serde_json::from_str(&text)
        .map_err(|e| invalid_response(model, format!("body is not {shape}: {e}")))
}

/// A provider must answer one embedding per input.
fn check_count(model: &str, embeddings: usize, inputs: usize) -> Result<(), EmbedError> {
    if embeddings == inputs {
        Ok(())
    } else {
        Err(invalid_response(
            model,
            format!("{embeddings} embeddings for {inputs} inputs"),
        ))
    }
}

/// Sends a prepared JSON request and returns the body of a 2xx answer, or the classified error.
async fn send(
    request: reqwest::RequestBuilder,
    model: &str,
    secret: Option<&str>,
) -> Result<String, EmbedError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, model, secret))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| transport_error(&e, model, secret))?;
    if status.is_success() {
        return Ok(body);
    }
    let (message, code) = error_message(&body, secret);
    Err(status_error(
        status,
        &headers,
        model,
        message,
        code.as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn err(status: u16, body: &str) -> EmbedError {
        let (msg, code) = error_message(body, Some("sk-secret"));
        status_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            "m",
            msg,
            code.as_deref(),
        )
    }

    #[test]
    fn ollama_errors() {
        // Ollama: 400 `{"error":"the input length exceeds the context length"}` with truncate=false.
        assert!(matches!(
            err(
                400,
                r#"{"error":"the input length exceeds the context length"}"#
            ),
            EmbedError::InputTooLong { .. }
        ));
        // Ollama: 404 `{"error":"model \"x\" not found, try pulling it first"}`.
        let e = err(
            404,
            r#"{"error":"model \"x\" not found, try pulling it first"}"#,
        );
        assert!(matches!(e, EmbedError::Config { status: 404, .. }));
        assert!(!e.blames_input());
        assert!(e.to_string().contains("not found"));
    }

    #[test]
    fn openai_errors() {
        let e = err(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        );
        assert!(matches!(e, EmbedError::InputTooLong { .. }));
        let e = err(
            400,
            r#"{"error":{"message":"'$.input' is invalid.","type":"invalid_request_error","code":null}}"#,
        );
        assert!(matches!(e, EmbedError::InputRejected { status: 400, .. }));
        assert!(e.blames_input());
        let e = err(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-secret","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert!(matches!(e, EmbedError::Config { status: 401, .. }));
        assert!(!e.to_string().contains("sk-secret"), "{e}");
    }

    #[test]
    fn throttling_and_server_errors_are_transient_with_wait() {
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", "250".parse().unwrap());
        let e = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            "m",
            "slow down".into(),
            None,
        );
        assert_eq!(e.class().retry_after(), Some(Duration::from_millis(250)));
        assert_eq!(e.error_code(), "embed_throttled");
        assert!(err(503, "busy").class().is_transient());
        assert!(err(500, r#"{"error":"boom"}"#).class().is_transient());
        assert_eq!(err(413, "too large").error_code(), "embed_input_too_long");
    }
}

/// The provider chosen by `EMBED_PROVIDER`, as one type the handler can be generic over.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderEmbedder {
    /// Ollama's native API.
    Ollama(OllamaEmbedder),
    /// OpenAI-compatible API.
    OpenAi(OpenAiEmbedder),
    /// In-process model (`EMBED_PROVIDER=local`, cargo feature `local-embedder`).
    #[cfg(feature = "local-embedder")]
    Local(LocalProvider),
}

impl Embedder for ProviderEmbedder {
    fn model(&self) -> &str {
        match self {
            Self::Ollama(e) => e.model(),
            Self::OpenAi(e) => e.model(),
            #[cfg(feature = "local-embedder")]
            Self::Local(e) => e.model(),
        }
    }

    fn dimensions(&self) -> usize {
        match self {
            Self::Ollama(e) => e.dimensions(),
            Self::OpenAi(e) => e.dimensions(),
            #[cfg(feature = "local-embedder")]
            Self::Local(e) => e.dimensions(),
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Self::Ollama(e) => e.embed(texts).await,
            Self::OpenAi(e) => e.embed(texts).await,
            #[cfg(feature = "local-embedder")]
            Self::Local(e) => e.embed(texts).await,
        }
    }
}
