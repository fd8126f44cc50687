//! End-to-end figures through the real broker, `esm-local` and the real `gift-persister` binary
//! into the local stack (`scripts/bench-e2e` builds and runs it).
//!
//! - Latency: 200 gifts published one at a time every 20 ms while the runner runs with the ESM
//!   defaults (batch 100, window 500 ms, 4 partitions, 4 lanes); latency is the row's
//!   `created_at` (the insert transaction's start, PostgreSQL's clock) minus the publish time
//!   carried in the gift (`sent_ms`), p50/p95/p99/max.
//! - Throughput: `E2E_BENCH_RECORDS` gifts (default 100,000) published beforehand, then drained
//!   by the runner (`E2E_BENCH_BATCH`, default 100); records/s from the runner's start to the
//!   last acknowledged record, checked against `count(*)` in `vault`.
//!
//! The bench's rows are deleted afterwards.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use integration_tests::esm::{
    Runner, create_topic, function_binary, kafka_or_skip, now_ms, publish, runner_config,
};
use integration_tests::stack::{StackEnv, lit, unique};
use serde_json::json;

const PARTITIONS: i32 = 4;

fn gift(run: &str, i: usize) -> Vec<u8> {
    json!({
        "event_id": format!("{run}-{i}"),
        "page_id": i,
        "question": "what is in the small wooden box?",
        "answer": "a note that says thank you",
        "ts": 1_732_350_000.25,
        "sent_ms": now_ms(),
    })
    .to_string()
    .into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (Some(kafka), Some(stack)) = (
        kafka_or_skip("esm_e2e bench"),
        StackEnv::get_or_skip("esm_e2e bench"),
    ) else {
        return;
    };
    let bin = function_binary("gift-persister");
    let n: usize = std::env::var("E2E_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let batch: usize = std::env::var("E2E_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let run = unique("e2ebench").replace('_', "-");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let env = vec![
        ("SUPABASE_REST_URL".to_owned(), stack.rest_url.clone()),
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            stack.service_key.clone(),
        ),
    ];
    println!("function: {}", bin.display());

    // Latency.
    let topic = format!("{run}-latency");
    let mut client = create_topic(&kafka, &topic, PARTITIONS).await;
    let config = runner_config(
        &kafka,
        &topic,
        &topic,
        &bin,
        "gift-persister",
        env.clone(),
        dir.join("latency.dlq"),
    );
    let runner = Runner::start(config);
    // Let the lanes start their function processes (cold starts are not what is measured).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = 200;
    for i in 0..m {
        publish(
            &mut client,
            &topic,
            i as i32 % PARTITIONS,
            &[(None, gift(&run, i))],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while runner.stats.records_processed.load(Ordering::Relaxed) < m as u64 {
        runner.assert_running();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.stop().await.expect("runner");
    let row = stack.sql(&format!(
        "with l as (select extract(epoch from created_at) * 1000 - (raw->>'sent_ms')::bigint as ms
                      from vault where kafka_topic = {t})
         select count(*), round(percentile_cont(0.5) within group (order by ms)),
                round(percentile_cont(0.95) within group (order by ms)),
                round(percentile_cont(0.99) within group (order by ms)), round(max(ms)) from l",
        t = lit(&topic)
    ));
    let v: Vec<&str> = row.split('|').collect();
    println!(
        "latency publish->row stored ({} gifts, batch 100, window 500 ms, {PARTITIONS} partitions): \
         p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        v[0], v[1], v[2], v[3], v[4]
    );

    // Throughput.
    let topic = format!("{run}-throughput");
    client.create_topic(&topic, PARTITIONS).await.unwrap();
    let t = Instant::now();
    for (chunk, start) in (0..n).step_by(1000).enumerate() {
        let recs: Vec<_> = (start..n.min(start + 1000))
            .map(|i| (None, gift(&run, i + m)))
            .collect();
        publish(&mut client, &topic, chunk as i32 % PARTITIONS, &recs).await;
    }
    println!(
        "publish: {n} gifts in {:.2?} ({:.0} records/s)",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    let mut config = runner_config(
        &kafka,
        &topic,
        &topic,
        &bin,
        "gift-persister",
        env,
        dir.join("throughput.dlq"),
    );
    config.batch_size = batch;
    let t = Instant::now();
    let runner = Runner::start(config);
    while runner.stats.records_processed.load(Ordering::Relaxed) < n as u64 {
        runner.assert_running();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    let invocations = runner.stats.invocations.load(Ordering::Relaxed);
    let dead = runner.stats.records_dead_lettered.load(Ordering::Relaxed);
    runner.stop().await.expect("runner");
    let stored = stack.count(&format!(
        "select count(*) from vault where kafka_topic = {}",
        lit(&topic)
    ));
    println!(
        "throughput: {n} gifts through esm-local + gift-persister into the stack in {took:.2?} = \
         {:.0} records/s ({invocations} invocations, batch {batch}, {PARTITIONS} lanes; \
         {stored} rows stored, {dead} dead-lettered by the runner)",
        n as f64 / took.as_secs_f64()
    );
    assert_eq!(stored, n as i64, "every gift is stored");

    stack.sql(&format!(
        "delete from vault where event_id like {}",
        lit(&format!("{run}-%"))
    ));
    std::fs::remove_dir_all(&dir).ok();
}
