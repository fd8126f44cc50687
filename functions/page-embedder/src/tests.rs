//! Tests of the page [`Handler`]: events through the Lambda entry point with an in-memory
//! store and stub embedder, checking fates, dead letters, metrics and what the store holds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use event_decoding::KafkaBatch;
use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink};
use lambda_kit::fate::Fate;
use lambda_kit::metrics::{Metrics, check_emf};
use lambda_kit::postgrest::PostgrestError;
use lambda_kit::retry::{Deadline, DeadlineSettings, RetryPolicy};
use lambda_runtime::{Context, LambdaEvent};

use crate::chunk::ChunkLimits;
use crate::embed::{EmbedError, EmbedSettings, Embedder};
use crate::handler::Handler;
use crate::pipeline::Pipeline;
use crate::pipeline::Settings;
use crate::rag::NoRag;
use crate::store::{MemoryStore, VectorStore};

struct Stub(AtomicUsize);

impl Embedder for Stub {
    fn model(&self) -> &str {
        "stub"
    }
    fn dimensions(&self) -> usize {
        4
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(texts.iter().map(|t| vec![t.len() as f32; 4]).collect())
    }
}

#[derive(Default)]
struct Letters(Mutex<Vec<String>>);

impl DeadLetterSink for Letters {
    async fn write(&self, _: &Deadline, letters: &[DeadLetter]) -> Vec<Fate> {
        let mut seen = self.0.lock().unwrap();
        seen.extend(letters.iter().map(|l| l.error_code.clone()));
        letters.iter().map(|_| Fate::Stored).collect()
    }
}

fn handler() -> Handler<Stub, MemoryStore, NoRag, Letters> {
    handler_with(MemoryStore::new())
}

fn handler_with<S: VectorStore>(store: S) -> Handler<Stub, S, NoRag, Letters> {
    Handler::new(
        Pipeline {
            embedder: Stub(AtomicUsize::new(0)),
            store,
            rag: NoRag,
            states: crate::page_state::PageStates::memory(),
            settings: Settings {
                page_id_field: "page_id".into(),
                body_field: "body".into(),
                doc_prefix: String::new(),
                limits: ChunkLimits::new(2000, 100),
                embed: EmbedSettings {
                    batch_size: 16,
                    concurrency: 2,
                    retry: RetryPolicy::default(),
                },
                writes: lambda_kit::bulk::WriteLimits::default(),
                rag_enabled: false,
                function_name: "page-embedder".into(),
                unavailable_value: crate::pipeline::DEBEZIUM_UNAVAILABLE_VALUE.into(),
                truncate_deletes_all: false,
                source_table: None,
            },
            values: Default::default(),
        },
        Letters::default(),
        DeadlineSettings::default(),
    )
}

fn fixture(name: &str) -> KafkaBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KafkaBatch::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The events/ fixture `name` through the Lambda entry point.
async fn handle_fixture<S: VectorStore>(
    h: &Handler<Stub, S, NoRag, Letters>,
    name: &str,
) -> event_decoding::KafkaBatchResponse {
    h.handle(LambdaEvent::new(fixture(name), Context::default()))
        .await
        .unwrap()
}

#[tokio::test]
async fn emf_line_counts_the_bad_fixture_and_the_unchanged_redelivery() {
    let (metrics, lines) = Metrics::capture("KafkaLambdas", "page-embedder");
    let h = handler().with_metrics(metrics);
    let batch = fixture("pages-bad.json");
    let event = || LambdaEvent::new(batch.clone(), Context::default());
    h.handle(event()).await.unwrap();
    let calls = h.function().embedder.0.load(Ordering::Relaxed) as u64;

    let docs = lines.documents();
    assert_eq!(docs.len(), 1, "one EMF line per invocation");
    let doc = &docs[0];
    check_emf(doc).unwrap();
    assert_eq!(doc["FunctionName"], "page-embedder");
    assert_eq!(doc["RecordsReceived"], 14);
    assert_eq!(doc["RecordsStored"], 2, "offsets 0 and 13");
    assert_eq!(doc["RecordsDeadLettered"], 12);
    assert_eq!(doc["RecordsFailed"], 0);
    assert_eq!(h.dead_letters().0.lock().unwrap().len(), 12);
    assert!(calls >= 1);
    assert_eq!(
        doc["EmbeddingCalls"], calls,
        "counts the provider's requests"
    );
    let embedded = doc["ChunksEmbedded"].as_u64().unwrap();
    assert!(embedded >= 2, "{embedded}");
    assert_eq!(doc["ChunksUnchanged"], 0);
    assert!(doc["BatchAge"].as_u64().unwrap() > 0);

    // Redelivery: every chunk is unchanged, nothing is embedded.
    h.handle(event()).await.unwrap();
    let docs = lines.documents();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1]["EmbeddingCalls"], 0);
    assert_eq!(docs[1]["ChunksEmbedded"], 0);
    assert_eq!(docs[1]["ChunksUnchanged"], embedded);
    assert_eq!(docs[1]["RecordsStored"], 2);
}

/// A store that refuses as PostgREST does (its 400 with a PostgreSQL code): every upsert, when
/// `upserts` holds the refusal (the vector table is `vector(768)` but the function embeds with
/// another dimension: pgvector's 400), an upsert of a page in `refuse`, and every read of
/// stored hashes that names `read_of` (one id breaks the read of every page). Anything else
/// goes to the memory store. Its writes record the pages in flight (`lambda_kit::in_flight`).
#[derive(Default)]
struct Refusing {
    store: MemoryStore,
    upserts: Option<(&'static str, &'static str)>,
    read_of: Option<&'static str>,
    refuse: Vec<&'static str>,
    pages: lambda_kit::in_flight::InFlight,
}

impl Refusing {
    fn upserts(code: &'static str, message: &'static str) -> Self {
        Self {
            upserts: Some((code, message)),
            ..Self::default()
        }
    }

    fn read_of(id: &'static str) -> Self {
        Self {
            read_of: Some(id),
            ..Self::default()
        }
    }
}

/// PostgREST's 400 for a value PostgreSQL refuses.
fn bad_request(code: &str, message: &str) -> crate::store::StoreError {
    crate::store::StoreError::from_error(&PostgrestError::Api {
        status: 400,
        code: Some(code.into()),
        message: message.into(),
        details: None,
        hint: None,
        class: lambda_kit::error::ErrorClass::Environment,
    })
}

impl VectorStore for Refusing {
    async fn stored_hashes(
        &self,
        d: &Deadline,
        ids: &[String],
    ) -> Result<crate::store::StoredHashes, crate::store::StoreError> {
        if ids.iter().any(|id| Some(id.as_str()) == self.read_of) {
            return Err(bad_request("22P05", "unsupported Unicode escape sequence"));
        }
        self.store.stored_hashes(d, ids).await
    }
    async fn upsert(
        &self,
        d: &Deadline,
        rows: &[crate::store::VectorRow],
    ) -> Result<(), crate::store::StoreError> {
        let mut ids: Vec<String> = rows.iter().map(|r| r.page_id.clone()).collect();
        ids.dedup();
        let refused = ids.iter().any(|id| self.refuse.contains(&id.as_str()));
        self.pages
            .around(ids, async {
                match self.upserts {
                    Some((code, message)) => Err(bad_request(code, message)),
                    None if refused => Err(bad_request("22P02", "invalid input syntax")),
                    None => self.store.upsert(d, rows).await,
                }
            })
            .await
    }
    async fn delete_pages(
        &self,
        d: &Deadline,
        ids: &[String],
    ) -> Result<(), crate::store::StoreError> {
        self.pages
            .around(ids.to_vec(), self.store.delete_pages(d, ids))
            .await
    }
    async fn delete_chunks_from(
        &self,
        d: &Deadline,
        id: &str,
        from: usize,
    ) -> Result<(), crate::store::StoreError> {
        self.pages
            .around(
                vec![id.to_owned()],
                self.store.delete_chunks_from(d, id, from),
            )
            .await
    }
}

#[tokio::test]
async fn wrong_vector_dimension_fails_records_and_dead_letters_none_of_them() {
    let (metrics, lines) = Metrics::capture("KafkaLambdas", "page-embedder");
    let h = handler_with(Refusing::upserts("22000", "expected 768 dimensions, not 4"))
        .with_metrics(metrics);
    let response = handle_fixture(&h, "pages-bad.json").await;
    // The two valid pages are reported for redelivery, not dead-lettered.
    let mut failed: Vec<i64> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.offset)
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, vec![0, 13]);
    let letters = h.dead_letters().0.lock().unwrap().clone();
    assert_eq!(letters.len(), 12, "only the bad records: {letters:?}");
    assert!(!letters.iter().any(|c| c.starts_with("db_")), "{letters:?}");
    let doc = &lines.documents()[0];
    assert_eq!(doc["RecordsFailed"], 2);
    assert_eq!(doc["RecordsDeadLettered"], 12);
    assert_eq!(doc["RecordsStored"], 0);
}

fn page_record(offset: i64, id: &str) -> event_decoding::KafkaRecord {
    event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0).with_value(
        serde_json::json!({ "page_id": id, "body": format!("text of page {offset}") }).to_string(),
    )
}

#[tokio::test]
async fn poison_page_ids_are_dead_lettered_at_decode_and_the_other_pages_stored() {
    let h = handler();
    let long = "x".repeat(10_000);
    let ids = ["p0", "p\u{0}1", "p2", long.as_str(), "p4"];
    let batch = one_batch(
        ids.iter()
            .enumerate()
            .map(|(i, id)| page_record(i as i64, id))
            .collect(),
    );
    let done = h
        .process(&batch, &Deadline::after(std::time::Duration::from_secs(5)))
        .await;
    assert_eq!(
        (
            done.counts.stored,
            done.counts.dead_lettered,
            done.counts.failed
        ),
        (3, 2, 0)
    );
    assert_eq!(
        h.dead_letters().0.lock().unwrap().as_slice(),
        ["invalid_page_id", "invalid_page_id"]
    );
    for id in ["p0", "p2", "p4"] {
        assert_eq!(h.function().store.page(id).len(), 1, "{id}");
    }
}

#[tokio::test]
async fn one_id_refusing_the_batch_read_is_isolated_not_an_environment_fault() {
    let h = handler_with(Refusing::read_of("p3"));
    let batch = one_batch((0..5).map(|i| page_record(i, &format!("p{i}"))).collect());
    let done = h
        .process(&batch, &Deadline::after(std::time::Duration::from_secs(5)))
        .await;
    assert_eq!(
        (
            done.counts.stored,
            done.counts.dead_lettered,
            done.counts.failed
        ),
        (4, 1, 0)
    );
    assert_eq!(
        h.dead_letters().0.lock().unwrap().as_slice(),
        ["db_bad_request"]
    );
    assert!(h.function().store.store.page("p3").is_empty());
    assert_eq!(h.function().store.store.page("p4").len(), 1);
}

/// A Debezium PostgreSQL change of page `p1` at `lsn`, delivered at `offset`.
fn change(offset: i64, lsn: u64, op: &str, body: &str) -> event_decoding::KafkaRecord {
    let row = serde_json::json!({ "page_id": "p1", "body": body });
    let (before, after) = if op == "d" {
        (row, serde_json::Value::Null)
    } else {
        (serde_json::Value::Null, row)
    };
    let value = serde_json::json!({
        "before": before, "after": after, "op": op,
        "source": { "connector": "postgresql", "lsn": lsn },
    });
    event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0).with_value(value.to_string())
}

fn one_batch(records: Vec<event_decoding::KafkaRecord>) -> KafkaBatch {
    KafkaBatch::builder(event_decoding::EventSource::Msk)
        .records(records)
        .build()
}

fn texts(h: &Handler<Stub, MemoryStore, NoRag, Letters>) -> Vec<String> {
    h.function()
        .store
        .page("p1")
        .iter()
        .map(|r| r.chunk_text.clone())
        .collect()
}

#[tokio::test]
async fn an_older_change_replayed_after_a_newer_one_or_a_delete_never_rolls_the_page_back() {
    let h = handler();
    let deadline = Deadline::after(std::time::Duration::from_secs(5));
    let (h, deadline) = (&h, &deadline);
    let run = |b: KafkaBatch| async move { h.process(&b, deadline).await };

    assert_eq!(
        run(one_batch(vec![change(0, 300, "u", "newer")]))
            .await
            .counts
            .stored,
        1
    );
    // The create at LSN 200, re-driven later (a new offset), is older than what is stored.
    let replay = run(one_batch(vec![change(1, 200, "c", "older")])).await;
    assert_eq!(
        (replay.counts.skipped, replay.stats.stale_changes_ignored),
        (1, 1)
    );
    assert_eq!(texts(h), ["newer"]);

    // Within one batch too: the replayed LSN 250 arrives after LSN 400 and does not win.
    let b = run(one_batch(vec![
        change(2, 400, "u", "newest"),
        change(3, 250, "u", "stale"),
    ]))
    .await;
    assert_eq!(b.counts.stored, 2);
    assert_eq!(texts(h), ["newest"]);

    // A delete leaves a tombstone: the older update replayed after it does not resurrect the page.
    assert_eq!(
        run(one_batch(vec![change(4, 500, "d", "")]))
            .await
            .counts
            .stored,
        1
    );
    assert!(texts(h).is_empty());
    let after_delete = run(one_batch(vec![change(5, 400, "u", "newest")])).await;
    assert_eq!(after_delete.counts.skipped, 1);
    assert!(texts(h).is_empty(), "still deleted");

    // A newer create brings it back; plain rows (no version) keep last-write-wins.
    assert_eq!(
        run(one_batch(vec![change(6, 600, "c", "reborn")]))
            .await
            .counts
            .stored,
        1
    );
    assert_eq!(texts(h), ["reborn"]);
    let plain = event_decoding::KafkaRecord::new("cdc.pages", 0, 7, 0)
        .with_value(r#"{"page_id": "p1", "body": "plain"}"#);
    assert_eq!(run(one_batch(vec![plain])).await.counts.stored, 1);
    assert_eq!(texts(h), ["plain"]);
}

#[tokio::test]
async fn truncate_is_ignored_by_default_and_deletes_every_vector_when_asked() {
    let page = |offset: i64, id: &str| {
        event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0).with_value(
            serde_json::json!({ "page_id": id, "body": format!("text of {id}") }).to_string(),
        )
    };
    let truncate_of = |offset: i64, table: &str| {
        event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0).with_value(
            serde_json::json!({"op": "t", "before": null, "after": null, "source": {"connector": "postgresql", "lsn": 7, "db": "wiki", "schema": "public", "table": table}}).to_string(),
        )
    };
    let truncate = |offset: i64| truncate_of(offset, "pages");
    let deadline = Deadline::after(std::time::Duration::from_secs(5));

    let h = handler();
    let kept = h
        .process(&one_batch(vec![page(0, "a"), truncate(1)]), &deadline)
        .await;
    assert_eq!((kept.counts.stored, kept.counts.skipped), (1, 1));
    assert_eq!(kept.stats.truncates_ignored, 1);
    assert_eq!(
        h.function().store.page("a").len(),
        1,
        "ignored: vectors kept"
    );

    let mut h = handler();
    h.function_mut().settings.truncate_deletes_all = true;
    h.function_mut().settings.source_table = Some("public.pages".into());
    h.process(&one_batch(vec![page(0, "old")]), &deadline).await;
    // A truncate of another table on the same topic (or naming none) deletes nothing.
    let other = h
        .process(
            &one_batch(vec![
                truncate_of(1, "drafts"),
                event_decoding::KafkaRecord::new("cdc.pages", 0, 2, 0)
                    .with_value(r#"{"op": "t", "before": null, "after": null, "source": {"connector": "postgresql", "lsn": 8}}"#),
            ]),
            &deadline,
        )
        .await;
    assert_eq!(
        (other.stats.truncates_ignored, other.stats.truncates_applied),
        (2, 0)
    );
    assert_eq!(h.function().store.page("old").len(), 1, "kept");
    let b = one_batch(vec![page(1, "a"), truncate(2), page(3, "b")]);
    let done = h.process(&b, &deadline).await;
    assert_eq!(done.counts.stored, 3, "{:?}", done.counts);
    assert_eq!(done.stats.truncates_applied, 1);
    let store = &h.function().store;
    assert!(
        store.page("old").is_empty() && store.page("a").is_empty(),
        "wiped, and a came before the truncate"
    );
    assert_eq!(store.page("b").len(), 1, "b came after it");
}

#[tokio::test]
async fn one_refused_delete_does_not_block_the_other_deletes() {
    let h = handler();
    let deadline = Deadline::after(std::time::Duration::from_secs(5));
    let page = |offset: i64, id: &str| {
        event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0)
            .with_value(serde_json::json!({ "page_id": id, "body": "text" }).to_string())
    };
    let delete = |offset: i64, id: &str| {
        event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0)
            .with_value(serde_json::json!({ "page_id": id, "op": "d" }).to_string())
    };
    h.process(
        &one_batch((0..4).map(|i| page(i, &format!("p{i}"))).collect()),
        &deadline,
    )
    .await;
    h.function().store.refuse_delete_of("p2");
    let done = h
        .process(
            &one_batch((0..4).map(|i| delete(10 + i, &format!("p{i}"))).collect()),
            &deadline,
        )
        .await;
    assert_eq!(
        (done.counts.stored, done.counts.dead_lettered),
        (3, 1),
        "{:?}",
        done.counts
    );
    assert_eq!(done.stats.pages_deleted, 3);
    let store = &h.function().store;
    for id in ["p0", "p1", "p3"] {
        assert!(store.page(id).is_empty(), "{id} deleted");
    }
    assert_eq!(store.page("p2").len(), 1, "the refused page stays");
    assert_eq!(h.dead_letters().0.lock().unwrap().as_slice(), ["refused"]);
}

#[tokio::test]
async fn emf_line_counts_placeholders_truncates_and_stale_changes() {
    let (metrics, lines) = Metrics::capture("KafkaLambdas", "page-embedder");
    let h = handler().with_metrics(metrics);
    let truncate = event_decoding::KafkaRecord::new("cdc.pages", 0, 3, 0).with_value(
        r#"{"op": "t", "before": null, "after": null, "source": {"connector": "postgresql", "lsn": 9}}"#,
    );
    let deadline = Deadline::after(std::time::Duration::from_secs(5));
    h.process(&one_batch(vec![change(0, 300, "u", "newer")]), &deadline)
        .await;
    h.process(
        &one_batch(vec![
            change(1, 200, "u", "older"),
            change(2, 400, "u", crate::pipeline::DEBEZIUM_UNAVAILABLE_VALUE),
            truncate,
        ]),
        &deadline,
    )
    .await;
    let doc = &lines.documents()[1];
    check_emf(doc).unwrap();
    assert_eq!(doc["StaleChangesIgnored"], 1);
    assert_eq!(doc["BodiesUnavailable"], 1);
    assert_eq!(doc["TruncatesIgnored"], 1);
    assert_eq!(doc["TruncatesApplied"], 0);
    assert_eq!(doc["RagRefreshFailed"], 0);
    assert_eq!(doc["RecordsSkipped"], 3);
}

#[tokio::test]
async fn every_delete_refused_alike_is_reported_for_redelivery_not_dead_lettered() {
    let h = handler();
    let deadline = Deadline::after(std::time::Duration::from_secs(5));
    let delete = |offset: i64, id: &str| {
        event_decoding::KafkaRecord::new("cdc.pages", 0, offset, 0)
            .with_value(serde_json::json!({ "page_id": id, "op": "d" }).to_string())
    };
    h.function().store.refuse_delete_of("p0");
    h.function().store.refuse_delete_of("p1");
    let done = h
        .process(
            &one_batch(vec![delete(0, "p0"), delete(1, "p1")]),
            &deadline,
        )
        .await;
    assert_eq!(done.counts.failed, 2, "{:?}", done.counts);
    assert!(h.dead_letters().0.lock().unwrap().is_empty());
}

/// One row per request, three requests in flight.
fn one_row_requests(h: &mut Handler<Stub, Refusing, NoRag, Letters>) {
    h.function_mut().settings.writes = lambda_kit::bulk::WriteLimits {
        max_rows: 1,
        concurrency: 3,
        ..Default::default()
    };
}

#[tokio::test]
async fn vector_upserts_and_deletes_overlap_up_to_the_limit_never_two_of_one_page() {
    let mut h = handler_with(Refusing {
        refuse: vec!["p4"],
        ..Refusing::default()
    });
    one_row_requests(&mut h);
    let deadline = Deadline::after(std::time::Duration::from_secs(5));
    let pages: Vec<_> = (0..10).map(|i| page_record(i, &format!("p{i}"))).collect();
    let done = h.process(&one_batch(pages), &deadline).await;
    assert_eq!(
        (done.counts.stored, done.counts.dead_lettered),
        (9, 1),
        "the refused page isolated: {:?}",
        done.counts
    );
    let store = &h.function().store;
    assert_eq!(store.pages.most(), 3, "three upserts in flight");
    assert!(store.store.page("p4").is_empty());
    assert_eq!(store.store.page("p9").len(), 1);

    store.pages.reset_most();
    let deletes: Vec<_> = (0..10)
        .map(|i| {
            event_decoding::KafkaRecord::new("cdc.pages", 0, 20 + i, 0).with_value(
                serde_json::json!({ "page_id": format!("p{i}"), "op": "d" }).to_string(),
            )
        })
        .collect();
    let done = h.process(&one_batch(deletes), &deadline).await;
    assert_eq!(done.counts.stored, 10, "{:?}", done.counts);
    assert_eq!(store.pages.most(), 3, "three deletes in flight");
    assert!(store.store.page("p9").is_empty());
    assert!(
        store.pages.clashes().is_empty(),
        "{:?}",
        store.pages.clashes()
    );
}

#[tokio::test]
async fn a_store_refusing_every_upsert_gets_each_page_embedded_once() {
    let once = handler();
    handle_fixture(&once, "pages-bad.json").await;
    let embedded_once = once.function().embedder.0.load(Ordering::Relaxed);

    // A refusal PostgREST blames on the rows (a value PostgreSQL cannot take), for every row.
    let h = handler_with(Refusing::upserts(
        "22P02",
        "invalid input syntax for type vector",
    ));
    let response = handle_fixture(&h, "pages-bad.json").await;
    assert_eq!(
        response.batch_item_failures.len(),
        2,
        "both pages refused alike: the target's fault, redelivered"
    );
    assert_eq!(
        h.function().embedder.0.load(Ordering::Relaxed),
        embedded_once,
        "refused upserts are isolated where they are made, not by embedding the batch again"
    );
}
