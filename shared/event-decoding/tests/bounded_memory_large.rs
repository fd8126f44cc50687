//! Peak memory while decoding one hostile value of megabytes stays under the target
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
    let peak = peak_rss();
    eprintln!(
        "peak resident set decoding a 2 MB hostile value: {} MB",
        peak >> 20
    );
    assert!(peak < 128 << 20, "peak resident set {peak} bytes");
    assert_eq!(err.error_code(), "schema_mismatch", "{err}");
    assert!(
        err.message.contains("the most any one value may take"),
        "{err}"
    );
}
