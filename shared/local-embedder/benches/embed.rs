//! Throughput of the local embedder (texts per second) on page-sized chunks.
//!
//! Needs the model: `LOCAL_MODEL_DIR="$(scripts/model)" cargo bench -p local-embedder`.
//! Single-threaded figures: prefix with `RAYON_NUM_THREADS=1` (candle's matrix products and the
//! tokenizer both use the rayon pool).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use local_embedder::LocalEmbedder;

fn texts(n: usize, words: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            (0..words)
                .map(|w| format!("word{}", (i * 31 + w * 7) % 997))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("LOCAL_MODEL_DIR") else {
        eprintln!(
            "SKIPPED: set LOCAL_MODEL_DIR=\"$(scripts/model)\" to benchmark the local embedder"
        );
        return;
    };
    let embedder = LocalEmbedder::load(dir).expect("model loads");
    let mut group = c.benchmark_group("embed");
    group.sample_size(10);
    for (name, n, words) in [("short_x32", 32, 12), ("chunk_x16", 16, 120)] {
        let owned = texts(n, words);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| b.iter(|| embedder.embed(&refs).unwrap()));
    }
    group.finish();

    c.bench_function("load_model", |b| {
        b.iter(|| LocalEmbedder::load(embedder.model_dir()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
