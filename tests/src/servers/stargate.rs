//! Stargate's REST API v2 on loopback for the row calls the store makes, on one table whose primary key
//! is `((page_id), chunk_index)`:
//!
//! - `GET /v2/keyspaces/{ks}/{table}/{page_id}?fields=..&page-size=..&page-state=..` returns
//!   `{"count", "pageState"?, "data": [...]}` (no rows: count 0, 200);
//! - `PUT /v2/keyspaces/{ks}/{table}/{page_id}/{chunk_index}` replaces a row, `{"data": {...}}`;
//! - `DELETE` on `{page_id}` (whole partition) or `{page_id}/{chunk_index}`: 204, absent rows
//!   included.
//!
//! Path segments are percent-decoded one by one, so a client that does not encode `/` or `?`
//! addresses another resource (and gets Stargate's 404 or a wrong row). Errors use
//! `{"description": "..", "code": N}`; `X-Cassandra-Token` is checked; faults can be injected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::servers::http::{HttpServer, Reply, Request};

/// The table, the behaviour and the log of requests.
#[derive(Debug, Default)]
pub struct StargateState {
    /// Keyspace of the table.
    pub keyspace: String,
    /// The one table served (`STARGATE_TABLE`).
    pub table: String,
    /// Rows by (page_id, chunk_index): the non-key columns.
    pub rows: BTreeMap<(String, i64), Value>,
    /// Required `X-Cassandra-Token`.
    pub token: Option<String>,
    /// Every request: method, decoded path segments, raw query.
    pub log: Vec<(String, Vec<String>, String)>,
    /// Statuses to answer the next requests with, in order.
    pub faults: Vec<u16>,
}

/// A running Stargate server.
#[derive(Debug)]
pub struct StargateServer {
    server: HttpServer,
    state: Arc<Mutex<StargateState>>,
}

fn error(status: u16, description: &str) -> Reply {
    Reply::json(status, json!({"description": description, "code": status}))
}

impl StargateState {
    fn handle(&mut self, req: &Request) -> Reply {
        let segs = req.segments();
        self.log
            .push((req.method.clone(), segs.clone(), req.query.clone()));
        if !self.faults.is_empty() {
            let status = self.faults.remove(0);
            return error(status, "Service unavailable");
        }
        match (&self.token, req.header("x-cassandra-token")) {
            (Some(_), None) => {
                return error(401, "Missing token");
            }
            (Some(t), Some(got)) if t != got => {
                return error(401, "Role unauthorized for operation: Invalid token");
            }
            _ => {}
        }
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let (ks, table, key) = match s.as_slice() {
            ["v2", "keyspaces", ks, table, key @ ..] if !key.is_empty() => (*ks, *table, key),
            _ => return error(404, "HTTP 404 Not Found"),
        };
        if ks != self.keyspace || table != self.table {
            return error(
                400,
                &format!("Table '{table}' not found in keyspace '{ks}'"),
            );
        }
        let page_id = key[0].to_owned();
        let chunk = match key.get(1) {
            None => None,
            Some(c) => match c.parse::<i64>() {
                Ok(i) => Some(i),
                Err(_) => return error(400, &format!("Invalid int value '{c}' for chunk_index")),
            },
        };
        if key.len() > 2 {
            return error(
                400,
                "Number of key values provided (3) should be less than or equal to the number of primary key columns (2)",
            );
        }
        match (req.method.as_str(), chunk) {
            ("GET", _) => {
                let fields: Option<Vec<String>> = req
                    .query_param("fields")
                    .map(|f| f.split(',').map(str::to_owned).collect());
                let size: usize = req
                    .query_param("page-size")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(100);
                let start: usize = req
                    .query_param("page-state")
                    .and_then(|p| p.strip_prefix("st:").and_then(|n| n.parse().ok()))
                    .unwrap_or(0);
                let matching: Vec<Value> = self
                    .rows
                    .iter()
                    .filter(|((p, c), _)| *p == page_id && chunk.is_none_or(|want| want == *c))
                    .map(|((p, c), cols)| {
                        let mut row = cols.as_object().cloned().unwrap_or_default();
                        row.insert("page_id".into(), json!(p));
                        row.insert("chunk_index".into(), json!(c));
                        if let Some(fields) = &fields {
                            row.retain(|k, _| fields.contains(k));
                        }
                        Value::Object(row)
                    })
                    .collect();
                let page: Vec<Value> = matching.iter().skip(start).take(size).cloned().collect();
                let mut body = json!({"count": page.len(), "data": page});
                if start + size < matching.len() {
                    body["pageState"] = json!(format!("st:{}", start + size));
                }
                Reply::json(200, body)
            }
            ("PUT", Some(c)) => {
                let cols: Value = match serde_json::from_slice(&req.body) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => return error(400, "Request body must be a JSON object"),
                };
                self.rows.insert((page_id, c), cols.clone());
                Reply::json(200, json!({"data": cols}))
            }
            ("DELETE", None) => {
                self.rows.retain(|(p, _), _| *p != page_id);
                Reply::empty(204)
            }
            ("DELETE", Some(c)) => {
                self.rows.remove(&(page_id, c));
                Reply::empty(204)
            }
            _ => error(405, "HTTP 405 Method Not Allowed"),
        }
    }
}

impl StargateServer {
    /// Starts a server for `keyspace.table`.
    pub async fn start(keyspace: &str, table: &str, token: Option<&str>) -> Self {
        let state = Arc::new(Mutex::new(StargateState {
            keyspace: keyspace.to_owned(),
            table: table.to_owned(),
            token: token.map(str::to_owned),
            ..StargateState::default()
        }));
        let s = state.clone();
        let server = HttpServer::start(move |req| s.lock().unwrap().handle(&req)).await;
        Self { server, state }
    }

    /// Base URL (`STARGATE_URL`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Runs `f` on the state.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut StargateState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Stored chunk indexes of `page_id`.
    pub fn chunks(&self, page_id: &str) -> Vec<i64> {
        self.with_state(|s| {
            s.rows
                .keys()
                .filter(|(p, _)| p == page_id)
                .map(|(_, c)| *c)
                .collect()
        })
    }
}
