//! Decodes an ESM payload file the way a function does (payload -> batch -> per record topic,
//! partition, offset and the JSON value as `serde_json::Value`), `runs` times, and prints the
//! median and best time and records/s, and the median of the payload -> batch step alone.
//! `scripts/bench-decode-peers` runs it beside Powertools for AWS Lambda (Python) on the same
//! file. It runs with the global allocator of the function binaries (mimalloc).
//!
//! ```text
//! cargo run --release -p event-decoding --example decode_file -- event.json 20
//! ```

use std::time::Instant;

use event_decoding::KafkaBatch;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: decode_file <payload.json> [runs]");
    let runs: usize = args
        .next()
        .map_or(20, |r| r.parse().expect("runs: a number"));
    let bytes = std::fs::read(&path).expect("payload file readable");
    let mut times = Vec::with_capacity(runs);
    let mut batch_times = Vec::with_capacity(runs);
    let mut records = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let batch = KafkaBatch::from_slice(&bytes).expect("a valid ESM payload");
        batch_times.push(started.elapsed().as_secs_f64());
        let mut checksum = 0i64;
        for r in batch.records() {
            let value: serde_json::Value = r.value_json().expect("JSON values");
            checksum += r.offset + i64::from(r.partition) + r.topic.len() as i64;
            checksum += value.as_object().map_or(0, |o| o.len() as i64);
        }
        times.push(started.elapsed().as_secs_f64());
        records = batch.len();
        std::hint::black_box(checksum);
    }
    let batch_median = median(&mut batch_times);
    let total = median(&mut times);
    println!(
        "rust event-decoding: {records} records, {:.1} MB: median {:.1} ms ({:.0} records/s), best {:.1} ms; payload -> batch {:.1} ms, values {:.1} ms",
        bytes.len() as f64 / 1e6,
        total * 1e3,
        records as f64 / total,
        times[0] * 1e3,
        batch_median * 1e3,
        (total - batch_median) * 1e3,
    );
}
