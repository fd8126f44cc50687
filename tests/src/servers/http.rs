//! The HTTP/1 server on 127.0.0.1 that the protocol servers of this folder are written on: each
//! request (method, path as sent, query, headers, body) goes to a closure that returns the
//! answer. The path keeps its percent-encoding, so a server can check how a client encoded its
//! URLs. Stops when dropped. Serving is [`crate::servers::serve`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::servers::serve::{Server, header_pairs, json_reply, read_request};

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path without the query, exactly as sent (percent-encoding kept).
    pub path: String,
    /// The query string without `?` (empty when none).
    pub query: String,
    /// Header pairs, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The whole request body.
    pub body: Bytes,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Path segments, each percent-decoded (an encoded `/` stays inside its segment).
    pub fn segments(&self) -> Vec<String> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// Decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }
}

/// An answer: status, extra headers, a JSON body or none, and how long to wait before sending it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body, sent as `application/json` when present; `None` sends no body and no content type
    /// (e.g. 204).
    pub body: Option<String>,
    /// Wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body.to_string()),
            delay: Duration::ZERO,
        }
    }

    /// `status` without a body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Answers after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A running server; aborted when dropped.
#[derive(Debug)]
pub struct HttpServer {
    /// Where it listens (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    server: Server,
}

impl HttpServer {
    /// Starts serving `handler` on an ephemeral loopback port.
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(Request) -> Reply + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let server = Server::start(move |req| {
            let handler = Arc::clone(&handler);
            async move {
                let (parts, body) = read_request(req).await;
                let request = Request {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or("").to_owned(),
                    headers: header_pairs(&parts),
                    body,
                };
                let answer = handler(request);
                if !answer.delay.is_zero() {
                    tokio::time::sleep(answer.delay).await;
                }
                match answer.body {
                    Some(body) => json_reply(answer.status, &answer.headers, Bytes::from(body)),
                    None => {
                        let mut response = hyper::Response::builder().status(answer.status);
                        for (k, v) in &answer.headers {
                            response = response.header(*k, v.as_str());
                        }
                        response.body(Full::new(Bytes::new())).expect("response")
                    }
                }
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
