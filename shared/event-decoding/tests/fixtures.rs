//! Every file in `events/` decodes to what `events/README.md` says it exercises.

use event_decoding::{Change, ErrorCode, EventSource, KafkaBatch, KafkaRecord, Op, RecordError};
use serde::Deserialize;
use serde_json::{Value, json};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/", $name)).as_slice()
    };
}

const ALL: [(&str, &[u8]); 11] = [
    ("gift-msk.json", fixture!("gift-msk.json")),
    ("gift-self-managed.json", fixture!("gift-self-managed.json")),
    ("gift-bad.json", fixture!("gift-bad.json")),
    ("pages-debezium.json", fixture!("pages-debezium.json")),
    (
        "pages-debezium-plain.json",
        fixture!("pages-debezium-plain.json"),
    ),
    ("pages-cassandra.json", fixture!("pages-cassandra.json")),
    ("pages-unwrapped.json", fixture!("pages-unwrapped.json")),
    ("pages-plain.json", fixture!("pages-plain.json")),
    ("pages-bad.json", fixture!("pages-bad.json")),
    ("table-sink.json", fixture!("table-sink.json")),
    ("table-sink-bad.json", fixture!("table-sink-bad.json")),
];

#[derive(Debug, Deserialize, PartialEq)]
struct Gift {
    page_id: i64,
    question: String,
    answer: String,
    #[serde(default)]
    ts: Option<Value>,
    #[serde(default)]
    event_id: Option<String>,
}

fn batch(bytes: &[u8]) -> KafkaBatch {
    KafkaBatch::from_slice(bytes).unwrap()
}

fn coords(b: &KafkaBatch) -> Vec<(i32, i64)> {
    b.records().map(|r| (r.partition, r.offset)).collect()
}

#[test]
fn every_fixture_round_trips_and_matches_the_deserialize_impl() {
    for (name, bytes) in ALL {
        let decoded = KafkaBatch::from_slice(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!decoded.is_empty(), "{name}");
        let via_serde: KafkaBatch = serde_json::from_slice(bytes).unwrap();
        assert_eq!(via_serde, decoded, "{name}");
        let again = KafkaBatch::from_slice(&serde_json::to_vec(&decoded).unwrap()).unwrap();
        assert_eq!(again, decoded, "{name}");
        // Ordering: topic, partition, offset ascending.
        let ids: Vec<_> = decoded.records().map(KafkaRecord::id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "{name}");
    }
}

#[test]
fn gift_msk() {
    let b = batch(fixture!("gift-msk.json"));
    assert_eq!(b.event_source(), &EventSource::Msk);
    assert!(b.event_source_arn().unwrap().starts_with("arn:aws:kafka:"));
    assert_eq!(b.bootstrap_servers(), None);
    assert_eq!(
        coords(&b),
        [(0, 100), (0, 101), (0, 102), (1, 7), (1, 8), (2, 0)]
    );
    assert_eq!(b.oldest_timestamp_ms(), Some(1_732_350_000_123));
    let gifts: Vec<Gift> = b.records().map(|r| r.value_json().unwrap()).collect();
    assert_eq!(
        gifts.iter().map(|g| g.page_id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 1, 5]
    );
    assert_eq!(gifts[0].ts, Some(json!(1732350000.123)));
    assert_eq!(gifts[1].ts, Some(json!("2024-11-23T08:20:01.5Z")));
    assert_eq!(gifts[2].ts, None);
    assert_eq!(gifts[1].answer, "Gut, danke — sehr gut ✓");
    assert_eq!(gifts[4].event_id.as_deref(), Some("evt-8"));

    let r: Vec<&KafkaRecord> = b.records().collect();
    assert_eq!(r[0].key_str().unwrap().as_deref(), Some("page-1"));
    assert_eq!(r[1].key().unwrap(), None, "null key");
    assert_eq!(r[2].key().unwrap(), None, "absent key");
    assert_eq!(r[0].header("origin").unwrap().as_str(), Some("Zürich"));
    assert_eq!(r[1].header("bin").unwrap().value, [0x00, 0x7f, 0x80, 0xff]);
    assert_eq!(r[1].header("bin").unwrap().as_str(), None);
    assert_eq!(r[3].header("emoji").unwrap().as_str(), Some("🎁"));
    assert!(r[2].headers().is_empty(), "empty header list");
    assert!(r[4].headers().is_empty(), "absent headers");
    assert_eq!(r[0].timestamp_type.as_deref(), Some("CREATE_TIME"));
}

#[test]
fn gift_msk_is_rejected_by_aws_lambda_events_but_not_by_us() {
    // The upstream type requires `headers`; this fixture has records without it.
    let upstream = serde_json::from_slice::<aws_lambda_events::event::kafka::KafkaEvent>(fixture!(
        "gift-msk.json"
    ));
    assert!(upstream.unwrap_err().to_string().contains("headers"));
}

#[test]
fn conversion_from_aws_lambda_events() {
    // Our serialisation always writes `headers`, so the upstream type can read it back.
    let ours = batch(fixture!("gift-self-managed.json"));
    let upstream: aws_lambda_events::event::kafka::KafkaEvent =
        serde_json::from_slice(&serde_json::to_vec(&ours).unwrap()).unwrap();
    let converted = KafkaBatch::try_from(upstream).unwrap();
    assert_eq!(converted.event_source(), ours.event_source());
    assert_eq!(converted.len(), ours.len());
    for (a, b) in converted.records().zip(ours.records()) {
        assert_eq!(
            (a.id(), a.raw_key(), a.raw_value(), a.headers()),
            (b.id(), b.raw_key(), b.raw_value(), b.headers())
        );
        // aws_lambda_events parses millisecond timestamps through floating point and can lose
        // the last millisecond; our own decoder keeps the integer as delivered.
        assert!(
            (a.timestamp - b.timestamp).abs() <= 1,
            "{} vs {}",
            a.timestamp,
            b.timestamp
        );
    }
}

#[test]
fn gift_self_managed_has_the_same_records() {
    let msk = batch(fixture!("gift-msk.json"));
    let sm = batch(fixture!("gift-self-managed.json"));
    assert_eq!(sm.event_source(), &EventSource::SelfManaged);
    assert_eq!(
        sm.bootstrap_servers(),
        Some("b-1.kafka.internal:9092,b-2.kafka.internal:9092")
    );
    assert_eq!(sm.event_source_arn(), None);
    assert!(msk.records().eq(sm.records()));
}

#[test]
fn gift_bad() {
    let b = batch(fixture!("gift-bad.json"));
    let results: Vec<Result<Gift, RecordError>> = b.records().map(|r| r.value_json()).collect();
    assert_eq!(results.len(), 16);
    let code = |i: usize| results[i].as_ref().err().map(|e| e.code);
    let message = |i: usize| results[i].as_ref().unwrap_err().message.clone();
    for ok in [0, 8, 9, 10, 12, 15] {
        assert!(results[ok].is_ok(), "offset {ok}: {:?}", results[ok]);
    }
    assert_eq!(code(1), Some(ErrorCode::InvalidBase64));
    assert_eq!(code(2), Some(ErrorCode::InvalidUtf8));
    assert_eq!(code(3), Some(ErrorCode::InvalidJson));
    assert_eq!(code(4), Some(ErrorCode::MissingValue));
    assert_eq!(code(5), Some(ErrorCode::MissingValue));
    assert_eq!(code(6), Some(ErrorCode::InvalidField));
    assert!(
        message(6).starts_with("page_id: invalid type"),
        "{}",
        message(6)
    );
    assert_eq!(code(7), Some(ErrorCode::InvalidField));
    assert!(
        message(7).starts_with("question: invalid type"),
        "{}",
        message(7)
    );
    assert_eq!(code(11), Some(ErrorCode::InvalidField));
    assert!(
        message(11).contains("missing field `question`"),
        "{}",
        message(11)
    );
    assert_eq!(code(13), Some(ErrorCode::InvalidJson));
    assert_eq!(code(14), Some(ErrorCode::InvalidField));
    // Decoded, but for the function's validation to reject.
    let ok = |i: usize| results[i].as_ref().unwrap();
    assert_eq!(ok(8).page_id, -1);
    assert_eq!(ok(9).question, "");
    assert_eq!(ok(10).answer.len(), 100_000);
    assert_eq!(ok(12).ts, Some(json!("yesterday")));
    // Every error names its record.
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            assert_eq!(
                (e.id.topic.as_str(), e.id.partition, e.id.offset),
                ("gift_events", 0, i as i64)
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("gift_events-0@{i}: {}", e.code))
            );
        }
    }
    // Dead letters get the text exactly as delivered.
    assert_eq!(b.records().nth(1).unwrap().raw_value(), Some("not*base64!"));
}

fn changes(bytes: &[u8]) -> Vec<Result<Change, RecordError>> {
    batch(bytes).records().map(KafkaRecord::change).collect()
}

fn ok(r: &Result<Change, RecordError>) -> &Change {
    r.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

fn upsert_op(c: &Change) -> Op {
    match c {
        Change::Upsert { op, .. } => *op,
        other => panic!("expected an upsert, got {other:?}"),
    }
}

#[test]
fn pages_debezium_with_schema_wrapper() {
    let c = changes(fixture!("pages-debezium.json"));
    assert_eq!(c.len(), 8);
    assert_eq!(upsert_op(ok(&c[0])), Op::Read);
    assert_eq!(ok(&c[0]).field("page_id"), Some(&json!("41")));
    assert_eq!(upsert_op(ok(&c[1])), Op::Create);
    assert_eq!(ok(&c[1]).field("body"), Some(&json!("The answer is 42.")));
    assert_eq!(
        ok(&c[1]).key(),
        Some(&json!({"page_id": "42"})),
        "key schema wrapper removed"
    );
    assert_eq!(upsert_op(ok(&c[2])), Op::Update);
    assert_eq!(ok(&c[2]).field("body"), Some(&json!("Still 42. Ünïcödé.")));
    assert!(matches!(ok(&c[3]), Change::Delete { row: Some(_), .. }));
    assert_eq!(ok(&c[3]).field("page_id"), Some(&json!("42")));
    assert_eq!(
        ok(&c[4]),
        &Change::Tombstone {
            key: json!({"page_id": "42"})
        }
    );
    assert_eq!(upsert_op(ok(&c[5])), Op::Create);
    assert_eq!(
        ok(&c[6]),
        &Change::Truncate {
            table: Some("public.pages".into())
        }
    );
    assert_eq!(ok(&c[7]), &Change::Skip { reason: "message" });
}

#[test]
fn pages_debezium_plain() {
    let c = changes(fixture!("pages-debezium-plain.json"));
    let kinds: Vec<_> = c.iter().map(|c| ok(c).kind()).collect();
    assert_eq!(kinds, ["upsert", "upsert", "upsert", "delete", "tombstone"]);
    assert_eq!(
        c.iter()
            .take(3)
            .map(|c| upsert_op(ok(c)))
            .collect::<Vec<_>>(),
        [Op::Create, Op::Update, Op::Read]
    );
    assert_eq!(ok(&c[0]).field("page_id"), Some(&json!(42)));
    assert_eq!(ok(&c[4]).field("page_id"), Some(&json!(42)));
}

#[test]
fn pages_cassandra() {
    let c = changes(fixture!("pages-cassandra.json"));
    let kinds: Vec<_> = c.iter().map(|c| ok(c).kind()).collect();
    assert_eq!(kinds, ["upsert", "upsert", "delete", "tombstone", "upsert"]);
    assert_eq!(upsert_op(ok(&c[0])), Op::Insert);
    match ok(&c[0]) {
        Change::Upsert { row, .. } => {
            assert_eq!(
                Value::Object(row.clone()),
                json!({"page_id": "42", "title": "Answer", "body": "The answer is 42."})
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(upsert_op(ok(&c[1])), Op::Update);
    assert_eq!(ok(&c[1]).field("body"), Some(&json!("Updated body.")));
    match ok(&c[2]) {
        Change::Delete { row: Some(row), .. } => {
            assert_eq!(Value::Object(row.clone()), json!({"page_id": "42"}))
        }
        other => panic!("{other:?}"),
    }
    // A cell deleted via deletion_ts has a null value; field() then falls back to the key (none here).
    assert_eq!(ok(&c[4]).field("body"), None);
    assert_eq!(ok(&c[4]).field("title"), Some(&json!("Eight")));
}

#[test]
fn pages_unwrapped() {
    let c = changes(fixture!("pages-unwrapped.json"));
    let kinds: Vec<_> = c.iter().map(|c| ok(c).kind()).collect();
    assert_eq!(
        kinds,
        [
            "upsert",
            "upsert",
            "upsert",
            "delete",
            "tombstone",
            "upsert"
        ]
    );
    match ok(&c[1]) {
        Change::Upsert { op, row, .. } => {
            assert_eq!(*op, Op::Update);
            assert!(row.keys().all(|k| !k.starts_with("__")), "{row:?}");
            assert_eq!(row["body"], json!("Flattened, edited."));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(upsert_op(ok(&c[2])), Op::Read);
    assert_eq!(ok(&c[3]).field("page_id"), Some(&json!("42")));
    assert_eq!(upsert_op(ok(&c[5])), Op::Plain);
}

#[test]
fn pages_plain() {
    let c = changes(fixture!("pages-plain.json"));
    assert_eq!(upsert_op(ok(&c[0])), Op::Plain);
    assert_eq!(upsert_op(ok(&c[1])), Op::Create);
    assert_eq!(upsert_op(ok(&c[2])), Op::Update);
    assert_eq!(ok(&c[2]).field("page_id"), Some(&json!(43)));
    assert!(matches!(ok(&c[3]), Change::Delete { .. }));
    assert_eq!(ok(&c[3]).field("page_id"), Some(&json!("42")));
    // The plain key "42" is valid JSON: a number.
    assert_eq!(ok(&c[4]), &Change::Tombstone { key: json!(42) });
}

#[test]
fn pages_bad() {
    let c = changes(fixture!("pages-bad.json"));
    assert_eq!(c.len(), 14);
    let code = |i: usize| c[i].as_ref().err().map(|e| e.code);
    for i in [0, 9, 10, 11, 13] {
        assert!(c[i].is_ok(), "offset {i}: {:?}", c[i]);
    }
    assert_eq!(code(1), Some(ErrorCode::InvalidBase64));
    assert_eq!(code(2), Some(ErrorCode::InvalidUtf8));
    assert_eq!(code(3), Some(ErrorCode::InvalidJson));
    assert_eq!(code(4), Some(ErrorCode::MissingValue));
    assert_eq!(code(5), Some(ErrorCode::MissingKey));
    assert_eq!(code(6), Some(ErrorCode::UnknownOp));
    assert_eq!(code(7), Some(ErrorCode::UnknownOp));
    assert_eq!(code(8), Some(ErrorCode::InvalidEnvelope));
    assert!(c[8].as_ref().unwrap_err().message.starts_with("after:"));
    assert_eq!(code(12), Some(ErrorCode::InvalidEnvelope));
    assert_eq!(ok(&c[9]).field("page_id"), Some(&json!("-9")));
    assert_eq!(ok(&c[10]).field("page_id"), Some(&json!(true)));
}
