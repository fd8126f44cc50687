//! `serve-api`: gift-publisher's own code behind a local HTTP listener, for local runs and the
//! demo. Each request becomes the payload format 2.0 event that a Lambda function URL would send,
//! and gift-publisher's answer (202 once the broker has the gift, 400/413 problem documents, 503
//! with `Retry-After`) goes back as it is: what works here works deployed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use gift_publisher::handler::Publisher;
use gift_publisher::http::HttpRequest;
use gift_publisher::kafka::KafkaBroker;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lambda_kit::retry::Deadline;
use tokio::net::TcpListener;

/// How long one request may take, as a function timeout would bound it.
const REQUEST_BUDGET: Duration = Duration::from_secs(10);

/// The payload format 2.0 event for `req` with `body`.
fn event(parts: &hyper::http::request::Parts, body: &[u8]) -> HttpRequest {
    let mut headers = std::collections::HashMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    // Text bodies travel as text, anything else base64-encoded, as Lambda does.
    let (body, is_base64_encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let context = serde_json::json!({"http": {"method": parts.method.as_str()}});
    HttpRequest {
        raw_path: parts.uri.path().to_owned(),
        headers,
        body: Some(body),
        is_base64_encoded,
        request_context: serde_json::from_value(context).unwrap_or_default(),
    }
}

/// The most a request body may hold: Lambda's 6 MB synchronous invocation payload.
pub const MAX_REQUEST_BODY: usize = crate::payload::MAX_PAYLOAD_BYTES;

/// Serves `publisher` on `listen` until the process ends.
pub async fn serve(listen: &str, publisher: Publisher<KafkaBroker>) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(listen, "gift-publisher listening (POST /vault/save)");
    let publisher = Arc::new(publisher);
    loop {
        let (stream, _) = listener.accept().await?;
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let publisher = Arc::clone(&publisher);
                async move {
                    let (parts, body) = req.into_parts();
                    // A function URL takes at most 6 MB of request (Lambda's synchronous
                    // invocation payload): a longer body is not read on, and answered 413 as
                    // Lambda answers it.
                    let Ok(body) = http_body_util::Limited::new(body, MAX_REQUEST_BODY)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                    else {
                        let mut r = Response::new(Full::new(Bytes::from_static(
                            br#"{"message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}"#,
                        )));
                        *r.status_mut() = hyper::StatusCode::PAYLOAD_TOO_LARGE;
                        return Ok::<_, Infallible>(r);
                    };
                    let answer = publisher
                        .respond(&event(&parts, &body), Deadline::after(REQUEST_BUDGET))
                        .await;
                    let mut r = Response::new(Full::new(Bytes::from(answer.body)));
                    *r.status_mut() = hyper::StatusCode::from_u16(answer.status_code)
                        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                    for (k, v) in answer.headers {
                        if let (Ok(k), Ok(v)) = (
                            hyper::header::HeaderName::from_bytes(k.as_bytes()),
                            hyper::header::HeaderValue::from_str(&v),
                        ) {
                            r.headers_mut().insert(k, v);
                        }
                    }
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
