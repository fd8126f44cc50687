//! Handler tests with in-memory stores, on the `events/` fixtures and built batches.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use lambda_kit::bulk::{WriteLimits, write_rows};
use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink};
use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::fate::Fate;
use lambda_kit::retry::Deadline;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

use lambda_kit::retry::DeadlineSettings;

use crate::gift::GiftLimits;
use crate::handler::{Gifts, Handler};
use crate::store::GiftStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum MemError {
    #[error("row rejected: invalid input syntax")]
    Row,
    #[error("database unavailable")]
    Down,
    #[error("unauthorized")]
    Auth,
}

impl Classify for MemError {
    fn class(&self) -> ErrorClass {
        match self {
            MemError::Row => ErrorClass::Data,
            MemError::Down => ErrorClass::TRANSIENT,
            MemError::Auth => ErrorClass::Environment,
        }
    }
    fn error_code(&self) -> &'static str {
        match self {
            MemError::Row => "db_bad_request",
            MemError::Down => "db_server_error",
            MemError::Auth => "db_unauthorized",
        }
    }
}

/// Gifts keyed by `event_id`, first write wins (like ignore-duplicates). Rows whose question
/// contains `REJECT` are refused as bad data, `FLAKY` as a transient fault; `mode` fails all.
#[derive(Debug, Default)]
struct MemStore {
    rows: Mutex<BTreeMap<String, Value>>,
    requests: AtomicUsize,
    mode: Option<MemError>,
}

impl MemStore {
    fn failing(e: MemError) -> Self {
        Self {
            mode: Some(e),
            ..Self::default()
        }
    }
    fn rows(&self) -> BTreeMap<String, Value> {
        self.rows.lock().unwrap().clone()
    }
}

impl GiftStore for MemStore {
    async fn write(&self, _deadline: &Deadline, rows: &[(String, Vec<u8>)]) -> Vec<Fate> {
        write_rows(
            rows,
            &WriteLimits {
                max_rows: 4,
                ..WriteLimits::default()
            },
            |body| {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let parsed: Vec<Value> = serde_json::from_slice(&body).unwrap();
                let result = if let Some(e) = self.mode {
                    Err(e)
                } else if parsed
                    .iter()
                    .any(|r| r["question"].as_str().unwrap().contains("REJECT"))
                {
                    Err(MemError::Row)
                } else if parsed
                    .iter()
                    .any(|r| r["question"].as_str().unwrap().contains("FLAKY"))
                {
                    Err(MemError::Down)
                } else {
                    let mut map = self.rows.lock().unwrap();
                    for r in parsed {
                        map.entry(r["event_id"].as_str().unwrap().to_owned())
                            .or_insert(r);
                    }
                    Ok(())
                };
                async move { result }
            },
        )
        .await
    }
}

#[derive(Debug, Default)]
struct MemDeadLetters {
    letters: Mutex<BTreeMap<(String, i32, i64), DeadLetter>>,
    down: bool,
}

impl DeadLetterSink for MemDeadLetters {
    async fn write(&self, _deadline: &Deadline, letters: &[DeadLetter]) -> Vec<Fate> {
        if self.down {
            return letters
                .iter()
                .map(|_| Fate::failed(&MemError::Down))
                .collect();
        }
        let mut map = self.letters.lock().unwrap();
        for l in letters {
            let id = &l.record;
            map.entry((id.topic.clone(), id.partition, id.offset))
                .or_insert_with(|| l.clone());
        }
        letters.iter().map(|_| Fate::Stored).collect()
    }
}

fn fixture(name: &str) -> KafkaBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KafkaBatch::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn handler(store: MemStore, dl: MemDeadLetters) -> Handler<MemStore, MemDeadLetters> {
    Handler::new(
        Gifts::new(store, GiftLimits::default()),
        dl,
        DeadlineSettings::default(),
    )
}

async fn run(
    h: &Handler<MemStore, MemDeadLetters>,
    batch: KafkaBatch,
) -> Result<Vec<(String, i64)>, String> {
    h.handle(LambdaEvent::new(batch, Context::default()))
        .await
        .map(|r| {
            r.batch_item_failures
                .iter()
                .map(|f| {
                    (
                        f.item_identifier.partition.clone(),
                        f.item_identifier.offset,
                    )
                })
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn gift(offset: i64, question: &str) -> KafkaRecord {
    let v = serde_json::json!({"page_id": offset, "question": question, "answer": "A", "ts": 1_732_350_000});
    KafkaRecord::new("gift_events", 0, offset, 1_732_350_000_000).with_value(v.to_string())
}

#[tokio::test]
async fn msk_and_self_managed_fixtures_store_every_gift_once() {
    for name in ["gift-msk.json", "gift-self-managed.json"] {
        let h = handler(MemStore::default(), MemDeadLetters::default());
        for _ in 0..3 {
            assert_eq!(run(&h, fixture(name)).await.unwrap(), vec![], "{name}");
        }
        let rows = h.function().store().rows();
        assert_eq!(rows.len(), 6, "{name}");
        assert!(rows.contains_key("evt-8"));
        let first = rows.values().find(|r| r["kafka_offset"] == 100).unwrap();
        assert_eq!(first["ts"], "2024-11-23T08:20:00.123Z");
        assert_eq!(first["question"], "TEST Q?");
        assert!(first["raw"].get("question").is_none(), "{first}");
        let no_ts = rows.values().find(|r| r["page_id"] == 3).unwrap();
        assert_eq!(no_ts["kafka_partition"], 0);
        assert!(h.dead_letters().letters.lock().unwrap().is_empty());
        // One request per chunk of 4, not one per record.
        assert_eq!(h.function().store().requests.load(Ordering::Relaxed), 3 * 2);
    }
}

#[tokio::test]
async fn bad_fixture_dead_letters_each_bad_record_with_its_code() {
    let h = handler(MemStore::default(), MemDeadLetters::default());
    assert_eq!(run(&h, fixture("gift-bad.json")).await.unwrap(), vec![]);
    let rows = h.function().store().rows();
    let offsets: Vec<i64> = rows
        .values()
        .map(|r| r["kafka_offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets.len(), 2);
    assert!(offsets.contains(&0) && offsets.contains(&15));
    let letters = h.dead_letters().letters.lock().unwrap().clone();
    let codes: BTreeMap<i64, String> = letters
        .iter()
        .map(|((_, _, o), l)| (*o, l.error_code.clone()))
        .collect();
    let expected = [
        (1, "invalid_base64"),
        (2, "invalid_utf8"),
        (3, "invalid_json"),
        (4, "missing_value"),
        (5, "missing_value"),
        (6, "invalid_type"),
        (7, "invalid_type"),
        (8, "page_id_out_of_range"),
        (9, "empty_field"),
        (10, "too_long"),
        (11, "missing_field"),
        (12, "invalid_timestamp"),
        (14, "not_an_object"),
    ];
    for (offset, code) in expected {
        assert_eq!(
            codes.get(&offset).map(String::as_str),
            Some(code),
            "offset {offset}"
        );
    }
    assert!(
        codes.contains_key(&13),
        "empty value is dead-lettered too: {codes:?}"
    );
    assert_eq!(codes.len(), 14);
    // Raw bytes kept: the truncated JSON as text, the invalid UTF-8 as base64.
    let l3 = &letters[&("gift_events".to_owned(), 0, 3)];
    assert_eq!(
        l3.raw_value.as_deref(),
        Some(r#"{"page_id": 12, "question": "unterminated"#)
    );
    let l2 = &letters[&("gift_events".to_owned(), 0, 2)];
    assert_eq!(format!("{:?}", l2.value_encoding), "Base64");
    assert!(l3.error_message.contains("line") || !l3.error_message.is_empty());
    let l6 = &letters[&("gift_events".to_owned(), 0, 6)];
    assert!(l6.error_message.contains("page_id"), "{}", l6.error_message);
}

#[tokio::test]
async fn duplicates_in_one_batch_are_written_once() {
    let h = handler(MemStore::default(), MemDeadLetters::default());
    let dup = |offset| {
        KafkaRecord::new("gift_events", 0, offset, 0)
            .with_value(r#"{"page_id":1,"question":"Q","answer":"A","ts":5}"#)
    };
    let batch = KafkaBatch::builder(EventSource::Msk)
        .record(dup(1))
        .record(dup(2))
        .build();
    assert_eq!(run(&h, batch).await.unwrap(), vec![]);
    let rows = h.function().store().rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows.values().next().unwrap()["kafka_offset"], 1);
}

#[tokio::test]
async fn database_rejection_isolates_the_row() {
    let h = handler(MemStore::default(), MemDeadLetters::default());
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records((0..10).map(|i| gift(i, if i == 6 { "REJECT me" } else { "fine" })))
        .build();
    assert_eq!(run(&h, batch).await.unwrap(), vec![]);
    assert_eq!(h.function().store().rows().len(), 9);
    let letters = h.dead_letters().letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    let l = letters.values().next().unwrap();
    assert_eq!(
        (l.record.offset, l.error_code.as_str()),
        (6, "db_bad_request")
    );
}

#[tokio::test]
async fn transient_failures_are_reported_and_all_failed_is_an_error() {
    let h = handler(MemStore::default(), MemDeadLetters::default());
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records((0..8).map(|i| gift(i, if i == 5 { "FLAKY" } else { "fine" })))
        .build();
    // Chunks of 4: the chunk holding offset 5 fails as a whole, the other is stored.
    let failed = run(&h, batch).await.unwrap();
    assert_eq!(
        failed,
        (4..8)
            .map(|o| ("gift_events-0".to_owned(), o))
            .collect::<Vec<_>>()
    );
    assert_eq!(h.function().store().rows().len(), 4);

    let h = handler(MemStore::failing(MemError::Down), MemDeadLetters::default());
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records((0..3).map(|i| gift(i, "q")))
        .build();
    let err = run(&h, batch).await.unwrap_err();
    assert!(err.contains("all 3 records failed"), "{err}");
}

#[tokio::test]
async fn bad_credentials_dead_letter_nothing() {
    let h = handler(MemStore::failing(MemError::Auth), MemDeadLetters::default());
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records((0..6).map(|i| gift(i, "q")))
        .record(KafkaRecord::new("gift_events", 0, 6, 0).with_value("not json"))
        .build();
    let failed = run(&h, batch).await.unwrap();
    assert_eq!(
        failed.len(),
        6,
        "valid records are failed, not dead-lettered"
    );
    assert_eq!(
        h.function().store().requests.load(Ordering::Relaxed),
        1,
        "no further requests after a credentials error"
    );
    let letters = h.dead_letters().letters.lock().unwrap();
    assert_eq!(letters.len(), 1, "only the invalid record is dead-lettered");
}

#[tokio::test]
async fn dead_letter_failure_reports_the_record() {
    let dl = MemDeadLetters {
        down: true,
        ..MemDeadLetters::default()
    };
    let h = handler(MemStore::default(), dl);
    let batch = KafkaBatch::builder(EventSource::Msk)
        .record(gift(0, "ok"))
        .record(KafkaRecord::new("gift_events", 0, 1, 0).with_value("{"))
        .build();
    assert_eq!(
        run(&h, batch).await.unwrap(),
        vec![("gift_events-0".to_owned(), 1)]
    );
}

#[tokio::test]
async fn empty_batch_is_fine() {
    let h = handler(MemStore::default(), MemDeadLetters::default());
    assert_eq!(
        run(&h, KafkaBatch::builder(EventSource::Msk).build())
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(h.function().store().requests.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn emf_line_counts_the_bad_fixture() {
    use lambda_kit::metrics::{Metrics, check_emf, now_ms};
    let (metrics, lines) = Metrics::capture("KafkaLambdas", "gift-persister");
    let h = handler(MemStore::default(), MemDeadLetters::default()).with_metrics(metrics);
    let batch = fixture("gift-bad.json");
    let oldest = batch.records().map(|r| r.timestamp).min().unwrap();
    let before = now_ms();
    run(&h, batch).await.unwrap();
    let after = now_ms();
    let docs = lines.documents();
    assert_eq!(docs.len(), 1, "one EMF line per invocation");
    let doc = &docs[0];
    let shape = check_emf(doc).unwrap();
    assert_eq!(shape.namespace, "KafkaLambdas");
    assert_eq!(doc["FunctionName"], "gift-persister");
    assert_eq!(doc["RecordsReceived"], 16);
    assert_eq!(doc["RecordsStored"], 2);
    assert_eq!(doc["RecordsDeadLettered"], 14);
    assert_eq!(doc["RecordsSkipped"], 0);
    assert_eq!(doc["RecordsFailed"], 0);
    let age = doc["BatchAge"].as_i64().unwrap();
    assert!(
        (before - oldest..=after - oldest).contains(&age),
        "{age} ms"
    );
    assert!(doc["Duration"].is_u64());
}

#[tokio::test]
async fn emf_line_counts_failures_even_when_the_invocation_errors() {
    use lambda_kit::metrics::Metrics;
    let (metrics, lines) = Metrics::capture("Ns", "f");
    let h =
        handler(MemStore::failing(MemError::Down), MemDeadLetters::default()).with_metrics(metrics);
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records((0..3).map(|i| gift(i, "q")))
        .build();
    run(&h, batch).await.unwrap_err();
    let doc = &lines.documents()[0];
    assert_eq!(doc["RecordsReceived"], 3);
    assert_eq!(doc["RecordsFailed"], 3);
    assert_eq!(doc["RecordsStored"], 0);
}

/// `KEY_FORMAT=avro` with a shipped key schema: a gift whose key decodes is stored as before, one
/// whose key does not is dead-lettered `schema_mismatch` (its raw key kept); unset, keys are not
/// read at all.
#[tokio::test]
async fn with_key_format_a_key_that_does_not_decode_is_dead_lettered() {
    let key = event_decoding::AvroSchema::parse(
        r#"{"type":"record","name":"GiftKey","fields":[{"name":"page_id","type":"long"}]}"#,
    )
    .unwrap();
    let values = lambda_kit::schema_registry::Values::default().with_keys(
        event_decoding::KeyFormat::Avro,
        Some(std::sync::Arc::new(key.into())),
    );
    let h = Handler::new(
        Gifts::new(MemStore::default(), GiftLimits::default()).with_values(values),
        MemDeadLetters::default(),
        DeadlineSettings::default(),
    );
    // page_id 7 (zigzag 14); then a key cut short.
    let batch = KafkaBatch::builder(event_decoding::EventSource::Msk)
        .record(gift(0, "Q0").with_key([14]))
        .record(gift(1, "Q1").with_key([0x80]))
        .build();
    assert_eq!(run(&h, batch.clone()).await.unwrap(), vec![]);
    assert_eq!(h.function().store().rows().len(), 1);
    let letters = h.dead_letters().letters.lock().unwrap().clone();
    let letter = letters.values().next().unwrap();
    assert_eq!((letters.len(), letter.record.offset), (1, 1));
    assert_eq!(letter.error_code, "schema_mismatch");
    assert!(
        letter.error_message.starts_with("key does not match"),
        "{}",
        letter.error_message
    );
    assert_eq!(letter.key.as_deref(), Some("gA=="), "the raw key, base64");

    // The default reads no key: both gifts stored.
    let h = handler(MemStore::default(), MemDeadLetters::default());
    assert_eq!(run(&h, batch).await.unwrap(), vec![]);
    assert_eq!(h.function().store().rows().len(), 2);
}
