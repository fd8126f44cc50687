//! The worst Avro input of issue 20 as table-sink meets it: a 6 MB ESM payload of records whose
//! value (Confluent wire prefix, then a 265-byte body) is an `array<array<null>>` of 64 arrays
//! of 500,000 nulls each, every array under the per-array item cap. The payload is parsed from
//! its bytes and every value decoded into `serde_json::Value` under `VALUE_FORMAT=avro`, as
//! table-sink decodes its rows; the values that decode are kept until the batch is done (as the
//! rows of a batch are), with the allocator of the function binaries (mimalloc). Run it under
//! `/usr/bin/time -v` for the peak RSS ("Maximum resident set size"):
//!
//! ```text
//! cargo build -p event-decoding --all-features --example hostile_avro
//! /usr/bin/time -v target/debug/examples/hostile_avro [payload bytes, default 6000000]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use event_decoding::{DataFormat, Decoding, KafkaBatch, ValueFormat, WriterSchema};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/hostile.rs"]
mod hostile;

/// The Confluent-framed value: magic byte, schema id 1, then one block of 64 arrays, each a
/// block of 500,000 nulls (which take no byte) and the end of the inner array.
fn hostile_value() -> Vec<u8> {
    hostile::nested_nulls(64, 500_000, 0)
}

fn main() {
    let limit: usize = std::env::args()
        .nth(1)
        .map_or(6_000_000, |n| n.parse().expect("payload bytes: a number"));
    let value = hostile_value();
    let text = base64::engine::general_purpose::STANDARD.encode(&value);
    let mut payload = String::from(
        r#"{"eventSource":"SelfManagedKafka","bootstrapServers":"localhost:9092","records":{"rows-0":["#,
    );
    let mut offset = 0;
    loop {
        let record = format!(
            r#"{{"topic":"rows","partition":0,"offset":{offset},"timestamp":1,"timestampType":"CREATE_TIME","value":"{text}","headers":[]}}"#
        );
        if payload.len() + record.len() + 4 > limit {
            break;
        }
        if offset > 0 {
            payload.push(',');
        }
        payload.push_str(&record);
        offset += 1;
    }
    payload.push_str("]}}");
    println!(
        "{offset} records of a {}-byte Avro body ({} bytes with its prefix), payload {} bytes",
        value.len() - 5,
        value.len(),
        payload.len()
    );

    let started = Instant::now();
    let batch = KafkaBatch::from_slice(payload.as_bytes()).expect("a valid ESM payload");
    drop(payload);
    let schema = Arc::new(
        WriterSchema::parse(DataFormat::Avro, hostile::NESTED_NULLS, &[]).expect("schema"),
    );
    let schemas: HashMap<String, Arc<WriterSchema>> = HashMap::from([("1".to_string(), schema)]);
    let decoding = Decoding::new(ValueFormat::Avro, &schemas);
    let mut rows = Vec::new();
    let mut refused = HashMap::<&'static str, usize>::new();
    let mut first_error = None;
    for r in batch.records() {
        match r.value_json_via::<serde_json::Value>(decoding) {
            Ok(v) => rows.push(v),
            Err(e) => {
                *refused.entry(e.error_code()).or_default() += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    println!(
        "{} decoded, refused {refused:?} in {:.2} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(e) = first_error {
        println!("first error: {e}");
    }
}
