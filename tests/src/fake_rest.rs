//! A loopback HTTP/1 server for the vector-store fakes that hands the handler the raw
//! (still percent-encoded) path and the query string, so fakes can check how a client encoded
//! its URLs. Stops when dropped. Serving is [`crate::serve`]'s.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;

use crate::serve::{Server, header_pairs, json_reply, read_request};

/// A request as received.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path exactly as sent (percent-encoding kept).
    pub raw_path: String,
    /// The query string without `?` (empty when none).
    pub query: String,
    /// Header pairs, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl RawRequest {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Path segments, each percent-decoded (an encoded `/` stays inside its segment).
    pub fn segments(&self) -> Vec<String> {
        self.raw_path
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

/// Status and JSON body of an answer (`None` body: empty, e.g. 204).
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Body, sent as `application/json` when present.
    pub body: Option<String>,
}

impl RawResponse {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            body: Some(body.to_string()),
        }
    }

    /// `status` without a body.
    pub fn empty(status: u16) -> Self {
        Self { status, body: None }
    }
}

/// A running server; aborted when dropped.
#[derive(Debug)]
pub struct RestServer {
    /// Where it listens (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    server: Server,
}

impl RestServer {
    /// Starts serving `handler`.
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(RawRequest) -> RawResponse + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let server = Server::start(move |req| {
            let handler = Arc::clone(&handler);
            async move {
                let (parts, body) = read_request(req).await;
                let request = RawRequest {
                    method: parts.method.to_string(),
                    raw_path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or("").to_owned(),
                    headers: header_pairs(&parts),
                    body,
                };
                match handler(request) {
                    RawResponse {
                        status,
                        body: Some(b),
                    } => json_reply(status, &[], Bytes::from(b)),
                    RawResponse { status, body: None } => hyper::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::new()))
                        .expect("response"),
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
