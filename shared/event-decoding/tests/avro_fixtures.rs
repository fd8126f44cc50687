//! The Avro samples in `events/` (written by fastavro, `scripts/make-avro-events`) decode to what
//! `events/README.md` says: gifts in the Confluent wire format and with ESM schema metadata, and a
//! Debezium Avro page change that decodes to the same change as its JsonConverter twin.

use std::collections::HashMap;
use std::sync::Arc;

use event_decoding::{
    AvroSchema, Change, Decoding, ErrorCode, KafkaBatch, Op, SourceVersion, ValueFormat,
    WriterSchema,
};
use serde_json::{Value, json};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/", $name)).as_slice()
    };
}

macro_rules! schema {
    ($id:literal, $name:literal) => {
        (
            $id.to_string(),
            Arc::new(WriterSchema::from(
                AvroSchema::parse(include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../events/schemas/",
                    $name
                )))
                .unwrap(),
            )),
        )
    };
}

fn schemas() -> HashMap<String, Arc<WriterSchema>> {
    HashMap::from([
        schema!("1", "1-gift.avsc"),
        schema!("2", "2-page-key.avsc"),
        schema!("3", "3-page-envelope.avsc"),
    ])
}

#[test]
fn avro_gifts_by_wire_prefix_and_by_metadata() {
    let batch = KafkaBatch::from_slice(fixture!("gift-avro.json")).unwrap();
    let schemas = schemas();
    for format in [ValueFormat::Avro, ValueFormat::Auto] {
        let d = Decoding::new(format, &schemas);
        let results: Vec<_> = batch
            .records()
            .map(|r| r.value_json_via::<Value>(d))
            .collect();
        assert_eq!(
            results[0].as_ref().unwrap(),
            &json!({"event_id": "avro-g0", "page_id": 700, "question": "Avro question 0 ü?",
                    "answer": "Avro answer 0", "ts": 1732350000.5})
        );
        assert_eq!(
            results[1].as_ref().unwrap(),
            &json!({"event_id": null, "page_id": 701, "question": "Avro question 1 ü?",
                    "answer": "Avro answer 1", "ts": null})
        );
        for (i, r) in results.iter().enumerate().take(4).skip(2) {
            assert_eq!(r.as_ref().unwrap()["event_id"], format!("avro-g{i}"));
        }
        let unknown = results[4].as_ref().unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownSchemaId);
        assert!(!unknown.is_permanent());
        let cut = results[5].as_ref().unwrap_err();
        assert_eq!(cut.code, ErrorCode::SchemaMismatch);
        assert!(cut.is_permanent());
    }
    // The metadata is on the records as the ESM sent it.
    let meta = batch.as_slice()[2].value_schema_metadata().unwrap();
    assert_eq!(
        (meta.data_format.as_str(), meta.schema_id.as_str()),
        ("AVRO", "1")
    );
    // As JSON they are garbage: the default never guesses.
    let err = batch.as_slice()[0].value_json::<Value>().unwrap_err();
    assert!(
        matches!(err.code, ErrorCode::InvalidJson | ErrorCode::InvalidUtf8),
        "{err}"
    );
}

/// `gift-avro-plain.json`: plain Avro bodies read with a shipped schema (`AVRO_SCHEMA_FILE`),
/// also the one whose first byte (event_id null) is the Confluent magic byte; a body cut short is
/// `schema_mismatch`. Ids named by a prefix or metadata are left to the lookup (lambda-kit's
/// shipped schema answers them without a registry), here one that knows none.
#[test]
fn plain_avro_gifts_with_a_shipped_schema() {
    let batch = KafkaBatch::from_slice(fixture!("gift-avro-plain.json")).unwrap();
    let (_, gift) = schema!("AVRO_SCHEMA_FILE", "1-gift.avsc");
    let d = Decoding::new(ValueFormat::Avro, &event_decoding::NoSchemas).with_plain(&gift);
    let results: Vec<_> = batch
        .records()
        .map(|r| r.value_json_via::<Value>(d))
        .collect();
    assert_eq!(
        results[0].as_ref().unwrap(),
        &json!({"event_id": "avro-g8", "page_id": 708, "question": "Avro question 8 ü?",
                "answer": "Avro answer 8", "ts": 1732350008.5})
    );
    assert_eq!(batch.as_slice()[1].value().unwrap().unwrap()[0], 0);
    assert_eq!(
        results[1].as_ref().unwrap(),
        &json!({"event_id": null, "page_id": 709, "question": "Avro question 9 ü?",
                "answer": "Avro answer 9", "ts": null})
    );
    for r in &results[2..4] {
        assert_eq!(r.as_ref().unwrap_err().code, ErrorCode::UnknownSchemaId);
    }
    let cut = results[4].as_ref().unwrap_err();
    assert_eq!(cut.code, ErrorCode::SchemaMismatch, "{cut}");
    assert!(cut.is_permanent());
    assert!(cut.message.contains("AVRO_SCHEMA_FILE"), "{cut}");
    // Without the shipped schema a plain body has no schema id.
    let none = Decoding::new(ValueFormat::Avro, &event_decoding::NoSchemas);
    let err = batch.as_slice()[0]
        .value_json_via::<Value>(none)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::MissingSchemaId);
}

#[test]
fn debezium_avro_pages_decode_like_their_json_twin() {
    let avro = KafkaBatch::from_slice(fixture!("pages-debezium-avro.json")).unwrap();
    let twin = KafkaBatch::from_slice(fixture!("pages-debezium-avro-twin.json")).unwrap();
    let schemas = schemas();
    let d = Decoding::new(ValueFormat::Avro, &schemas);
    assert_eq!(avro.len(), 4);
    for (a, j) in avro.records().zip(twin.records()) {
        let (mut from_avro, v_avro) = a.change_with_version_via(d).unwrap();
        let (mut from_json, v_json) = j.change_with_version().unwrap();
        assert_eq!(v_avro, v_json, "offset {}", a.offset);
        // The two fields whose JsonConverter rendering is not the functions' JSON: the Json
        // column (a string there, parsed here) and the decimal (base64 there, exact text here).
        for (change, json_twin) in [(&mut from_avro, false), (&mut from_json, true)] {
            let row = match change {
                Change::Upsert { row, .. } => Some(row),
                Change::Delete { row: Some(row), .. } => Some(row),
                _ => None,
            };
            if let Some(row) = row {
                let meta = row.remove("meta").unwrap();
                let price = row.remove("price").unwrap();
                if json_twin {
                    assert_eq!(meta, json!(r#"{"tags":["x","y"],"n":1}"#));
                    assert_eq!(price, json!("BM4="));
                } else {
                    assert_eq!(meta, json!({"tags": ["x", "y"], "n": 1}));
                    assert_eq!(price, json!("12.30"));
                }
            }
        }
        assert_eq!(from_avro, from_json, "offset {}", a.offset);
    }
    let first = avro.as_slice()[0].change_with_version_via(d).unwrap();
    assert!(matches!(first.0, Change::Upsert { op: Op::Create, .. }));
    assert_eq!(first.1, Some(SourceVersion::Lsn(24023128)));
    assert_eq!(
        first.0.field("updated_at"),
        Some(&json!(1_732_350_000_123_456i64))
    );
    assert!(matches!(
        avro.as_slice()[3].change_via(d).unwrap(),
        Change::Tombstone { .. }
    ));
}
