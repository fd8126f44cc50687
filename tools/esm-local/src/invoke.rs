//! Invoking the function: either a child process driven through an emulated Lambda Runtime API
//! (one process per lane, each with its own Runtime API port, so a crash or timeout is pinned on
//! the invocation it interrupted), or an HTTP POST to a `cargo lambda watch` style endpoint.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// How an invocation ended, from the function's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The function returned this response body.
    Response(Vec<u8>),
    /// The function reported an error (`/invocation/{id}/error`, or `X-Amz-Function-Error`).
    FunctionError(String),
}

/// Invocation failures outside the function's own answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The function binary could not be started at all (permanent: fix the path).
    #[error("cannot start function `{path}`: {source}")]
    Spawn {
        /// Binary path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The process exited while it held (or before it took) the invocation.
    #[error("function process exited ({0}) during the invocation")]
    Crashed(String),
    /// No answer within the function timeout; the process was killed.
    #[error("function timed out after {0:?}")]
    Timeout(Duration),
    /// The HTTP invoke endpoint failed (connection refused, 5xx without function error).
    #[error("invoke endpoint: {0}")]
    Http(String),
    /// The Runtime API server could not be set up.
    #[error("runtime API server: {0}")]
    Server(std::io::Error),
}

impl InvokeError {
    /// Whether the batch may succeed on a later attempt (everything but a missing binary).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Spawn { .. } | Self::Server(_))
    }

    /// Low-cardinality code for logs.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "function_spawn",
            Self::Crashed(_) => "function_crashed",
            Self::Timeout(_) => "function_timeout",
            Self::Http(_) => "invoke_http",
            Self::Server(_) => "runtime_api_server",
        }
    }
}

/// How to run the function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Path of the function binary.
    pub path: PathBuf,
    /// Extra environment for it (on top of the runner's own environment).
    pub env: Vec<(String, String)>,
    /// Function name reported in the Lambda environment variables and ARN.
    pub name: String,
    /// Function timeout.
    pub timeout: Duration,
    /// Memory size reported to the function.
    pub memory_mb: u32,
}

/// Something that runs one invocation at a time.
#[derive(Debug)]
pub enum Invoker {
    /// A child process driven through our own Runtime API.
    Process(Box<FunctionProcess>),
    /// HTTP POST to an invoke URL.
    Http(HttpInvoker),
}

impl Invoker {
    /// Runs one invocation with `payload`.
    pub async fn invoke(&mut self, payload: Vec<u8>) -> Result<InvokeOutcome, InvokeError> {
        match self {
            Self::Process(p) => p.invoke(payload).await,
            Self::Http(h) => h.invoke(payload).await,
        }
    }
}

/// POSTs events to a Lambda-style invoke URL (`cargo lambda watch`:
/// `http://127.0.0.1:9000/2015-03-31/functions/<name>/invocations`).
#[derive(Debug)]
pub struct HttpInvoker {
    client: reqwest::Client,
    url: String,
}

impl HttpInvoker {
    /// An invoker for `url` with a per-request `timeout`.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, InvokeError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| InvokeError::Http(e.to_string()))?;
        Ok(Self {
            client,
            url: url.into(),
        })
    }

    async fn invoke(&mut self, payload: Vec<u8>) -> Result<InvokeOutcome, InvokeError> {
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|e| InvokeError::Http(e.without_url().to_string()))?;
        let status = resp.status();
        let fn_error = resp.headers().contains_key("x-amz-function-error");
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| InvokeError::Http(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_POSTED_BODY {
                return Err(InvokeError::Http(format!(
                    "the function's response is over {MAX_POSTED_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if fn_error {
            return Ok(InvokeOutcome::FunctionError(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        if !status.is_success() {
            return Err(InvokeError::Http(format!("HTTP {status}")));
        }
        Ok(InvokeOutcome::Response(body))
    }
}

struct Pending {
    payload: Vec<u8>,
    reply: oneshot::Sender<InvokeOutcome>,
}

#[derive(Default)]
struct ServerState {
    in_flight: HashMap<String, oneshot::Sender<InvokeOutcome>>,
    init_error: Option<String>,
}

type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>;

/// One process generation: the child and the Runtime API server only it talks to. A crash or
/// timeout throws the whole generation away, so nothing queued for a dead process can reach
/// its successor.
struct Running {
    child: Child,
    tx: mpsc::Sender<Pending>,
    state: Arc<Mutex<ServerState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
        self.child.start_kill().ok();
    }
}

/// A function binary plus the Runtime API server it polls.
pub struct FunctionProcess {
    spec: FunctionSpec,
    running: Option<Running>,
}

impl std::fmt::Debug for FunctionProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionProcess")
            .field("path", &self.spec.path)
            .finish()
    }
}

impl FunctionProcess {
    /// A function that starts (and restarts after a crash or timeout) on first use.
    pub fn new(spec: FunctionSpec) -> Self {
        Self {
            spec,
            running: None,
        }
    }

    async fn spawn(&self) -> Result<Running, InvokeError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(InvokeError::Server)?;
        let addr = listener.local_addr().map_err(InvokeError::Server)?;
        let (tx, rx) = mpsc::channel(1);
        let state = Arc::new(Mutex::new(ServerState::default()));
        let s = &self.spec;
        let mut cmd = Command::new(&s.path);
        cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &s.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", s.memory_mb.to_string())
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", s.name),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("esm-local/{}", addr.port()),
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", "bootstrap")
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        if std::env::var_os("AWS_REGION").is_none() {
            cmd.env("AWS_REGION", "us-east-1");
        }
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|source| InvokeError::Spawn {
            path: s.path.display().to_string(),
            source,
        })?;
        tracing::info!(function = %s.name, pid = child.id().unwrap_or(0), runtime_api = %addr, "function process started");
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(rx));
        let server = tokio::spawn(serve(listener, state.clone(), queue, s.clone()));
        Ok(Running {
            child,
            tx,
            state,
            server,
        })
    }

    /// The running process's id (for benches reading its CPU time from `/proc`), if any.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().and_then(|r| r.child.id())
    }

    /// Runs one invocation; (re)starts the process first if it is not running.
    pub async fn invoke(&mut self, payload: Vec<u8>) -> Result<InvokeOutcome, InvokeError> {
        if self
            .running
            .as_mut()
            .is_none_or(|r| r.child.try_wait().ok().flatten().is_some())
        {
            self.running = None;
            self.running = Some(self.spawn().await?);
        }
        let timeout = self.spec.timeout;
        let running = self.running.as_mut().expect("spawned above");
        let (reply, rx) = oneshot::channel();
        let tx = running.tx.clone();
        let wait = async move {
            tx.send(Pending { payload, reply }).await.ok();
            rx.await
        };
        let result = tokio::select! {
            r = wait => r.map_err(|_| InvokeError::Crashed("runtime API dropped the invocation".into())),
            status = running.child.wait() => {
                let init = running.state.lock().expect("not poisoned").init_error.take();
                Err(InvokeError::Crashed(match (status, init) {
                    (_, Some(init)) => format!("init error: {init}"),
                    (Ok(s), None) => s.to_string(),
                    (Err(e), None) => e.to_string(),
                }))
            }
            () = tokio::time::sleep(timeout) => Err(InvokeError::Timeout(timeout)),
        };
        if result.is_err()
            && let Some(mut r) = self.running.take()
        {
            r.child.kill().await.ok();
        }
        result
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<ServerState>>,
    rx: Queue,
    spec: FunctionSpec,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (state, rx, spec) = (state.clone(), rx.clone(), spec.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (state, rx, spec) = (state.clone(), rx.clone(), spec.clone());
                async move { Ok::<_, Infallible>(route(req, state, rx, spec).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

const PREFIX: &str = "/2018-06-01/runtime";

/// The Runtime API's routes: the next invocation, an init error, an invocation's response or
/// error.
async fn route(
    req: Request<Incoming>,
    state: Arc<Mutex<ServerState>>,
    rx: Queue,
    spec: FunctionSpec,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#);
    };
    match (req.method(), rest) {
        (&Method::GET, "/invocation/next") => next_invocation(&state, &rx, &spec).await,
        (&Method::POST, "/init/error") => {
            let body = read_body(req).await.unwrap_or_else(String::into_bytes);
            tracing::error!(function = %spec.name, error = %truncate(&body), "function init error");
            state.lock().expect("not poisoned").init_error = Some(truncate(&body));
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        (&Method::POST, rest) if rest.starts_with("/invocation/") => {
            let tail = rest["/invocation/".len()..].to_owned();
            invocation_result(req, &tail, &state).await
        }
        _ => reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#),
    }
}

/// `GET /invocation/next`: a long poll, answered with the next batch and its request id,
/// deadline, function ARN and trace id headers.
async fn next_invocation(
    state: &Mutex<ServerState>,
    rx: &Queue,
    spec: &FunctionSpec,
) -> Response<Body> {
    // Long poll: the runtime waits here until the runner has a batch.
    let p = loop {
        let Some(p) = rx.lock().await.recv().await else {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"errorMessage":"runner stopped"}"#,
            );
        };
        // The runner gave up on it (shutdown mid-send): never hand it out.
        if !p.reply.is_closed() {
            break p;
        }
    };
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(..0x1000),
        fastrand::u64(..1 << 48)
    );
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + spec.timeout;
    state
        .lock()
        .expect("not poisoned")
        .in_flight
        .insert(id.clone(), p.reply);
    let mut r = Response::new(Full::new(Bytes::from(p.payload)));
    let h = r.headers_mut();
    let hv = |s: String| hyper::header::HeaderValue::from_str(&s).expect("ASCII header");
    h.insert("content-type", hv("application/json".into()));
    h.insert("lambda-runtime-aws-request-id", hv(id));
    h.insert(
        "lambda-runtime-deadline-ms",
        hv(deadline.as_millis().to_string()),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        hv(format!(
            "arn:aws:lambda:us-east-1:000000000000:function:{}",
            spec.name
        )),
    );
    h.insert(
        "lambda-runtime-trace-id",
        hv(format!(
            "Root=1-{:08x}-{:024x};Sampled=0",
            deadline.as_secs(),
            fastrand::u128(..1 << 96)
        )),
    );
    r
}

/// `POST /invocation/{id}/response` or `/error` (`tail` is `{id}/{kind}`): hands the outcome
/// to the invocation waiting for it.
async fn invocation_result(
    req: Request<Incoming>,
    tail: &str,
    state: &Mutex<ServerState>,
) -> Response<Body> {
    let (id, kind) = match tail.rsplit_once('/') {
        Some((id, k @ ("response" | "error"))) => (id.to_owned(), k),
        _ => return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"unknown path"}"#),
    };
    let body = read_body(req).await;
    let Some(tx) = state.lock().expect("not poisoned").in_flight.remove(&id) else {
        return reply(
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"unknown or finished request id","errorType":"InvalidRequestID"}"#,
        );
    };
    let outcome = match body {
        Ok(body) if kind == "response" => InvokeOutcome::Response(body),
        Ok(body) => InvokeOutcome::FunctionError(truncate(&body)),
        Err(e) => InvokeOutcome::FunctionError(e),
    };
    tx.send(outcome).ok();
    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

/// The most a function may post as a response or error, as Lambda allows a synchronous
/// invocation (6 MB); a longer body is read no further and stands as the error below.
pub(crate) const MAX_POSTED_BODY: usize = crate::payload::MAX_PAYLOAD_BYTES;

/// A posted body, read through [`MAX_POSTED_BODY`]: past it (or cut off) the error, which fails
/// the invocation as Lambda fails one whose response is too large.
async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, String> {
    http_body_util::Limited::new(req.into_body(), MAX_POSTED_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| {
            format!("the body posted to the Runtime API is unreadable or over {MAX_POSTED_BODY} bytes: {e}")
        })
}

fn truncate(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A function endpoint that answers 200 with a chunked body that never ends (HTTP/1.1
    /// chunked transfer coding, RFC 9112 §7.1): the invoker stops at Lambda's 6 MB.
    #[tokio::test]
    async fn an_endless_response_fails_the_invocation_at_the_cap() {
        let listener = lambda_kit::testing::async_listener().await;
        let url = format!("http://{}/invocations", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let mut invoker = HttpInvoker::new(url, Duration::from_secs(30)).unwrap();
        let err = invoker.invoke(b"{}".to_vec()).await.unwrap_err();
        assert!(err.to_string().contains("over 6291456 bytes"), "{err}");
    }
}
