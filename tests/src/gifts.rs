//! gift-persister wired to a PostgREST endpoint the way `main` wires it, with test-sized retries,
//! chunks and budget, plus a batch of valid gifts: shared by the gift integration tests.

use std::time::Duration;

use event_decoding::{EventSource, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use gift_persister::config::Config;
use gift_persister::handler::PostgrestHandler;
use lambda_kit::config::Env;
use lambda_kit::postgrest::PostgrestClient;
use lambda_runtime::{Context, LambdaEvent};

/// The real handler over the real PostgREST store and dead-letter sink.
pub type RealHandler = PostgrestHandler;

/// A handler built by `Config::build` (as `main` builds it) against `url` with `key`, 20 ms
/// first backoff, 2 s request timeout, chunks of 4 rows and `budget` when the invocation has no
/// deadline; also returns its client.
pub async fn handler(url: &str, key: &str, budget: Duration) -> (RealHandler, PostgrestClient) {
    handler_with(url, key, budget, &[]).await
}

/// [`handler`] with more settings (`GIFTS_TABLE`, ...).
pub async fn handler_with(
    url: &str,
    key: &str,
    budget: Duration,
    more: &[(&str, &str)],
) -> (RealHandler, PostgrestClient) {
    let budget_ms = budget.as_millis().to_string();
    let mut pairs = vec![
        ("SUPABASE_REST_URL", url),
        ("SUPABASE_SERVICE_ROLE_KEY", key),
        ("RETRY_INITIAL_BACKOFF_MS", "20"),
        ("HTTP_TIMEOUT_MS", "2000"),
        ("WRITE_MAX_ROWS", "4"),
        ("DEFAULT_BUDGET_MS", budget_ms.as_str()),
        ("METRICS_ENABLED", "false"),
    ];
    pairs.extend_from_slice(more);
    let env = Env::from_pairs(pairs);
    let h = Config::load(&env).await.unwrap().build().unwrap();
    let client = h.function().store().client().clone();
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
