//! Peak memory while decoding one hostile value of megabytes stays under the issue's target
//! (128 MB for a consumer on a 6 MB batch): the output budget grows with a body's length, 128
//! bytes of JSON per byte, and stops at a ceiling, else one 2 MB body of `null` arrays could
//! build a 256 MB tree before it is refused. This binary holds one test, so its peak resident
//! set (`VmHWM`, Linux) is that of the decoding.

use std::collections::HashMap;
use std::sync::Arc;

use event_decoding::{DataFormat, Decoding, KafkaRecord, ValueFormat, WriterSchema};

#[path = "common/hostile.rs"]
mod hostile;
use hostile::{NESTED_NULLS, nested_nulls, peak_rss};

#[test]
#[cfg(target_os = "linux")]
fn one_large_hostile_value_stops_at_the_ceiling() {
    let schema = Arc::new(WriterSchema::parse(DataFormat::Avro, NESTED_NULLS, &[]).unwrap());
    // Blocks of 1,000 inner arrays, each 10,000 nulls in 4 bytes: 2 MB of body, 5 billion
    // nulls; 128 bytes per body byte would allow 256 MB of tree.
    let value = nested_nulls(1_000, 10_000, 2_000_000);
    let schemas = HashMap::from([("1".to_string(), schema)]);
    let record = KafkaRecord::new("t", 0, 0, 0).with_value(value);
    let err = record
        .value_json_via::<serde_json::Value>(Decoding::new(ValueFormat::Avro, &schemas))
        .expect_err("a hostile value is refused");

    // Protobuf: 1 MB of 4-byte items, each a message with one field set (`0a 02 08 01`), which
    // the dynamic message holds as a B-tree node each (~0.7 KB): refused from the wire format,
    // before the tree is built (building it first took over 128 MB).
    let proto = Arc::new(
        WriterSchema::parse(
            DataFormat::Protobuf,
            r#"syntax = "proto3";
               message Box { repeated Item items = 1; }
               message Item { int64 a = 1; }"#,
            &[],
        )
        .unwrap(),
    );
    let mut value = vec![0, 0, 0, 0, 1, 0];
    value.extend([0x0a, 0x02, 0x08, 0x01].repeat(250_000));
    let schemas = HashMap::from([("1".to_string(), proto)]);
    let record = KafkaRecord::new("t", 0, 1, 0).with_value(value);
    let proto_err = record
        .value_json_via::<serde_json::Value>(Decoding::new(ValueFormat::Protobuf, &schemas))
        .expect_err("a hostile value is refused");

    let peak = peak_rss();
    eprintln!(
        "peak resident set decoding the 2 MB Avro and 1 MB Protobuf hostile values: {} MB",
        peak >> 20
    );
    assert!(peak < 128 << 20, "peak resident set {peak} bytes");
    assert_eq!(err.error_code(), "schema_mismatch", "{err}");
    assert!(
        err.message.contains("the most any one value may take"),
        "{err}"
    );
    assert_eq!(proto_err.error_code(), "schema_mismatch", "{proto_err}");
    assert!(proto_err.message.contains("output budget"), "{proto_err}");
}
