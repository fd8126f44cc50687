//! Page benchmark (`cargo bench -p page-embedder --bench pages`): prints the figures of the
//! issue for 1,000 changed pages with an in-process provider stub of fixed latency and the
//! in-memory store, so only the handler's own work and the provider's simulated time count.
//!
//! - embedding requests for 1,000 changed pages (the Faust worker made 1,000);
//! - handler overhead per record, provider time excluded (stub latency 0);
//! - redelivery of the same batch: embedding calls (target 0) and time;
//! - one page change to RAG notification, with a 50 ms provider.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use lambda_kit::dead_letter::MemoryDeadLetters;
use lambda_kit::retry::{Deadline, DeadlineSettings, RetryPolicy};
use page_embedder::chunk::ChunkLimits;
use page_embedder::embed::{EmbedError, EmbedSettings, Embedder};
use page_embedder::handler::Handler;
use page_embedder::pipeline::{Pipeline, Settings};
use page_embedder::rag::{RagNotifier, Refresh, RefreshStats};
use page_embedder::store::MemoryStore;

/// Provider stub: fixed latency per request, vectors derived from the text length.
struct Stub {
    latency: Duration,
    calls: AtomicUsize,
}

impl Embedder for Stub {
    fn model(&self) -> &str {
        "nomic-embed-text"
    }
    fn dimensions(&self) -> usize {
        768
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(texts
            .iter()
            .map(|t| vec![(t.len() % 97) as f32 / 97.0; 768])
            .collect())
    }
}

/// Records when the first notification arrived.
#[derive(Default)]
struct Rag {
    at: Mutex<Option<Instant>>,
}

impl RagNotifier for Rag {
    async fn notify(&self, refreshes: Vec<Refresh>) -> RefreshStats {
        self.at.lock().unwrap().get_or_insert_with(Instant::now);
        RefreshStats {
            sent: refreshes.len(),
            failed: 0,
            delivered: refreshes.iter().map(|r| r.page_id().to_owned()).collect(),
        }
    }
}

fn handler(latency: Duration) -> Handler<Stub, MemoryStore, Rag, MemoryDeadLetters> {
    Handler::new(
        Pipeline {
            embedder: Stub {
                latency,
                calls: AtomicUsize::new(0),
            },
            store: MemoryStore::new(),
            rag: Rag::default(),
            states: page_embedder::page_state::PageStates::memory(),
            settings: Settings {
                page_id_field: "page_id".into(),
                body_field: "body".into(),
                doc_prefix: "search_document: ".into(),
                limits: ChunkLimits::new(4000 - 17, 200),
                embed: EmbedSettings {
                    batch_size: 64,
                    concurrency: 4,
                    retry: RetryPolicy::default(),
                },
                writes: lambda_kit::bulk::WriteLimits::default(),
                rag_enabled: true,
                function_name: "bench".into(),
                unavailable_value: page_embedder::pipeline::DEBEZIUM_UNAVAILABLE_VALUE.into(),
                truncate_deletes_all: false,
                source_table: None,
            },
            values: Default::default(),
        },
        MemoryDeadLetters::default(),
        DeadlineSettings::default(),
    )
}

fn pages(n: usize, version: &str) -> KafkaBatch {
    let records = (0..n).map(|i| {
        let body = format!("Page {i} ({version}). ").repeat(40); // ~800 characters, one chunk
        let value = serde_json::json!({
            "before": null,
            "after": { "page_id": format!("page-{i}"), "title": "t", "body": body },
            "op": "u",
        });
        KafkaRecord::new("cdc.pages", (i % 4) as i32, i as i64, 0).with_value(value.to_string())
    });
    KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let deadline = || Deadline::after(Duration::from_secs(600));
    let batch = pages(1000, "v1");

    // Overhead: zero-latency provider, best of 5 fresh runs.
    let mut best = Duration::MAX;
    let mut requests = 0;
    for _ in 0..5 {
        let h = handler(Duration::ZERO);
        let t = Instant::now();
        let handled = h.process(&batch, &deadline()).await;
        best = best.min(t.elapsed());
        requests = h.function().embedder.calls.load(Ordering::Relaxed);
        assert_eq!(handled.counts.stored, 1000);
    }
    println!("changed pages: 1000 records -> {requests} embedding requests (Faust worker: 1000)");
    println!(
        "handler overhead, provider excluded: {:.1} µs/record ({:.1} ms per 1000-record batch)",
        best.as_secs_f64() * 1e6 / 1000.0,
        best.as_secs_f64() * 1e3
    );

    // Redelivery: same batch, same store.
    let h = handler(Duration::from_millis(20));
    h.process(&batch, &deadline()).await;
    let before = h.function().embedder.calls.load(Ordering::Relaxed);
    let t = Instant::now();
    let handled = h.process(&batch, &deadline()).await;
    let redelivery = t.elapsed();
    assert_eq!(handled.counts.stored, 1000);
    println!(
        "redelivery of the same 1000 records: {} embedding requests, {:.1} ms",
        h.function().embedder.calls.load(Ordering::Relaxed) - before,
        redelivery.as_secs_f64() * 1e3
    );

    // Wall time with a 20 ms provider (4 requests in flight).
    let h = handler(Duration::from_millis(20));
    let t = Instant::now();
    h.process(&pages(1000, "v2"), &deadline()).await;
    println!(
        "1000 changed pages with a 20 ms/request provider: {:.1} ms wall",
        t.elapsed().as_secs_f64() * 1e3
    );

    // One page change -> RAG notification, 50 ms provider.
    let h = handler(Duration::from_millis(50));
    let one = pages(1, "v3");
    let t = Instant::now();
    h.process(&one, &deadline()).await;
    let at = h.function().rag.at.lock().unwrap().expect("notified");
    let e2e = at.duration_since(t);
    println!(
        "one page change -> RAG notification: {:.1} ms (provider 50 ms; handler {:.2} ms)",
        e2e.as_secs_f64() * 1e3,
        e2e.saturating_sub(Duration::from_millis(50)).as_secs_f64() * 1e3
    );
}
