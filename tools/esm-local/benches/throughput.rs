//! Throughput and latency of the runner against the real broker, with the test function.
//!
//! Throughput: N records (default 100,000, `ESM_BENCH_RECORDS`) pre-published to 4 partitions,
//! then drained by 4 lanes with the default batch size (100) and window (500 ms).
//! Latency: 200 records published one by one every 20 ms while the runner runs; latency is the
//! function's store time minus the publish time, p50/p95/max.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esm_local::dead_letter::DeadLetterTarget;
use esm_local::invoke::FunctionSpec;
use esm_local::kafka::{KafkaClient, KafkaConfig, OffsetSpec, ProduceRecord, TopicPartition};
use esm_local::runner::{DeliverySettings, FunctionTarget, MappingBehaviour, RunnerStats, run};
use tokio::sync::watch;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn function_binary() -> PathBuf {
    // target/<profile>/deps/throughput-xxxx -> target/<profile>/esm-test-function
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let f = dir.join("esm-test-function");
    assert!(
        f.exists(),
        "build it first: cargo build -p esm-local --bin esm-test-function (same profile)"
    );
    f
}

fn config(kafka: &KafkaConfig, topic: &str, out: &std::path::Path) -> DeliverySettings {
    DeliverySettings {
        kafka: kafka.clone(),
        topics: vec![topic.to_owned()],
        group: format!("{topic}-bench"),
        batch_size: 100,
        batching_window: Duration::from_millis(500),
        starting_position: OffsetSpec::Earliest,
        max_retries: 3,
        retry_backoff: Duration::from_millis(100),
        concurrency: 4,
        dead_letter: DeadLetterTarget::File(out.with_extension("dlq")),
        function: FunctionTarget::Process(FunctionSpec {
            path: function_binary(),
            env: vec![("ESM_TEST_OUT".into(), out.display().to_string())],
            name: "esm-test-function".into(),
            timeout: Duration::from_secs(30),
            memory_mb: 128,
        }),
        behaviour: MappingBehaviour::default(),
    }
}

#[tokio::main]
async fn main() {
    let Ok(servers) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!("SKIPPED: KAFKA_BOOTSTRAP_SERVERS is not set (scripts/kafka-broker up)");
        return;
    };
    let kafka = KafkaConfig::new(vec![servers]);
    let n: usize = std::env::var("ESM_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("esm-bench-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();

    // Throughput.
    let topic = format!("esm-bench-{:08x}", fastrand::u32(..));
    let mut client = KafkaClient::connect(kafka.clone()).await.unwrap();
    client.create_topic(&topic, 4).await.unwrap();
    let gift =
        br#"{"user_id":"u-00042","gift":"a small wooden box","amount":12.5,"ts":1700000000.25}"#;
    let t = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let count = 1000.min(n - chunk * 1000);
        let recs = vec![
            ProduceRecord {
                key: None,
                value: Some(gift.to_vec()),
                headers: vec![],
                timestamp_ms: 0
            };
            count
        ];
        client
            .produce(
                &TopicPartition::new(topic.clone(), (chunk % 4) as i32),
                &recs,
            )
            .await
            .unwrap();
    }
    println!(
        "publish: {n} records in {:.2?} ({:.0} records/s)",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    let out = dir.join("throughput.jsonl");
    let stats = Arc::new(RunnerStats::default());
    let (tx, rx) = watch::channel(false);
    let t = Instant::now();
    let h = tokio::spawn(run(config(&kafka, &topic, &out), stats.clone(), rx));
    while stats.records_processed.load(Ordering::Relaxed) < n as u64 {
        assert!(!h.is_finished(), "runner stopped: {:?}", h.await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    tx.send(true).unwrap();
    h.await.unwrap().unwrap();
    println!(
        "runner: {n} records in {took:.2?} = {:.0} records/s, {} invocations",
        n as f64 / took.as_secs_f64(),
        stats.invocations.load(Ordering::Relaxed)
    );

    // Latency with the default batching window.
    let topic = format!("esm-lat-{:08x}", fastrand::u32(..));
    client.create_topic(&topic, 4).await.unwrap();
    let out = dir.join("latency.jsonl");
    let stats = Arc::new(RunnerStats::default());
    let (tx, rx) = watch::channel(false);
    let h = tokio::spawn(run(config(&kafka, &topic, &out), stats.clone(), rx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = 200;
    for i in 0..m {
        let v = format!("{{\"sent_ms\":{}}}", now_ms());
        let rec = ProduceRecord {
            key: None,
            value: Some(v.into_bytes()),
            headers: vec![],
            timestamp_ms: 0,
        };
        client
            .produce(&TopicPartition::new(topic.clone(), i % 4), &[rec])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while stats.records_processed.load(Ordering::Relaxed) < m as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    h.await.unwrap().unwrap();
    let mut lat: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["kind"] == "stored")
        .map(|l| {
            let sent: serde_json::Value =
                serde_json::from_str(l["value"].as_str().unwrap()).unwrap();
            l["stored_at_ms"].as_u64().unwrap() - sent["sent_ms"].as_u64().unwrap()
        })
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "latency publish->stored ({} records, 500 ms window): p50 {} ms, p95 {} ms, max {} ms",
        lat.len(),
        pct(0.50),
        pct(0.95),
        lat[lat.len() - 1]
    );
    std::fs::remove_dir_all(&dir).ok();
}
