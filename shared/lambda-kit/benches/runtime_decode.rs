//! A 10,000-record, ~6 MB Kafka batch from invocation bytes to the handler's `KafkaBatch`, the
//! way `lambda_runtime` deserializes events (`serde_path_to_error` over serde_json), without and
//! with lambda-kit's [`DecodeLayer`](lambda_kit::runtime::DecodeLayer) in front.
//!
//! `cargo bench -p lambda-kit --bench runtime_decode`
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use lambda_kit::runtime::{BatchPayload, DecodeLayer};
use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaInvocation, Service};

/// The global allocator of the function binaries, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn payload() -> Vec<u8> {
    let answer = "The answer, with some text to make the record realistic. ".repeat(4);
    let batch = KafkaBatch::builder(EventSource::Msk)
        .event_source_arn("arn:aws:kafka:us-east-1:123456789012:cluster/bench/1")
        .records((0..10_000).map(|i| {
            KafkaRecord::new("gift_events", i % 8, i64::from(i), 1_732_350_000_000)
                .with_key(format!("page-{i}"))
                .with_value(format!(
                    r#"{{"page_id":{i},"question":"Q{i}?","answer":"{answer}","ts":1732350000.1}}"#
                ))
        }))
        .build();
    serde_json::to_vec(&batch).unwrap()
}

/// What `lambda_runtime` does with an invocation's body.
fn runtime_deserialize(body: &[u8]) -> KafkaBatch {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, BatchPayload>(&mut de)
        .unwrap()
        .0
}

fn decode(c: &mut Criterion) {
    let bytes = Bytes::from(payload());
    let mut g = c.benchmark_group("runtime_6mb");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("lambda_runtime_alone", |b| {
        b.iter(|| black_box(runtime_deserialize(&bytes)).len())
    });
    let mut service = DecodeLayer.layer(lambda_runtime::service_fn(|req: LambdaInvocation| {
        std::future::ready(Ok::<_, lambda_runtime::Error>(runtime_deserialize(
            &req.body,
        )))
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    g.bench_function("with_decode_layer", |b| {
        b.iter(|| {
            let req = LambdaInvocation {
                parts: http::Response::new(()).into_parts().0,
                body: bytes.clone(),
                context: lambda_runtime::Context::default(),
            };
            black_box(rt.block_on(service.call(req)).unwrap()).len()
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
