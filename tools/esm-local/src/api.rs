//! `serve-api`: the gift half of the old HTTP API. `POST /vault/save` with a gift JSON object
//! publishes it (with `ts` stamped when absent) and answers `202 {"queued": true}`; a body that
//! is not a JSON object gets `400` naming the problem; a Kafka failure gets `503` so the caller
//! retries.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::publish::{Publisher, prepare_gift};

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves until the process ends.
pub async fn serve(
    listen: &str,
    publisher: Publisher,
    key_field: Option<String>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(listen, "gift API listening");
    let publisher = Arc::new(Mutex::new(publisher));
    let key_field = Arc::new(key_field);
    loop {
        let (stream, _) = listener.accept().await?;
        let (publisher, key_field) = (publisher.clone(), key_field.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (publisher, key_field) = (publisher.clone(), key_field.clone());
                async move {
                    if req.method() != Method::POST || req.uri().path() != "/vault/save" {
                        return Ok::<_, Infallible>(json(
                            StatusCode::NOT_FOUND,
                            r#"{"error":"not found"}"#.into(),
                        ));
                    }
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&body);
                    let gift = match prepare_gift(&text, 0, key_field.as_deref()) {
                        Ok(g) => g,
                        Err(e) => {
                            let msg = serde_json::json!({ "error": e.to_string().trim_start_matches("line 0: ") });
                            return Ok(json(StatusCode::BAD_REQUEST, msg.to_string()));
                        }
                    };
                    match publisher.lock().await.send(vec![gift]).await {
                        Ok(_) => Ok(json(StatusCode::ACCEPTED, r#"{"queued": true}"#.into())),
                        Err(e) => {
                            tracing::error!(error = %e, error_code = e.error_code(), "publish failed");
                            Ok(json(
                                StatusCode::SERVICE_UNAVAILABLE,
                                r#"{"queued": false}"#.into(),
                            ))
                        }
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
