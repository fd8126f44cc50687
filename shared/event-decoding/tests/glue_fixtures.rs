//! The AWS Glue Schema Registry samples in `events/` (written by AWS's `aws-glue-schema-registry`
//! Python package, `scripts/make-glue-events`) decode to what `events/README.md` says: gifts behind
//! the Glue header, plain and zlib-compressed, and with ESM schema metadata carrying the schema
//! version id; an unknown version is redelivered, a cut body and a corrupt zlib stream are
//! dead-lettered.

use std::collections::HashMap;
use std::sync::Arc;

use event_decoding::{
    AvroSchema, DataFormat, Decoding, ErrorCode, KafkaBatch, KafkaRecord, ValueFormat,
    WriterSchema, glue_prefix, schema_ids,
};
use serde_json::{Value, json};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/", $name)).as_slice()
    };
}

/// The schema version id `scripts/make-glue-events` writes the gift schema under.
const GIFT_VERSION: &str = "4f0e2b8a-6c1d-4e3f-9a7b-2c5d8e1f0a3b";
const UNKNOWN_VERSION: &str = "7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8";

fn schemas() -> HashMap<String, Arc<WriterSchema>> {
    let gift = AvroSchema::parse(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/schemas/1-gift.avsc"
    )))
    .unwrap();
    HashMap::from([(GIFT_VERSION.to_string(), Arc::new(WriterSchema::from(gift)))])
}

fn gift(i: i64) -> Value {
    json!({"event_id": format!("glue-g{i}"), "page_id": 800 + i,
           "question": format!("Glue question {i} ü?"), "answer": format!("Glue answer {i}"),
           "ts": 1732350000.5 + i as f64})
}

#[test]
fn glue_framed_gifts_plain_and_compressed() {
    let batch = KafkaBatch::from_slice(fixture!("gift-avro-glue.json")).unwrap();
    let records = batch.as_slice();
    // The headers as the Python serializer wrote them.
    let headers: Vec<_> = records
        .iter()
        .map(|r| {
            let v = r.value().unwrap().unwrap();
            let h = glue_prefix(&v).unwrap();
            (h.schema_version_id, v[1])
        })
        .collect();
    assert_eq!(
        headers.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        [0, 5, 5, 0, 0, 5]
    );
    assert_eq!(headers[3].0, UNKNOWN_VERSION);
    assert!(
        headers
            .iter()
            .enumerate()
            .all(|(i, (id, _))| i == 3 || id == GIFT_VERSION)
    );

    let schemas = schemas();
    for format in [ValueFormat::Avro, ValueFormat::Auto, ValueFormat::Protobuf] {
        let d = Decoding::new(format, &schemas);
        let results: Vec<_> = records
            .iter()
            .map(|r| r.value_json_via::<Value>(d))
            .collect();
        assert_eq!(results[0].as_ref().unwrap(), &gift(0));
        let mut g1 = gift(1);
        g1["event_id"] = Value::Null;
        g1["ts"] = Value::Null;
        assert_eq!(results[1].as_ref().unwrap(), &g1);
        let mut g2 = gift(2);
        g2["answer"] = json!("Glue answer 2, ".repeat(150));
        assert_eq!(results[2].as_ref().unwrap(), &g2);
        let unknown = results[3].as_ref().unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownSchemaId, "{unknown}");
        assert!(unknown.message.contains(UNKNOWN_VERSION), "{unknown}");
        assert!(!unknown.is_permanent());
        for (i, want) in [(4, "does not match"), (5, "zlib")] {
            let e = results[i].as_ref().unwrap_err();
            assert_eq!(e.code, ErrorCode::SchemaMismatch, "{i}: {e}");
            assert!(e.message.contains(want), "{i}: {e}");
            assert!(e.is_permanent());
        }
    }
    // What a resolver fetches for the batch: both version ids, once each.
    assert_eq!(
        schema_ids(records, ValueFormat::Auto)
            .into_iter()
            .collect::<Vec<_>>(),
        [GIFT_VERSION, UNKNOWN_VERSION]
    );
    // As JSON they are garbage: the default never guesses.
    let e = records[0].value_json::<Value>().unwrap_err();
    assert!(
        matches!(e.code, ErrorCode::InvalidJson | ErrorCode::InvalidUtf8),
        "{e}"
    );
}

#[test]
fn esm_source_records_carry_the_version_id() {
    let batch = KafkaBatch::from_slice(fixture!("gift-avro-glue-source.json")).unwrap();
    let records = batch.as_slice();
    let meta = records[0].value_schema_metadata().unwrap();
    assert_eq!(
        (meta.data_format.as_str(), meta.schema_id.as_str()),
        ("AVRO", GIFT_VERSION)
    );
    let schemas = schemas();
    let d = Decoding::new(ValueFormat::Auto, &schemas);
    assert_eq!(records[0].value_json_via::<Value>(d).unwrap(), gift(6));
    let mut g7 = gift(7);
    g7["ts"] = Value::Null;
    assert_eq!(records[1].value_json_via::<Value>(d).unwrap(), g7);
    let e = records[2].value_json_via::<Value>(d).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownSchemaId);
    assert!(!e.is_permanent());
}

#[test]
fn auto_tells_glue_from_json_and_confluent() {
    let schemas = schemas();
    let d = Decoding::new(ValueFormat::Auto, &schemas);
    let json = KafkaRecord::new("t", 0, 0, 0).with_value(r#"{"page_id": 3}"#);
    assert_eq!(
        json.value_json_via::<Value>(d).unwrap(),
        json!({"page_id": 3})
    );
    // Byte 3 with a compression byte Glue never writes is not Glue, and not JSON either.
    let mut odd = vec![3, 9];
    odd.extend_from_slice(&[0; 20]);
    let e = KafkaRecord::new("t", 0, 0, 0)
        .with_value(odd)
        .value_json_via::<Value>(d)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidJson);
    // VALUE_FORMAT=avro without metadata or a prefix names both prefixes.
    let e = json
        .value_json_via::<Value>(Decoding::new(ValueFormat::Avro, &schemas))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::MissingSchemaId);
    assert!(e.message.contains("Glue header"), "{e}");
}

const PROTO_VERSION: &str = "2b9d0c6e-51a4-4f87-b3e2-9c0d1e2f3a4b";
const JSON_VERSION: &str = "c3a1e5d7-0b2f-4a69-8d4c-6e7f8091a2b3";

fn proto_and_json_schemas() -> HashMap<String, Arc<WriterSchema>> {
    let proto = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/schemas/gift.proto"
    ));
    HashMap::from([
        (
            PROTO_VERSION.to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Protobuf, proto, &[]).unwrap()),
        ),
        (
            "11".to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Protobuf, proto, &[]).unwrap()),
        ),
        (JSON_VERSION.to_string(), Arc::new(WriterSchema::Json)),
    ])
}

#[test]
fn glue_protobuf_and_json_schema_values() {
    let glue = KafkaBatch::from_slice(fixture!("gift-protobuf-glue.json")).unwrap();
    let confluent = KafkaBatch::from_slice(fixture!("gift-protobuf.json")).unwrap();
    let schemas = proto_and_json_schemas();
    let d = Decoding::new(ValueFormat::Auto, &schemas);
    let records = glue.as_slice();
    // The same messages behind the Glue header (message index 0, and 1 zlib-compressed) and
    // behind the Confluent prefix (message indexes [0] and [1]) decode alike.
    for (g, c) in [(0, 0), (1, 2)] {
        let from_glue: Value = records[g].value_json_via(d).unwrap();
        let from_confluent: Value = confluent.as_slice()[c].value_json_via(d).unwrap();
        assert_eq!(from_glue, from_confluent, "{g}");
    }
    let tagged: Value = records[1].value_json_via(d).unwrap();
    assert_eq!(tagged["note"], json!({"text": "nested"}));
    assert_eq!(tagged["views"], json!(9007199254740993u64));
    // A JSON Schema value: JSON text behind the header.
    let v: Value = records[2].value_json_via(d).unwrap();
    assert_eq!(v["event_id"], "glue-json-g0");
    // A message index past the file's four message types.
    let e = records[3].value_json_via::<Value>(d).unwrap_err();
    assert_eq!(e.code, ErrorCode::SchemaMismatch);
    assert!(e.message.contains("message index 4"), "{e}");

    // Index 3 is vault.TaggedGift.Note: the map entry vault.TaggedGift.LabelsEntry counts (2).
    let mut v = vec![3, 0];
    v.extend(
        PROTO_VERSION
            .replace('-', "")
            .as_bytes()
            .chunks(2)
            .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap()),
    );
    v.extend_from_slice(&[3, 10, 1, b'x']);
    let note: Value = KafkaRecord::new("t", 0, 0, 0)
        .with_value(v)
        .value_json_via(d)
        .unwrap();
    assert_eq!(note, json!({"text": "x"}));
}

/// An event source mapping with a Glue registry and `EventRecordFormat: SOURCE` strips the Glue
/// header and keeps Glue's message index (an unsigned varint, not Confluent's zigzag array): the
/// samples' bodies are what AWS's package's `codec.decode` leaves of values it encoded.
#[test]
fn glue_source_protobuf_reads_glue_message_index() {
    let batch = KafkaBatch::from_slice(fixture!("gift-protobuf-glue-source.json")).unwrap();
    let records = batch.as_slice();
    let meta = records[1].value_schema_metadata().unwrap();
    assert_eq!(
        (meta.data_format.as_str(), meta.schema_id.as_str()),
        ("PROTOBUF", PROTO_VERSION)
    );
    // Glue's index as the first byte: 0, 1 (the file's second message), 3 (a nested one), 4.
    let first: Vec<u8> = records
        .iter()
        .map(|r| r.value().unwrap().unwrap()[0])
        .collect();
    assert_eq!(first, [0, 1, 3, 4]);
    let schemas = proto_and_json_schemas();
    for format in [ValueFormat::Auto, ValueFormat::Protobuf] {
        let d = Decoding::new(format, &schemas);
        let g0: Value = records[0].value_json_via(d).unwrap();
        assert_eq!(g0["event_id"], "glue-src-g0");
        assert_eq!(g0["page_id"], json!(810));
        // Read as Confluent's array, byte 1 is "-1 message indexes": a schema_mismatch.
        let g1: Value = records[1].value_json_via(d).unwrap();
        assert_eq!(g1["event_id"], "glue-src-g1");
        assert_eq!(g1["page_id"], json!(811));
        assert_eq!(g1["question"], "Glue source question 1?");
        assert_eq!(g1["kind"], "RIDDLE");
        assert_eq!(g1["labels"], json!({"lang": "fr"}));
        assert_eq!(g1["note"], json!({"text": "kept"}));
        let note: Value = records[2].value_json_via(d).unwrap();
        assert_eq!(note, json!({"text": "a note"}));
        let e = records[3].value_json_via::<Value>(d).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaMismatch, "{e}");
        assert!(e.message.contains("Glue message index 4"), "{e}");
    }
    assert_eq!(
        schema_ids(records, ValueFormat::Auto)
            .into_iter()
            .collect::<Vec<_>>(),
        [PROTO_VERSION]
    );
    // A Confluent schema id in the metadata keeps Confluent's framing: byte 2 is one index, [1].
    let confluent_source = KafkaRecord::new("t", 0, 0, 0)
        .with_value([2, 2, 10, 1, b'x'])
        .with_value_schema_metadata(event_decoding::SchemaMetadata::new("PROTOBUF", "11"));
    let tagged: Value = confluent_source
        .value_json_via(Decoding::new(ValueFormat::Auto, &schemas))
        .unwrap();
    assert_eq!(tagged["event_id"], "x");
}
