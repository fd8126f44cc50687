//! Peak memory while decoding hostile values stays under a fixed bound: this test binary holds
//! one test, so its peak resident set (`VmHWM` of `/proc/self/status`, Linux) is that of the
//! decoding. (Unsafe code is forbidden in the workspace, so no counting allocator.)

use std::collections::HashMap;
use std::sync::Arc;

use event_decoding::{DataFormat, Decoding, KafkaRecord, ValueFormat, WriterSchema};

#[path = "common/hostile.rs"]
mod hostile;
use hostile::{NESTED_NULLS, nested_nulls, peak_rss};

/// Decodes `value` (Confluent-framed, schema id 1): refused as too large.
fn refused(schema: &Arc<WriterSchema>, value: Vec<u8>, format: ValueFormat) {
    let schemas: HashMap<String, Arc<WriterSchema>> =
        HashMap::from([("1".to_string(), schema.clone())]);
    let record = KafkaRecord::new("t", 0, 0, 0).with_value(value);
    let err = record
        .value_json_via::<serde_json::Value>(Decoding::new(format, &schemas))
        .expect_err("a hostile value is refused");
    assert_eq!(err.error_code(), "schema_mismatch", "{err}");
    assert!(err.message.contains("output budget"), "{err}");
}

#[test]
#[cfg(target_os = "linux")]
fn hostile_values_decode_within_a_fixed_memory_bound() {
    // Avro: 64 arrays of 100,000 nulls (6.4 million values, 205 MB as JSON) in 257 bytes.
    let avro = Arc::new(WriterSchema::parse(DataFormat::Avro, NESTED_NULLS, &[]).unwrap());
    let value = nested_nulls(64, 100_000, 0);
    refused(&avro, value, ValueFormat::Avro);

    // Protobuf: 200,000 empty messages of eight fields (two bytes each, 1.6 million JSON values).
    let proto = Arc::new(
        WriterSchema::parse(
            DataFormat::Protobuf,
            r#"syntax = "proto3";
               message Box { repeated Wide items = 1; }
               message Wide { int64 a = 1; int64 b = 2; string c = 3; bool d = 4; double e = 5;
                              repeated int32 f = 6; uint64 g = 7; sint64 h = 8; }"#,
            &[],
        )
        .unwrap(),
    );
    let mut value = vec![0, 0, 0, 0, 1, 0];
    value.extend([10u8, 0].repeat(200_000));
    refused(&proto, value, ValueFormat::Protobuf);
    // Without the budget the Avro value alone takes over 200 MB as JSON. The Protobuf body's
    // empty items take no node of the dynamic message; its JSON is not built (items with a field
    // set, which do take one: tests/bounded_memory_large.rs).
    let peak = peak_rss();
    assert!(peak < 96 << 20, "peak resident set {peak} bytes");
}
