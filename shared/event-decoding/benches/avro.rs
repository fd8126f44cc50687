//! Avro values next to JSON: the same 10,000 gifts, once as JSON and once as Avro in the Confluent
//! wire format (magic byte, schema id, body), decoded from the invocation payload into typed
//! gifts and into `serde_json::Value` (what gift-persister validates).
//!
//! `cargo bench -p event-decoding --bench avro`; figures in the README (Benchmarks).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use event_decoding::{AvroSchema, Decoding, ValueFormat, WriterSchema};

mod common;
use common::{RECORDS, answer, batch, json_payload, json_values, typed, values};

const SCHEMA: &str = r#"{"type":"record","name":"Gift","namespace":"vault","fields":[
  {"name":"page_id","type":"long"},
  {"name":"question","type":"string"},
  {"name":"answer","type":"string"},
  {"name":"ts","type":["null","double"],"default":null},
  {"name":"event_id","type":["null","string"],"default":null}]}"#;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same gifts as Avro bodies (written by apache-avro's writer).
fn avro_bodies() -> Vec<Vec<u8>> {
    let schema = apache_avro::Schema::parse_str(SCHEMA).unwrap();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    let answer = answer();
    (0..RECORDS)
        .map(|i| {
            let datum = Avro::Record(vec![
                ("page_id".into(), Avro::Long(i as i64)),
                (
                    "question".into(),
                    Avro::String(format!("TEST Q number {i}?")),
                ),
                ("answer".into(), Avro::String(answer.clone())),
                (
                    "ts".into(),
                    Avro::Union(1, Box::new(Avro::Double(1732350000.123))),
                ),
                (
                    "event_id".into(),
                    Avro::Union(1, Box::new(Avro::String(format!("evt-{i:08}")))),
                ),
            ]);
            writer.write_value_to_vec(datum).unwrap()
        })
        .collect()
}

fn avro_payload() -> Vec<u8> {
    batch(avro_bodies().into_iter().map(|body| {
        let mut value = vec![0, 0, 0, 0, 1];
        value.extend(body);
        value
    }))
}

fn decode(c: &mut Criterion) {
    let json = json_payload();
    let avro = avro_payload();
    eprintln!(
        "payloads: {RECORDS} records; JSON {} bytes, Avro {} bytes",
        json.len(),
        avro.len()
    );
    let schemas: HashMap<String, Arc<WriterSchema>> = HashMap::from([(
        "1".into(),
        Arc::new(AvroSchema::parse(SCHEMA).unwrap().into()),
    )]);
    let avro_decoding = Decoding::new(ValueFormat::Avro, &schemas);
    let auto_decoding = Decoding::new(ValueFormat::Auto, &schemas);

    let mut g = c.benchmark_group("avro_vs_json");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(RECORDS as u64));

    g.bench_function("json/payload_to_typed_gifts", |b| {
        b.iter(|| typed(black_box(&json), Decoding::JSON))
    });
    g.bench_function("avro/payload_to_typed_gifts", |b| {
        b.iter(|| typed(black_box(&avro), avro_decoding))
    });
    g.bench_function("json/payload_to_values", |b| {
        b.iter(|| values(black_box(&json), Decoding::JSON))
    });
    g.bench_function("avro/payload_to_values", |b| {
        b.iter(|| values(black_box(&avro), avro_decoding))
    });
    // The value decoders alone, on the same gifts: Avro bodies through the writer schema and
    // JSON texts through serde_json, each into `serde_json::Value`.
    let bodies = avro_bodies();
    let texts = json_values();
    let schema = AvroSchema::parse(SCHEMA).unwrap();
    g.bench_function("avro/bodies_to_values", |b| {
        b.iter(|| {
            black_box(&bodies)
                .iter()
                .filter(|body| schema.decode(body).is_ok())
                .count()
        })
    });
    g.bench_function("json/texts_to_values", |b| {
        b.iter(|| {
            black_box(&texts)
                .iter()
                .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
                .count()
        })
    });
    // VALUE_FORMAT=auto on JSON records: the per-record format check on the JSON path.
    g.bench_function("json_via_auto/payload_to_values", |b| {
        b.iter(|| values(black_box(&json), auto_decoding))
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
