//! Decoding a 10,000-record, ~6 MB batch (the ESM invocation payload limit) into typed gifts.
//!
//! `cargo bench -p event-decoding`; throughput is reported per payload byte and per record, with
//! the function binaries' allocator (mimalloc). Measured on the 2-core dev machine (6,015,065-byte
//! payload, load average 1.6): payload to typed gifts 6.1 ms (936 MiB/s, 1.61M records/s; 9.1 ms
//! before the envelope reader); payload to batch 3.05 ms; payload to CDC changes 12.3 ms (811k
//! records/s). README, Benchmarks, has the figures.
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use event_decoding::{EventSource, KafkaBatch, KafkaRecord};

mod common;
use common::{Gift, RECORDS};

/// The global allocator of the function binaries, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn payload() -> Vec<u8> {
    let answer = "The answer, with some text to make the record realistic. ".repeat(4);
    let batch = KafkaBatch::builder(EventSource::Msk)
        .event_source_arn("arn:aws:kafka:us-east-1:123456789012:cluster/bench/1")
        .records((0..RECORDS).map(|i| {
            KafkaRecord::new("gift_events", (i % 8) as i32, i as i64, 1_732_350_000_000 + i as i64)
                .with_key(format!("page-{i}"))
                .with_value(format!(
                    r#"{{"page_id":{i},"question":"TEST Q number {i}?","answer":"{answer}","ts":1732350000.123,"event_id":"evt-{i:08}"}}"#
                ))
                .with_header("source", "faust")
        }))
        .build();
    serde_json::to_vec(&batch).unwrap()
}

fn decode(c: &mut Criterion) {
    let bytes = payload();
    eprintln!("payload: {} records, {} bytes", RECORDS, bytes.len());
    let batch = KafkaBatch::from_slice(&bytes).unwrap();

    let mut g = c.benchmark_group("decode_6mb");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("payload_to_typed_gifts/bytes", |b| {
        b.iter(|| {
            let batch = KafkaBatch::from_slice(black_box(&bytes)).unwrap();
            batch
                .records()
                .map(|r| r.value_json::<Gift>().unwrap().page_id)
                .sum::<i64>()
        })
    });
    g.bench_function("payload_to_batch/bytes", |b| {
        b.iter(|| KafkaBatch::from_slice(black_box(&bytes)).unwrap().len())
    });
    // How lambda_runtime 1.x hands a function its event: serde_path_to_error over serde_json.
    g.bench_function("payload_to_batch_via_lambda_runtime/bytes", |b| {
        b.iter(|| {
            let mut de = serde_json::Deserializer::from_slice(black_box(&bytes));
            let batch: KafkaBatch = serde_path_to_error::deserialize(&mut de).unwrap();
            batch.len()
        })
    });
    g.bench_function("payload_to_changes/bytes", |b| {
        b.iter(|| {
            let batch = KafkaBatch::from_slice(black_box(&bytes)).unwrap();
            batch.records().filter(|r| r.change().is_ok()).count()
        })
    });

    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("payload_to_typed_gifts/records", |b| {
        b.iter(|| {
            let batch = KafkaBatch::from_slice(black_box(&bytes)).unwrap();
            batch
                .records()
                .map(|r| r.value_json::<Gift>().unwrap().page_id)
                .sum::<i64>()
        })
    });
    g.bench_function("payload_to_changes/records", |b| {
        b.iter(|| {
            let batch = KafkaBatch::from_slice(black_box(&bytes)).unwrap();
            batch.records().filter(|r| r.change().is_ok()).count()
        })
    });
    g.bench_function("records_to_typed_gifts/records", |b| {
        b.iter(|| {
            black_box(&batch)
                .records()
                .map(|r| r.value_json::<Gift>().unwrap().page_id)
                .sum::<i64>()
        })
    });
    g.bench_function("records_to_changes/records", |b| {
        b.iter(|| {
            black_box(&batch)
                .records()
                .filter(|r| r.change().is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
