//! Embedding providers: the [`Embedder`] trait the handler depends on, the error classes of a
//! provider call, the vector checks every provider's answer goes through, and [`HttpEmbedder`],
//! the one HTTP client of both APIs (Ollama's native API and the OpenAI-compatible API), which
//! differ only in their [`Wire`] format. [`embed_all`] (`requests`) runs many texts through an
//! embedder: grouped into requests, side by side, retried, a refused input isolated.

#[cfg(feature = "local-embedder")]
mod local;
mod ollama;
mod openai;
mod requests;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::http::{self, Failure};
use lambda_kit::postgrest::Secret;
use lambda_kit::secrets::{Credential, Refusal};
use serde::Serialize;

#[cfg(feature = "local-embedder")]
pub use local::LocalProvider;
pub use ollama::{OllamaApi, OllamaEmbedder};
pub use openai::{OpenAiApi, OpenAiEmbedder};
pub use requests::{EmbedSettings, Embedded, embed_all};

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
    /// A vector of another length than `EMBED_DIM`: the model and the setting disagree, whatever
    /// the text, so the page is redelivered (nothing written) until the configuration is fixed.
    #[error(
        "model {model} answered {got} dimensions where EMBED_DIM is {expected}: set EMBED_DIM to the model's dimensions (and the vector column to match) or pick a model of {expected}"
    )]
    WrongDimension {
        /// The model.
        model: String,
        /// Configured dimension (`EMBED_DIM`).
        expected: usize,
        /// Dimensions of the vector the model answered.
        got: usize,
    },
    /// A vector with non-finite values for this text: nothing is written for the page.
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
            | EmbedError::InvalidVector { .. } => ErrorClass::Data,
            EmbedError::Config { .. } | EmbedError::WrongDimension { .. } => {
                ErrorClass::Environment
            }
        }
    }

    fn error_code(&self) -> &'static str {
        match self {
            EmbedError::Unavailable { code, .. } => code,
            EmbedError::InputTooLong { .. } => "embed_input_too_long",
            EmbedError::InputRejected { .. } => "embed_input_rejected",
            EmbedError::Config { .. } => "embed_config",
            EmbedError::InvalidResponse { .. } => "embed_invalid_response",
            EmbedError::WrongDimension { .. } => "embed_wrong_dimension",
            EmbedError::InvalidVector { .. } => "embed_invalid_vector",
        }
    }
}

/// Checks one vector: exactly `expected` values, all finite.
///
/// ```
/// use page_embedder::embed::check_vector;
/// assert!(check_vector("m", 3, &[0.1, 0.2, 0.3]).is_ok());
/// let err = check_vector("m", 3, &[0.1, 0.2]).unwrap_err();
/// assert!(err.to_string().contains("model m answered 2 dimensions where EMBED_DIM is 3"));
/// assert!(check_vector("m", 2, &[0.1, f32::NAN]).is_err());
/// ```
pub fn check_vector(model: &str, expected: usize, v: &[f32]) -> Result<(), EmbedError> {
    if v.len() != expected {
        return Err(EmbedError::WrongDimension {
            model: model.to_owned(),
            expected,
            got: v.len(),
        });
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(EmbedError::InvalidVector {
            model: model.to_owned(),
            expected,
            problem: format!("value {i} is not finite"),
        });
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
        400 | 422 if refuses_settings(&message) => EmbedError::Config {
            status: status.as_u16(),
            model: model.to_owned(),
            message: format!(
                "{message} (a setting, not the page: check EMBED_MODEL, and EMBED_DIM, sent as `dimensions` when set)"
            ),
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

/// A 400/422 about the request's settings rather than its input: OpenAI answers "This model does
/// not support specifying dimensions." for `dimensions` on a model without that option, and
/// OpenAI-compatible servers name an unknown model. Every request would fail alike, so no page is
/// to blame.
fn refuses_settings(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let dimensions = m.contains("dimensions")
        && ["not support", "invalid", "must be", "unsupported"]
            .iter()
            .any(|w| m.contains(w));
    let model = m.contains("model")
        && ["not found", "does not exist", "unknown model"]
            .iter()
            .any(|w| m.contains(w));
    // Ollama, for a chat model set as EMBED_MODEL: `"<model>" does not support embeddings`.
    let not_embedding = m.contains("does not support") && m.contains("embed");
    dimensions || model || not_embedding
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

/// How one provider's API answers: where its vectors are in a 2xx body. Everything else (the
/// endpoint, the request, the key, the timeout, errors) is [`HttpEmbedder`]'s.
pub trait Wire: fmt::Debug + Clone + Send + Sync {
    /// The answer's shape, for the message about a body that does not parse.
    const SHAPE: &'static str;

    /// The embeddings of a 2xx body, each with the position of its input.
    fn vectors(body: &[u8]) -> serde_json::Result<Vec<(usize, Vec<f32>)>>;
}

/// The request fields that only one of the APIs has; unset ones are left out of the body.
#[derive(Debug, Clone, Default, Serialize)]
struct Options {
    /// Ollama: `false` makes an over-long input an error instead of cutting it silently.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
    /// Ollama: how long the model stays loaded (`10m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<String>,
    /// OpenAI: `float` (not base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'static str>,
}

/// The request body of both APIs.
#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    #[serde(flatten)]
    options: &'a Options,
}

/// A client of an embeddings API over HTTP: one POST of `{"model", "input": [...]}` per call,
/// the answer checked (one vector per input, each input once) and failures classified into
/// [`EmbedError`]s; the key (if any) is sent as `Authorization: Bearer` and kept out of messages.
/// [`OllamaEmbedder`] and [`OpenAiEmbedder`] are its two [`Wire`] formats.
#[derive(Debug, Clone)]
pub struct HttpEmbedder<W> {
    client: reqwest::Client,
    url: String,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    options: Options,
    /// Sent as `Authorization: Bearer`; re-read after a 401/403.
    api_key: Option<Credential>,
    timeout: Duration,
    wire: PhantomData<W>,
}

impl<W> HttpEmbedder<W> {
    fn with_url(client: reqwest::Client, url: String, model: &str) -> Self {
        Self {
            client,
            url,
            model: model.to_owned(),
            dimensions: 0,
            send_dimensions: false,
            options: Options::default(),
            api_key: None,
            timeout: Duration::from_secs(30),
            wire: PhantomData,
        }
    }

    /// `dimensions` expected, and whether to ask for it (`dimensions` in each request: only
    /// when `EMBED_DIM` was set explicitly, not every model supports it).
    fn with_dimensions(self, dimensions: usize, send_dimensions: bool) -> Self {
        Self {
            dimensions,
            send_dimensions,
            ..self
        }
    }

    /// Timeout of one request (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl<W: Wire> Embedder for HttpEmbedder<W> {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// One request; a 401/403 re-reads the key ([`Credential::call`]) and, when it changed,
    /// sends once more with the new one.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let Some(key) = &self.api_key else {
            return self.embed_with(texts, None).await;
        };
        Box::pin(
            key.call(EmbedError::is_refusal, EmbedError::with_note, |key| {
                self.embed_with(texts, Some(key))
            }),
        )
        .await
    }
}

/// A 401/403 is the provider refusing the key; one that stands after the key was re-read says
/// which setting to fix.
impl Refusal for EmbedError {
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Config {
                status: 401 | 403,
                ..
            }
        )
    }

    fn with_note(self, note: String) -> Self {
        match self {
            Self::Config {
                status,
                model,
                message,
            } => Self::Config {
                status,
                model,
                message: format!("{message}; {note}"),
            },
            other => other,
        }
    }
}

impl<W: Wire> HttpEmbedder<W> {
    async fn embed_with(
        &self,
        texts: &[String],
        key: Option<Secret>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let key = key.as_ref().map(Secret::expose);
        let mut request = self.client.post(&self.url).json(&Request {
            model: &self.model,
            input: texts,
            dimensions: self.send_dimensions.then_some(self.dimensions),
            options: &self.options,
        });
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let limit = http::Limit::new("EMBED_BASE_URL", answer_limit(texts.len(), self.dimensions));
        let body = http::attempt(request, self.timeout, key, limit)
            .await
            .map_err(|failure| provider_error(failure, &self.model, key))?;
        let vectors = W::vectors(&body)
            .map_err(|e| invalid_response(&self.model, format!("body is not {}: {e}", W::SHAPE)))?;
        in_input_order(&self.model, vectors, texts.len())
    }
}

/// Largest embeddings answer read for `inputs` vectors of `dimensions` values: 32 bytes per
/// value (a JSON number as servers print an `f32`, `-0.0069292835` from OpenAI and Ollama, up to
/// `-1.2345678901234567e-05` from servers printing it as an `f64`, with its separator and some
/// indentation), 1 KiB per vector (its object, `index`, `"embedding"`) and 64 KiB for the rest
/// (`model`, `usage`, timings). A full default batch (64 inputs of 768 values) allows 1.6 MB;
/// an answer past it, an endless one included, fails the call having read no more.
///
/// ```
/// use page_embedder::embed::answer_limit;
/// assert_eq!(answer_limit(64, 768), 64 * 1024 + 64 * (1024 + 768 * 32));
/// ```
pub fn answer_limit(inputs: usize, dimensions: usize) -> usize {
    const PER_VALUE: usize = 32;
    const PER_VECTOR: usize = 1024;
    const REST: usize = 64 * 1024;
    REST.saturating_add(
        inputs.saturating_mul(PER_VECTOR.saturating_add(dimensions.saturating_mul(PER_VALUE))),
    )
}

/// The providers' reading of a failed attempt: the 400/413/422 context-length rules of
/// [`status_error`].
fn provider_error(failure: Failure<'_>, model: &str, secret: Option<&str>) -> EmbedError {
    match failure {
        Failure::Transport(t) if t.class.is_transient() => EmbedError::Unavailable {
            code: t.code,
            message: t.message,
            retry_after: None,
        },
        Failure::Transport(t) => invalid_response(model, t.message),
        Failure::Status(r) => {
            let (message, code) = error_message(&r.text(), secret);
            status_error(r.status, &r.headers, model, message, code.as_deref())
        }
    }
}

/// An [`EmbedError::InvalidResponse`] from `model`'s provider.
fn invalid_response(model: &str, message: String) -> EmbedError {
    EmbedError::InvalidResponse {
        model: model.to_owned(),
        message,
    }
}

/// A provider must answer one embedding per input, each input once.
fn in_input_order(
    model: &str,
    vectors: Vec<(usize, Vec<f32>)>,
    inputs: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let invalid = |message: String| invalid_response(model, message);
    if vectors.len() != inputs {
        return Err(invalid(format!(
            "{} embeddings for {inputs} inputs",
            vectors.len()
        )));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (index, vector) in vectors {
        let slot = out
            .get_mut(index)
            .ok_or_else(|| invalid(format!("index {index} out of range")))?;
        if slot.replace(vector).is_some() {
            return Err(invalid(format!("index {index} repeated")));
        }
    }
    Ok(out.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn a_vector_of_another_length_is_the_environment_s_a_non_finite_one_the_text_s() {
        let wrong = check_vector("m", 3, &[0.1, 0.2]).unwrap_err();
        assert_eq!(wrong.error_code(), "embed_wrong_dimension");
        assert_eq!(wrong.class(), ErrorClass::Environment);
        assert!(wrong.to_string().contains("EMBED_DIM is 3"), "{wrong}");

        let nan = check_vector("m", 2, &[0.1, f32::NAN]).unwrap_err();
        assert_eq!(nan.error_code(), "embed_invalid_vector");
        assert_eq!(nan.class(), ErrorClass::Data);
        assert!(nan.to_string().contains("value 1 is not finite"), "{nan}");
        assert!(check_vector("m", 2, &[0.1, f32::INFINITY]).is_err());
        assert!(check_vector("m", 2, &[0.1, 0.2]).is_ok());
    }

    /// A provider whose 200 answer never ends (`prefix`, then `0.125,` forever, until the client
    /// hangs up), on a thread of its own; returns its URL and the bytes it managed to write once
    /// the client hung up.
    fn endless_provider(prefix: &'static str) -> (String, std::sync::mpsc::Receiver<u64>) {
        use std::io::{Read, Write};
        let listener = lambda_kit::testing::listener();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for mut sock in listener.incoming().flatten() {
                let _ = sock.read(&mut [0u8; 65536]);
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                let chunk = "0.125,".repeat(10_000);
                let mut sent = 0u64;
                let mut out = sock.write_all(format!("{head}{prefix}").as_bytes());
                while out.is_ok() {
                    out = sock.write_all(chunk.as_bytes());
                    sent += chunk.len() as u64;
                }
                let _ = tx.send(sent);
            }
        });
        (url, rx)
    }

    /// Issue 20: an endless answer killed the function at 512 MB. Now reading stops at
    /// [`answer_limit`] and the call fails as the provider's fault (transient: retried within
    /// the deadline, then the batch is redelivered), never the input's.
    #[tokio::test]
    async fn an_endless_answer_fails_the_call_after_the_limit() {
        for (wire, prefix) in [
            ("ollama", r#"{"embeddings":[["#),
            ("openai", r#"{"data":[{"index":0,"embedding":["#),
        ] {
            let (url, sent) = endless_provider(prefix);
            let texts = vec!["a".to_owned(), "b".to_owned()];
            let client = lambda_kit::http::client_builder().build().unwrap();
            let result = if wire == "ollama" {
                OllamaEmbedder::new(client, &url, "m", 768, false)
                    .embed(&texts)
                    .await
            } else {
                OpenAiEmbedder::new(
                    client,
                    &url,
                    "m",
                    768,
                    false,
                    Some(Secret::new("sk-9").into()),
                )
                .embed(&texts)
                .await
            };
            let e = result.unwrap_err();
            assert!(e.class().is_transient(), "{e}");
            assert_ne!(e.class(), ErrorClass::Data, "{e}");
            assert_eq!(e.error_code(), "embed_invalid_response");
            let limit = answer_limit(2, 768);
            assert!(
                e.to_string()
                    .contains(&format!("larger than {limit} bytes")),
                "{e}"
            );
            assert!(e.to_string().contains("EMBED_BASE_URL"), "{e}");
            assert!(!e.to_string().contains("sk-9"), "{e}");
            // The client hung up after about the limit (plus the sockets' buffers). Waiting yields:
            // the connection is closed by a task of this runtime.
            let mut hung_up = None;
            for _ in 0..1000 {
                if let Ok(n) = sent.try_recv() {
                    hung_up = Some(n);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let sent = hung_up.expect("the client closed the connection");
            assert!(sent < limit as u64 + (16 << 20), "{sent} bytes sent");
        }
    }

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
        assert_eq!(e.class(), ErrorClass::Environment);
        assert!(e.to_string().contains("not found"));
    }

    #[test]
    fn refused_dimensions_or_model_are_configuration_errors_naming_the_setting() {
        // OpenAI: 400 `invalid_request_error` for `dimensions` on text-embedding-ada-002.
        let e = err(
            400,
            r#"{"error":{"message":"This model does not support specifying dimensions.","type":"invalid_request_error","param":null,"code":null}}"#,
        );
        assert!(matches!(e, EmbedError::Config { status: 400, .. }), "{e:?}");
        assert_eq!(e.class(), ErrorClass::Environment);
        assert!(e.to_string().contains("EMBED_DIM"), "{e}");
        // An OpenAI-compatible server naming an unknown model.
        let e = err(
            400,
            r#"{"error":{"message":"The model `nomic-embed-text` does not exist"}}"#,
        );
        assert!(matches!(e, EmbedError::Config { .. }), "{e:?}");
        // Ollama with a chat model as EMBED_MODEL.
        let e = err(
            400,
            r#"{"error":"\"llama3.2\" does not support embeddings"}"#,
        );
        assert!(matches!(e, EmbedError::Config { .. }), "{e:?}");
        // An ordinary refusal of one input still blames the input.
        let e = err(400, r#"{"error":{"message":"'$.input' is invalid"}}"#);
        assert_eq!(e.class(), ErrorClass::Data, "{e:?}");
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
        assert_eq!(e.class(), ErrorClass::Data);
        let e = err(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-secret","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert!(matches!(e, EmbedError::Config { status: 401, .. }));
        assert!(!e.to_string().contains("sk-secret"), "{e}");
    }

    #[test]
    fn request_bodies_carry_each_apis_own_fields() {
        let texts = vec!["a".to_owned()];
        let body = |options: &Options, dimensions| {
            serde_json::to_value(Request {
                model: "m",
                input: &texts,
                dimensions,
                options,
            })
            .unwrap()
        };
        let ollama = OllamaEmbedder::new(reqwest::Client::new(), "http://h", "m", 8, true)
            .with_keep_alive(Some("10m".into()));
        assert_eq!(
            body(&ollama.options, Some(8)),
            serde_json::json!({"model": "m", "input": ["a"], "dimensions": 8, "truncate": false, "keep_alive": "10m"})
        );
        let openai = OpenAiEmbedder::new(
            reqwest::Client::new(),
            "http://h",
            "m",
            8,
            false,
            Some(Secret::new("sk-secret").into()),
        );
        assert_eq!(
            body(&openai.options, None),
            serde_json::json!({"model": "m", "input": ["a"], "encoding_format": "float"})
        );
        assert!(!format!("{openai:?}").contains("sk-secret"));
    }

    #[test]
    fn answers_are_put_in_input_order() {
        let openai = br#"{"data":[{"index":1,"embedding":[2.0]},{"index":0,"embedding":[1.0]}]}"#;
        let v = OpenAiApi::vectors(openai).unwrap();
        assert_eq!(
            in_input_order("m", v, 2).unwrap(),
            vec![vec![1.0], vec![2.0]]
        );
        let v = OllamaApi::vectors(br#"{"model":"m","embeddings":[[1.0],[2.0]]}"#).unwrap();
        assert_eq!(
            in_input_order("m", v, 2).unwrap(),
            vec![vec![1.0], vec![2.0]]
        );
        let bad = [
            (vec![(0, vec![1.0])], "1 embeddings for 2 inputs"),
            (vec![(0, vec![1.0]), (0, vec![2.0])], "index 0 repeated"),
            (vec![(0, vec![1.0]), (2, vec![2.0])], "index 2 out of range"),
        ];
        for (vectors, problem) in bad {
            let e = in_input_order("m", vectors, 2).unwrap_err();
            assert!(matches!(e, EmbedError::InvalidResponse { .. }), "{e}");
            assert!(e.to_string().contains(problem), "{e}");
        }
        assert!(OllamaApi::vectors(br#"{"data":[]}"#).is_err());
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
