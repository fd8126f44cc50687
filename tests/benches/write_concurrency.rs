//! Wall time of one 10,000-gift batch through gift-persister's handler (built by
//! `Config::build`, as `main` builds it) into the local stack's PostgREST, for each
//! `WRITE_CONCURRENCY` and round-trip time: the figures behind the setting's default (README,
//! "Write concurrency"). Between the function and PostgREST runs a TCP gate (`TcpGate::delayed`) that holds every
//! chunk of bytes for half the round trip in each direction (latency, not a bandwidth cap).
//!
//! `cargo bench -p integration-tests --bench write_concurrency` (stack up). Settings:
//! `WC_BATCHES` (batches per point, default 3), `WC_RTT_MS` (default `0,10`), `WC_LEVELS`
//! (default `1,2,4,8`). Each batch is 10,000 new gifts on a topic of its own; the bench's rows
//! are deleted afterwards.

use std::time::{Duration, Instant};

use gift_persister::config::Config;
use integration_tests::fixtures::gifts::{gifts, invoke};
use integration_tests::servers::tcp_gate::TcpGate;
use integration_tests::stack::{StackEnv, lit, unique};
use lambda_kit::config::Env;

fn list(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|v| v.trim().parse().expect(var))
        .collect()
}

#[tokio::main]
async fn main() {
    let Some(env) = StackEnv::get_or_skip("write_concurrency bench") else {
        return;
    };
    let batches = list("WC_BATCHES", "3")[0] as usize;
    let rtts = list("WC_RTT_MS", "0,10");
    let levels = list("WC_LEVELS", "1,2,4,8");
    let prefix = unique("wcbench");
    println!("gift-persister, one 10,000-gift batch, wall ms (median of {batches}; all runs)");
    println!("| RTT | WRITE_CONCURRENCY | median ms | runs ms |");
    println!("| --- | --- | --- | --- |");
    for &rtt in &rtts {
        let gate = TcpGate::delayed(&env.rest_url, Duration::from_millis(rtt)).await;
        let rest = gate.url_for(&env.rest_url);
        for &level in &levels {
            let level = level.to_string();
            let pairs = [
                ("SUPABASE_REST_URL", rest.as_str()),
                ("SUPABASE_SERVICE_ROLE_KEY", env.service_key.as_str()),
                ("WRITE_CONCURRENCY", level.as_str()),
                ("METRICS_ENABLED", "false"),
                ("DEFAULT_BUDGET_MS", "120000"),
            ];
            let h = Config::load(&Env::from_pairs(pairs))
                .await
                .unwrap()
                .build()
                .unwrap();
            // One warm-up batch: connections opened, caches filled.
            let warm = gifts(&format!("{prefix}_w{rtt}_{level}"), 500);
            invoke(&h, &warm).await.unwrap();
            let mut runs = Vec::new();
            for b in 0..batches {
                let batch = gifts(&format!("{prefix}_{rtt}_{level}_{b}"), 10_000);
                let started = Instant::now();
                let r = invoke(&h, &batch).await.unwrap();
                runs.push(started.elapsed().as_millis());
                assert!(r.batch_item_failures.is_empty(), "{r:?}");
            }
            let mut sorted = runs.clone();
            sorted.sort_unstable();
            let runs: Vec<String> = runs.iter().map(u128::to_string).collect();
            println!(
                "| {rtt} ms | {level} | {} | {} |",
                sorted[sorted.len() / 2],
                runs.join(", ")
            );
        }
    }
    env.sql(&format!(
        "delete from vault where kafka_topic like {}",
        lit(&format!("{prefix}%"))
    ));
}
