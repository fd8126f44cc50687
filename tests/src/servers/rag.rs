//! A RAG refresh endpoint (`POST /refresh` with `{"page_id": ..}`, the hook page-embedder calls
//! after it stored or deleted a page's vectors) that records every body and `traceparent` it
//! receives and can be switched to answer 503.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::servers::http::{HttpServer, Reply};

/// A page id and the `traceparent` header its notification came with.
pub type PageTrace = (String, Option<String>);

/// A RAG refresh endpoint that records every body it receives; can be switched to fail.
#[derive(Debug)]
pub struct RagServer {
    /// The HTTP server.
    pub server: HttpServer,
    /// Bodies received.
    pub received: Arc<Mutex<Vec<Value>>>,
    /// While `true`, answers 503.
    pub failing: Arc<Mutex<bool>>,
    /// The `page_id` of every request received (empty when the body has none) and its
    /// `traceparent` header.
    pub traceparents: Arc<Mutex<Vec<PageTrace>>>,
}

impl RagServer {
    /// Starts the endpoint at `/refresh`.
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(Mutex::new(false));
        let traceparents = Arc::new(Mutex::new(Vec::new()));
        let (r, f, t) = (received.clone(), failing.clone(), traceparents.clone());
        let server = HttpServer::start(move |req| {
            let page_id = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v["page_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            t.lock()
                .unwrap()
                .push((page_id, req.header("traceparent").map(str::to_owned)));
            if *f.lock().unwrap() {
                return Reply::json(503, json!({ "error": "unavailable" }));
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&req.body) {
                r.lock().unwrap().push(v);
            }
            Reply::json(202, json!({ "ok": true }))
        })
        .await;
        Self {
            server,
            received,
            failing,
            traceparents,
        }
    }

    /// `RAG_REFRESH_URL`.
    pub fn url(&self) -> String {
        format!("{}/refresh", self.server.url())
    }

    /// Bodies received about `page_id`.
    pub fn for_page(&self, page_id: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["page_id"] == page_id)
            .cloned()
            .collect()
    }
}
