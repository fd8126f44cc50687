//! `VECTOR_STORE=qdrant`: chunk vectors as points of a Qdrant collection, through its REST API.
//!
//! - A point id must be an unsigned integer or a UUID, so each chunk gets the UUIDv5 of
//!   `(chunk_index, page_id)` ([`point_id`]): re-embedding a chunk overwrites its point.
//! - The payload keeps `page_id`, `chunk_index`, `content_hash`, `model` and `chunk_text`.
//! - Writes use `?wait=true`, so a successful answer means the change is applied and visible
//!   to the next read (a redelivered batch sees it).
//! - Deletes select by payload filter (`page_id`, and `chunk_index >= n` for a page that shrank);
//!   deleting points that do not exist succeeds.
//! - The unchanged-content check scrolls the payloads of the batch's pages
//!   (`with_vector: false`).
//!
//! The collection must exist with the model's vector size and cosine distance; filters are fast
//! with payload indexes on `page_id` (keyword) and `chunk_index` (integer):
//!
//! ```text
//! PUT /collections/pages  {"vectors": {"size": 384, "distance": "Cosine"}}
//! PUT /collections/pages/index?wait=true  {"field_name": "page_id", "field_schema": "keyword"}
//! PUT /collections/pages/index?wait=true  {"field_name": "chunk_index", "field_schema": "integer"}
//! ```

use std::time::Duration;

use lambda_kit::config::{ConfigError, Env};
use lambda_kit::error::ErrorClass;
use lambda_kit::retry::{Deadline, RetryPolicy};
use lambda_kit::secrets::Credential;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chunk_fields::{ChunkFields, upsert_rows};
use super::json_service::{
    JsonServiceClient, MAX_ROWS_READ, Service, json_text, segment, too_many_rows,
};
use super::{StoreError, StoredChunk, StoredHashes, VectorRow, VectorStore};
use crate::keys::{KeySource, key_source};

/// Namespace of the point ids (a fixed random UUID: changing it would orphan every point).
const POINT_NAMESPACE: uuid::Uuid = uuid::uuid!("6f1c2b8e-5d3a-4e7f-9a41-2c8d0b7e6a13");

/// Qdrant's REST API: the key in `api-key`, errors as `{"status": {"error": "..."}}`.
const QDRANT: Service = Service {
    name: "qdrant",
    url_var: "QDRANT_URL",
    auth_header: "api-key",
    error_text: qdrant_error_text,
    refuses_setup: qdrant_refuses_setup,
};

/// Qdrant's 400 "Wrong input: Vector dimension error: expected dim: 768, got 384" (the collection
/// was created for another size than `EMBED_DIM`) and "Not existing vector name" (a named-vector
/// collection): the collection's setup, not the pages.
fn qdrant_refuses_setup(text: &str) -> bool {
    text.contains("Vector dimension error") || text.contains("Not existing vector")
}

/// The variables giving the API key: directly, or as a Secrets Manager id.
pub(crate) const API_KEY_VARS: (&str, &str) = ("QDRANT_API_KEY", "QDRANT_API_KEY_SECRET_ID");

/// Page ids per filter, and points per scroll page.
const IDS_PER_QUERY: usize = 200;
const SCROLL_LIMIT: usize = 512;

/// The Qdrant point id of a chunk: UUIDv5 of `"{chunk_index}/{page_id}"` (the index first, so
/// the name is unambiguous whatever the page id contains).
///
/// ```
/// use page_embedder::store::point_id;
/// assert_eq!(point_id("p1", 0), point_id("p1", 0));
/// assert_ne!(point_id("p1", 0), point_id("p1", 1));
/// assert_ne!(point_id("1/p", 0), point_id("p", 1));
/// assert_eq!(point_id("p1", 0).get_version_num(), 5);
/// ```
pub fn point_id(page_id: &str, chunk_index: usize) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &POINT_NAMESPACE,
        format!("{chunk_index}/{page_id}").as_bytes(),
    )
}

/// Settings of the Qdrant store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QdrantConfig {
    /// `QDRANT_URL`, e.g. `http://localhost:6333` or a Qdrant Cloud cluster URL.
    pub url: String,
    /// `QDRANT_COLLECTION` (default `page_vectors`).
    pub collection: String,
    /// `QDRANT_API_KEY` or `QDRANT_API_KEY_SECRET_ID` (none for an unsecured local Qdrant).
    pub api_key: KeySource,
    /// `HTTP_TIMEOUT_MS` (default 10 s).
    pub request_timeout: Duration,
    /// `RETRY_MAX_ATTEMPTS`, `RETRY_INITIAL_BACKOFF_MS`, `RETRY_MAX_BACKOFF_MS`.
    pub retry: RetryPolicy,
}

impl QdrantConfig {
    /// Reads the settings; `QDRANT_URL` is required.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::store::QdrantConfig;
    /// let c = QdrantConfig::from_env(&Env::from_pairs([("QDRANT_URL", "http://127.0.0.1:6333/")])).unwrap();
    /// assert_eq!((c.url.as_str(), c.collection.as_str()), ("http://127.0.0.1:6333", "page_vectors"));
    /// assert_eq!(QdrantConfig::from_env(&Env::empty()).unwrap_err().var, "QDRANT_URL");
    /// ```
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let api_key = key_source(env, API_KEY_VARS)?;
        let url = http_url(env, "QDRANT_URL", !matches!(api_key, KeySource::None))?;
        let collection = env.string_or("QDRANT_COLLECTION", "page_vectors");
        if collection.is_empty() || collection == "." || collection == ".." {
            return Err(ConfigError::new(
                "QDRANT_COLLECTION",
                "must be a collection name",
            ));
        }
        Ok(Self {
            url,
            collection,
            api_key,
            request_timeout: env.millis_or("HTTP_TIMEOUT_MS", Duration::from_secs(10))?,
            retry: RetryPolicy::from_env(env, "RETRY_")?,
        })
    }
}

/// An `http(s)` URL without a query or userinfo, trailing `/` removed; `https://` (but on
/// loopback) when requests to it carry a `credential` ([`lambda_kit::config::check_url`]).
pub(crate) fn http_url(env: &Env, var: &str, credential: bool) -> Result<String, ConfigError> {
    let url = env.required(var)?;
    let url = url.trim_end_matches('/').to_owned();
    if lambda_kit::config::check_url(var, &url, credential)?
        .query()
        .is_some()
    {
        return Err(ConfigError::new(var, "must be a URL without a query"));
    }
    Ok(url)
}

/// Qdrant's error body: `{"status": {"error": "..."}, "time": ...}`.
fn qdrant_error_text(body: &[u8]) -> Option<String> {
    json_text(body, "/status/error")
}

/// Chunk vectors in a Qdrant collection.
#[derive(Debug, Clone)]
pub struct QdrantStore {
    client: JsonServiceClient,
    /// `{url}/collections/{collection}`.
    base: String,
}

#[derive(Serialize)]
struct Point<'a> {
    /// Hyphenated UUID text, the form Qdrant accepts for UUID ids.
    id: String,
    vector: &'a [f32],
    payload: ChunkFields<'a>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: Value,
    result: Option<T>,
}

#[derive(Deserialize)]
struct ScrollResult {
    points: Vec<ScrolledPoint>,
    next_page_offset: Option<Value>,
}

#[derive(Deserialize)]
struct ScrolledPoint {
    payload: Option<HashPayload>,
}

#[derive(Deserialize)]
struct HashPayload {
    page_id: String,
    chunk_index: usize,
    content_hash: String,
}

impl QdrantStore {
    /// A store for `config`, with the API key already resolved (`None` when the cluster has no
    /// key).
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::store::{QdrantConfig, QdrantStore};
    /// let c = QdrantConfig::from_env(&Env::from_pairs([("QDRANT_URL", "http://127.0.0.1:6333"), ("QDRANT_COLLECTION", "pages v2")])).unwrap();
    /// let store = QdrantStore::new(&c, None, reqwest::Client::new()).unwrap();
    /// assert_eq!(store.collection_url(), "http://127.0.0.1:6333/collections/pages%20v2");
    /// ```
    pub fn new(
        config: &QdrantConfig,
        api_key: Option<Credential>,
        http: reqwest::Client,
    ) -> Result<Self, StoreError> {
        let collection = segment("QDRANT_COLLECTION", &config.collection)?;
        let client = JsonServiceClient::new(
            &QDRANT,
            api_key,
            http,
            config.request_timeout,
            &config.retry,
        )?;
        let base = format!("{}/collections/{collection}", config.url);
        Ok(Self { client, base })
    }

    /// `{QDRANT_URL}/collections/{collection}` (collection percent-encoded).
    pub fn collection_url(&self) -> &str {
        &self.base
    }

    /// Sends a write (`?wait=true`) and checks Qdrant's `"status": "ok"`.
    async fn write(
        &self,
        deadline: &Deadline,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<(), StoreError> {
        let url = format!("{}{path}?wait=true", self.base);
        let bytes = serde_json::to_vec(&body).map_err(encode_error)?;
        let answer = self
            .client
            .send(deadline, method, &url, Some(bytes))
            .await?;
        let envelope: Envelope<Value> = self.client.decode(&answer)?;
        check_ok(&envelope.status)
    }
}

fn check_ok(status: &Value) -> Result<(), StoreError> {
    if status.as_str() == Some("ok") {
        Ok(())
    } else {
        Err(StoreError {
            class: ErrorClass::TRANSIENT,
            code: "store_decode",
            message: format!("qdrant answered 2xx with status {status}"),
        })
    }
}

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError {
        class: ErrorClass::Data,
        code: "encode",
        message: e.to_string(),
    }
}

fn page_filter(ids: &[String]) -> Value {
    json!({"must": [{"key": "page_id", "match": {"any": ids}}]})
}

impl VectorStore for QdrantStore {
    async fn stored_hashes(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<StoredHashes, StoreError> {
        let mut out = StoredHashes::new();
        let url = format!("{}/points/scroll", self.base);
        let mut rows = 0usize;
        for ids in page_ids.chunks(IDS_PER_QUERY) {
            let mut offset: Option<Value> = None;
            loop {
                let mut body = json!({
                    "filter": page_filter(ids),
                    "limit": SCROLL_LIMIT,
                    "with_payload": ["page_id", "chunk_index", "content_hash"],
                    "with_vector": false,
                });
                if let Some(offset) = offset.take() {
                    body["offset"] = offset;
                }
                let bytes = serde_json::to_vec(&body).map_err(encode_error)?;
                let answer = self
                    .client
                    .send(deadline, Method::POST, &url, Some(bytes))
                    .await?;
                let envelope: Envelope<ScrollResult> = self.client.decode(&answer)?;
                check_ok(&envelope.status)?;
                let Some(result) = envelope.result else {
                    return Err(check_ok(&Value::Null).unwrap_err());
                };
                rows = rows.saturating_add(result.points.len());
                if rows > MAX_ROWS_READ {
                    return Err(too_many_rows("qdrant"));
                }
                for point in result.points {
                    // Points written by something else (no payload of ours) are not our chunks.
                    if let Some(p) = point.payload {
                        out.entry(p.page_id).or_default().push(StoredChunk {
                            chunk_index: p.chunk_index,
                            content_hash: p.content_hash,
                        });
                    }
                }
                match result.next_page_offset {
                    Some(next) if !next.is_null() => offset = Some(next),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn upsert(&self, deadline: &Deadline, rows: &[VectorRow]) -> Result<(), StoreError> {
        let Some(points) = upsert_rows(rows, |r| Point {
            id: point_id(&r.page_id, r.chunk_index).to_string(),
            vector: &r.embedding,
            payload: r.into(),
        }) else {
            return Ok(());
        };
        self.write(
            deadline,
            Method::PUT,
            "/points",
            json!({ "points": points }),
        )
        .await
    }

    async fn delete_pages(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<(), StoreError> {
        for ids in page_ids.chunks(IDS_PER_QUERY) {
            self.write(
                deadline,
                Method::POST,
                "/points/delete",
                json!({ "filter": page_filter(ids) }),
            )
            .await?;
        }
        Ok(())
    }

    async fn delete_chunks_from(
        &self,
        deadline: &Deadline,
        page_id: &str,
        from: usize,
    ) -> Result<(), StoreError> {
        let filter = json!({"must": [
            {"key": "page_id", "match": {"value": page_id}},
            {"key": "chunk_index", "range": {"gte": from}},
        ]});
        self.write(
            deadline,
            Method::POST,
            "/points/delete",
            json!({ "filter": filter }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Qdrant that answers every scroll with the same full page and a `next_page_offset`
    /// (as its documented `POST /points/scroll` does while points remain): a server that ignores
    /// the `offset` it is sent. Reading stops past `MAX_ROWS_READ` rows instead of growing the
    /// result until the deadline.
    #[tokio::test]
    async fn a_scroll_that_never_ends_is_cut_at_the_row_bound() {
        use std::io::{Read, Write};
        let listener = lambda_kit::testing::listener();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let point = r#"{"id":1,"payload":{"page_id":"p","chunk_index":0,"content_hash":"h"}}"#;
        let body = format!(
            r#"{{"result":{{"points":[{}],"next_page_offset":"next"}},"status":"ok","time":0.0}}"#,
            vec![point; SCROLL_LIMIT].join(",")
        );
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for mut sock in listener.incoming().flatten() {
                let _ = sock.read(&mut [0u8; 65536]);
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = sock.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        let config =
            QdrantConfig::from_env(&Env::from_pairs([("QDRANT_URL", url.as_str())])).unwrap();
        let store = QdrantStore::new(&config, None, reqwest::Client::new()).unwrap();
        let e = store
            .stored_hashes(
                &Deadline::after(Duration::from_secs(120)),
                &["p".to_owned()],
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "store_too_many_rows");
        assert_eq!(e.class, ErrorClass::Environment, "{e:?}");
        assert_eq!(
            requests.load(std::sync::atomic::Ordering::Relaxed),
            MAX_ROWS_READ / SCROLL_LIMIT + 1
        );
    }

    #[test]
    fn error_text_reads_qdrant_bodies() {
        let body =
            br#"{"status":{"error":"Not found: Collection `x` doesn't exist!"},"time":0.0001}"#;
        assert_eq!(
            qdrant_error_text(body).unwrap(),
            "Not found: Collection `x` doesn't exist!"
        );
        assert!(qdrant_error_text(b"Unauthorized").is_none());
    }

    #[test]
    fn config_errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("QDRANT_URL", "localhost:6333")], "QDRANT_URL"),
            (vec![("QDRANT_URL", "http://h?x=1")], "QDRANT_URL"),
            (
                vec![("QDRANT_URL", "http://h"), ("QDRANT_COLLECTION", "..")],
                "QDRANT_COLLECTION",
            ),
            (
                vec![
                    ("QDRANT_URL", "http://h"),
                    ("QDRANT_API_KEY", "k"),
                    ("QDRANT_API_KEY_SECRET_ID", "s"),
                ],
                "QDRANT_API_KEY_SECRET_ID",
            ),
            // The key would cross the network in clear text.
            (
                vec![("QDRANT_URL", "http://q.example"), ("QDRANT_API_KEY", "k")],
                "QDRANT_URL",
            ),
            (
                vec![
                    ("QDRANT_URL", "http://q.example"),
                    ("QDRANT_API_KEY_SECRET_ID", "s"),
                ],
                "QDRANT_URL",
            ),
            (vec![("QDRANT_URL", "https://u:pw@q.example")], "QDRANT_URL"),
        ] {
            let err = QdrantConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.var, var);
        }
        let c = QdrantConfig::from_env(&Env::from_pairs([
            ("QDRANT_URL", "https://q"),
            ("QDRANT_API_KEY", "sekrit"),
        ]))
        .unwrap();
        assert!(matches!(c.api_key, KeySource::Plain(_)));
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn point_ids_are_stable_uuids() {
        // Pinned: a change would orphan every stored point.
        let id = point_id("page-1", 3);
        assert_eq!(id, point_id("page-1", 3));
        assert_eq!(id.to_string().len(), 36);
        assert_eq!(id, uuid::Uuid::new_v5(&POINT_NAMESPACE, b"3/page-1"));
    }
}
