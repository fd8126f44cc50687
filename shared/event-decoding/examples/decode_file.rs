//! Decodes an ESM payload file the way a function does (payload -> batch -> per record topic,
//! partition, offset and the JSON value), `runs` times, and prints the median and best time and
//! records/s. `scripts/bench-decode-peers` runs it beside Powertools for AWS Lambda (Python) on the
//! same file.
//!
//! ```text
//! cargo run --release -p event-decoding --example decode_file -- event.json 20
//! ```

use std::time::Instant;

use event_decoding::KafkaBatch;

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
    let mut records = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let batch = KafkaBatch::from_slice(&bytes).expect("a valid ESM payload");
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
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "rust event-decoding: {records} records, {:.1} MB: median {:.1} ms ({:.0} records/s), best {:.1} ms",
        bytes.len() as f64 / 1e6,
        median * 1e3,
        records as f64 / median,
        times[0] * 1e3
    );
}
