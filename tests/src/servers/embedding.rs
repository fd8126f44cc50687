//! Embedding APIs on loopback speaking Ollama's `POST /api/embed` and OpenAI's
//! `POST /v1/embeddings` as documented, returning deterministic content-derived vectors
//! ([`expected_vector`]) so tests can assert what was stored, with switchable faults:
//!
//! - unknown model: Ollama 404 `{"error": "model \"x\" not found, try pulling it first"}`,
//!   OpenAI 404 `{"error": {"message", "type": "invalid_request_error", "code": "model_not_found"}}`;
//! - input longer than `max_input_chars` with `truncate: false`: Ollama 400
//!   `{"error": "the input length exceeds the context length"}`; OpenAI 400 with
//!   `code: "context_length_exceeded"`;
//! - throttling: 429 with `Retry-After` (seconds) and `retry-after-ms`;
//! - server error: 500; wrong dimension: vectors of another length.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::servers::http::{HttpServer, Reply, Request};

/// Which documented API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Ollama `/api/embed`.
    Ollama,
    /// OpenAI `/v1/embeddings`.
    OpenAi,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: 0` and `retry-after-ms: <ms>`.
    Throttle {
        /// Requested wait in milliseconds.
        ms: u64,
    },
    /// 500.
    ServerError,
}

/// Deterministic unit vector of `dims` values derived from `text` (SHA-256 seeded xorshift).
pub fn expected_vector(text: &str, dims: usize) -> Vec<f32> {
    let digest = Sha256::digest(text.as_bytes());
    let mut seed = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Mutable behaviour and the log of what was received.
#[derive(Debug, Default)]
pub struct EmbedState {
    /// Models the server knows (others get 404).
    pub models: Vec<String>,
    /// Dimension of the vectors returned.
    pub dims: usize,
    /// Longest accepted input, in characters (`None`: no limit).
    pub max_input_chars: Option<usize>,
    /// Faults for the next requests, consumed in order.
    pub faults: Vec<Fault>,
    /// While `true`, every request gets a 500 (the provider is "down").
    pub down: bool,
    /// Every request body received (JSON).
    pub requests: Vec<Value>,
    /// `Authorization` headers received.
    pub auth: Vec<Option<String>>,
    /// The only `Authorization: Bearer` key accepted, if any: OpenAI answers any other 401
    /// `invalid_api_key` ("Incorrect API key provided").
    pub api_key: Option<String>,
    /// `traceparent` and `tracestate` headers received (W3C trace context).
    pub trace: Vec<(Option<String>, Option<String>)>,
}

/// A running embedding API.
#[derive(Debug)]
pub struct EmbeddingServer {
    /// The HTTP server.
    pub server: HttpServer,
    /// Behaviour and log.
    pub state: Arc<Mutex<EmbedState>>,
    /// API spoken.
    pub api: Api,
}

impl EmbeddingServer {
    /// Starts a server for `api` knowing `model`, returning `dims`-long vectors.
    pub async fn start(api: Api, model: &str, dims: usize) -> Self {
        let state = Arc::new(Mutex::new(EmbedState {
            models: vec![model.to_owned()],
            dims,
            ..EmbedState::default()
        }));
        let s = state.clone();
        let server = HttpServer::start(move |req| answer(api, &s, req)).await;
        Self { server, state, api }
    }

    /// Base URL to configure (`EMBED_BASE_URL`).
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    /// Requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// All texts received, in order.
    pub fn inputs(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .flat_map(|r| r["input"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// Edits the behaviour.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut EmbedState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn error(api: Api, status: u16, message: &str, kind: &str, code: Option<&str>) -> Reply {
    match api {
        Api::Ollama => Reply::json(status, json!({ "error": message })),
        Api::OpenAi => Reply::json(
            status,
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
        ),
    }
}

fn answer(api: Api, state: &Mutex<EmbedState>, req: Request) -> Reply {
    let path = match api {
        Api::Ollama => "/api/embed",
        Api::OpenAi => "/v1/embeddings",
    };
    if req.method != "POST" || req.path != path {
        return Reply::json(404, json!({ "error": "404 page not found" }));
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                api,
                400,
                &format!("invalid JSON: {e}"),
                "invalid_request_error",
                None,
            );
        }
    };
    let mut st = state.lock().unwrap();
    st.requests.push(body.clone());
    st.auth.push(req.header("authorization").map(str::to_owned));
    st.trace.push((
        req.header("traceparent").map(str::to_owned),
        req.header("tracestate").map(str::to_owned),
    ));
    if let Some(key) = &st.api_key
        && req.header("authorization") != Some(format!("Bearer {key}").as_str())
    {
        return error(
            api,
            401,
            "Incorrect API key provided",
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    if st.down {
        return error(api, 500, "internal server error", "server_error", None);
    }
    if !st.faults.is_empty() {
        match st.faults.remove(0) {
            Fault::Throttle { ms } => {
                return error(
                    api,
                    429,
                    "Rate limit reached",
                    "requests",
                    Some("rate_limit_exceeded"),
                )
                .with_header("retry-after", "0")
                .with_header("retry-after-ms", ms.to_string());
            }
            Fault::ServerError => {
                return error(api, 500, "internal server error", "server_error", None);
            }
        }
    }
    let model = body["model"].as_str().unwrap_or_default();
    if !st.models.iter().any(|m| m == model) {
        return match api {
            Api::Ollama => error(
                api,
                404,
                &format!("model \"{model}\" not found, try pulling it first"),
                "",
                None,
            ),
            Api::OpenAi => error(
                api,
                404,
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                Some("model_not_found"),
            ),
        };
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => {
            return error(
                api,
                400,
                "input must be a string or an array of strings",
                "invalid_request_error",
                None,
            );
        }
    };
    if api == Api::OpenAi && inputs.iter().any(String::is_empty) {
        return error(
            api,
            400,
            "'$.input' is invalid: empty string",
            "invalid_request_error",
            None,
        );
    }
    if let Some(max) = st.max_input_chars {
        // Ollama truncates silently unless `truncate: false`; this server only checks the strict mode.
        let strict = api == Api::OpenAi || body["truncate"] == Value::Bool(false);
        if strict && inputs.iter().any(|t| t.chars().count() > max) {
            return match api {
                Api::Ollama => error(
                    api,
                    400,
                    "the input length exceeds the context length",
                    "",
                    None,
                ),
                Api::OpenAi => error(
                    api,
                    400,
                    "This model's maximum context length is 8192 tokens, however you requested more tokens.",
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                ),
            };
        }
    }
    let dims = body["dimensions"]
        .as_u64()
        .map(|d| d as usize)
        .unwrap_or(st.dims);
    let dims = if dims == st.dims { dims } else { st.dims };
    let vectors: Vec<Vec<f32>> = inputs.iter().map(|t| expected_vector(t, dims)).collect();
    match api {
        Api::Ollama => Reply::json(
            200,
            json!({ "model": model, "embeddings": vectors, "total_duration": 1000, "load_duration": 10, "prompt_eval_count": inputs.len() }),
        ),
        Api::OpenAi => {
            // Documented: `data` items carry their `index`; emit them reversed to prove the client sorts.
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| json!({ "object": "embedding", "index": i, "embedding": v }))
                .collect();
            Reply::json(
                200,
                json!({ "object": "list", "data": data, "model": model, "usage": { "prompt_tokens": 1, "total_tokens": 1 } }),
            )
        }
    }
}
