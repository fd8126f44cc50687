//! Wall and CPU time per 10,000-gift batch with the database a round trip away
//! (`scripts/bench-write` builds the functions and runs it).
//!
//! For each function binary at each RTT: a [`TcpGate::delayed`] between the function and the
//! local stack's PostgREST (`rtt / 2` added to every byte in each direction; at RTT 0 nothing
//! between them), the function started by esm-local's Runtime API ([`FunctionProcess`], as
//! `esm-local run` drives it), one 10-gift warm-up invocation (process start and first connections are not measured); then
//! `WRITE_BENCH_BATCHES` rounds in which each of them takes one batch of `WRITE_BENCH_RECORDS`
//! new gifts on one partition, in turn (drift in the machine's load hits all alike). Per
//! batch: wall time from handing the event over to the posted response, and the function
//! process's CPU time (utime + stime from `/proc/<pid>/stat`, 10 ms ticks; in brackets the sum
//! of its threads' `/proc/<pid>/task/*/schedstat`, nanoseconds). Every batch must answer with no
//! item failure and leave every gift in `vault`; the rows are deleted afterwards.
//!
//! Settings (environment): `WRITE_BENCH_FUNCTIONS` (`name=path,...`; default the release
//! gift-persister), `WRITE_BENCH_RTT_MS` (`0,10`), `WRITE_BENCH_BATCHES` (3),
//! `WRITE_BENCH_RECORDS` (10000), `WRITE_BENCH_ENV` (`K=V,...` passed to every function).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeOutcome};
use event_decoding::{EventSource, KafkaBatch, KafkaRecord};
use integration_tests::servers::tcp_gate::TcpGate;
use integration_tests::stack::{StackEnv, lit, unique};

/// Linux reports utime and stime in USER_HZ ticks, 100 per second on every architecture.
const TICK_MS: f64 = 10.0;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn pairs(list: &str, sep: char) -> Vec<(String, String)> {
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once(sep)
                .unwrap_or_else(|| panic!("{p:?}: expected NAME{sep}VALUE"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// `n` gifts on `topic` partition 0 from `offset`, unique to the topic.
fn batch(topic: &str, offset: i64, n: i64) -> Vec<u8> {
    let records = (offset..offset + n).map(|i| {
        let v = serde_json::json!({
            "event_id": format!("{topic}-{i}"),
            "page_id": i,
            "question": format!("what is in box {i}?"),
            "answer": "a thank-you note in a small wooden box",
            "ts": 1_732_350_000.25,
        });
        KafkaRecord::new(topic, 0, i, 1_732_350_000_000).with_value(v.to_string())
    });
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build();
    serde_json::to_vec(&batch).expect("a batch serializes")
}

/// The process's CPU time in ms: utime + stime (ticks), and the sum of its threads' schedstat.
fn cpu_ms(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the function runs");
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime are
    // the 14th and 15th fields of the line, the 12th and 13th after it.
    let after = &stat[stat.rfind(')').expect("stat has a comm") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            ns += s
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (ticks as f64 * TICK_MS, ns as f64 / 1e6)
}

/// Median time of `n` one-row selects through `url` (the round trip the function sees).
async fn probe_ms(stack: &StackEnv, url: &str, n: usize) -> f64 {
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = stack
            .api_get_on(&client, url, "/vault?select=event_id&limit=1")
            .send()
            .await
            .expect("PostgREST answers");
        assert!(resp.status().is_success(), "probe: {}", resp.status());
        resp.bytes().await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&mut times)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    function: String,
    rtt_ms: u64,
    probe_ms: f64,
    wall: Vec<f64>,
    cpu: Vec<(f64, f64)>,
}

fn spread(v: &[f64]) -> String {
    let mut s = v.to_vec();
    let med = median(&mut s);
    format!("{:.0} / {:.0} / {:.0}", s[0], med, s[s.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(stack) = StackEnv::get_or_skip("write_latency bench") else {
        return;
    };
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let default_fn = format!(
        "gift-persister={}",
        target.join("release/gift-persister").display()
    );
    let functions = pairs(&setting("WRITE_BENCH_FUNCTIONS", &default_fn), '=');
    let rtts: Vec<u64> = setting("WRITE_BENCH_RTT_MS", "0,10")
        .split(',')
        .map(|v| v.trim().parse().expect("WRITE_BENCH_RTT_MS: integers"))
        .collect();
    let batches: usize = setting("WRITE_BENCH_BATCHES", "3").parse().unwrap();
    let records: i64 = setting("WRITE_BENCH_RECORDS", "10000").parse().unwrap();
    let extra_env = pairs(&setting("WRITE_BENCH_ENV", ""), '=');
    let direct_ms = probe_ms(&stack, &stack.rest_url, 20).await;
    println!("PostgREST round trip on loopback (median of 20 one-row selects): {direct_ms:.2} ms");

    // Every function at every RTT runs side by side (its own process, gate and topic), one
    // batch each in turn, so that the machine's drift hits them all alike.
    let mut runs = Vec::new();
    for (name, path) in &functions {
        for &rtt in &rtts {
            // RTT 0 is the API itself, on loopback, with nothing between.
            let gate = match rtt {
                0 => None,
                _ => Some(TcpGate::delayed(&stack.rest_url, Duration::from_millis(rtt)).await),
            };
            let url = gate
                .as_ref()
                .map_or_else(|| stack.rest_url.clone(), |g| g.url_for(&stack.rest_url));
            let mut env = vec![
                ("SUPABASE_REST_URL".to_owned(), url.clone()),
                (
                    "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
                    stack.service_key.clone(),
                ),
            ];
            env.extend(extra_env.iter().cloned());
            let mut function = FunctionProcess::new(FunctionSpec {
                path: PathBuf::from(path),
                env,
                name: name.clone(),
                timeout: Duration::from_secs(120),
                memory_mb: 1024,
            });
            let topic = unique("writebench").replace('_', "-");
            let outcome = function.invoke(batch(&topic, 0, 10)).await;
            check(name, &outcome);
            let pid = function.pid().expect("the function process runs");
            let row = Row {
                function: name.clone(),
                rtt_ms: rtt,
                probe_ms: probe_ms(&stack, &url, 20).await,
                wall: Vec::new(),
                cpu: Vec::new(),
            };
            runs.push((row, function, gate, topic, pid));
        }
    }
    for b in 0..batches as i64 {
        for (row, function, _, topic, pid) in &mut runs {
            let payload = batch(topic, 10 + b * records, records);
            let before = cpu_ms(*pid);
            let t = Instant::now();
            let outcome = function.invoke(payload).await;
            let wall = t.elapsed().as_secs_f64() * 1e3;
            let after = cpu_ms(*pid);
            check(&row.function, &outcome);
            assert_eq!(
                function.pid(),
                Some(*pid),
                "{}: the process restarted",
                row.function
            );
            row.wall.push(wall);
            row.cpu.push((after.0 - before.0, after.1 - before.1));
            println!(
                "{} rtt {} ms batch {}: wall {wall:.0} ms, cpu {:.0} ms ({:.1} ms)",
                row.function,
                row.rtt_ms,
                b + 1,
                after.0 - before.0,
                after.1 - before.1
            );
        }
    }
    let mut rows = Vec::new();
    for (row, function, gate, topic, _) in runs {
        drop(function);
        drop(gate);
        let stored = stack.count(&format!(
            "select count(*) from vault where kafka_topic = {}",
            lit(&topic)
        ));
        stack.sql(&format!(
            "delete from vault where kafka_topic = {}",
            lit(&topic)
        ));
        assert_eq!(
            stored,
            10 + records * batches as i64,
            "{}: gifts stored",
            row.function
        );
        rows.push(row);
    }

    println!(
        "\n{records} gifts per batch, {batches} batches each, one partition; \
         min / median / max in ms"
    );
    println!(
        "| function | RTT set | RTT added, measured | wall per batch | CPU per batch (stat) | CPU per batch (schedstat) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let stat: Vec<f64> = r.cpu.iter().map(|c| c.0).collect();
        let sched: Vec<f64> = r.cpu.iter().map(|c| c.1).collect();
        println!(
            "| {} | {} ms | {:.1} ms | {} | {} | {} |",
            r.function,
            r.rtt_ms,
            r.probe_ms - direct_ms,
            spread(&r.wall),
            spread(&stat),
            spread(&sched)
        );
    }
}

/// Panics unless the invocation answered with an empty `batchItemFailures`.
fn check(name: &str, outcome: &Result<InvokeOutcome, esm_local::invoke::InvokeError>) {
    match outcome {
        Ok(InvokeOutcome::Response(body)) => {
            let v: serde_json::Value = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("{name}: response is not JSON ({e})"));
            let failures = v["batchItemFailures"].as_array().map_or(0, Vec::len);
            assert_eq!(failures, 0, "{name}: {v}");
        }
        other => panic!("{name}: {other:?}"),
    }
}
