//! Issue 20's measurement: how long page-embedder takes to fail a batch when its embedding API
//! answers an endless body, and the process's peak memory meanwhile. The handler is built with
//! `Config::build`, as `main` does, with the function's default settings (EMBED_BATCH_SIZE 64,
//! EMBED_CONCURRENCY 4, EMBED_RETRY_MAX_ATTEMPTS 5, EMBED_TIMEOUT_MS 30 s) against the local
//! stack, and an Ollama endpoint (`/api/embed`) that answers every request `200` with
//! `{"embeddings":[[0.125,0.125,...` forever. The peak RSS is the kernel's high-water mark
//! (VmHWM), reset just before the batch. Before the bound (issue 20) the function was killed at
//! 512 MB within 0.5 s.
//!
//! `eval "$(scripts/local-stack env)"; cargo bench -p integration-tests --bench endless_body`
//! (`ENDLESS_PAGES`, default 256: pages in the batch).

use std::time::{Duration, Instant};

use integration_tests::fixtures::pages::{batch, unique, upsert};
use integration_tests::servers::endless::EndlessServer;
use lambda_kit::config::Env;
use lambda_kit::retry::Deadline;
use page_embedder::config::Config;

fn vm(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let (Ok(url), Ok(key)) = (
        std::env::var("SUPABASE_REST_URL"),
        std::env::var("SUPABASE_SERVICE_ROLE_KEY"),
    ) else {
        eprintln!("SKIPPED: run `eval \"$(scripts/local-stack env)\"` first");
        return;
    };
    let pages: usize = std::env::var("ENDLESS_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let server = EndlessServer::start(r#"{"model":"nomic-embed-text","embeddings":[["#).await;
    let env = Env::from_pairs([
        ("SUPABASE_REST_URL", url),
        ("SUPABASE_SERVICE_ROLE_KEY", key),
        ("METRICS_ENABLED", "false".into()),
        ("EMBED_BASE_URL", server.url()),
    ]);
    let h = Config::load(&env)
        .await
        .expect("settings")
        .build()
        .expect("the handler builds");
    let p = unique("endless-bench");
    let records = (0..pages)
        .map(|i| upsert(i as i64, &format!("{p}-{i}"), &format!("page {i} text")))
        .collect();
    let b = batch(records);
    let before = vm("VmRSS:");
    // Resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this batch's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let handled = h
        .process(&b, &Deadline::after(Duration::from_secs(900)))
        .await;
    let elapsed = start.elapsed();
    println!(
        "endless embedding answer, {pages} pages: batch failed={} in {:.0} ms; {} requests, {:.1} MB sent by the server; RSS before {before}, peak {} (VmHWM)",
        handled.response.is_err(),
        elapsed.as_secs_f64() * 1000.0,
        server.requests(),
        server.sent() as f64 / 1e6,
        vm("VmHWM:"),
    );
}
