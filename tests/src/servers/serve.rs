//! The one loopback HTTP/1 serve loop behind [`crate::servers::http`], the Lambda Invoke API
//! ([`crate::servers::lambda_invoke`]) and the [`crate::servers::fault_proxy`]: accept on 127.0.0.1, one hyper
//! connection task per socket, every request to an async handler; the accept loop is aborted when
//! the [`Server`] is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A response as the handlers build it.
pub type Response = hyper::Response<Full<Bytes>>;

/// A running loopback server; stops accepting when dropped.
#[derive(Debug)]
pub struct Server {
    /// Where it listens (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds an ephemeral port on 127.0.0.1 and serves every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(hyper::Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let listener = crate::async_listener().await;
        let addr = listener.local_addr().expect("local addr");
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        let answer = handler(req);
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Splits a request into its head and its whole body (empty when the body cannot be read).
pub async fn read_request(req: hyper::Request<Incoming>) -> (Parts, Bytes) {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (parts, body)
}

/// Header pairs of a request head, names lower-case, non-UTF-8 values as `""`.
pub fn header_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect()
}

/// A response with `status`, `content-type: application/json`, the extra `headers` and `body`.
pub fn json_reply(status: u16, headers: &[(&'static str, String)], body: Bytes) -> Response {
    let mut response = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        response = response.header(*k, v.as_str());
    }
    response.body(Full::new(body)).expect("response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_requests_and_stops_when_dropped() {
        let server = Server::start(|req| async move {
            let (parts, body) = read_request(req).await;
            let echo = format!(
                "{} {} {} {}",
                parts.method,
                parts.uri.path(),
                header_pairs(&parts)
                    .iter()
                    .find(|(k, _)| k == "x-probe")
                    .map_or("", |(_, v)| v.as_str()),
                String::from_utf8_lossy(&body)
            );
            json_reply(201, &[("x-echo", "1".to_owned())], Bytes::from(echo))
        })
        .await;
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{}/a/b?q=1", server.url()))
            .header("X-Probe", "yes")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-echo"], "1");
        assert_eq!(resp.text().await.unwrap(), "POST /a/b yes hello");

        let url = server.url();
        drop(server);
        tokio::task::yield_now().await;
        let fresh = reqwest::Client::new();
        assert!(fresh.get(url).send().await.is_err(), "listener closed");
    }
}
