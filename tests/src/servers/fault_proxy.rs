//! A fault-injecting HTTP/1 proxy on 127.0.0.1 in front of a real API: scripted faults (status
//! codes with headers, delays, dropped connections) are served first, then requests pass through.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::servers::serve::{Response, Server, json_reply, read_request};

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
    /// Path and `traceparent` of every request.
    traceparents: Mutex<Vec<(String, Option<String>)>>,
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    state: Arc<State>,
    server: Server,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (a base URL).
    pub async fn start(upstream: &str) -> Self {
        let state = Arc::new(State::default());
        let upstream: Arc<str> = Arc::from(upstream.trim_end_matches('/'));
        let client = reqwest::Client::new();
        let st = Arc::clone(&state);
        let server = Server::start(move |req| {
            let st = Arc::clone(&st);
            let upstream = Arc::clone(&upstream);
            let client = client.clone();
            async move { handle(&st, &upstream, &client, req).await }
        })
        .await;
        Self { state, server }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queues faults for the next requests.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Path (with query) and `traceparent` header of every request received.
    pub fn traceparents(&self) -> Vec<(String, Option<String>)> {
        self.state.traceparents.lock().unwrap().clone()
    }

    /// Requests forwarded to the upstream.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::Relaxed)
    }
}

async fn handle(
    st: &State,
    upstream: &str,
    client: &reqwest::Client,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let fault = st.faults.lock().unwrap().pop_front();
    let (parts, body) = read_request(req).await;
    st.traceparents.lock().unwrap().push((
        parts.uri.to_string(),
        parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    ));
    match fault {
        Some(Fault::Status(status, headers)) => {
            let err = serde_json::json!({"code": "PGRST000", "message": "injected fault", "details": null, "hint": null});
            return json_reply(status, &headers, Bytes::from(err.to_string()));
        }
        Some(Fault::Drop) => {
            // An empty 502 with a closed connection is the closest hyper lets us get to a reset.
            return json_reply(502, &[("connection", "close".into())], Bytes::new());
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
            let mut r = json_reply(status, &[], bytes);
            r.headers_mut().insert("content-type", ct.parse().unwrap());
            r
        }
        Err(_) => json_reply(
            502,
            &[],
            Bytes::from_static(b"{\"message\":\"upstream unreachable\"}"),
        ),
    }
}
