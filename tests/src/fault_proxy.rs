//! A fault-injecting HTTP/1 proxy on 127.0.0.1 in front of a real API: scripted faults (status
//! codes with headers, delays, dropped connections) are served first, then requests pass through.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, headers and a PostgREST-like error body, without forwarding.
    Status(u16, Vec<(&'static str, String)>),
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
}

#[derive(Debug, Default)]
struct State {
    faults: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
    forwarded: AtomicUsize,
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (a base URL).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let upstream: Arc<str> = Arc::from(upstream.trim_end_matches('/'));
        let client = reqwest::Client::new();
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                let st = Arc::clone(&st);
                let upstream = Arc::clone(&upstream);
                let client = client.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let st = Arc::clone(&st);
                        let upstream = Arc::clone(&upstream);
                        let client = client.clone();
                        async move { Ok::<_, Infallible>(handle(&st, &upstream, &client, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Self { port, state, task }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues faults for the next requests.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests forwarded to the upstream.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(
    status: u16,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(body)).unwrap()
}

async fn handle(
    st: &State,
    upstream: &str,
    client: &reqwest::Client,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let fault = st.faults.lock().unwrap().pop_front();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match fault {
        Some(Fault::Status(status, headers)) => {
            let err = serde_json::json!({"code": "PGRST000", "message": "injected fault", "details": null, "hint": null});
            return reply(status, &headers, Bytes::from(err.to_string()));
        }
        Some(Fault::Drop) => {
            // An empty 502 with a closed connection is the closest hyper lets us get to a reset.
            return reply(502, &[("connection", "close".into())], Bytes::new());
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    st.forwarded.fetch_add(1, Ordering::Relaxed);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut out = client
        .request(method, format!("{upstream}{path}"))
        .body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    match out.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut r = reply(status, &[], bytes);
            r.headers_mut().insert("content-type", ct.parse().unwrap());
            r
        }
        Err(_) => reply(
            502,
            &[],
            Bytes::from_static(b"{\"message\":\"upstream unreachable\"}"),
        ),
    }
}
