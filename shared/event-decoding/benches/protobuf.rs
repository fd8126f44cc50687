//! Protobuf values next to JSON: the same 10,000 gifts, once as JSON and once as Protobuf in the
//! Confluent wire format (magic byte, schema id, message indexes `[0]`, body), decoded from the
//! invocation payload into typed gifts and into `serde_json::Value` (what gift-persister
//! validates).
//!
//! `cargo bench -p event-decoding --bench protobuf`; figures in the README (Benchmarks).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use event_decoding::{DataFormat, Decoding, ValueFormat, WriterSchema};
use prost_reflect::prost::Message as _;
use prost_reflect::{DynamicMessage, Value as Proto};

mod common;
use common::{RECORDS, answer, batch, json_payload, typed, values};

const SCHEMA: &str = r#"syntax = "proto3";
package vault;
message Gift {
  int64 page_id = 1;
  string question = 2;
  string answer = 3;
  optional double ts = 4;
  optional string event_id = 5;
}"#;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Written by prost-reflect's encoder (the Protobuf samples in `events/` and the stack tests use
/// Google's runtime; here only the decoding speed matters).
fn protobuf_payload(schema: &WriterSchema) -> Vec<u8> {
    let WriterSchema::Protobuf(proto) = schema else {
        unreachable!()
    };
    let desc = proto.message(&[0]).unwrap();
    let answer = answer();
    batch((0..RECORDS).map(|i| {
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_name("page_id", Proto::I64(i as i64));
        m.set_field_by_name("question", Proto::String(format!("TEST Q number {i}?")));
        m.set_field_by_name("answer", Proto::String(answer.clone()));
        m.set_field_by_name("ts", Proto::F64(1732350000.123));
        m.set_field_by_name("event_id", Proto::String(format!("evt-{i:08}")));
        let mut value = vec![0, 0, 0, 0, 1, 0];
        value.extend(m.encode_to_vec());
        value
    }))
}

fn decode(c: &mut Criterion) {
    let schema = WriterSchema::parse(DataFormat::Protobuf, SCHEMA, &[]).unwrap();
    let json = json_payload();
    let protobuf = protobuf_payload(&schema);
    eprintln!(
        "payloads: {RECORDS} records; JSON {} bytes, Protobuf {} bytes",
        json.len(),
        protobuf.len()
    );
    let schemas: HashMap<String, Arc<WriterSchema>> =
        HashMap::from([("1".into(), Arc::new(schema))]);
    let protobuf_decoding = Decoding::new(ValueFormat::Protobuf, &schemas);

    let mut g = c.benchmark_group("protobuf_vs_json");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(RECORDS as u64));

    assert_eq!(values(&protobuf, protobuf_decoding), RECORDS);
    g.bench_function("json/payload_to_typed_gifts", |b| {
        b.iter(|| typed(black_box(&json), Decoding::JSON))
    });
    g.bench_function("protobuf/payload_to_typed_gifts", |b| {
        b.iter(|| typed(black_box(&protobuf), protobuf_decoding))
    });
    g.bench_function("json/payload_to_values", |b| {
        b.iter(|| values(black_box(&json), Decoding::JSON))
    });
    g.bench_function("protobuf/payload_to_values", |b| {
        b.iter(|| values(black_box(&protobuf), protobuf_decoding))
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
