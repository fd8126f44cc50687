//! A Confluent-compatible schema registry on loopback, speaking the documented REST API for what
//! the functions call: `GET /schemas/ids/{id}` answers `200 {"schema": .., "schemaType": ..,
//! "references": [..]}` (`schemaType` absent for Avro, as the registry writes it; `references`
//! only when there are some), `404` with `error_code` 40403 for an id it does not have;
//! `GET /subjects/{subject}/versions/{version}` (the subject percent-decoded) answers the
//! registered subject version, `404` with 40401 (no such subject) or 40402 (no such version);
//! `401` (`error_code` 401) without the configured basic auth, and `503` (`error_code` 50003)
//! while [`set_down`](SchemaRegistryServer::set_down).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::servers::http::{HttpServer, Reply};

/// A schema as the registry keeps it.
#[derive(Debug, Clone)]
pub struct Registered {
    /// `AVRO` (written as an absent `schemaType`), `PROTOBUF` or `JSON`.
    pub schema_type: String,
    /// The schema text.
    pub schema: String,
    /// `(name, subject, version)` of each schema it references.
    pub references: Vec<(String, String, i64)>,
}

impl Registered {
    /// A schema of `schema_type` without references.
    pub fn new(schema_type: &str, schema: impl Into<String>) -> Self {
        Self {
            schema_type: schema_type.to_string(),
            schema: schema.into(),
            references: Vec::new(),
        }
    }

    /// With a reference to `subject` version `version`, imported / named as `name`.
    pub fn referencing(mut self, name: &str, subject: &str, version: i64) -> Self {
        self.references
            .push((name.to_string(), subject.to_string(), version));
        self
    }

    fn answer(&self) -> Value {
        let mut a = json!({ "schema": self.schema });
        if self.schema_type != "AVRO" {
            a["schemaType"] = json!(self.schema_type);
        }
        if !self.references.is_empty() {
            a["references"] = self
                .references
                .iter()
                .map(|(name, subject, version)| {
                    json!({"name": name, "subject": subject, "version": version})
                })
                .collect();
        }
        a
    }
}

#[derive(Debug, Default)]
struct State {
    schemas: Mutex<HashMap<u32, Registered>>,
    subjects: Mutex<HashMap<String, HashMap<i64, Registered>>>,
    authorization: Option<String>,
    down: AtomicBool,
    requests: AtomicUsize,
}

/// The running registry; stops when dropped.
#[derive(Debug)]
pub struct SchemaRegistryServer {
    server: HttpServer,
    state: Arc<State>,
}

impl SchemaRegistryServer {
    /// Serves `schemas` (id, Avro schema text), requiring `basic` auth (user, password) when set.
    pub async fn start(
        schemas: impl IntoIterator<Item = (u32, String)>,
        basic: Option<(&str, &str)>,
    ) -> Self {
        let state = Arc::new(State {
            schemas: Mutex::new(
                schemas
                    .into_iter()
                    .map(|(id, s)| (id, Registered::new("AVRO", s)))
                    .collect(),
            ),
            authorization: basic.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            ..State::default()
        });
        let s = Arc::clone(&state);
        let server = HttpServer::start(move |req| {
            s.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(expected) = &s.authorization
                && req.header("authorization") != Some(expected.as_str())
            {
                return Reply::json(
                    401,
                    json!({"error_code": 401, "message": "Unauthorized"}),
                );
            }
            if s.down.load(Ordering::Relaxed) {
                return Reply::json(
                    503,
                    json!({"error_code": 50003, "message": "Error while forwarding the request"}),
                );
            }
            if req.method == "GET"
                && let Some((subject, version)) = req
                    .path
                    .strip_prefix("/subjects/")
                    .and_then(|rest| rest.split_once("/versions/"))
            {
                let subject = percent_encoding::percent_decode_str(subject)
                    .decode_utf8_lossy()
                    .into_owned();
                let subjects = s.subjects.lock().unwrap();
                let Some(versions) = subjects.get(&subject) else {
                    return Reply::json(
                        404,
                        json!({"error_code": 40401, "message": format!("Subject '{subject}' not found.")}),
                    );
                };
                return match version.parse::<i64>().ok().and_then(|v| versions.get(&v).map(|r| (v, r))) {
                    Some((v, r)) => {
                        let mut a = r.answer();
                        a["subject"] = json!(subject);
                        a["version"] = json!(v);
                        a["id"] = json!(1000 + v);
                        Reply::json(200, a)
                    }
                    None => Reply::json(
                        404,
                        json!({"error_code": 40402, "message": format!("Version {version} not found.")}),
                    ),
                };
            }
            let id = req
                .path
                .strip_prefix("/schemas/ids/")
                .and_then(|id| id.parse::<u32>().ok());
            match (req.method.as_str(), id) {
                ("GET", Some(id)) => match s.schemas.lock().unwrap().get(&id) {
                    Some(schema) => Reply::json(200, schema.answer()),
                    None => Reply::json(
                        404,
                        json!({"error_code": 40403, "message": "Schema not found"}),
                    ),
                },
                _ => Reply::json(
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

    /// Registers the Avro `schema` under `id`.
    pub fn add(&self, id: u32, schema: impl Into<String>) {
        self.add_registered(id, Registered::new("AVRO", schema));
    }

    /// Registers a schema of any type, with its references, under `id`.
    pub fn add_registered(&self, id: u32, schema: Registered) {
        self.state.schemas.lock().unwrap().insert(id, schema);
    }

    /// Registers `schema` as `version` of `subject` (what a reference names).
    pub fn add_subject_version(&self, subject: &str, version: i64, schema: Registered) {
        self.state
            .subjects
            .lock()
            .unwrap()
            .entry(subject.to_string())
            .or_default()
            .insert(version, schema);
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
