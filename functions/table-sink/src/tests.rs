//! Handler tests with an in-memory table, on the `events/` fixtures and built batches.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use lambda_kit::dead_letter::MemoryDeadLetters;
use lambda_kit::fate::{Fate, Fault};
use lambda_kit::retry::{Deadline, DeadlineSettings};
use lambda_kit::runner::{Handled, Runner};
use serde_json::{Map, Value, json};

use crate::handler::{OnConflictMode, TableSink};
use crate::row::{Fields, Shape, to_json};
use crate::store::RowStore;

/// `user_profiles` in memory, keyed by `user_id` as text (as PostgreSQL stores `7` in a text
/// column). Merges or ignores like the PostgREST upsert; a `plan` outside free/pro/team is
/// refused like the table's check constraint; `down` fails every write with that fate.
#[derive(Debug)]
struct MemTable {
    merge: bool,
    rows: Mutex<BTreeMap<String, Map<String, Value>>>,
    writes: Mutex<Vec<usize>>,
    down: Option<Fate>,
}

impl MemTable {
    fn new(merge: bool) -> Self {
        Self {
            merge,
            rows: Mutex::default(),
            writes: Mutex::default(),
            down: None,
        }
    }

    fn rows(&self) -> BTreeMap<String, Value> {
        let rows = self.rows.lock().unwrap();
        rows.iter()
            .map(|(k, v)| (k.clone(), Value::Object(v.clone())))
            .collect()
    }
}

impl RowStore for MemTable {
    async fn write(&self, _: &Deadline, rows: &[Fields]) -> Vec<Fate> {
        self.writes.lock().unwrap().push(rows.len());
        if let Some(fate) = &self.down {
            return vec![fate.clone(); rows.len()];
        }
        let mut table = self.rows.lock().unwrap();
        let mut seen = Vec::new();
        rows.iter()
            .map(|fields| {
                let row: Map<String, Value> = serde_json::from_slice(&to_json(fields)).unwrap();
                let id = match &row["user_id"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert!(!seen.contains(&id), "{id} twice in one write");
                seen.push(id.clone());
                if let Some(plan) = row.get("plan").and_then(Value::as_str)
                    && !["free", "pro", "team"].contains(&plan)
                {
                    return Fate::rejected("db_bad_request", "violates check constraint");
                }
                match table.get_mut(&id) {
                    Some(existing) if self.merge => existing.extend(row),
                    Some(_) => {}
                    None => {
                        let mut new = row;
                        new.entry("plan").or_insert_with(|| json!("free"));
                        new.insert("user_id".into(), json!(id.clone()));
                        table.insert(id, new);
                    }
                }
                Fate::Stored
            })
            .collect()
    }
}

type Sink = Runner<TableSink<MemTable>, MemoryDeadLetters>;

/// The sink over `table`, in the mode its upsert resolves duplicates in.
fn sink(table: MemTable, columns: Option<&[&str]>) -> Sink {
    let shape = Shape::new(
        vec!["user_id".into()],
        columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
    );
    let on_conflict = if table.merge {
        OnConflictMode::Merge
    } else {
        OnConflictMode::Ignore
    };
    Runner::new(
        TableSink::new(table, shape, on_conflict),
        MemoryDeadLetters::default(),
        DeadlineSettings::default(),
    )
}

const COLUMNS: &[&str] = &["email", "display_name", "plan"];

fn fixture(name: &str) -> KafkaBatch {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    KafkaBatch::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn batch(values: &[Value]) -> KafkaBatch {
    KafkaBatch::builder(EventSource::Msk)
        .records(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| KafkaRecord::new("users", 0, i as i64, 0).with_value(v.to_string())),
        )
        .build()
}

async fn run(s: &Sink, b: &KafkaBatch) -> Handled<()> {
    s.process(b, &Deadline::after(Duration::from_secs(5))).await
}

fn failed(h: &Handled<()>) -> Vec<i64> {
    h.response
        .as_ref()
        .unwrap()
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.offset)
        .collect()
}

fn letters(s: &Sink) -> Vec<String> {
    s.dead_letters()
        .letters()
        .iter()
        .map(|l| format!("{}:{}", l.record.offset, l.error_code))
        .collect()
}

#[tokio::test]
async fn fixture_rows_are_stored_merged_per_key_and_redelivery_changes_nothing() {
    let s = sink(MemTable::new(true), Some(COLUMNS));
    let b = fixture("table-sink.json");
    let h = run(&s, &b).await;
    assert_eq!(h.counts.stored, 6, "{:?}", h.counts);
    assert!(failed(&h).is_empty());
    let expected = json!({
        "3": {"user_id": "3", "email": "linus@example.com", "display_name": "Linus", "plan": "team"},
        "u-1": {"user_id": "u-1", "email": "ada@example.com", "display_name": "Ada Lovelace", "plan": "pro"},
        "u-2": {"user_id": "u-2", "email": "grace@example.com", "display_name": "Grace Hopper", "plan": "free"},
        "u-4": {"user_id": "u-4", "email": "margaret@example.com", "display_name": "Margaret Hamilton 🚀", "plan": "team"},
    });
    let table = s.function().store();
    assert_eq!(json!(table.rows()), expected);
    assert_eq!(
        *table.writes.lock().unwrap(),
        [4],
        "one write, one row per key"
    );

    let h = run(&s, &b).await;
    assert_eq!(h.counts.stored, 6);
    assert_eq!(json!(table.rows()), expected, "redelivery changes nothing");
    assert!(s.dead_letters().letters().is_empty());
}

#[tokio::test]
async fn without_the_allow_list_a_field_that_is_no_column_is_sent_as_is() {
    // The store (the database) decides: here it keeps it, PostgREST would refuse it as an unknown
    // column, an environment fault (see store::SinkError).
    let s = sink(MemTable::new(true), None);
    let h = run(&s, &fixture("table-sink.json")).await;
    assert_eq!(h.counts.stored, 6);
    assert_eq!(s.function().store().rows()["u-1"]["source"], "crm");
}

#[tokio::test]
async fn bad_fixture_dead_letters_each_bad_record_with_its_code() {
    let s = sink(MemTable::new(true), None);
    let b = fixture("table-sink-bad.json");
    for _ in 0..2 {
        let h = run(&s, &b).await;
        assert!(failed(&h).is_empty());
        assert_eq!((h.counts.stored, h.counts.dead_lettered), (2, 11));
    }
    assert_eq!(
        letters(&s),
        crate::fixtures::BAD_FIXTURE_LETTERS,
        "once each, although delivered twice"
    );
    assert_eq!(
        s.function()
            .store()
            .rows()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["ok-1", "ok-2"]
    );
}

#[tokio::test]
async fn the_last_change_of_a_key_wins_and_partial_changes_add_up() {
    let s = sink(MemTable::new(true), None);
    let b = batch(&[
        json!({"user_id": "a", "email": "a1@x", "display_name": "A1"}),
        json!({"user_id": "b", "email": "b1@x"}),
        json!({"user_id": "a", "display_name": "A2"}),
        json!({"user_id": "a", "email": "a3@x", "display_name": "A3"}),
        json!({"user_id": "a", "plan": "pro"}),
        json!({"user_id": 7, "email": "seven@x"}),
        json!({"user_id": "7", "email": "SEVEN@x"}),
    ]);
    let h = run(&s, &b).await;
    assert_eq!(h.counts.stored, 7);
    let rows = s.function().store().rows();
    assert_eq!(
        rows["a"],
        json!({"user_id": "a", "email": "a3@x", "display_name": "A3", "plan": "pro"})
    );
    assert_eq!(rows["7"]["email"], "SEVEN@x", "7 and \"7\" are one key");
    assert_eq!(rows.len(), 3);

    // The same changes in one batch each: the same row.
    let one_by_one = sink(MemTable::new(true), None);
    for r in b.records() {
        let single = KafkaBatch::builder(EventSource::Msk)
            .record(r.clone())
            .build();
        run(&one_by_one, &single).await;
    }
    assert_eq!(one_by_one.function().store().rows(), rows);
}

#[tokio::test]
async fn with_ignore_the_first_record_of_a_key_wins() {
    let s = sink(MemTable::new(false), None);
    let b = batch(&[
        json!({"user_id": "a", "email": "first@x"}),
        json!({"user_id": "a", "email": "second@x", "plan": "pro"}),
    ]);
    let h = run(&s, &b).await;
    assert_eq!((h.counts.stored, h.counts.skipped), (1, 1));
    let b2 = batch(&[json!({"user_id": "a", "email": "third@x"})]);
    run(&s, &b2).await;
    assert_eq!(
        s.function().store().rows()["a"],
        json!({"user_id": "a", "email": "first@x", "plan": "free"})
    );
}

#[tokio::test]
async fn a_refused_merged_row_is_written_change_by_change_so_only_the_bad_one_is_dead_lettered() {
    let s = sink(MemTable::new(true), None);
    let b = batch(&[
        json!({"user_id": "a", "plan": "gold"}),
        json!({"user_id": "a", "plan": "platinum"}),
        json!({"user_id": "a", "email": "a@x"}),
        json!({"user_id": "b", "plan": "pro"}),
    ]);
    let h = run(&s, &b).await;
    assert!(failed(&h).is_empty());
    assert_eq!(
        (h.counts.stored, h.counts.skipped, h.counts.dead_lettered),
        (2, 0, 2),
        "as one by one: gold and platinum each refused, the email change stored"
    );
    assert_eq!(letters(&s), ["0:db_bad_request", "1:db_bad_request"]);
    let rows = s.function().store().rows();
    assert_eq!(
        rows["a"],
        json!({"user_id": "a", "email": "a@x", "plan": "free"})
    );
    assert_eq!(rows["b"]["plan"], "pro");
    assert_eq!(
        *s.function().store().writes.lock().unwrap(),
        [2, 1, 1, 1],
        "the folded rows, then a's three changes one at a time"
    );
}

#[tokio::test]
async fn a_good_change_followed_by_a_refused_one_of_the_same_columns_is_still_written() {
    let s = sink(MemTable::new(true), None);
    let b = batch(&[
        json!({"user_id": "a", "plan": "pro"}),
        json!({"user_id": "a", "plan": "gold"}),
    ]);
    let h = run(&s, &b).await;
    assert_eq!(
        (h.counts.stored, h.counts.dead_lettered),
        (1, 1),
        "{:?}",
        h.counts
    );
    assert_eq!(letters(&s), ["1:db_bad_request"]);
    assert_eq!(
        s.function().store().rows()["a"]["plan"],
        "pro",
        "written, not just acknowledged"
    );
}

#[tokio::test]
async fn after_a_failed_change_the_later_changes_of_its_key_are_not_written() {
    /// Refuses a plan `bad`, fails `down` as a transient fault, stores the rest.
    #[derive(Debug, Default)]
    struct Picky(Mutex<Vec<String>>);
    impl RowStore for Picky {
        async fn write(&self, _: &Deadline, rows: &[Fields]) -> Vec<Fate> {
            rows.iter()
                .map(|f| {
                    let json = String::from_utf8(to_json(f)).unwrap();
                    let fate = if json.contains("\"bad\"") {
                        Fate::rejected("db_bad_request", format!("refused {json}"))
                    } else if json.contains("\"down\"") {
                        Fate::Failed {
                            code: "db_server_error",
                            message: "503".into(),
                            fault: Fault::Transient,
                        }
                    } else {
                        Fate::Stored
                    };
                    self.0.lock().unwrap().push(json);
                    fate
                })
                .collect()
        }
    }
    let s = Runner::new(
        TableSink::new(
            Picky::default(),
            Shape::new(vec!["user_id".into()], None),
            OnConflictMode::Merge,
        ),
        MemoryDeadLetters::default(),
        DeadlineSettings::default(),
    );
    let b = batch(&[
        json!({"user_id": "a", "plan": "bad"}),
        json!({"user_id": "a", "email": "down"}),
        json!({"user_id": "a", "name": "later"}),
    ]);
    let h = s
        .process(&b, &Deadline::after(Duration::from_secs(5)))
        .await;
    assert_eq!(failed(&h), [1, 2]);
    assert_eq!(h.counts.dead_lettered, 1);
    let sent = s.function().store().0.lock().unwrap().clone();
    assert_eq!(
        sent,
        [
            r#"{"email":"down","name":"later","plan":"bad","user_id":"a"}"#,
            r#"{"plan":"bad","user_id":"a"}"#,
            r#"{"email":"down","user_id":"a"}"#,
        ],
        "the change after the failed one is not sent"
    );
}

#[tokio::test]
async fn an_environment_fault_fails_every_record_without_dead_letters() {
    let mut table = MemTable::new(true);
    table.down = Some(Fate::Failed {
        code: "db_not_found",
        message: "no table".into(),
        fault: Fault::Environment,
    });
    let s = sink(table, Some(COLUMNS));
    let h = run(&s, &fixture("table-sink.json")).await;
    assert_eq!(h.response.unwrap_err().failed, 6);
    assert!(s.dead_letters().letters().is_empty());
}

#[tokio::test]
async fn a_missing_store_result_fails_the_records_and_an_empty_batch_writes_nothing() {
    #[derive(Debug)]
    struct Short;
    impl RowStore for Short {
        async fn write(&self, _: &Deadline, rows: &[Fields]) -> Vec<Fate> {
            vec![Fate::Stored; rows.len() - 1]
        }
    }
    let s = Runner::new(
        TableSink::new(
            Short,
            Shape::new(vec!["user_id".into()], None),
            OnConflictMode::Merge,
        ),
        MemoryDeadLetters::default(),
        DeadlineSettings::default(),
    );
    let b = batch(&[json!({"user_id": 1}), json!({"user_id": 2})]);
    let h = s
        .process(&b, &Deadline::after(Duration::from_secs(5)))
        .await;
    assert_eq!(h.counts.stored, 1);
    assert_eq!(h.counts.failed, 1);

    let m = sink(MemTable::new(true), None);
    let h = run(&m, &batch(&[])).await;
    assert!(failed(&h).is_empty());
    assert!(m.function().store().writes.lock().unwrap().is_empty());
}

/// A Confluent-compatible schema registry on loopback, as its REST API documents it:
/// `GET /schemas/ids/{id}` answers `{"schema": "<the schema as a JSON string>"}` (no
/// `schemaType`: Avro) for a known id, `404 {"error_code": 40403, ...}` for another. Counts the
/// requests.
struct Registry {
    url: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Registry {
    fn start(schemas: Vec<(&'static str, &'static str)>) -> Self {
        use std::io::{Read, Write};
        let listener = lambda_kit::testing::listener();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for mut sock in listener.incoming().flatten() {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && sock.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("");
                let known = schemas
                    .iter()
                    .find(|(id, _)| path == format!("/schemas/ids/{id}"));
                let (status, body) = match known {
                    Some((_, schema)) => ("200 OK", json!({ "schema": schema }).to_string()),
                    None => (
                        "404 Not Found",
                        json!({"error_code": 40403, "message": "Schema not found"}).to_string(),
                    ),
                };
                let _ = write!(
                    sock,
                    "HTTP/1.1 {status}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, requests }
    }
}

/// Avro rows: a record with a long key, a nullable string and a decimal (bytes, scale 2).
const PROFILE_AVRO: &str = r#"{"type":"record","name":"Profile","fields":[
  {"name":"user_id","type":"long"},
  {"name":"email","type":["null","string"],"default":null},
  {"name":"balance","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}]}"#;

/// A profile body in the Confluent wire format (magic byte 0, 4-byte big-endian schema id):
/// user_id (zigzag varint), email (union branch 1, length-prefixed), balance (unscaled 1234 as
/// two big-endian bytes, length-prefixed): `{"user_id": id, "email": "a@b", "balance": "12.34"}`.
fn avro_profile(schema_id: u8, user_id: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0, schema_id, user_id * 2];
    v.extend([2, 6, b'a', b'@', b'b']);
    v.extend([4, 0x04, 0xd2]);
    v
}

#[tokio::test]
async fn avro_values_through_the_registry_become_rows_and_registry_faults_are_redelivered() {
    use event_decoding::ValueFormat;
    use lambda_kit::schema_registry::{RegistryConfig, SchemaRegistry, Values};

    let registry = Registry::start(vec![("1", PROFILE_AVRO)]);
    let values = Values::new(
        ValueFormat::Avro,
        Some(SchemaRegistry::new(RegistryConfig::new(registry.url.clone())).unwrap()),
    );
    let shape = Shape::new(vec!["user_id".into()], None);
    let s = Runner::new(
        TableSink::new(MemTable::new(true), shape, OnConflictMode::Merge).with_values(values),
        MemoryDeadLetters::default(),
        DeadlineSettings::default(),
    );
    let mut cut = avro_profile(1, 9);
    cut.truncate(cut.len() - 1);
    let values: [Vec<u8>; 5] = [
        avro_profile(1, 7),
        // Schema 2 is not in the registry: not the record's fault.
        avro_profile(2, 8),
        // The body ends inside the decimal.
        cut,
        // No wire prefix and no schema metadata under VALUE_FORMAT=avro.
        br#"{"user_id": 10}"#.to_vec(),
        avro_profile(1, 11),
    ];
    let b = KafkaBatch::builder(EventSource::Msk)
        .records(
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| KafkaRecord::new("users", 0, i as i64, 0).with_value(v)),
        )
        .build();
    let h = run(&s, &b).await;
    assert_eq!(failed(&h), [1], "the unknown schema id is redelivered");
    assert_eq!(letters(&s), ["2:schema_mismatch", "3:missing_schema_id"]);
    let rows = s.function().store().rows();
    assert_eq!(
        json!(rows),
        json!({
            "7": {"user_id": "7", "email": "a@b", "balance": "12.34", "plan": "free"},
            "11": {"user_id": "11", "email": "a@b", "balance": "12.34", "plan": "free"},
        })
    );
    // The batch's ids were fetched before decoding, each once (2 is asked again next batch).
    assert_eq!(
        registry.requests.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}
