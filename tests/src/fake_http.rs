//! A tiny HTTP/1 server on 127.0.0.1 for fakes: each request's method, path, headers and body go
//! to a handler closure that returns status, headers and body. Stops when dropped. Serving is
//! [`crate::serve`]'s.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::serve::{Server, header_pairs, json_reply, read_request};

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Header pairs, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl FakeRequest {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, extra headers, JSON or text body.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (sent as `application/json`).
    pub body: String,
    /// Wait before answering.
    pub delay: std::time::Duration,
}

impl FakeResponse {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: std::time::Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Answers after `delay`.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A running fake server; aborted when dropped.
#[derive(Debug)]
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    server: Server,
}

impl FakeServer {
    /// Starts a server on an ephemeral loopback port.
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(FakeRequest) -> FakeResponse + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let server = Server::start(move |req| {
            let handler = Arc::clone(&handler);
            async move {
                let (parts, body) = read_request(req).await;
                let request = FakeRequest {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    headers: header_pairs(&parts),
                    body,
                };
                let answer = handler(request);
                if !answer.delay.is_zero() {
                    tokio::time::sleep(answer.delay).await;
                }
                json_reply(answer.status, &answer.headers, Bytes::from(answer.body))
            }
        })
        .await;
        Self {
            addr: server.addr,
            server,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }
}
