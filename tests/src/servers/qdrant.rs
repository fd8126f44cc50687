//! Qdrant on loopback following its documented REST API for the calls the store makes:
//!
//! - `PUT /collections/{c}/points?wait=..` upsert (`{"points": [{id, vector, payload}]}`);
//! - `POST /collections/{c}/points/delete?wait=..` by `{"points": [ids]}` or `{"filter": ..}`;
//! - `POST /collections/{c}/points/scroll` with `filter`, `limit`, `offset`, `with_payload`,
//!   `with_vector`, ordered by id, `next_page_offset` for the next page.
//!
//! Point ids must be unsigned integers or UUIDs; vectors must have the collection's size. Writes
//! without `wait=true` answer `"acknowledged"` and are applied only after the next request, as a
//! real cluster may apply them later; with it they answer `"completed"` and are visible at once.
//! Errors use Qdrant's body `{"status": {"error": ".."}, "time": ..}` (400 bad input, 404 missing
//! collection, 401/403 bad `api-key`), and faults can be injected.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::servers::http::{HttpServer, Reply, Request};

/// A point as the collection holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    /// Its vector, of the collection's size.
    pub vector: Vec<f32>,
    /// The payload object.
    pub payload: Value,
}

/// The collections, the behaviour and the log of requests.
#[derive(Debug, Default)]
pub struct QdrantState {
    /// Collections: name -> (vector size, points by id text).
    pub collections: HashMap<String, (usize, BTreeMap<String, StoredPoint>)>,
    /// Required `api-key`, if any.
    pub api_key: Option<String>,
    /// `method path?query` of every request.
    pub log: Vec<String>,
    /// Statuses to answer the next requests with, in order (e.g. 503 twice).
    pub faults: Vec<u16>,
    pending: Vec<(String, Value, bool)>,
}

/// A running Qdrant server.
#[derive(Debug)]
pub struct QdrantServer {
    server: HttpServer,
    state: Arc<Mutex<QdrantState>>,
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"status": {"error": message}, "time": 0.0001}),
    )
}

fn ok(result: Value) -> Reply {
    Reply::json(
        200,
        json!({"result": result, "status": "ok", "time": 0.0002}),
    )
}

fn valid_id(id: &Value) -> Option<String> {
    match id {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) => {
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            let ok = hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
            ok.then(|| s.to_ascii_lowercase())
        }
        _ => None,
    }
}

fn matches_condition(payload: &Value, cond: &Value) -> bool {
    let Some(key) = cond.get("key").and_then(Value::as_str) else {
        return false;
    };
    let field = payload.get(key);
    if let Some(m) = cond.get("match") {
        if let Some(v) = m.get("value") {
            return field == Some(v);
        }
        if let Some(Value::Array(any)) = m.get("any") {
            return field.is_some_and(|f| any.contains(f));
        }
        return false;
    }
    if let Some(r) = cond.get("range") {
        let Some(x) = field.and_then(Value::as_f64) else {
            return false;
        };
        let bound = |k: &str| r.get(k).and_then(Value::as_f64);
        return bound("gte").is_none_or(|b| x >= b)
            && bound("gt").is_none_or(|b| x > b)
            && bound("lte").is_none_or(|b| x <= b)
            && bound("lt").is_none_or(|b| x < b);
    }
    false
}

fn matches_filter(payload: &Value, filter: Option<&Value>) -> bool {
    let Some(filter) = filter else { return true };
    let must = filter.get("must").and_then(Value::as_array);
    must.is_none_or(|conds| conds.iter().all(|c| matches_condition(payload, c)))
}

impl QdrantState {
    fn apply(&mut self, collection: &str, op: &Value, upsert: bool) {
        let Some((_, points)) = self.collections.get_mut(collection) else {
            return;
        };
        if upsert {
            for p in op["points"].as_array().into_iter().flatten() {
                let id = valid_id(&p["id"]).expect("checked");
                let vector = p["vector"]
                    .as_array()
                    .expect("checked")
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                    .collect();
                let payload = p.get("payload").cloned().unwrap_or(json!({}));
                points.insert(id, StoredPoint { vector, payload });
            }
        } else if let Some(ids) = op.get("points").and_then(Value::as_array) {
            for id in ids.iter().filter_map(valid_id) {
                points.remove(&id);
            }
        } else {
            let filter = op.get("filter");
            points.retain(|_, p| !matches_filter(&p.payload, filter));
        }
    }

    fn handle(&mut self, req: &Request) -> Reply {
        self.log
            .push(format!("{} {}?{}", req.method, req.path, req.query));
        if !self.faults.is_empty() {
            let status = self.faults.remove(0);
            return error(status, "Service temporarily unavailable");
        }
        // Writes sent without wait=true land after the request that follows them.
        let pending = std::mem::take(&mut self.pending);
        if let Some(key) = &self.api_key
            && req.header("api-key") != Some(key.as_str())
        {
            return error(401, "Invalid api-key");
        }
        let response = self.route(req);
        for (c, op, upsert) in pending {
            self.apply(&c, &op, upsert);
        }
        response
    }

    fn route(&mut self, req: &Request) -> Reply {
        let segs = req.segments();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let (collection, action) = match segs.as_slice() {
            ["collections", c, "points"] if req.method == "PUT" => (*c, "upsert"),
            ["collections", c, "points", "delete"] if req.method == "POST" => (*c, "delete"),
            ["collections", c, "points", "scroll"] if req.method == "POST" => (*c, "scroll"),
            _ => return error(404, "Not found"),
        };
        let Some((dim, points)) = self.collections.get(collection) else {
            return error(
                404,
                &format!("Not found: Collection `{collection}` doesn't exist!"),
            );
        };
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return error(400, &format!("Format error in JSON body: {e}")),
        };
        let wait = req.query_param("wait").as_deref() == Some("true");
        match action {
            "upsert" => {
                let Some(list) = body.get("points").and_then(Value::as_array) else {
                    return error(400, "Format error in JSON body: missing field `points`");
                };
                for p in list {
                    if valid_id(&p["id"]).is_none() {
                        return error(
                            400,
                            &format!(
                                "Format error in JSON body: value {} is not a valid point ID, valid values are either an unsigned integer or a UUID",
                                p["id"]
                            ),
                        );
                    }
                    let got = p["vector"].as_array().map(Vec::len).unwrap_or(0);
                    if got != *dim {
                        return error(
                            400,
                            &format!(
                                "Wrong input: Vector dimension error: expected dim: {dim}, got {got}"
                            ),
                        );
                    }
                }
                self.write(collection, body, true, wait)
            }
            "delete" => {
                if body.get("points").is_none() && body.get("filter").is_none() {
                    return error(400, "Format error in JSON body: expected points or filter");
                }
                self.write(collection, body, false, wait)
            }
            _ => {
                let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
                let offset = body.get("offset").and_then(valid_id);
                let filter = body.get("filter");
                let with_vector = body.get("with_vector").and_then(Value::as_bool) == Some(true);
                let selected: Vec<(&String, &StoredPoint)> = points
                    .iter()
                    .filter(|(id, _)| offset.as_ref().is_none_or(|o| *id >= o))
                    .filter(|(_, p)| matches_filter(&p.payload, filter))
                    .take(limit + 1)
                    .collect();
                let next = selected.get(limit).map(|(id, _)| json!(id));
                let out: Vec<Value> = selected
                    .iter()
                    .take(limit)
                    .map(|(id, p)| {
                        let payload = match body.get("with_payload") {
                            Some(Value::Array(keys)) => {
                                let mut m = serde_json::Map::new();
                                for k in keys.iter().filter_map(Value::as_str) {
                                    if let Some(v) = p.payload.get(k) {
                                        m.insert(k.to_owned(), v.clone());
                                    }
                                }
                                Value::Object(m)
                            }
                            Some(Value::Bool(false)) => Value::Null,
                            _ => p.payload.clone(),
                        };
                        let mut point = json!({"id": id, "payload": payload});
                        if with_vector {
                            point["vector"] = json!(p.vector);
                        }
                        point
                    })
                    .collect();
                ok(json!({"points": out, "next_page_offset": next}))
            }
        }
    }

    fn write(&mut self, collection: &str, op: Value, upsert: bool, wait: bool) -> Reply {
        if wait {
            self.apply(collection, &op, upsert);
            ok(json!({"operation_id": self.log.len(), "status": "completed"}))
        } else {
            self.pending.push((collection.to_owned(), op, upsert));
            ok(json!({"operation_id": self.log.len(), "status": "acknowledged"}))
        }
    }
}

impl QdrantServer {
    /// Starts a server with one empty collection of `dim`-sized vectors.
    pub async fn start(collection: &str, dim: usize) -> Self {
        let state = Arc::new(Mutex::new(QdrantState::default()));
        state
            .lock()
            .unwrap()
            .collections
            .insert(collection.to_owned(), (dim, BTreeMap::new()));
        let s = state.clone();
        let server = HttpServer::start(move |req| s.lock().unwrap().handle(&req)).await;
        Self { server, state }
    }

    /// Base URL (`QDRANT_URL`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Runs `f` on the state.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut QdrantState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Points of `collection` by id.
    pub fn points(&self, collection: &str) -> BTreeMap<String, StoredPoint> {
        self.with_state(|s| {
            s.collections
                .get(collection)
                .map(|(_, p)| p.clone())
                .unwrap_or_default()
        })
    }

    /// Every request so far, as `METHOD path?query` (the path as sent).
    pub fn log(&self) -> Vec<String> {
        self.with_state(|s| s.log.clone())
    }
}
