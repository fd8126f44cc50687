//! The Qdrant and Stargate vector stores against local servers that follow each documented API
//! (`servers::qdrant`, `servers::stargate`): the behaviour suite shared with the Supabase store (upsert,
//! overwrite, shrink removes the tail, delete twice harmless, unchanged content skipped on
//! redelivery through the real pipeline), plus each API's specifics (ids, wait, error bodies,
//! path encoding).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use event_decoding::KafkaBatch;
use integration_tests::servers::qdrant::QdrantServer;
use integration_tests::servers::stargate::StargateServer;
use lambda_kit::config::Env;
use lambda_kit::dead_letter::MemoryDeadLetters;
use lambda_kit::postgrest::Secret;
use lambda_kit::retry::{Deadline, DeadlineSettings, RetryPolicy};
use lambda_kit::runner::Runner;
use lambda_kit::secrets::{Credential, RefreshPolicy};
use page_embedder::chunk::ChunkLimits;
use page_embedder::embed::{EmbedError, EmbedSettings, Embedder};
use page_embedder::pipeline::{Pipeline, Settings};
use page_embedder::rag::NoRag;
use page_embedder::store::{
    QdrantConfig, QdrantStore, StargateConfig, StargateStore, StoredHashes, VectorRow, VectorStore,
    point_id,
};

const DIM: usize = 4;

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(20))
}

fn row(page: &str, i: usize, hash: &str) -> VectorRow {
    VectorRow {
        page_id: page.to_owned(),
        chunk_index: i,
        embedding: vec![i as f32 + 0.5, -0.25, 0.125, 1.0],
        content_hash: hash.to_owned(),
        model: "test-model".to_owned(),
        chunk_text: format!("chunk {i} of {page}"),
    }
}

fn hashes(h: &StoredHashes, page: &str) -> Vec<(usize, String)> {
    let mut v: Vec<(usize, String)> = h
        .get(page)
        .map(|c| {
            c.iter()
                .map(|c| (c.chunk_index, c.content_hash.clone()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

/// The behaviour every store shares.
async fn suite<S: VectorStore>(store: &S) {
    let d = deadline();
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Nothing stored yet.
    assert!(
        store
            .stored_hashes(&d, &ids(&["p1"]))
            .await
            .unwrap()
            .is_empty()
    );

    // Upsert two pages; read the hashes back.
    let rows: Vec<VectorRow> = (0..3)
        .map(|i| row("p1", i, &format!("h{i}")))
        .chain((0..2).map(|i| row("p/2?x", i, "g")))
        .collect();
    store.upsert(&d, &rows).await.unwrap();
    let h = store
        .stored_hashes(&d, &ids(&["p1", "p/2?x", "absent"]))
        .await
        .unwrap();
    assert_eq!(
        hashes(&h, "p1"),
        vec![(0, "h0".into()), (1, "h1".into()), (2, "h2".into())]
    );
    assert_eq!(hashes(&h, "p/2?x"), vec![(0, "g".into()), (1, "g".into())]);
    assert!(!h.contains_key("absent"));

    // Upserting again overwrites (no duplicates).
    store.upsert(&d, &[row("p1", 1, "h1-new")]).await.unwrap();
    let h = store.stored_hashes(&d, &ids(&["p1"])).await.unwrap();
    assert_eq!(
        hashes(&h, "p1"),
        vec![(0, "h0".into()), (1, "h1-new".into()), (2, "h2".into())]
    );

    // A page that shrank to one chunk loses its tail, other pages are untouched.
    store.delete_chunks_from(&d, "p1", 1).await.unwrap();
    let h = store
        .stored_hashes(&d, &ids(&["p1", "p/2?x"]))
        .await
        .unwrap();
    assert_eq!(hashes(&h, "p1"), vec![(0, "h0".into())]);
    assert_eq!(hashes(&h, "p/2?x").len(), 2);
    // Trimming past the end is harmless.
    store.delete_chunks_from(&d, "p1", 5).await.unwrap();

    // Deleting twice is harmless; deleting an unknown page too.
    for _ in 0..2 {
        store
            .delete_pages(&d, &ids(&["p/2?x", "never-stored"]))
            .await
            .unwrap();
    }
    let h = store
        .stored_hashes(&d, &ids(&["p1", "p/2?x"]))
        .await
        .unwrap();
    assert!(!h.contains_key("p/2?x"));
    assert_eq!(hashes(&h, "p1").len(), 1);

    // Empty calls are no-ops.
    store.upsert(&d, &[]).await.unwrap();
    store.delete_pages(&d, &[]).await.unwrap();
}

/// An embedder that counts the texts it embeds.
#[derive(Debug, Default)]
struct Counting {
    texts: AtomicUsize,
}

impl Embedder for Counting {
    fn model(&self) -> &str {
        "counting"
    }
    fn dimensions(&self) -> usize {
        DIM
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        Ok(texts
            .iter()
            .map(|t| vec![t.len() as f32, 1.0, 0.0, 0.5])
            .collect())
    }
}

/// Runs a `cdc.pages` batch through the real pipeline twice: the redelivery embeds nothing.
async fn redelivery_skips_unchanged<S: VectorStore>(store: S) -> S {
    let pipeline = Pipeline {
        embedder: Counting::default(),
        store,
        rag: NoRag,
        states: page_embedder::page_state::PageStates::memory(),
        settings: Settings {
            page_id_field: "page_id".into(),
            body_field: "body".into(),
            doc_prefix: String::new(),
            limits: ChunkLimits::new(400, 50),
            embed: EmbedSettings {
                batch_size: 16,
                concurrency: 2,
                retry: fast_retry(),
            },
            writes: lambda_kit::bulk::WriteLimits::default(),
            rag_enabled: false,
            function_name: "page-embedder".into(),
            unavailable_value: page_embedder::pipeline::DEBEZIUM_UNAVAILABLE_VALUE.into(),
            truncate_deletes_all: false,
            source_table: None,
        },
        values: Default::default(),
    };
    let runner = Runner::new(
        pipeline,
        MemoryDeadLetters::default(),
        DeadlineSettings::default(),
    );
    let batch = KafkaBatch::from_slice(include_bytes!("../../../events/pages-plain.json")).unwrap();
    let first = runner.process(&batch, &deadline()).await;
    let embedded = runner.function().embedder.texts.load(Ordering::SeqCst);
    assert!(embedded > 0, "first delivery embeds: {:?}", first.stats);
    let second = runner.process(&batch, &deadline()).await;
    assert_eq!(
        runner.function().embedder.texts.load(Ordering::SeqCst),
        embedded,
        "redelivery must not embed again: {:?}",
        second.stats
    );
    assert_eq!(second.stats.chunks_embedded, 0);
    assert_eq!(first.counts, second.counts);
    let Pipeline { store, .. } = runner.into_function();
    store
}

fn qdrant_store(url: &str, key: Option<&str>) -> QdrantStore {
    let mut cfg = QdrantConfig::from_env(&Env::from_pairs([
        ("QDRANT_URL", url),
        ("QDRANT_COLLECTION", "pages"),
    ]))
    .unwrap();
    cfg.retry = fast_retry();
    QdrantStore::new(
        &cfg,
        key.map(|k| Secret::new(k).into()),
        reqwest::Client::new(),
    )
    .unwrap()
}

fn stargate_store(url: &str, token: Option<&str>) -> StargateStore {
    let mut cfg = StargateConfig::from_env(&Env::from_pairs([("STARGATE_URL", url)])).unwrap();
    cfg.retry = fast_retry();
    StargateStore::new(
        &cfg,
        token.map(|t| Secret::new(t).into()),
        reqwest::Client::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn qdrant_behaviour_suite() {
    let fake = QdrantServer::start("pages", DIM).await;
    fake.with_state(|s| s.api_key = Some("qk-secret".into()));
    let store = qdrant_store(&fake.url(), Some("qk-secret"));
    suite(&store).await;

    // Every write asked Qdrant to wait, so it was applied before the answer.
    let log = fake.log();
    let writes: Vec<_> = log.iter().filter(|l| !l.contains("/scroll")).collect();
    assert!(!writes.is_empty());
    assert!(
        writes.iter().all(|l| l.ends_with("?wait=true")),
        "{writes:?}"
    );

    // Ids are the UUIDv5 of (page, chunk) and the payload keeps the keys and hash.
    let points = fake.points("pages");
    let id = point_id("p1", 0).to_string();
    let p = points.get(&id).expect("point p1/0 under its UUIDv5");
    assert_eq!(p.payload["page_id"], "p1");
    assert_eq!(p.payload["chunk_index"], 0);
    assert_eq!(p.payload["content_hash"], "h0");
    assert_eq!(p.payload["model"], "test-model");
    assert_eq!(p.vector, vec![0.5, -0.25, 0.125, 1.0]);
}

#[tokio::test]
async fn qdrant_redelivery_skips_unchanged_content() {
    let fake = QdrantServer::start("pages", DIM).await;
    redelivery_skips_unchanged(qdrant_store(&fake.url(), None)).await;
    assert!(!fake.points("pages").is_empty());
}

#[tokio::test]
async fn qdrant_scroll_follows_pages() {
    let fake = QdrantServer::start("pages", DIM).await;
    let store = qdrant_store(&fake.url(), None);
    let rows: Vec<VectorRow> = (0..1200).map(|i| row("big", i, "h")).collect();
    store.upsert(&deadline(), &rows).await.unwrap();
    let h = store
        .stored_hashes(&deadline(), &["big".to_string()])
        .await
        .unwrap();
    assert_eq!(h["big"].len(), 1200);
    let scrolls = fake.log().iter().filter(|l| l.contains("/scroll")).count();
    assert!(scrolls >= 3, "{scrolls} scroll requests for 1200 points");
}

#[tokio::test]
async fn qdrant_errors_are_classified_with_the_server_message() {
    use lambda_kit::error::{Classify, ErrorClass};
    let fake = QdrantServer::start("pages", DIM).await;
    let d = deadline();

    // Wrong vector size: the collection was made for another size than the embedder's, which
    // every page would hit alike: the setup, not the rows (reported for redelivery, never
    // dead-lettered), with the message from status.error.
    let store = qdrant_store(&fake.url(), None);
    let mut bad = row("p", 0, "h");
    bad.embedding = vec![1.0; 3];
    let e = store.upsert(&d, &[bad]).await.unwrap_err();
    assert_eq!(e.error_code(), "store_setup");
    assert_eq!(e.class(), ErrorClass::Environment);
    assert!(
        e.message.contains("expected dim: 4, got 3"),
        "{}",
        e.message
    );

    // Missing collection: configuration, not input.
    let mut cfg = QdrantConfig::from_env(&Env::from_pairs([
        ("QDRANT_URL", fake.url().as_str()),
        ("QDRANT_COLLECTION", "nope"),
    ]))
    .unwrap();
    cfg.retry = fast_retry();
    let e = QdrantStore::new(&cfg, None, reqwest::Client::new())
        .unwrap()
        .upsert(&d, &[row("p", 0, "h")])
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), "store_not_found");
    assert_eq!(e.class(), ErrorClass::Environment);
    assert!(e.message.contains("doesn't exist"), "{}", e.message);

    // Wrong key: not input, and the key never appears in the error.
    fake.with_state(|s| s.api_key = Some("right".into()));
    let e = qdrant_store(&fake.url(), Some("wrong-key"))
        .delete_pages(&d, &["p".into()])
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), "store_unauthorized");
    assert_eq!(e.class(), ErrorClass::Environment);
    assert!(!e.to_string().contains("wrong-key"));

    // 503 twice, then success: retried within the deadline.
    fake.with_state(|s| {
        s.api_key = None;
        s.faults = vec![503, 503];
    });
    store.upsert(&d, &[row("p", 0, "h")]).await.unwrap();
    // 503 forever: transient, reported for redelivery.
    fake.with_state(|s| s.faults = vec![503; 10]);
    let e = store.upsert(&d, &[row("p", 0, "h")]).await.unwrap_err();
    assert!(e.class().is_transient());
    assert_eq!(e.error_code(), "store_server_error");
}

#[tokio::test]
async fn qdrant_without_wait_may_not_be_visible_yet() {
    // Documents why the store always sends wait=true: the server, like a real cluster, may apply
    // an unwaited write later.
    let fake = QdrantServer::start("pages", DIM).await;
    let client = reqwest::Client::new();
    let id = point_id("p", 0).to_string();
    let body = serde_json::json!({"points": [{"id": id, "vector": [0.0, 0.0, 0.0, 1.0], "payload": {"page_id": "p"}}]});
    let answer: serde_json::Value = client
        .put(format!("{}/collections/pages/points", fake.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["status"], "acknowledged");
    assert!(fake.points("pages").is_empty());
    let store = qdrant_store(&fake.url(), None);
    store
        .upsert(&deadline(), &[row("q", 0, "h")])
        .await
        .unwrap();
    assert_eq!(fake.points("pages").len(), 2);
}

#[tokio::test]
async fn stargate_behaviour_suite() {
    let fake = StargateServer::start("gibsey", "page_vectors", Some("tok")).await;
    let store = stargate_store(&fake.url(), Some("tok"));
    suite(&store).await;
    let row = fake.with_state(|s| s.rows.get(&("p1".to_string(), 0)).cloned().unwrap());
    assert_eq!(row["content_hash"], "h0");
    assert_eq!(row["model"], "test-model");
    assert_eq!(
        row["embedding"],
        serde_json::json!([0.5, -0.25, 0.125, 1.0])
    );
}

#[tokio::test]
async fn stargate_redelivery_skips_unchanged_content() {
    let fake = StargateServer::start("gibsey", "page_vectors", None).await;
    redelivery_skips_unchanged(stargate_store(&fake.url(), None)).await;
    assert!(fake.with_state(|s| !s.rows.is_empty()));
}

#[tokio::test]
async fn stargate_page_ids_cannot_change_the_request() {
    let fake = StargateServer::start("gibsey", "page_vectors", None).await;
    let store = stargate_store(&fake.url(), None);
    let d = deadline();
    let tricky = [
        "../x",
        "a/b?c",
        "a#b",
        "%2e%2e",
        "x/../../y",
        "sp ace&q=1",
        "日本",
    ];
    let rows: Vec<VectorRow> = tricky.iter().map(|p| row(p, 0, "h")).collect();
    store.upsert(&d, &rows).await.unwrap();
    for p in tricky {
        // Each id arrived as exactly one path segment, unchanged.
        assert_eq!(fake.chunks(p), vec![0], "{p}");
    }
    let log = fake.with_state(|s| s.log.clone());
    for (method, segments, query) in &log {
        assert_eq!(method, "PUT");
        assert_eq!(segments.len(), 6, "{segments:?}");
        assert_eq!(
            &segments[..4],
            ["v2", "keyspaces", "gibsey", "page_vectors"]
        );
        assert!(query.is_empty(), "{query}");
    }
    let ids: Vec<String> = tricky.iter().map(|s| s.to_string()).collect();
    let h = store.stored_hashes(&d, &ids).await.unwrap();
    assert_eq!(h.len(), tricky.len());
    store.delete_pages(&d, &ids).await.unwrap();
    assert!(fake.with_state(|s| s.rows.is_empty()));

    // Ids no URL can carry as a segment are refused as bad input, before any request.
    use lambda_kit::error::{Classify, ErrorClass};
    let before = fake.with_state(|s| s.log.len());
    for bad in ["..", ".", ""] {
        let e = store.upsert(&d, &[row(bad, 0, "h")]).await.unwrap_err();
        assert_eq!(e.error_code(), "store_invalid_key");
        assert_eq!(e.class(), ErrorClass::Data);
        let e = store
            .delete_pages(&d, &[bad.to_string()])
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "store_invalid_key");
    }
    assert_eq!(fake.with_state(|s| s.log.len()), before);
}

#[tokio::test]
async fn stargate_reads_follow_page_state_and_errors_are_classified() {
    use lambda_kit::error::Classify;
    let fake = StargateServer::start("gibsey", "page_vectors", Some("tok")).await;
    let store = stargate_store(&fake.url(), Some("tok"));
    let d = deadline();
    let rows: Vec<VectorRow> = (0..2500).map(|i| row("big", i, "h")).collect();
    store.upsert(&d, &rows).await.unwrap();
    let h = store.stored_hashes(&d, &["big".into()]).await.unwrap();
    assert_eq!(h["big"].len(), 2500);
    // The shrink reads every page of the partition, then deletes the tail.
    store.delete_chunks_from(&d, "big", 10).await.unwrap();
    assert_eq!(fake.chunks("big"), (0..10).collect::<Vec<i64>>());

    let e = stargate_store(&fake.url(), Some("bad-token"))
        .stored_hashes(&d, &["big".into()])
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), "store_unauthorized");
    assert!(e.message.contains("Invalid token") && !e.message.contains("bad-token"));

    let mut cfg = StargateConfig::from_env(&Env::from_pairs([
        ("STARGATE_URL", fake.url().as_str()),
        ("STARGATE_TABLE", "missing"),
    ]))
    .unwrap();
    cfg.retry = fast_retry();
    let e = StargateStore::new(
        &cfg,
        Some(Secret::new("tok").into()),
        reqwest::Client::new(),
    )
    .unwrap()
    .delete_pages(&d, &["x".into()])
    .await
    .unwrap_err();
    assert!(e.message.contains("not found"), "{}", e.message);

    fake.with_state(|s| s.faults = vec![502, 503]);
    store.delete_pages(&d, &["big".into()]).await.unwrap();
    assert!(fake.chunks("big").is_empty());
}

/// A key in a secret the test rotates: read at start, re-read only after a refusal.
async fn rotating_key(var: &str, value: &std::sync::Arc<std::sync::Mutex<String>>) -> Credential {
    let value = value.clone();
    let policy = RefreshPolicy {
        ttl: None,
        ..RefreshPolicy::default()
    };
    Credential::from_reader("rotated/key", var, "key", policy, move || {
        let now = value.lock().unwrap().clone();
        async move { Ok(Some(Secret::new(now))) }
    })
    .await
    .unwrap()
}

/// Keys rotated while the clients are warm. Each service now refuses the key the client holds as
/// it documents a bad key: Qdrant 401 "Invalid api-key", Stargate 401 "Role unauthorized for
/// operation: Invalid token", OpenAI 401 `invalid_api_key`. The secret holds the new key: the
/// same client re-reads it after the 401 and the call goes through, without a rebuild.
#[tokio::test]
async fn rotated_keys_reach_warm_qdrant_stargate_and_openai_clients() {
    use integration_tests::servers::embedding::{Api, EmbeddingServer};
    use page_embedder::embed::OpenAiEmbedder;
    use std::sync::{Arc, Mutex};

    let qdrant = QdrantServer::start("pages", DIM).await;
    let value = Arc::new(Mutex::new("qk-old".to_owned()));
    let mut cfg = QdrantConfig::from_env(&Env::from_pairs([
        ("QDRANT_URL", qdrant.url().as_str()),
        ("QDRANT_COLLECTION", "pages"),
    ]))
    .unwrap();
    cfg.retry = fast_retry();
    let key = rotating_key("QDRANT_API_KEY_SECRET_ID", &value).await;
    let store = QdrantStore::new(&cfg, Some(key), reqwest::Client::new()).unwrap();
    qdrant.with_state(|s| s.api_key = Some("qk-new".into()));
    *value.lock().unwrap() = "qk-new".into();
    store
        .upsert(&deadline(), &[row("p", 0, "h")])
        .await
        .unwrap();
    let stored = store
        .stored_hashes(&deadline(), &["p".into()])
        .await
        .unwrap();
    assert_eq!(hashes(&stored, "p"), [(0, "h".to_owned())]);

    let stargate = StargateServer::start("gibsey", "page_vectors", Some("tok-new")).await;
    let value = Arc::new(Mutex::new("tok-old".to_owned()));
    let mut cfg = StargateConfig::from_env(&Env::from_pairs([(
        "STARGATE_URL",
        stargate.url().as_str(),
    )]))
    .unwrap();
    cfg.retry = fast_retry();
    let token = rotating_key("STARGATE_AUTH_TOKEN_SECRET_ID", &value).await;
    let store = StargateStore::new(&cfg, Some(token), reqwest::Client::new()).unwrap();
    *value.lock().unwrap() = "tok-new".into();
    store
        .upsert(&deadline(), &[row("p", 0, "h")])
        .await
        .unwrap();

    let openai = EmbeddingServer::start(Api::OpenAi, "text-embedding-3-small", DIM).await;
    openai.with_state(|s| s.api_key = Some("sk-new".into()));
    let value = Arc::new(Mutex::new("sk-old".to_owned()));
    let key = rotating_key("OPENAI_API_KEY_SECRET_ID", &value).await;
    let embedder = OpenAiEmbedder::new(
        reqwest::Client::new(),
        &openai.base_url(),
        "text-embedding-3-small",
        DIM,
        false,
        Some(key),
    );
    *value.lock().unwrap() = "sk-new".into();
    let vectors = embedder.embed(&["hello".to_owned()]).await.unwrap();
    assert_eq!(vectors.len(), 1);
    let auth = openai.with_state(|s| s.auth.clone());
    assert_eq!(
        auth,
        [
            Some("Bearer sk-old".to_owned()),
            Some("Bearer sk-new".to_owned())
        ]
    );

    // A secret that still holds the refused key: the configuration error names the variable.
    let e = embedder_with_stale_key(&openai).await;
    assert!(
        matches!(e, EmbedError::Config { status: 401, .. })
            && e.to_string().contains("OPENAI_API_KEY_SECRET_ID"),
        "{e}"
    );
    assert!(!e.to_string().contains("sk-"), "{e}");
}

async fn embedder_with_stale_key(
    openai: &integration_tests::servers::embedding::EmbeddingServer,
) -> EmbedError {
    let value = std::sync::Arc::new(std::sync::Mutex::new("sk-revoked".to_owned()));
    let key = rotating_key("OPENAI_API_KEY_SECRET_ID", &value).await;
    let embedder = page_embedder::embed::OpenAiEmbedder::new(
        reqwest::Client::new(),
        &openai.base_url(),
        "text-embedding-3-small",
        DIM,
        false,
        Some(key),
    );
    embedder.embed(&["hello".to_owned()]).await.unwrap_err()
}
