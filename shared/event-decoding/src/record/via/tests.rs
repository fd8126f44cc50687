use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use serde::Deserialize;

use super::*;
use crate::protobuf::ProtoSchema;
use crate::record::{key_and_value_schema_ids, schema_ids};
use crate::schema::{DataFormat, SchemaLookup};

fn schemas(id: &str, schema: &str) -> HashMap<String, Arc<WriterSchema>> {
    HashMap::from([(
        id.to_string(),
        Arc::new(WriterSchema::parse(DataFormat::Avro, schema, &[]).unwrap()),
    )])
}

const GIFT: &str = r#"{"type":"record","name":"Gift","fields":[
    {"name":"page_id","type":"long"},{"name":"question","type":"string"}]}"#;

/// page_id 3, question "hi".
pub(crate) const GIFT_BODY: [u8; 4] = [6, 4, b'h', b'i'];

pub(crate) fn wire(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn metadata_without_a_schema_id_says_nothing() {
    let m: SchemaMetadata =
        serde_json::from_str(r#"{"dataFormat":"JSON","schemaId":null}"#).unwrap();
    assert_eq!(m.schema_id, "");
    let m: SchemaMetadata = serde_json::from_str(r#"{"dataFormat":"AVRO","schemaId":17}"#).unwrap();
    assert_eq!(m.schema_id, "17");
    let s = schemas("1", GIFT);
    let r = KafkaRecord::new("t", 0, 0, 0)
        .with_value(wire(1, &GIFT_BODY))
        .with_value_schema_metadata(SchemaMetadata::new("JSON", ""));
    let v: Value = r
        .value_json_via(Decoding::new(ValueFormat::Avro, &s))
        .unwrap();
    assert_eq!(v["page_id"], 3);
}

#[test]
fn json_format_ignores_prefixes_and_metadata() {
    let s = schemas("1", GIFT);
    let r = KafkaRecord::new("t", 0, 0, 0).with_value(wire(1, &GIFT_BODY));
    let err = r
        .value_json_via::<Value>(Decoding::new(ValueFormat::Json, &s))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidJson);
}

#[test]
fn avro_by_prefix_and_by_metadata() {
    let s = schemas("1", GIFT);
    let d = Decoding::new(ValueFormat::Avro, &s);
    let by_prefix = KafkaRecord::new("t", 0, 0, 0).with_value(wire(1, &GIFT_BODY));
    let by_meta = KafkaRecord::new("t", 0, 1, 0)
        .with_value(GIFT_BODY)
        .with_value_schema_metadata(SchemaMetadata::new("AVRO", "1"));
    for r in [by_prefix, by_meta] {
        let v: Value = r.value_json_via(d).unwrap();
        assert_eq!(v, json!({"page_id": 3, "question": "hi"}));
    }
}

#[test]
fn typed_values_name_the_field() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        page_id: String,
    }
    let s = schemas("1", GIFT);
    let r = KafkaRecord::new("t", 0, 0, 0).with_value(wire(1, &GIFT_BODY));
    let err = r
        .value_json_via::<Wrong>(Decoding::new(ValueFormat::Avro, &s))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidField);
    assert!(err.message.starts_with("page_id: invalid type"), "{err}");
}

#[test]
fn auto_takes_json_and_avro_avro_refuses_json() {
    let s = schemas("1", GIFT);
    let r = KafkaRecord::new("t", 0, 0, 0).with_value(r#"{"page_id":1}"#);
    let v: Value = r
        .value_json_via(Decoding::new(ValueFormat::Auto, &s))
        .unwrap();
    assert_eq!(v, json!({"page_id": 1}));
    let err = r
        .value_json_via::<Value>(Decoding::new(ValueFormat::Avro, &s))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::MissingSchemaId);
    assert!(err.is_permanent());
}

#[test]
fn schema_errors_are_classified() {
    let s = schemas("1", GIFT);
    let d = Decoding::new(ValueFormat::Avro, &s);
    // Unknown id: not the record's fault.
    let err = KafkaRecord::new("t", 0, 0, 0)
        .with_value(wire(2, &GIFT_BODY))
        .value_json_via::<Value>(d)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSchemaId);
    assert!(!err.is_permanent());
    // A body that does not match: dead letter.
    for body in [&[6u8, 9, b'h'][..], &[6, 4, b'h', b'i', 1][..], &[][..]] {
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(1, body))
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaMismatch, "{body:?}");
        assert!(err.is_permanent());
    }
    // A data format nobody decodes: not the record's fault, redelivered.
    let err = KafkaRecord::new("t", 0, 0, 0)
        .with_value(GIFT_BODY)
        .with_value_schema_metadata(SchemaMetadata::new("THRIFT", "1"))
        .value_json_via::<Value>(d)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedFormat);
    assert!(!err.is_permanent());
    // A fetch failure surfaces as such.
    struct Down;
    impl SchemaLookup for Down {
        fn schema(&self, _: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
            Err(SchemaUnavailable::FetchFailed(
                "registry answered 503".into(),
            ))
        }
    }
    let err = KafkaRecord::new("t", 0, 0, 0)
        .with_value(wire(1, &GIFT_BODY))
        .value_json_via::<Value>(Decoding::new(ValueFormat::Auto, &Down))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::SchemaFetchFailed);
    assert!(err.message.contains("503"));
    assert!(!err.is_permanent());
}

#[test]
fn avro_key_and_tombstone_changes() {
    let key_schema =
        r#"{"type":"record","name":"Key","fields":[{"name":"page_id","type":"long"}]}"#;
    let mut s = schemas("1", GIFT);
    s.insert(
        "2".into(),
        Arc::new(WriterSchema::parse(DataFormat::Avro, key_schema, &[]).unwrap()),
    );
    let d = Decoding::new(ValueFormat::Avro, &s);
    let tomb = KafkaRecord::new("t", 0, 0, 0).with_key(wire(2, &[84]));
    assert_eq!(
        tomb.change_via(d).unwrap(),
        Change::Tombstone {
            key: json!({"page_id": 42})
        }
    );
    let text_key = KafkaRecord::new("t", 0, 0, 0)
        .with_key("p-1")
        .with_value(wire(1, &GIFT_BODY));
    match text_key.change_via(d).unwrap() {
        Change::Upsert { row, key, .. } => {
            assert_eq!(Value::Object(row), json!({"page_id": 3, "question": "hi"}));
            assert_eq!(key, Some(json!("p-1")));
        }
        other => panic!("{other:?}"),
    }
}

const PROTO: &str = r#"syntax = "proto3";
    package shop;
    message Gift {
        int64 page_id = 1;
        string question = 2;
        message Note { string text = 1; }
    }"#;

fn proto_schemas() -> HashMap<String, Arc<WriterSchema>> {
    HashMap::from([
        (
            "5".to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Protobuf, PROTO, &[]).unwrap()),
        ),
        (
            "6".to_string(),
            Arc::new(WriterSchema::parse(DataFormat::Json, "{}", &[]).unwrap()),
        ),
    ])
}

/// page_id 3, question "hi".
const PROTO_BODY: [u8; 6] = [8, 3, 18, 2, b'h', b'i'];

#[test]
fn protobuf_by_prefix_with_message_indexes_and_by_metadata() {
    let s = proto_schemas();
    let mut framed = vec![0]; // message indexes [0]
    framed.extend_from_slice(&PROTO_BODY);
    let mut nested = vec![4, 0, 0]; // message indexes [0, 0]: Gift.Note
    nested.extend_from_slice(&[10, 2, b'o', b'k']);
    for format in [ValueFormat::Protobuf, ValueFormat::Auto, ValueFormat::Avro] {
        let d = Decoding::new(format, &s);
        let by_prefix = KafkaRecord::new("t", 0, 0, 0).with_value(wire(5, &framed));
        // SOURCE: the ESM took the prefix away; with or without the message indexes.
        let by_meta = KafkaRecord::new("t", 0, 1, 0)
            .with_value(PROTO_BODY)
            .with_value_schema_metadata(SchemaMetadata::new("PROTOBUF", "5"));
        let by_meta_indexed = KafkaRecord::new("t", 0, 2, 0)
            .with_value(framed.clone())
            .with_value_schema_metadata(SchemaMetadata::new("PROTOBUF", "5"));
        for r in [by_prefix, by_meta, by_meta_indexed] {
            let v: Value = r.value_json_via(d).unwrap();
            assert_eq!(v, json!({"page_id": 3, "question": "hi"}), "{format}");
        }
        let r = KafkaRecord::new("t", 0, 3, 0).with_value(wire(5, &nested));
        assert_eq!(r.value_json_via::<Value>(d).unwrap(), json!({"text": "ok"}));
    }
    // `protobuf` refuses a value nothing describes.
    let err = KafkaRecord::new("t", 0, 0, 0)
        .with_value(PROTO_BODY)
        .value_json_via::<Value>(Decoding::new(ValueFormat::Protobuf, &s))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::MissingSchemaId);
    assert!(err.message.contains("VALUE_FORMAT=protobuf"), "{err}");
}

#[test]
fn protobuf_mismatches_are_dead_letters() {
    let s = proto_schemas();
    let d = Decoding::new(ValueFormat::Protobuf, &s);
    for (what, value) in [
        ("field 1 as a string", wire(5, &[0, 10, 1, b'x'])),
        ("no message indexes", wire(5, &[])),
        ("an index naming no message", wire(5, &[2, 6, 8, 3])),
        ("cut short", wire(5, &[0, 18, 9, b'h'])),
    ] {
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(value)
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaMismatch, "{what}: {err}");
        assert!(err.is_permanent());
        assert!(err.message.contains("writer schema 5"), "{err}");
    }
    // A typed value names the field, as for JSON and Avro.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        question: i64,
    }
    let mut framed = vec![0];
    framed.extend_from_slice(&PROTO_BODY);
    let err = KafkaRecord::new("t", 0, 0, 0)
        .with_value(wire(5, &framed))
        .value_json_via::<Wrong>(d)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidField);
    assert!(err.message.starts_with("question:"), "{err}");
}

#[test]
fn json_schema_values_are_json_behind_the_prefix() {
    let s = proto_schemas();
    for format in [ValueFormat::Auto, ValueFormat::Avro, ValueFormat::Protobuf] {
        let d = Decoding::new(format, &s);
        let framed = KafkaRecord::new("t", 0, 0, 0).with_value(wire(6, br#"{"page_id":4}"#));
        let by_meta = KafkaRecord::new("t", 0, 1, 0)
            .with_value(r#"{"page_id":4}"#)
            .with_value_schema_metadata(SchemaMetadata::new("JSON", "6"));
        for r in [framed, by_meta] {
            assert_eq!(r.value_json_via::<Value>(d).unwrap(), json!({"page_id": 4}));
        }
        let err = KafkaRecord::new("t", 0, 0, 0)
            .with_value(wire(6, b"{nope"))
            .value_json_via::<Value>(d)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson, "{err}");
    }
    // Only the prefixed record needs its schema fetched.
    let records = [
        KafkaRecord::new("t", 0, 0, 0).with_value(wire(6, b"{}")),
        KafkaRecord::new("t", 0, 1, 0)
            .with_value("{}")
            .with_value_schema_metadata(SchemaMetadata::new("JSON", "7")),
    ];
    let ids: Vec<String> = schema_ids(&records, ValueFormat::Auto)
        .into_iter()
        .collect();
    assert_eq!(ids, ["6"]);
}

#[test]
fn protobuf_cdc_changes_and_keys() {
    let key = r#"syntax = "proto3"; message Key { int64 page_id = 1; }"#;
    let mut s = proto_schemas();
    s.insert(
        "8".into(),
        Arc::new(WriterSchema::parse(DataFormat::Protobuf, key, &[]).unwrap()),
    );
    let d = Decoding::new(ValueFormat::Protobuf, &s);
    let mut framed = vec![0];
    framed.extend_from_slice(&PROTO_BODY);
    let r = KafkaRecord::new("t", 0, 0, 0)
        .with_key(wire(8, &[0, 8, 42]))
        .with_value(wire(5, &framed));
    match r.change_via(d).unwrap() {
        Change::Upsert { row, key, .. } => {
            assert_eq!(Value::Object(row), json!({"page_id": 3, "question": "hi"}));
            assert_eq!(key, Some(json!({"page_id": 42})));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn writer_schemas_that_cannot_be_used() {
    let e = WriterSchema::parse(DataFormat::Protobuf, "message {", &[]).unwrap_err();
    assert!(e.starts_with("not a valid Protobuf schema"), "{e}");
    let e = WriterSchema::parse(DataFormat::Avro, r#"{"type":"nope"}"#, &[]).unwrap_err();
    assert!(e.starts_with("not a valid Avro schema"), "{e}");
    assert!(WriterSchema::parse(DataFormat::Other, "", &[]).is_err());
    // A reference missing: the named type does not resolve.
    let gift = r#"{"type":"record","name":"Gift","fields":[{"name":"to","type":"Address"}]}"#;
    assert!(WriterSchema::parse(DataFormat::Avro, gift, &[]).is_err());
    let e =
        WriterSchema::parse(DataFormat::Avro, gift, &[("Address".into(), "{".into())]).unwrap_err();
    assert!(e.contains("reference Address is not JSON"), "{e}");
    // An uncompilable Protobuf schema is the environment's fault, not the record's.
    struct Unusable;
    impl SchemaLookup for Unusable {
        fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
            WriterSchema::parse(DataFormat::Protobuf, "message {", &[])
                .map(Arc::new)
                .map_err(|e| SchemaUnavailable::Unknown(format!("schema {id}: {e}")))
        }
    }
    let err = KafkaRecord::new("t", 0, 0, 0)
        .with_value(wire(5, &[0]))
        .value_json_via::<Value>(Decoding::new(ValueFormat::Protobuf, &Unusable))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSchemaId);
    assert!(!err.is_permanent());
}

#[test]
fn plain_protobuf_values_with_a_configured_descriptor() {
    let set = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/schemas/gift.pb"
    ))
    .unwrap();
    let plain = WriterSchema::from(ProtoSchema::from_descriptor_set(&set, "vault.Gift").unwrap());
    let registry = proto_schemas();
    let d = Decoding::new(ValueFormat::Protobuf, &registry).with_plain(&plain);
    // page_id 7 (field 2), question "q" (field 3): vault.Gift, not the registry's shop.Gift.
    let r = KafkaRecord::new("t", 0, 0, 0).with_value([16, 7, 26, 1, b'q']);
    let v: Value = r.value_json_via(d).unwrap();
    assert_eq!(v["page_id"], 7);
    assert_eq!(v["question"], "q");
    // A prefixed value still names its registry schema.
    let mut framed = vec![0];
    framed.extend_from_slice(&PROTO_BODY);
    let r = KafkaRecord::new("t", 0, 1, 0).with_value(wire(5, &framed));
    assert_eq!(
        r.value_json_via::<Value>(d).unwrap(),
        json!({"page_id": 3, "question": "hi"})
    );
    // A body that does not match the configured message: dead letter.
    let err = KafkaRecord::new("t", 0, 2, 0)
        .with_value([16, 7, 26, 9, b'q'])
        .value_json_via::<Value>(d)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::SchemaMismatch);
    assert!(err.message.contains("PROTOBUF_DESCRIPTOR_SET"), "{err}");
    // `auto` reads unprefixed values as JSON, descriptor or not.
    let auto = Decoding::new(ValueFormat::Auto, &registry).with_plain(&plain);
    let r = KafkaRecord::new("t", 0, 3, 0).with_value(r#"{"page_id":1}"#);
    assert_eq!(
        r.value_json_via::<Value>(auto).unwrap(),
        json!({"page_id": 1})
    );
    // Nothing is fetched for plain values.
    let records = [KafkaRecord::new("t", 0, 0, 0).with_value([16, 7])];
    assert!(schema_ids(&records, ValueFormat::Protobuf).is_empty());
}

/// A Debezium envelope in Protobuf: an unset `before` / `after` message is absent from the
/// JSON (not null), which CDC decoding takes as it takes null.
#[test]
fn debezium_protobuf_envelopes_are_changes() {
    let envelope = r#"syntax = "proto3";
        message Envelope {
            message Row { string page_id = 1; string body = 2; }
            message Source { string connector = 1; int64 lsn = 2; }
            Row before = 1; Row after = 2; Source source = 3; string op = 4;
        }"#;
    let s = HashMap::from([(
        "9".to_string(),
        Arc::new(WriterSchema::parse(DataFormat::Protobuf, envelope, &[]).unwrap()),
    )]);
    let d = Decoding::new(ValueFormat::Protobuf, &s);
    // after {page_id "p", body "b"}, source {connector "postgresql", lsn 8}, op "c"
    let mut create = vec![0, 18, 6, 10, 1, b'p', 18, 1, b'b', 26, 14, 10, 10];
    create.extend_from_slice(b"postgresql");
    create.extend_from_slice(&[16, 8, 34, 1, b'c']);
    match KafkaRecord::new("t", 0, 0, 0)
        .with_value(wire(9, &create))
        .change_via(d)
        .unwrap()
    {
        Change::Upsert { row, .. } => {
            assert_eq!(Value::Object(row), json!({"page_id": "p", "body": "b"}))
        }
        other => panic!("{other:?}"),
    }
    // before {page_id "p", body ""}, op "d": no `after` at all.
    let delete = [0, 10, 3, 10, 1, b'p', 34, 1, b'd'];
    match KafkaRecord::new("t", 0, 1, 0)
        .with_value(wire(9, &delete))
        .change_via(d)
        .unwrap()
    {
        Change::Delete { row, .. } => {
            assert_eq!(
                row.map(Value::Object),
                Some(json!({"page_id": "p", "body": ""}))
            )
        }
        other => panic!("{other:?}"),
    }
}

const USER_KEY: &str =
    r#"{"type":"record","name":"UserKey","fields":[{"name":"user_id","type":"string"}]}"#;

/// user_id "" (an empty string: the body is byte 0, like a Confluent magic byte).
const EMPTY_KEY: [u8; 1] = [0];

/// Why the key of a record keyed by `key` does not decode.
fn key_error(d: Decoding<'_>, key: impl AsRef<[u8]>) -> RecordError {
    KafkaRecord::new("t", 0, 0, 0)
        .with_key(key)
        .key_via(d)
        .unwrap_err()
}

fn avro(schema: &str) -> WriterSchema {
    WriterSchema::parse(DataFormat::Avro, schema, &[]).unwrap()
}

/// `KEY_FORMAT=avro` with a shipped key schema and no registry: a plain key, one behind a
/// Confluent prefix, one named by `keySchemaMetadata`, all read with the key's own schema
/// (not the value's), whatever `VALUE_FORMAT` is.
#[test]
fn avro_keys_with_a_shipped_key_schema() {
    // As lambda-kit's stand-in for a registry: the shipped schema answers every id.
    struct Shipped(Arc<WriterSchema>);
    impl SchemaLookup for Shipped {
        fn schema(&self, _: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
            Ok(self.0.clone())
        }
    }
    let stand_in = Shipped(Arc::new(avro(USER_KEY)));
    let key: &WriterSchema = &stand_in.0;
    let values = schemas("1", GIFT);
    for format in [ValueFormat::Json, ValueFormat::Avro] {
        let d =
            Decoding::new(format, &values).with_keys(KeyFormat::Avro, Some(&stand_in), Some(key));
        let value: &[u8] = if format == ValueFormat::Json {
            br#"{"page_id":3}"#
        } else {
            &[0, 0, 0, 0, 1, 6, 4, b'h', b'i']
        };
        for (what, r) in [
            (
                "plain",
                KafkaRecord::new("t", 0, 0, 0).with_key([6, b'u', b'-', b'7']),
            ),
            (
                "prefixed",
                KafkaRecord::new("t", 0, 1, 0).with_key(wire(9, &[6, b'u', b'-', b'7'])),
            ),
            (
                "metadata",
                KafkaRecord::new("t", 0, 2, 0)
                    .with_key([6, b'u', b'-', b'7'])
                    .with_key_schema_metadata(SchemaMetadata::new("AVRO", "9")),
            ),
        ] {
            let r = r.with_value(value);
            assert_eq!(
                r.key_via(d).unwrap(),
                Some(json!({"user_id": "u-7"})),
                "{format} {what}"
            );
            match r.change_via(d).unwrap() {
                Change::Upsert { key, .. } => {
                    assert_eq!(key, Some(json!({"user_id": "u-7"})), "{what}")
                }
                other => panic!("{other:?}"),
            }
        }
        // A plain body that starts like a wire prefix is read whole by the shipped schema.
        let r = KafkaRecord::new("t", 0, 3, 0)
            .with_key(EMPTY_KEY)
            .with_value(value);
        assert_eq!(r.key_via(d).unwrap(), Some(json!({"user_id": ""})));
        // A key the schema does not read: the record's fault, naming the key and the setting.
        let r = KafkaRecord::new("t", 0, 4, 0)
            .with_key([6, b'u'])
            .with_value(value);
        let err = r.key_via(d).unwrap_err();
        assert_eq!(err.code, ErrorCode::SchemaMismatch);
        assert!(err.is_permanent());
        assert!(err.message.starts_with("key does not match"), "{err}");
        assert!(err.message.contains("KEY_AVRO_SCHEMA_FILE"), "{err}");
        assert_eq!(r.change_via(d).unwrap_err().code, ErrorCode::SchemaMismatch);
        // A null key is no key.
        let r = KafkaRecord::new("t", 0, 5, 0).with_value(value);
        assert_eq!(r.key_via(d).unwrap(), None);
    }
    // Without a shipped key schema a plain key names nothing: dead-lettered, naming KEY_FORMAT.
    let d = Decoding::new(ValueFormat::Json, &values).with_keys(KeyFormat::Avro, None, None);
    let err = key_error(d, "u-7");
    assert_eq!(err.code, ErrorCode::MissingSchemaId);
    assert!(err.message.contains("KEY_FORMAT=avro"), "{err}");
}

/// Keys through the registry: their ids are fetched with the values' (also when values are
/// JSON), and a registry that cannot answer for a key is the environment's fault.
#[test]
fn registry_keys_are_fetched_and_an_outage_is_redelivered() {
    let mut s = schemas("1", GIFT);
    s.insert("2".into(), Arc::new(avro(USER_KEY)));
    let records = [KafkaRecord::new("t", 0, 0, 0)
        .with_key(wire(2, &[6, b'u', b'-', b'1']))
        .with_value(r#"{"page_id":1}"#)];
    let ids: Vec<String> = key_and_value_schema_ids(&records, ValueFormat::Json, KeyFormat::Avro)
        .into_iter()
        .collect();
    assert_eq!(ids, ["2"]);
    assert!(
        schema_ids(&records, ValueFormat::Json).is_empty(),
        "the default is unchanged"
    );
    let d = Decoding::new(ValueFormat::Json, &s).with_keys(KeyFormat::Avro, None, None);
    assert_eq!(
        records[0].key_via(d).unwrap(),
        Some(json!({"user_id": "u-1"}))
    );
    // A tombstone of a JSON-valued topic keyed by Avro.
    let tomb = KafkaRecord::new("t", 0, 1, 0).with_key(wire(2, &[6, b'u', b'-', b'1']));
    assert_eq!(
        tomb.change_via(d).unwrap(),
        Change::Tombstone {
            key: json!({"user_id": "u-1"})
        }
    );
    // Today's reading is kept by default: the same key is text to a JSON-valued function.
    let text = String::from_utf8(wire(2, &[6, b'u', b'-', b'1'])).unwrap();
    assert_eq!(
        records[0]
            .key_via(Decoding::new(ValueFormat::Json, &s))
            .unwrap(),
        Some(Value::String(text))
    );
    struct Down;
    impl SchemaLookup for Down {
        fn schema(&self, id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
            Err(SchemaUnavailable::FetchFailed(format!(
                "registry down for {id}"
            )))
        }
    }
    let d = Decoding::new(ValueFormat::Json, &Down).with_keys(KeyFormat::Avro, None, None);
    let err = records[0].key_via(d).unwrap_err();
    assert_eq!(err.code, ErrorCode::SchemaFetchFailed);
    assert!(!err.is_permanent());
    assert!(err.message.starts_with("key: writer schema 2"), "{err}");
}

#[test]
fn protobuf_and_json_keys() {
    let set = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/schemas/gift.pb"
    ))
    .unwrap();
    let key = WriterSchema::from(ProtoSchema::from_descriptor_set(&set, "vault.Gift").unwrap());
    let d = Decoding::JSON.with_keys(KeyFormat::Protobuf, None, Some(&key));
    // page_id 7 (field 2), question "q" (field 3).
    let r = KafkaRecord::new("t", 0, 0, 0)
        .with_key([16, 7, 26, 1, b'q'])
        .with_value("{}");
    let k = r.key_via(d).unwrap().unwrap();
    assert_eq!(
        (k["page_id"].as_i64(), k["question"].as_str()),
        (Some(7), Some("q"))
    );
    let err = key_error(d, [16, 7, 26, 9]);
    assert_eq!(err.code, ErrorCode::SchemaMismatch);
    assert!(err.message.contains("KEY_PROTOBUF_DESCRIPTOR_SET"), "{err}");
    // `json`: a JSON key (its Connect wrapper removed); text is not JSON.
    let d = Decoding::JSON.with_keys(KeyFormat::Json, None, None);
    let r = KafkaRecord::new("t", 0, 0, 0).with_key(r#"{"schema":{},"payload":{"id":1}}"#);
    assert_eq!(r.key_via(d).unwrap(), Some(json!({"id": 1})));
    let err = key_error(d, "id-1");
    assert_eq!(err.code, ErrorCode::InvalidJson);
    assert!(err.message.starts_with("key is not valid JSON"), "{err}");
    // `string`: the text as it is, JSON-looking or not; bytes that are no UTF-8 are refused.
    let d = Decoding::JSON.with_keys(KeyFormat::String, None, None);
    for text in ["42", r#"{"id":1}"#, "id-1"] {
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key(text)
            .with_value(r#"{"a":1}"#);
        assert_eq!(r.key_via(d).unwrap(), Some(json!(text)));
        match r.change_via(d).unwrap() {
            Change::Upsert { key, .. } => assert_eq!(key, Some(json!(text))),
            other => panic!("{other:?}"),
        }
    }
    let err = key_error(d, [0xff]);
    assert_eq!(err.code, ErrorCode::InvalidUtf8);
    assert!(err.message.starts_with("key is not valid UTF-8"), "{err}");
}

/// Keys are held to the values' output budget: a key of a few hundred bytes that would be
/// 32 million nulls is refused as the record's fault, not built.
#[test]
fn a_hostile_key_stops_at_the_output_budget() {
    fn varint(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    // 64 arrays of 500,000 nulls each (a null takes no bytes).
    let mut key = Vec::new();
    varint(64, &mut key);
    for _ in 0..64 {
        varint(500_000, &mut key);
        varint(0, &mut key);
    }
    varint(0, &mut key);
    assert!(key.len() < 300, "{}", key.len());
    let nulls = avro(r#"{"type":"array","items":{"type":"array","items":"null"}}"#);
    let d = Decoding::JSON.with_keys(KeyFormat::Avro, None, Some(&nulls));
    let err = key_error(d, &key);
    assert_eq!(err.code, ErrorCode::SchemaMismatch);
    assert!(
        err.message.contains("expands past its output budget"),
        "{err}"
    );
}

proptest::proptest! {
    /// Any key bytes, under every key format, with and without metadata: a key or an error,
    /// never a panic; a key error always names the key.
    #[test]
    fn any_key_decodes_or_is_refused_naming_the_key(
        key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        meta in proptest::option::of("[0-9]{1,2}"),
    ) {
        let avro = avro(USER_KEY);
        let registry = schemas("1", USER_KEY);
        for (format, plain) in [
            (KeyFormat::Auto, None),
            (KeyFormat::String, None),
            (KeyFormat::Json, None),
            (KeyFormat::Avro, Some(&avro)),
            (KeyFormat::Avro, None),
        ] {
            for values in [ValueFormat::Json, ValueFormat::Avro] {
                let d = Decoding::new(values, &registry).with_keys(format, None, plain);
                let mut r = KafkaRecord::new("t", 0, 0, 0).with_key(&key);
                if let Some(id) = &meta {
                    r = r.with_key_schema_metadata(SchemaMetadata::new("AVRO", id.as_str()));
                }
                if let Err(e) = r.key_via(d) {
                    proptest::prop_assert!(e.message.starts_with("key"), "{format} {values}: {e}");
                }
            }
        }
    }
}
