//! A Confluent-compatible schema registry on loopback, speaking the documented REST API for what
//! the functions call: `GET /schemas/ids/{id}` answers `200 {"schema": ..}`, `404` with
//! `error_code` 40403 for an id it does not have, `401` (`error_code` 401) without the configured
//! basic auth, and `503` (`error_code` 50003) while [`set_down`](FakeSchemaRegistry::set_down).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::json;

use crate::fake_http::{FakeResponse, FakeServer};

#[derive(Debug, Default)]
struct State {
    schemas: Mutex<HashMap<u32, String>>,
    authorization: Option<String>,
    down: AtomicBool,
    requests: AtomicUsize,
}

/// The running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeSchemaRegistry {
    server: FakeServer,
    state: Arc<State>,
}

impl FakeSchemaRegistry {
    /// Serves `schemas` (id, Avro schema text), requiring `basic` auth (user, password) when set.
    pub async fn start(
        schemas: impl IntoIterator<Item = (u32, String)>,
        basic: Option<(&str, &str)>,
    ) -> Self {
        let state = Arc::new(State {
            schemas: Mutex::new(schemas.into_iter().collect()),
            authorization: basic.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            ..State::default()
        });
        let s = Arc::clone(&state);
        let server = FakeServer::start(move |req| {
            s.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(expected) = &s.authorization
                && req.header("authorization") != Some(expected.as_str())
            {
                return FakeResponse::json(
                    401,
                    json!({"error_code": 401, "message": "Unauthorized"}),
                );
            }
            if s.down.load(Ordering::Relaxed) {
                return FakeResponse::json(
                    503,
                    json!({"error_code": 50003, "message": "Error while forwarding the request"}),
                );
            }
            let id = req
                .path
                .strip_prefix("/schemas/ids/")
                .and_then(|id| id.parse::<u32>().ok());
            match (req.method.as_str(), id) {
                ("GET", Some(id)) => match s.schemas.lock().unwrap().get(&id) {
                    Some(schema) => FakeResponse::json(200, json!({ "schema": schema })),
                    None => FakeResponse::json(
                        404,
                        json!({"error_code": 40403, "message": "Schema not found"}),
                    ),
                },
                _ => FakeResponse::json(
                    404,
                    json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
                ),
            }
        })
        .await;
        Self { server, state }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Registers `schema` under `id`.
    pub fn add(&self, id: u32, schema: impl Into<String>) {
        self.state.schemas.lock().unwrap().insert(id, schema.into());
    }

    /// Answers every request with 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::Relaxed);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }
}
