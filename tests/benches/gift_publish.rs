//! gift-publisher figures through the real broker (`scripts/bench-publish` builds and runs it).
//!
//! - Publish: `PUBLISH_BENCH_REQUESTS` (default 2,000) Function URL events POSTed one after the
//!   other to one gift-publisher process over the Runtime API (one request at a time, as one
//!   Lambda execution environment serves them); latency is invoke to answer (202 = the broker
//!   acknowledged with acks=all), p50/p95/p99/max, and POSTs/s per instance is requests over the
//!   whole run.
//! - End to end: 200 POSTs, one every 20 ms, while `esm-local` drives gift-persister with the ESM
//!   defaults (batch 100, window 500 ms); latency is the row's `created_at` (PostgreSQL's clock)
//!   minus the time carried in the gift (`sent_ms`, taken just before the POST).
//!
//! The bench's rows are deleted afterwards.

use std::time::{Duration, Instant};

use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeOutcome};
use integration_tests::esm::{
    Runner, create_topic, function_binary, kafka_or_skip, now_ms, runner_config, wait_until,
};
use integration_tests::stack::{StackEnv, lit, unique};
use serde_json::{Value, json};

fn event(body: &Value) -> Vec<u8> {
    let mut e: Value = serde_json::from_str(include_str!(
        "../../events/gift-publisher-function-url.json"
    ))
    .unwrap();
    e["body"] = Value::String(body.to_string());
    e["headers"]
        .as_object_mut()
        .unwrap()
        .remove("idempotency-key");
    serde_json::to_vec(&e).unwrap()
}

async fn post(f: &mut FunctionProcess, body: &Value) -> u16 {
    match f.invoke(event(body)).await.expect("invoke") {
        InvokeOutcome::Response(bytes) => {
            let r: Value = serde_json::from_slice(&bytes).unwrap();
            r["statusCode"].as_u64().unwrap() as u16
        }
        other => panic!("gift-publisher failed: {other:?}"),
    }
}

/// gift-publisher on `topic`, driven through an emulated Runtime API.
fn publisher(bootstrap: &str, topic: &str) -> FunctionProcess {
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_SECURITY", "plaintext"),
        ("GIFT_TOPIC", topic),
        ("METRICS_ENABLED", "false"),
        ("AWS_LAMBDA_LOG_LEVEL", "error"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    FunctionProcess::new(FunctionSpec {
        path: function_binary("gift-publisher"),
        env,
        name: "gift-publisher".into(),
        timeout: Duration::from_secs(10),
        memory_mb: 256,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (Some(kafka), Some(stack)) = (
        kafka_or_skip("gift_publish bench"),
        StackEnv::get_or_skip("gift_publish bench"),
    ) else {
        return;
    };
    let n: usize = std::env::var("PUBLISH_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let run = unique("pubbench").replace('_', "-");
    let topic = format!("{run}-gifts");
    create_topic(&kafka, &topic, 4).await;
    let bootstrap = kafka.bootstrap_servers.join(",");
    let mut f = publisher(&bootstrap, &topic);
    // Warm up: cold start and the first connection are not part of the steady state.
    let warm = Instant::now();
    assert_eq!(
        post(
            &mut f,
            &json!({"page_id": 0, "question": "Q", "answer": "A"})
        )
        .await,
        202
    );
    println!(
        "first POST (cold start + connect): {:.1} ms",
        warm.elapsed().as_secs_f64() * 1e3
    );

    let mut ms = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let body = json!({"page_id": i, "question": "what is in the small wooden box?", "answer": "a note that says thank you", "event_id": format!("{run}-p{i}")});
        let t = Instant::now();
        assert_eq!(post(&mut f, &body).await, 202);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let total = start.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    println!(
        "publish ({n} POSTs, one instance): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} POSTs/s",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        n as f64 / total
    );

    // End to end: POST -> broker -> esm-local -> gift-persister -> vault.
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let e2e_topic = format!("{run}-e2e");
    create_topic(&kafka, &e2e_topic, 4).await;
    let mut f2 = publisher(&bootstrap, &e2e_topic);
    assert_eq!(post(&mut f2, &json!({"page_id": 0, "question": "Q", "answer": "A", "event_id": format!("{run}-warm")})).await, 202);
    let mut persister_env = vec![
        ("SUPABASE_REST_URL".to_owned(), stack.rest_url.clone()),
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            stack.service_key.clone(),
        ),
    ];
    persister_env.push(("METRICS_ENABLED".to_owned(), "false".to_owned()));
    let runner = Runner::start(runner_config(
        &kafka,
        &e2e_topic,
        &format!("{run}-group"),
        &function_binary("gift-persister"),
        "gift-persister",
        persister_env,
        dir.join("dlq"),
    ));
    const E2E: usize = 200;
    for i in 0..E2E {
        let body = json!({"page_id": i, "question": "Q", "answer": "A", "event_id": format!("{run}-e{i}"), "sent_ms": now_ms()});
        assert_eq!(post(&mut f2, &body).await, 202);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = lit(&e2e_topic);
    let done = wait_until(Duration::from_secs(120), || {
        stack.count(&format!(
            "select count(*) from vault where kafka_topic = {t} and raw ? 'sent_ms'"
        )) >= E2E as i64
    })
    .await;
    runner.stop().await.unwrap();
    assert!(done, "the end-to-end gifts did not all arrive");
    let row = stack.sql(&format!(
        "with l as (select extract(epoch from created_at) * 1000 - (raw->>'sent_ms')::bigint as ms
                    from vault where kafka_topic = {t} and raw ? 'sent_ms')
         select round(percentile_cont(0.5) within group (order by ms))::bigint,
                round(percentile_cont(0.95) within group (order by ms))::bigint,
                round(max(ms))::bigint from l"
    ));
    let v: Vec<&str> = row.split('|').collect();
    println!(
        "end to end ({E2E} POSTs every 20 ms, POST -> row in vault): p50 {} ms, p95 {} ms, max {} ms",
        v[0], v[1], v[2]
    );
    stack.sql(&format!(
        "delete from vault where kafka_topic in ({t}, {})",
        lit(&topic)
    ));
}
