//! A 10,000-gift ESM batch (~6 MB) through the real handler into the local stack, beside one
//! insert request per record and a raw multi-row INSERT with psql (the ceiling).
//!
//! ```text
//! scripts/local-stack up && eval "$(scripts/local-stack env)"
//! cargo bench -p gift-persister --bench gift_batch
//! ```
//! Prints records/s, HTTP requests and peak RSS (VmHWM) after the handler run.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use event_decoding::KafkaBatch;
use gift_persister::config::Config;
use lambda_kit::config::Env;
use lambda_kit::postgrest::{Duplicates, Upsert};
use lambda_kit::retry::Deadline;
use lambda_runtime::{Context, LambdaEvent};

const GIFTS: usize = 10_000;
const PER_RECORD_SAMPLE: usize = 1_000;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn gift_json(tag: &str, i: usize) -> String {
    serde_json::json!({
        "page_id": i,
        "question": format!("Question {i} of {tag}?"),
        "answer": format!("{} {i}", "An answer long enough to make the batch about six megabytes. ".repeat(3)),
        "ts": 1_732_350_000.0 + i as f64 / 1000.0,
    })
    .to_string()
}

/// The ESM payload as bytes, like the Lambda runtime receives it.
fn payload(topic: &str) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<serde_json::Value> = (0..GIFTS)
        .map(|i| {
            serde_json::json!({"topic": topic, "partition": 0, "offset": i, "timestamp": 1_732_350_000_000i64,
                "timestampType": "CREATE_TIME", "value": b64.encode(gift_json(topic, i)), "headers": []})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/bench/x",
        "records": { format!("{topic}-0"): records }
    }))
    .unwrap()
}

fn psql(database_url: &str, pg_bin: Option<&str>, sql: &[u8]) -> Duration {
    let psql = pg_bin
        .map(|d| format!("{d}/psql"))
        .unwrap_or_else(|| "psql".into());
    let started = Instant::now();
    let mut child = Command::new(psql)
        .args([database_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("psql runs");
    child.stdin.take().unwrap().write_all(sql).unwrap();
    assert!(child.wait().unwrap().success(), "psql failed");
    started.elapsed()
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::main]
async fn main() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(key), Some(db)) = (
        var("SUPABASE_REST_URL"),
        var("SUPABASE_SERVICE_ROLE_KEY"),
        var("DATABASE_URL"),
    ) else {
        eprintln!(
            "!!!! SKIPPED gift_batch bench: run `scripts/local-stack up` and `eval \"$(scripts/local-stack env)\"` first !!!!"
        );
        return;
    };
    let pg_bin = var("KL_PG_BIN");
    let run = format!(
        "bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );

    // 1. The handler: decode the payload, validate, bulk upsert, report.
    let topic = format!("{run}_handler");
    let bytes = payload(&topic);
    let payload_mb = bytes.len() as f64 / 1e6;
    // Built as `main` builds it.
    let env = Env::from_pairs([
        ("SUPABASE_REST_URL", url.as_str()),
        ("SUPABASE_SERVICE_ROLE_KEY", key.as_str()),
        ("DEFAULT_BUDGET_MS", "120000"),
        ("METRICS_ENABLED", "false"),
    ]);
    let handler = Config::load(&env).await.unwrap().build().unwrap();
    let client = handler.function().store().client();
    let started = Instant::now();
    let batch = KafkaBatch::from_slice(&bytes).unwrap();
    drop(bytes);
    let response = handler
        .handle(LambdaEvent::new(batch, Context::default()))
        .await
        .unwrap();
    let handler_time = started.elapsed();
    assert!(response.batch_item_failures.is_empty());
    let rss = peak_rss_mb();
    let handler_rate = GIFTS as f64 / handler_time.as_secs_f64();
    println!(
        "handler:            {GIFTS} gifts ({payload_mb:.1} MB payload) in {:.3} s = {handler_rate:.0} records/s, {} HTTP requests, peak RSS {rss:.1} MB",
        handler_time.as_secs_f64(),
        client.requests_sent()
    );

    // 2. One insert request per record (sample), same client and upsert.
    let before = client.requests_sent();
    let deadline = Deadline::after(Duration::from_secs(600));
    let upsert = Upsert::on_conflict("event_id", Duplicates::Ignore);
    let started = Instant::now();
    for i in 0..PER_RECORD_SAMPLE {
        let row = serde_json::json!([{"event_id": format!("{run}_single_{i}"), "page_id": i, "question": format!("Question {i}?"),
            "answer": gift_json(&run, i), "ts": "2024-11-23T08:20:00Z", "kafka_topic": format!("{run}_single"), "kafka_partition": 0,
            "kafka_offset": i, "raw": {"i": i}}]);
        client
            .upsert(&deadline, "vault", Bytes::from(row.to_string()), &upsert)
            .await
            .unwrap();
    }
    let single = started.elapsed();
    let single_rate = PER_RECORD_SAMPLE as f64 / single.as_secs_f64();
    println!(
        "one request/record: {PER_RECORD_SAMPLE} gifts in {:.3} s = {single_rate:.0} records/s, {} HTTP requests",
        single.as_secs_f64(),
        client.requests_sent() - before
    );

    // 3. The ceiling: one multi-row INSERT of the same rows through psql.
    let mut sql = String::from(
        "insert into vault (event_id, page_id, question, answer, ts, kafka_topic, kafka_partition, kafka_offset, raw) values\n",
    );
    for i in 0..GIFTS {
        let g = gift_json(&run, i);
        if i > 0 {
            sql.push_str(",\n");
        }
        sql.push_str(&format!(
            "({}, {i}, {}, {}, to_timestamp({}), {}, 0, {i}, {}::jsonb)",
            lit(&format!("{run}_raw_{i}")),
            lit(&format!("Question {i}?")),
            lit(&g),
            1_732_350_000.0 + i as f64 / 1000.0,
            lit(&format!("{run}_raw")),
            lit(&g)
        ));
    }
    sql.push_str(";\n");
    let raw = psql(&db, pg_bin.as_deref(), sql.as_bytes());
    let raw_rate = GIFTS as f64 / raw.as_secs_f64();
    println!(
        "raw INSERT (psql):  {GIFTS} gifts in {:.3} s = {raw_rate:.0} records/s (ceiling)",
        raw.as_secs_f64()
    );
    println!(
        "handler vs one-request-per-record: {:.1}x (goal >= 20x); handler vs raw INSERT: {:.0}% (goal >= 50%); peak RSS {rss:.1} MB (goal < 64 MB)",
        handler_rate / single_rate,
        100.0 * handler_rate / raw_rate
    );

    // Leave the shared database as it was.
    let cleanup = format!(
        "delete from vault where kafka_topic in ({}, {}, {});",
        lit(&topic),
        lit(&format!("{run}_single")),
        lit(&format!("{run}_raw"))
    );
    psql(&db, pg_bin.as_deref(), cleanup.as_bytes());
}
