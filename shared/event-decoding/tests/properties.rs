//! Property tests: the decoder never panics on arbitrary input, and builder -> JSON -> decode
//! round-trips.

use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("op".to_string()),
            Just("c".to_string()),
            Just("d".to_string()),
            Just("true".to_string()),
            ".{0,8}".prop_map(String::from)
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let keys = prop_oneof![
            Just("op".to_string()),
            Just("__op".to_string()),
            Just("__deleted".to_string()),
            Just("before".to_string()),
            Just("after".to_string()),
            Just("source".to_string()),
            Just("connector".to_string()),
            Just("schema".to_string()),
            Just("payload".to_string()),
            Just("value".to_string()),
            Just("deletion_ts".to_string()),
            Just("set".to_string()),
            "[a-z_]{1,6}".prop_map(String::from),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn record() -> impl Strategy<Value = KafkaRecord> {
    (
        "[a-zA-Z0-9._-]{1,24}",
        0..64i32,
        0..i64::MAX,
        any::<i64>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        prop::collection::vec((".{0,10}", prop::collection::vec(any::<u8>(), 0..12)), 0..4),
        prop::option::of(prop_oneof![Just("CREATE_TIME"), Just("LOG_APPEND_TIME")]),
    )
        .prop_map(|(topic, partition, offset, ts, key, value, headers, tt)| {
            let mut r = KafkaRecord::new(topic, partition, offset, ts);
            if let Some(k) = key {
                r = r.with_key(k);
            }
            if let Some(v) = value {
                r = r.with_value(v);
            }
            for (name, bytes) in headers {
                r = r.with_header(name, bytes);
            }
            if let Some(tt) = tt {
                r = r.with_timestamp_type(tt);
            }
            r
        })
}

fn exercise(r: &KafkaRecord) {
    let _ = r.key();
    let _ = r.key_str();
    let _ = r.value_str();
    let _ = r.value_json::<Value>();
    let _ = r.change();
    for h in r.headers() {
        let _ = h.as_str();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_payload_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(b) = KafkaBatch::from_slice(&bytes) {
            b.records().for_each(exercise);
        }
    }

    #[test]
    fn arbitrary_json_payload_never_panics(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(b) = KafkaBatch::from_slice(&bytes) {
            b.records().for_each(exercise);
        }
        // The same document as a `records` map entry.
        let wrapped = serde_json::json!({"records": {"t-0": [v]}});
        let _ = KafkaBatch::from_slice(&serde_json::to_vec(&wrapped).unwrap());
    }

    #[test]
    fn arbitrary_record_values_never_panic(value in prop::collection::vec(any::<u8>(), 0..256),
                                           key in prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
                                           raw in ".{0,40}") {
        let mut r = KafkaRecord::new("t", 0, 0, 0).with_value(&value);
        if let Some(k) = key { r = r.with_key(k); }
        exercise(&r);
        exercise(&KafkaRecord::new("t", 0, 0, 0).with_raw_value(raw.clone()).with_raw_key(raw));
    }

    #[test]
    fn arbitrary_json_values_decode_as_change_or_error(v in json_value(), key in prop::option::of(json_value())) {
        let mut r = KafkaRecord::new("cdc.pages", 1, 2, 0).with_value(serde_json::to_vec(&v).unwrap());
        if let Some(k) = key { r = r.with_key(serde_json::to_vec(&k).unwrap()); }
        match r.change() {
            Ok(c) => { let _ = c.field("page_id"); let _ = c.kind(); }
            Err(e) => {
                prop_assert_eq!(e.id, r.id());
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn builder_json_decode_round_trip(records in prop::collection::vec(record(), 0..24), msk in any::<bool>()) {
        let source = if msk { EventSource::Msk } else { EventSource::SelfManaged };
        let batch = KafkaBatch::builder(source).event_source_arn("arn:x").records(records.clone()).build();
        let bytes = serde_json::to_vec(&batch).unwrap();
        let decoded = KafkaBatch::from_slice(&bytes).unwrap();
        prop_assert_eq!(&decoded, &batch);
        prop_assert_eq!(decoded.len(), records.len());
        // Bytes survive base64 and signed header bytes.
        let mut expected = records.clone();
        expected.sort_by(|a, b| (&*a.topic, a.partition, a.offset).cmp(&(&*b.topic, b.partition, b.offset)));
        for (d, e) in decoded.records().zip(&expected) {
            prop_assert_eq!(d.key().unwrap(), e.key().unwrap());
            prop_assert_eq!(d.value().unwrap(), e.value().unwrap());
            prop_assert_eq!(d.headers(), e.headers());
        }
        // Deterministic order.
        let ids: Vec<_> = decoded.records().map(KafkaRecord::id).collect();
        prop_assert!(ids.windows(2).all(|w| w[0] <= w[1]));
    }
}
