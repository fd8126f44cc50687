//! Decodes an ESM payload file the way a function does (payload -> batch -> per record topic,
//! partition, offset and the value), `runs` times, and prints the median and best time and
//! records/s, and the median of the payload -> batch step alone. Two passes: the value as
//! `serde_json::Value` (what gift-persister validates), then as the typed gift shape.
//!
//! With `--avro SCHEMA.avsc` the values are Avro, read through that writer schema (registered as
//! every schema id the records name, `VALUE_FORMAT=avro`), into the same JSON.
//! `scripts/bench-decode-peers` runs it beside Powertools for AWS Lambda (Python) on the same
//! file. It runs with the global allocator of the function binaries (mimalloc).
//!
//! ```text
//! cargo run --release -p event-decoding --example decode_file -- event.json 20
//! cargo run --release -p event-decoding --example decode_file -- avro-event.json 20 --avro gift.avsc
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use event_decoding::{DataFormat, Decoding, KafkaBatch, ValueFormat, WriterSchema, schema_ids};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmarks' gift shape (gift-persister's fields that the gifts carry).
#[path = "../benches/common/mod.rs"]
mod common;
use common::Gift;

impl Gift {
    fn weight(&self) -> i64 {
        self.page_id
            + self.question.len() as i64
            + self.answer.len() as i64
            + i64::from(self.ts.is_some())
            + self.event_id.as_ref().map_or(0, |e| e.len() as i64)
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Decodes `bytes` `runs` times, each value through `value` (which returns a checksum), and
/// prints one line labelled `label`.
fn measure(
    label: &str,
    bytes: &[u8],
    runs: usize,
    value: impl Fn(&event_decoding::KafkaRecord) -> i64,
) {
    let mut times = Vec::with_capacity(runs);
    let mut batch_times = Vec::with_capacity(runs);
    let mut records = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let batch = KafkaBatch::from_slice(bytes).expect("a valid ESM payload");
        batch_times.push(started.elapsed().as_secs_f64());
        let mut checksum = 0i64;
        for r in batch.records() {
            checksum += r.offset + i64::from(r.partition) + r.topic.len() as i64;
            checksum += value(r);
        }
        times.push(started.elapsed().as_secs_f64());
        records = batch.len();
        std::hint::black_box(checksum);
    }
    let batch_median = median(&mut batch_times);
    let total = median(&mut times);
    println!(
        "rust event-decoding [{label}]: {records} records, {:.1} MB: median {:.1} ms ({:.0} records/s), best {:.1} ms; payload -> batch {:.1} ms, values {:.1} ms",
        bytes.len() as f64 / 1e6,
        total * 1e3,
        records as f64 / total,
        times[0] * 1e3,
        batch_median * 1e3,
        (total - batch_median) * 1e3,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: decode_file <payload.json> [runs] [--avro SCHEMA.avsc]";
    let path = args.next().expect(usage);
    let runs: usize = args
        .next()
        .map_or(20, |r| r.parse().expect("runs: a number"));
    let avro = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--avro"), Some(schema)) => Some(schema),
        _ => panic!("{usage}"),
    };
    let bytes = std::fs::read(&path).expect("payload file readable");

    let Some(schema_path) = avro else {
        measure("json values", &bytes, runs, |r| {
            let value: serde_json::Value = r.value_json().expect("JSON values");
            value.as_object().map_or(0, |o| o.len() as i64)
        });
        measure("json typed gifts", &bytes, runs, |r| {
            r.value_json::<Gift>().expect("JSON gifts").weight()
        });
        return;
    };

    let text = std::fs::read_to_string(&schema_path).expect("schema file readable");
    let schema =
        Arc::new(WriterSchema::parse(DataFormat::Avro, &text, &[]).expect("an Avro schema"));
    // Every id the records name gets the one writer schema (as a registry lookup would, once).
    let batch = KafkaBatch::from_slice(&bytes).expect("a valid ESM payload");
    let records: Vec<_> = batch.records().cloned().collect();
    let schemas: HashMap<String, Arc<WriterSchema>> = schema_ids(&records, ValueFormat::Avro)
        .into_iter()
        .map(|id| (id, schema.clone()))
        .collect();
    let decoding = Decoding::new(ValueFormat::Avro, &schemas);
    measure("avro values", &bytes, runs, |r| {
        let value: serde_json::Value = r.value_json_via(decoding).expect("Avro values");
        value.as_object().map_or(0, |o| o.len() as i64)
    });
    measure("avro typed gifts", &bytes, runs, |r| {
        r.value_json_via::<Gift>(decoding)
            .expect("Avro gifts")
            .weight()
    });
}
