//! gift-persister wired to a PostgREST endpoint the way `main` wires it, with test-sized retries,
//! chunks and budget, plus a batch of valid gifts: shared by the gift integration tests.

use std::time::Duration;

use event_decoding::{EventSource, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use gift_persister::handler::{Handler, Settings};
use gift_persister::store::PostgrestGiftStore;
use lambda_kit::batch::ChunkLimits;
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, Secret};
use lambda_kit::retry::{DeadlineSettings, RetryPolicy};
use lambda_runtime::{Context, LambdaEvent};

/// The real handler over the real PostgREST store and dead-letter sink.
pub type RealHandler = Handler<PostgrestGiftStore, PostgrestDeadLetters>;

/// A handler against `url` with `key`, 20 ms first backoff, 2 s request timeout, chunks of 4 rows
/// and `budget` when the invocation has no deadline; also returns its client.
pub fn handler(url: &str, key: &str, budget: Duration) -> (RealHandler, PostgrestClient) {
    let mut cfg = PostgrestConfig::new(url, Secret::new(key));
    cfg.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    cfg.request_timeout = Duration::from_secs(2);
    let client = PostgrestClient::new(cfg).unwrap();
    let limits = ChunkLimits {
        max_rows: 4,
        ..ChunkLimits::default()
    };
    let settings = Settings {
        deadline: DeadlineSettings {
            default_budget: budget,
            ..DeadlineSettings::default()
        },
        ..Settings::default()
    };
    let h = Handler::new(
        PostgrestGiftStore::new(client.clone(), "vault", limits),
        PostgrestDeadLetters::new(client.clone(), "dead_letters", limits),
        settings,
    );
    (h, client)
}

/// Invoke the handler as the runtime would, errors as text.
pub async fn invoke(h: &RealHandler, batch: &KafkaBatch) -> Result<KafkaBatchResponse, String> {
    h.handle(LambdaEvent::new(batch.clone(), Context::default()))
        .await
        .map_err(|e| e.to_string())
}

/// `n` valid gifts on `topic`, over partitions 0 and 1, unique to the topic.
pub fn gifts(topic: &str, n: i64) -> KafkaBatch {
    let records = (0..n).map(|i| {
        let v = serde_json::json!({"page_id": i, "question": format!("Q{i} {topic}"), "answer": "A", "ts": 1_732_350_000 + i});
        KafkaRecord::new(topic, (i % 2) as i32, i, 1_732_350_000_000).with_value(v.to_string())
    });
    KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build()
}
