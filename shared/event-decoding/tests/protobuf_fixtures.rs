//! The Protobuf and JSON Schema samples in `events/` (Protobuf bodies written by Google's Python
//! protobuf runtime, `scripts/make-protobuf-events`) decode to what `events/README.md` says:
//! gifts in the Confluent wire format (message indexes `[0]` and `[1]`), with ESM schema metadata
//! (message indexes removed, and kept), an unknown schema id and a body cut short.

use std::collections::HashMap;
use std::sync::Arc;

use event_decoding::{
    DataFormat, Decoding, ErrorCode, KafkaBatch, KafkaRecord, ValueFormat, WriterSchema,
};
use serde_json::{Value, json};

fn events(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn schemas() -> HashMap<String, Arc<WriterSchema>> {
    let proto = String::from_utf8(events("schemas/gift.proto")).unwrap();
    let json_schema = String::from_utf8(events("schemas/gift.schema.json")).unwrap();
    HashMap::from([
        (
            "11".to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Protobuf, &proto, &[]).unwrap()),
        ),
        (
            "21".to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Json, &json_schema, &[]).unwrap()),
        ),
    ])
}

fn decode(records: &[KafkaRecord], format: ValueFormat) -> Vec<Result<Value, ErrorCode>> {
    let s = schemas();
    records
        .iter()
        .map(|r| {
            r.value_json_via::<Value>(Decoding::new(format, &s))
                .map_err(|e| e.code)
        })
        .collect()
}

#[test]
fn protobuf_gifts_by_wire_prefix_and_by_metadata() {
    let batch = KafkaBatch::from_slice(&events("gift-protobuf.json")).unwrap();
    let records: Vec<KafkaRecord> = batch.records().cloned().collect();
    assert_eq!(records.len(), 7);
    for format in [ValueFormat::Protobuf, ValueFormat::Auto] {
        let got = decode(&records, format);
        let gift = |i: i64| {
            json!({"event_id": format!("proto-g{i}"), "page_id": 800 + i,
                   "question": format!("Protobuf question {i} ü?"),
                   "answer": format!("Protobuf answer {i}"),
                   "ts": format!("2024-11-23T08:20:0{i}.500Z")})
        };
        assert_eq!(got[0], Ok(gift(0)));
        // No event_id (proto3 optional: absent), no ts (unset message: absent).
        assert_eq!(
            got[1],
            Ok(json!({"page_id": 801, "question": "Protobuf question 1 ü?",
                      "answer": "Protobuf answer 1"}))
        );
        // Message indexes [1]: TaggedGift, with an enum, a repeated field, a map, a uint64
        // beyond 2^53 (a number, exact) and a oneof holding a nested message.
        let mut tagged = gift(2);
        let extra = json!({"kind": "RIDDLE", "tags": ["a", "b"], "labels": {"lang": "de"},
                           "views": 9_007_199_254_740_993_u64, "note": {"text": "nested"}});
        tagged
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_eq!(got[2], Ok(tagged));
        // SOURCE: without and with the message indexes.
        assert_eq!(got[3], Ok(gift(3)));
        assert_eq!(got[4], Ok(gift(5)));
        assert_eq!(got[5], Err(ErrorCode::UnknownSchemaId));
        assert_eq!(got[6], Err(ErrorCode::SchemaMismatch));
    }
}

#[test]
fn json_schema_gifts_are_json() {
    let batch = KafkaBatch::from_slice(&events("gift-jsonschema.json")).unwrap();
    let records: Vec<KafkaRecord> = batch.records().cloned().collect();
    for format in [ValueFormat::Auto, ValueFormat::Avro, ValueFormat::Protobuf] {
        let got = decode(&records, format);
        assert_eq!(got[0].as_ref().unwrap()["event_id"], "jsonschema-g0");
        assert_eq!(got[0].as_ref().unwrap()["ts"], 1_732_350_000.5);
        assert_eq!(got[1].as_ref().unwrap()["page_id"], 901);
        assert_eq!(got[2], Err(ErrorCode::InvalidJson));
    }
    // VALUE_FORMAT=json reads the prefixed value as text, which is not JSON.
    assert_eq!(
        decode(&records, ValueFormat::Json)[0],
        Err(ErrorCode::InvalidJson)
    );
}
