//! The deployed error path on a laptop: `esm-local run --template template.yaml --mapping
//! GiftPersisterMskMapping` runs the project's own mapping (its retries, bisection and S3
//! on-failure destination, resolved from the template) over the real broker and the real
//! gift-persister binary, misconfigured so that every invocation fails as a whole. The discarded
//! batches land as S3 objects in the shape AWS documents; once the cause is fixed,
//! `kl failures replay` on those objects stores each record exactly once.
//!
//! Documented behaviour reproduced ("Configuring error handling controls for Kafka event
//! sources", "Capturing discarded batches for Amazon MSK and self-managed Apache Kafka event
//! sources"): a batch that fails as a whole is split in two when BisectBatchOnFunctionError is
//! set, the split not consuming the retry quota (the stream pages' rule); a record that still
//! fails alone is retried MaximumRetryAttempts times, then sent to the destination with
//! `condition: RetryAttemptsExhausted` and the invocation payload as a JSON string.

use std::sync::atomic::Ordering;
use std::time::Duration;

use esm_local::cli::RunArgs;
use esm_local::invoke::FunctionSpec;
use esm_local::on_failure::bucket_objects;
use integration_tests::esm::{
    Runner, create_topic, function_binary, kafka_or_skip, publish, wait_until,
};
use integration_tests::stack::{StackEnv, lit, unique};
use kl::failures::{parse_input, replay_failures};
use kl::target::Target;
use serde_json::Value;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

/// Every object (key, text) of the local bucket directory `bucket`.
fn objects(bucket: &std::path::Path) -> Vec<(String, String)> {
    bucket_objects(bucket)
        .into_iter()
        .map(|p| {
            let key = p.strip_prefix(bucket).unwrap().display().to_string();
            (key, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_mapping_bisects_retries_discards_to_s3_and_kl_replays_once() {
    let test = "esm_mapping";
    let (Some(kafka), Some(stack)) = (kafka_or_skip(test), StackEnv::get_or_skip(test)) else {
        return;
    };
    let gift_bin = function_binary("gift-persister");
    let run = unique("esm-map").replace('_', "-");
    let topic = format!("{run}-gifts");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    let mut client = create_topic(&kafka, &topic, 1).await;
    let gifts: Vec<(Option<String>, Vec<u8>)> = (0..4)
        .map(|i| {
            let v = serde_json::json!({"event_id": format!("{run}-{i}"), "page_id": i,
                "question": format!("Q{i}"), "answer": "A", "ts": 1_732_350_000 + i});
            (Some(format!("user-{i}")), v.to_string().into_bytes())
        })
        .collect();
    publish(&mut client, &topic, 0, &gifts).await;

    // The deployed mapping, with the topic, group, retries and a broken PostgREST URL given as
    // parameters: the function cannot start, so every invocation fails as a whole.
    let bin = gift_bin.display().to_string();
    let dir_s = dir.display().to_string();
    let kafka_s = kafka.bootstrap_servers.join(",");
    let key = format!("SUPABASE_SERVICE_ROLE_KEY={}", stack.service_key);
    let args = [
        "--bootstrap-servers",
        &kafka_s,
        "--template",
        TEMPLATE,
        "--mapping",
        "GiftPersisterMskMapping",
        "--function",
        &bin,
        "--parameter-overrides",
        &format!("GiftTopic={topic}"),
        &format!("GiftConsumerGroupId={run}"),
        "SupabaseUrl=http://127.0.0.1:1",
        "SupabaseRestUrl=not-a-url",
        "SupabaseKeySecretArn=",
        "MaximumRetryAttempts=1",
        "MaximumBatchingWindowInSeconds=0",
        "--on-failure-dir",
        &dir_s,
        "--retry-backoff-ms",
        "20",
        "--env",
        &key,
        "--env",
        "AWS_LAMBDA_LOG_LEVEL=error",
    ];
    let config = RunArgs::parse_flags(&args)
        .unwrap()
        .into_settings()
        .unwrap();
    assert_eq!(config.topics, std::slice::from_ref(&topic));
    assert_eq!(config.max_retries, 1);
    assert!(config.behaviour.bisect_batch_on_function_error);
    let runner = Runner::start(config);
    let bucket = dir.join("FailureBucket");
    let discarded = wait_until(Duration::from_secs(60), || objects(&bucket).len() >= 4).await;
    runner.assert_running();
    let stats = runner.stats.clone();
    runner.stop().await.unwrap();
    assert!(
        discarded,
        "4 discarded records expected, got {:?}",
        objects(&bucket)
    );

    // 4 fails -> [2, 2]; 2 fails -> [1, 1]; each single record: 1 invocation + 1 retry, then
    // discarded. 3 splits, 11 invocations, nothing processed.
    assert_eq!(stats.bisections.load(Ordering::Relaxed), 3);
    assert_eq!(stats.invocations.load(Ordering::Relaxed), 11);
    assert_eq!(stats.records_dead_lettered.load(Ordering::Relaxed), 4);
    assert_eq!(stats.records_processed.load(Ordering::Relaxed), 0);
    let vault = || {
        stack.sql(&format!(
            "select count(*) || '|' || count(distinct kafka_offset) from vault where kafka_topic = {}",
            lit(&topic)
        ))
    };
    assert_eq!(vault(), "0|0");

    // The S3 objects: one per discarded batch (here one record each), documented shape.
    let objs = objects(&bucket);
    assert_eq!(objs.len(), 4);
    let mut offsets = Vec::new();
    for (key, text) in &objs {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(&parts[..2], ["aws", "lambda"], "{key}");
        assert_eq!(parts[3], format!("{topic}-0"), "{key}");
        let doc: Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["version"], "1.0");
        assert_eq!(doc["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(doc["requestContext"]["approximateInvokeCount"], 2);
        assert!(
            doc["requestContext"]["functionArn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:lambda:"),
            "{doc}"
        );
        assert_eq!(doc["responseContext"]["functionError"], "Unhandled");
        let info = &doc["KafkaBatchInfo"];
        assert_eq!(info["batchSize"], 1);
        assert_eq!(info["bootstrapServers"], kafka_s);
        let ri = &info["recordsInfo"][format!("{topic}-0")];
        assert_eq!(ri["firstRecordOffset"], ri["lastRecordOffset"]);
        offsets.push(ri["firstRecordOffset"].as_str().unwrap().to_owned());
        let payload = doc["payload"].as_str().expect("payload as a JSON string");
        assert_eq!(info["payloadSize"], payload.len());
        let event = event_decoding::KafkaBatch::from_slice(payload.as_bytes()).unwrap();
        assert_eq!(event.records().count(), 1);
    }
    offsets.sort();
    assert_eq!(offsets, ["0", "1", "2", "3"]);

    // The cause fixed (the right PostgREST URL), `kl failures replay` on the objects.
    let mut batches = Vec::new();
    for (_, text) in &objs {
        batches.extend(parse_input(text).unwrap());
    }
    let mut target = Target::local(FunctionSpec {
        path: gift_bin.clone(),
        env: vec![
            ("SUPABASE_REST_URL".into(), stack.rest_url.clone()),
            (
                "SUPABASE_SERVICE_ROLE_KEY".into(),
                stack.service_key.clone(),
            ),
            ("AWS_LAMBDA_LOG_LEVEL".into(), "error".into()),
            ("METRICS_ENABLED".into(), "false".into()),
        ],
        name: "gift-persister".into(),
        timeout: Duration::from_secs(30),
        memory_mb: 256,
    });
    let s = replay_failures(&batches, None, &mut target, 100)
        .await
        .unwrap();
    assert_eq!(
        (s.discarded_batches, s.records_sent, s.records_failed),
        (4, 4, 0),
        "{s:?}"
    );
    assert_eq!(vault(), "4|4");
    // A second replay (an operator running it twice) stores nothing twice.
    replay_failures(&batches, None, &mut target, 100)
        .await
        .unwrap();
    assert_eq!(vault(), "4|4", "stored exactly once");
    std::fs::remove_dir_all(&dir).ok();
}
