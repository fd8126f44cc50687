//! Helpers of the page-embedder integration tests: the local stack's settings (tests skip loudly
//! without them), fixtures with page ids made unique per test, a handler wired to the real
//! PostgREST store and a fake provider, and readers of `page_vectors` / `dead_letters`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use lambda_kit::config::Env;
use lambda_kit::postgrest::{Filter, PostgrestClient, PostgrestConfig, Secret};
use lambda_kit::retry::{Deadline, RetryPolicy};
use page_embedder::chunk::ChunkLimits;
use page_embedder::config::Config;
use page_embedder::handler::{ConfiguredHandler, Handled};
use serde_json::Value;

use crate::fake_embedder::Api;

/// `SUPABASE_REST_URL` and `SUPABASE_SERVICE_ROLE_KEY` from `scripts/local-stack env`; `None`
/// (after saying so on stderr) when absent, so the caller returns early: a loud skip.
pub fn stack(test: &str) -> Option<PostgrestClient> {
    let (Ok(url), Ok(key)) = (
        std::env::var("SUPABASE_REST_URL"),
        std::env::var("SUPABASE_SERVICE_ROLE_KEY"),
    ) else {
        eprintln!(
            "SKIPPED {test}: SUPABASE_REST_URL / SUPABASE_SERVICE_ROLE_KEY not set; run `eval \"$(scripts/local-stack env)\"` (scripts/test does)"
        );
        return None;
    };
    let mut config = PostgrestConfig::new(url, Secret::new(key));
    config.retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    Some(PostgrestClient::new(config).expect("PostgREST client"))
}

/// A prefix unique to this test run and call, for page ids and function names.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t{}-{}-{}-{}",
        nanos % 1_000_000_000_000,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

/// Everything a test configures about the function.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Provider API.
    pub api: Api,
    /// Provider base URL.
    pub base_url: String,
    /// Model.
    pub model: String,
    /// Expected dimension.
    pub dims: usize,
    /// Chunk size (prefix excluded) and overlap.
    pub limits: ChunkLimits,
    /// Prefix.
    pub prefix: String,
    /// Texts per request.
    pub batch_size: usize,
    /// RAG hook.
    pub rag_url: Option<String>,
    /// Name in dead letters (unique per test).
    pub function_name: String,
}

impl Setup {
    /// Defaults of the function with a 768-dimension `nomic-embed-text` at `base_url`.
    pub fn new(api: Api, base_url: String, function_name: String) -> Self {
        Self {
            api,
            base_url,
            model: "nomic-embed-text".into(),
            dims: 768,
            limits: ChunkLimits::new(4000 - 17, 200),
            prefix: "search_document: ".into(),
            batch_size: 64,
            rag_url: None,
            function_name,
        }
    }

    /// An OpenAI-compatible `text-embedding-3-small` (768 dimensions requested, no prefix) served
    /// at `{server}/v1`.
    pub fn openai(server: &str, function_name: String) -> Self {
        Self {
            model: "text-embedding-3-small".into(),
            prefix: String::new(),
            ..Self::new(Api::OpenAi, format!("{server}/v1"), function_name)
        }
    }
}

/// The handler type the tests run: the one `main` runs.
pub type TestHandler = ConfiguredHandler;

/// Builds the function with `Config::build`, as `main` does, from the settings of `s` against the
/// local stack (`SUPABASE_REST_URL`, `SUPABASE_SERVICE_ROLE_KEY`); its dead letters carry
/// `s.function_name`.
pub async fn handler(s: &Setup) -> TestHandler {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set (see stack())"));
    let mut pairs: Vec<(&str, String)> = vec![
        ("SUPABASE_REST_URL", var("SUPABASE_REST_URL")),
        (
            "SUPABASE_SERVICE_ROLE_KEY",
            var("SUPABASE_SERVICE_ROLE_KEY"),
        ),
        ("RETRY_MAX_ATTEMPTS", "2".into()),
        ("METRICS_ENABLED", "false".into()),
        ("EMBED_BASE_URL", s.base_url.clone()),
        ("EMBED_MODEL", s.model.clone()),
        (
            "EMBED_DOC_PREFIX",
            if s.prefix.is_empty() {
                "none".into()
            } else {
                s.prefix.clone()
            },
        ),
        (
            "EMBED_MAX_CHARS",
            (s.limits.max_chars + s.prefix.chars().count()).to_string(),
        ),
        ("EMBED_OVERLAP_CHARS", s.limits.overlap_chars.to_string()),
        ("EMBED_BATCH_SIZE", s.batch_size.to_string()),
        ("EMBED_CONCURRENCY", "2".into()),
        ("EMBED_TIMEOUT_MS", "5000".into()),
        ("EMBED_RETRY_MAX_ATTEMPTS", "3".into()),
        ("EMBED_RETRY_INITIAL_BACKOFF_MS", "10".into()),
        ("EMBED_RETRY_MAX_BACKOFF_MS", "50".into()),
    ];
    match s.api {
        // EMBED_DIM only when it is not the default: Ollama then gets no `dimensions`.
        Api::Ollama => {
            pairs.push(("EMBED_PROVIDER", "ollama".into()));
            if s.dims != 768 {
                pairs.push(("EMBED_DIM", s.dims.to_string()));
            }
        }
        Api::OpenAi => {
            pairs.push(("EMBED_PROVIDER", "openai".into()));
            pairs.push(("EMBED_DIM", s.dims.to_string()));
            pairs.push(("OPENAI_API_KEY", "sk-test-key".into()));
        }
    }
    if let Some(url) = &s.rag_url {
        pairs.push(("RAG_REFRESH_URL", url.clone()));
        pairs.push(("RAG_REFRESH_TIMEOUT_MS", "5000".into()));
        pairs.push(("RAG_REFRESH_CONCURRENCY", "4".into()));
    }
    let env = Env::from_pairs(pairs);
    let mut h = Config::load(&env)
        .await
        .expect("test settings are valid")
        .build()
        .expect("the handler builds");
    h.function_mut().settings.function_name = s.function_name.clone();
    h
}

/// Runs one batch with a 20 s budget.
pub async fn run(h: &TestHandler, batch: &KafkaBatch) -> Handled {
    h.process(batch, &Deadline::after(Duration::from_secs(20)))
        .await
}

/// A plain-row record `{"page_id", "body"}` (the simplest format the decoder accepts).
pub fn upsert(offset: i64, page_id: &str, body: &str) -> KafkaRecord {
    let value = serde_json::json!({ "page_id": page_id, "title": "t", "body": body });
    KafkaRecord::new("cdc.pages", 0, offset, 0)
        .with_key(serde_json::json!({ "page_id": page_id }).to_string())
        .with_value(value.to_string())
}

/// A plain-row delete.
pub fn delete(offset: i64, page_id: &str) -> KafkaRecord {
    KafkaRecord::new("cdc.pages", 0, offset, 0)
        .with_key(serde_json::json!({ "page_id": page_id }).to_string())
        .with_value(serde_json::json!({ "page_id": page_id, "op": "d" }).to_string())
}

/// A batch of records.
pub fn batch(records: Vec<KafkaRecord>) -> KafkaBatch {
    KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build()
}

/// Loads `events/<name>` with every page id made unique by `prefix`: strings and non-negative
/// integers under a `page_id` key (Debezium rows, keys, Cassandra cells) and plain-string keys
/// become `"{prefix}{id}"`; invalid ids (negative, boolean) are left invalid.
pub fn fixture(name: &str, prefix: &str) -> KafkaBatch {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture JSON");
    for records in doc["records"]
        .as_object_mut()
        .expect("records")
        .values_mut()
    {
        for record in records.as_array_mut().expect("array") {
            for field in ["key", "value"] {
                let Some(b64) = record[field].as_str() else {
                    continue;
                };
                let Ok(bytes) = STANDARD.decode(b64) else {
                    continue;
                };
                let Ok(text) = String::from_utf8(bytes) else {
                    continue;
                };
                let rewritten = match serde_json::from_str::<Value>(&text) {
                    // A scalar key (`42`, `"42"`) is the page id itself: keep it a plain string.
                    Ok(Value::String(id)) if field == "key" => format!("{prefix}{id}"),
                    Ok(Value::Number(id)) if field == "key" => format!("{prefix}{id}"),
                    Ok(mut v) => {
                        rewrite_ids(&mut v, prefix);
                        v.to_string()
                    }
                    // A plain-string key is the page id itself.
                    Err(_) if field == "key" => format!("{prefix}{text}"),
                    Err(_) => continue,
                };
                record[field] = Value::String(STANDARD.encode(rewritten));
            }
        }
    }
    KafkaBatch::from_slice(&serde_json::to_vec(&doc).unwrap()).expect("fixture decodes")
}

fn prefixed(v: &Value, prefix: &str) -> Option<Value> {
    match v {
        // A negative numeric id stays as it is: the function must reject it.
        Value::String(s) if s.parse::<i64>().is_ok_and(|i| i < 0) => None,
        Value::String(s) => Some(Value::String(format!("{prefix}{s}"))),
        Value::Number(n) if n.as_u64().is_some() => Some(Value::String(format!("{prefix}{n}"))),
        _ => None,
    }
}

fn rewrite_ids(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "page_id" {
                    if let Some(new) = prefixed(child, prefix) {
                        *child = new;
                        continue;
                    }
                    // Cassandra cell `{"value": .., "deletion_ts": .., "set": true}`.
                    if let Some(inner) = child.get_mut("value")
                        && let Some(new) = prefixed(inner, prefix)
                    {
                        *inner = new;
                        continue;
                    }
                }
                rewrite_ids(child, prefix);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rewrite_ids(c, prefix)),
        _ => {}
    }
}

/// A stored chunk row.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Row {
    /// Page id.
    pub page_id: String,
    /// Chunk index.
    pub chunk_index: i64,
    /// Hash.
    pub content_hash: String,
    /// Model.
    pub model: String,
    /// Chunk text.
    pub chunk_text: Option<String>,
    /// pgvector text form or JSON array, as the API returns it.
    pub embedding: Value,
}

impl Row {
    /// The vector as numbers.
    pub fn vector(&self) -> Vec<f32> {
        match &self.embedding {
            Value::String(s) => serde_json::from_str(s).expect("vector literal"),
            other => serde_json::from_value(other.clone()).expect("vector array"),
        }
    }
}

/// Rows of `page_ids`, ordered by page and chunk.
pub async fn rows(client: &PostgrestClient, page_ids: &[String]) -> Vec<Row> {
    let deadline = Deadline::after(Duration::from_secs(10));
    let mut rows: Vec<Row> = client
        .select(
            &deadline,
            "page_vectors",
            "page_id,chunk_index,content_hash,model,chunk_text,embedding",
            &[Filter::in_list("page_id", page_ids)],
        )
        .await
        .expect("select page_vectors");
    rows.sort_by(|a, b| {
        (a.page_id.as_str(), a.chunk_index).cmp(&(b.page_id.as_str(), b.chunk_index))
    });
    rows
}

/// Dead letters written under `function_name`: `(kafka_offset, error_code)` sorted.
pub async fn dead_letters(client: &PostgrestClient, function_name: &str) -> Vec<(i64, String)> {
    let deadline = Deadline::after(Duration::from_secs(10));
    let rows: Vec<Value> = client
        .select(
            &deadline,
            "dead_letters",
            "kafka_offset,error_code",
            &[Filter::eq("function_name", function_name)],
        )
        .await
        .expect("select dead_letters");
    let mut out: Vec<(i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["kafka_offset"].as_i64().unwrap_or(-1),
                r["error_code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}
