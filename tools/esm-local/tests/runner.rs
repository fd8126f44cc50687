//! The runner against a real broker (`scripts/kafka-broker up`, `eval "$(scripts/kafka-broker env)"`)
//! driving the `esm-test-function` binary through the emulated Runtime API.
//! Without `KAFKA_BOOTSTRAP_SERVERS` every test prints SKIPPED and returns. The codec tests
//! produce with librdkafka (`KAFKA_PRODUCER_PYTHON`, also from `scripts/kafka-broker env`): with
//! the broker's address set, a missing producer fails them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use esm_local::dead_letter::DeadLetterTarget;
use esm_local::filter::FilterCriteria;
use esm_local::invoke::FunctionSpec;
use esm_local::kafka::{
    BrokerConnection, KafkaClient, KafkaConfig, OffsetSpec, ProduceRecord, TopicPartition,
};
use esm_local::on_failure::{DestinationKind, OnFailure, RecordContext, bucket_objects};
use esm_local::runner::{DeliverySettings, FunctionTarget, MappingBehaviour, RunnerStats, run};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use serde_json::Value;
use tokio::sync::watch;

fn kafka() -> Option<KafkaConfig> {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(s) if !s.is_empty() => Some(KafkaConfig::new(vec![s])),
        _ => {
            eprintln!(
                "SKIPPED: KAFKA_BOOTSTRAP_SERVERS is not set (scripts/kafka-broker up && eval \"$(scripts/kafka-broker env)\")"
            );
            None
        }
    }
}

struct Scenario {
    topic: String,
    dir: PathBuf,
    out: PathBuf,
    dlq: PathBuf,
    kafka: KafkaConfig,
}

impl Scenario {
    async fn new(name: &str, partitions: i32, kafka: KafkaConfig) -> Self {
        let topic = format!("esm-{name}-{:08x}", fastrand::u32(..));
        let dir = std::env::temp_dir().join(&topic);
        std::fs::create_dir_all(&dir).unwrap();
        let mut client = KafkaClient::connect(kafka.clone()).await.unwrap();
        client.create_topic(&topic, partitions).await.unwrap();
        Self {
            out: dir.join("out.jsonl"),
            dlq: dir.join("dlq.jsonl"),
            topic,
            dir,
            kafka,
        }
    }

    /// Produces `values` to `partition` in order.
    async fn produce(&self, partition: i32, values: &[String]) {
        let mut client = KafkaClient::connect(self.kafka.clone()).await.unwrap();
        let recs: Vec<ProduceRecord> = values
            .iter()
            .map(|v| ProduceRecord {
                key: Some(b"k".to_vec()),
                value: Some(v.clone().into_bytes()),
                headers: vec![("source".into(), vec![0x41, 0xfe])],
                timestamp_ms: 1_700_000_000_000,
            })
            .collect();
        client
            .produce(&TopicPartition::new(self.topic.clone(), partition), &recs)
            .await
            .unwrap();
    }

    fn config(&self, env: &[(&str, &str)]) -> DeliverySettings {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        env.push(("ESM_TEST_OUT".into(), self.out.display().to_string()));
        DeliverySettings {
            kafka: self.kafka.clone(),
            topics: vec![self.topic.clone()],
            group: format!("{}-group", self.topic),
            batch_size: 100,
            batching_window: Duration::from_millis(100),
            starting_position: OffsetSpec::Earliest,
            max_retries: 3,
            retry_backoff: Duration::from_millis(20),
            concurrency: 4,
            dead_letter: DeadLetterTarget::File(self.dlq.clone()),
            function: FunctionTarget::Process(FunctionSpec {
                path: PathBuf::from(env!("CARGO_BIN_EXE_esm-test-function")),
                env,
                name: "esm-test-function".into(),
                timeout: Duration::from_secs(10),
                memory_mb: 128,
            }),
            behaviour: MappingBehaviour::default(),
        }
    }

    fn lines(path: &PathBuf) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn batches(&self) -> Vec<Value> {
        Self::lines(&self.out)
            .into_iter()
            .filter(|l| l["kind"] == "batch")
            .collect()
    }

    /// Stored offsets per partition key, in the order the function stored them.
    fn stored(&self) -> BTreeMap<String, Vec<i64>> {
        let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for l in Self::lines(&self.out)
            .into_iter()
            .filter(|l| l["kind"] == "stored")
        {
            m.entry(l["partition"].as_str().unwrap().to_owned())
                .or_default()
                .push(l["offset"].as_i64().unwrap());
        }
        m
    }

    fn dead_lettered(&self) -> Vec<i64> {
        Self::lines(&self.dlq)
            .iter()
            .map(|l| l["offset"].as_i64().unwrap())
            .collect()
    }

    /// Runs the runner until `done` holds (or 30 s pass), then stops it cleanly.
    async fn run_until(
        &self,
        config: DeliverySettings,
        done: impl Fn(&Self) -> bool,
    ) -> Arc<RunnerStats> {
        let stats = Arc::new(RunnerStats::default());
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(run(config, stats.clone(), rx));
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out; stored so far: {:?}",
                self.stored()
            );
            assert!(
                !handle.is_finished(),
                "runner stopped early: {:?}",
                handle.await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tx.send(true).unwrap();
        handle.await.unwrap().unwrap();
        stats
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn total(m: &BTreeMap<String, Vec<i64>>) -> usize {
    m.values().map(Vec::len).sum()
}

#[tokio::test]
async fn batches_are_capped_grouped_by_partition_and_ordered() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("batching", 3, kafka).await;
    for p in 0..3 {
        s.produce(p, &values(&format!("p{p}-"), 90)).await;
    }
    let mut config = s.config(&[]);
    config.concurrency = 1; // one lane: batches must mix partitions
    config.batching_window = Duration::from_millis(500);
    s.run_until(config, |s| total(&s.stored()) >= 270).await;

    let stored = s.stored();
    for p in 0..3 {
        let key = format!("{}-{p}", s.topic);
        assert_eq!(
            stored[&key],
            (0..90).collect::<Vec<_>>(),
            "partition {p}: exactly once, in order"
        );
    }
    let batches = s.batches();
    assert!(
        batches.len() >= 3,
        "270 records need at least 3 batches of 100"
    );
    let mut mixed = false;
    for b in &batches {
        assert_eq!(b["event_source"], "SelfManagedKafka");
        assert_eq!(b["bootstrap_servers"], s.kafka.bootstrap_servers[0]);
        let parts = b["partitions"].as_object().unwrap();
        let n: i64 = parts.values().map(|v| v.as_i64().unwrap()).sum();
        assert!(n <= 100, "batch of {n} records");
        assert!(parts.keys().all(|k| k.starts_with(&s.topic)));
        mixed |= parts.len() > 1;
    }
    assert!(
        mixed,
        "a lane with 3 partitions builds batches spanning partitions"
    );
}

#[tokio::test]
async fn partial_failure_redelivers_from_the_first_failed_offset() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("partial", 2, kafka).await;
    s.produce(0, &values("a", 10)).await;
    s.produce(1, &values("b", 10)).await;
    let fail = format!("{0}-0:4,{0}-1:7", s.topic);
    let mut config = s.config(&[
        ("ESM_TEST_FAIL", fail.as_str()),
        ("ESM_TEST_FAIL_TIMES", "2"),
    ]);
    config.concurrency = 1;
    let stats = s.run_until(config, |s| total(&s.stored()) >= 20).await;

    let stored = s.stored();
    assert_eq!(
        stored[&format!("{}-0", s.topic)],
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        stored[&format!("{}-1", s.topic)],
        (0..10).collect::<Vec<_>>()
    );
    // First batch: both partitions whole. Redeliveries start at the failed offsets.
    let batches = s.batches();
    assert_eq!(batches[0]["partitions"][format!("{}-0", s.topic)], 10);
    assert_eq!(
        batches[1]["partitions"][format!("{}-0", s.topic)],
        6,
        "offsets 4..=9 come back"
    );
    assert_eq!(
        batches[1]["partitions"][format!("{}-1", s.topic)],
        3,
        "offsets 7..=9 come back"
    );
    assert_eq!(batches.len(), 3);
    assert!(s.dead_lettered().is_empty());
    assert_eq!(stats.records_processed.load(Ordering::Relaxed), 20);
    assert_eq!(stats.records_redelivered.load(Ordering::Relaxed), 18);
}

#[tokio::test]
async fn exhausted_retries_dead_letter_the_rest_of_the_batch_and_move_on() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("dlq", 1, kafka).await;
    s.produce(0, &values("v", 6)).await;
    let fail = format!("{}-0:3", s.topic);
    let mut config = s.config(&[("ESM_TEST_FAIL", fail.as_str())]);
    config.max_retries = 2;
    let stats = s
        .run_until(config.clone(), |s| s.dead_lettered().len() >= 3)
        .await;
    assert_eq!(s.dead_lettered(), vec![3, 4, 5]);
    let dlq = Scenario::lines(&s.dlq);
    assert_eq!(dlq[0]["attempts"], 3, "1 attempt + 2 retries");
    assert_eq!(dlq[0]["value"], "djM="); // base64("v3"): the record itself is kept
    assert_eq!(dlq[0]["headers"], serde_json::json!([{"source": [65, -2]}]));
    assert_eq!(s.batches().len(), 3);
    assert_eq!(stats.records_dead_lettered.load(Ordering::Relaxed), 3);

    // The partition moved on: new records are delivered, the dead-lettered ones are not.
    s.produce(0, &values("w", 2)).await;
    s.run_until(config, |s| s.stored().values().flatten().any(|o| *o == 7))
        .await;
    assert_eq!(s.stored()[&format!("{}-0", s.topic)], vec![0, 1, 2, 6, 7]);
}

#[tokio::test]
async fn function_errors_and_crashes_redeliver_the_whole_batch() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("crash", 1, kafka).await;
    s.produce(0, &values("x", 5)).await;
    let config = s.config(&[("ESM_TEST_CRASH_VALUE", "x2")]);
    let stats = s.run_until(config, |s| total(&s.stored()) >= 5).await;
    assert_eq!(
        s.stored()[&format!("{}-0", s.topic)],
        (0..5).collect::<Vec<_>>(),
        "crash lost nothing"
    );
    assert_eq!(stats.failed_invocations.load(Ordering::Relaxed), 1);
    let crashed = PathBuf::from(format!("{}.crashed", s.out.display()));
    assert!(
        crashed.exists(),
        "the first process really aborted mid-batch"
    );
    assert_eq!(
        s.batches().len(),
        1,
        "only the replacement process finished a batch"
    );

    let s = Scenario::new("fnerror", 1, s.kafka.clone()).await;
    s.produce(0, &values("y", 4)).await;
    let mut config = s.config(&[("ESM_TEST_ERROR_VALUE", "y1")]);
    config.max_retries = 1;
    s.run_until(config, |s| s.dead_lettered().len() >= 4).await;
    assert_eq!(
        s.dead_lettered(),
        vec![0, 1, 2, 3],
        "a function error fails the whole batch"
    );
    assert!(s.stored().is_empty());
    assert!(
        Scenario::lines(&s.dlq)[0]["reason"]
            .as_str()
            .unwrap()
            .contains("poison value")
    );
}

#[tokio::test]
async fn restart_resumes_from_committed_offsets_without_duplicates() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("restart", 2, kafka).await;
    s.produce(0, &values("r", 20)).await;
    s.produce(1, &values("s", 5)).await;
    s.run_until(s.config(&[]), |s| total(&s.stored()) >= 25)
        .await;

    s.produce(0, &values("t", 10)).await;
    s.run_until(s.config(&[]), |s| total(&s.stored()) >= 35)
        .await;
    // Give a (wrong) duplicate delivery time to show up before looking.
    s.run_until(s.config(&[]), |_| true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stored = s.stored();
    assert_eq!(
        stored[&format!("{}-0", s.topic)],
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(
        stored[&format!("{}-1", s.topic)],
        (0..5).collect::<Vec<_>>()
    );
    let mut client = KafkaClient::connect(s.kafka.clone()).await.unwrap();
    let tps = [
        TopicPartition::new(s.topic.clone(), 0),
        TopicPartition::new(s.topic.clone(), 1),
    ];
    let committed: HashMap<_, _> = client
        .committed_offsets(&format!("{}-group", s.topic), &tps)
        .await
        .unwrap();
    assert_eq!(committed[&tps[0]], Some(30));
    assert_eq!(committed[&tps[1]], Some(5));
}

#[tokio::test]
async fn dead_letter_topic_keeps_the_record_and_says_where_it_came_from() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("dlqtopic", 1, kafka).await;
    s.produce(0, &values("z", 2)).await;
    let fail = format!("{}-0:1", s.topic);
    let mut config = s.config(&[("ESM_TEST_FAIL", fail.as_str())]);
    config.max_retries = 0;
    let dlq_topic = format!("{}-dlq", s.topic);
    config.dead_letter = DeadLetterTarget::Topic(dlq_topic.clone());
    // The function stores offset 0 during the invocation; the runner dead-letters offset 1 while
    // settling that same batch, which it finishes before it stops.
    s.run_until(config, |s| total(&s.stored()) >= 1).await;
    let mut client = KafkaClient::connect(s.kafka.clone()).await.unwrap();
    let fetched = client
        .fetch(
            &[(TopicPartition::new(dlq_topic.clone(), 0), 0)],
            1000,
            1 << 20,
        )
        .await
        .unwrap();
    let records: Vec<_> = fetched.into_iter().flat_map(|p| p.records).collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"z1"[..]));
    let source = records[0]
        .headers
        .iter()
        .find(|(k, _)| k.as_str() == "esm-source")
        .unwrap()
        .1
        .clone()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&source).unwrap(),
        format!("{}-0@1", s.topic)
    );
}

/// Every S3 object (key, invocation record) under the local bucket directory `dir`.
fn s3_objects(dir: &std::path::Path) -> Vec<(String, Value)> {
    bucket_objects(dir)
        .into_iter()
        .map(|p| {
            let key = p.strip_prefix(dir).unwrap().display().to_string();
            (
                key,
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}

fn s3_destination(s: &Scenario, bucket: &str) -> DeadLetterTarget {
    DeadLetterTarget::OnFailure(OnFailure {
        kind: DestinationKind::parse(&format!("arn:aws:s3:::{bucket}"), &s.dir).unwrap(),
        context: RecordContext::new("TestMapping", "esm-test-function"),
    })
}

/// BisectBatchOnFunctionError ("Configuring error handling controls for Kafka event sources"):
/// a batch failing as a whole is split in two and each half retried; splits consume no retry
/// (the stream pages' rule), so only the poison record alone uses up MaximumRetryAttempts and
/// is discarded, to the S3 destination in the documented invocation-record shape.
#[tokio::test]
async fn bisection_isolates_the_poison_record_and_discards_only_it() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("bisect", 1, kafka).await;
    s.produce(0, &values("p", 8)).await;
    let mut config = s.config(&[("ESM_TEST_ERROR_VALUE", "p5")]);
    config.concurrency = 1;
    config.max_retries = 2;
    config.batching_window = Duration::from_millis(300);
    config.behaviour.bisect_batch_on_function_error = true;
    config.dead_letter = s3_destination(&s, "failures");
    let bucket = s.dir.join("failures");
    let stats = s
        .run_until(config, |s| {
            total(&s.stored()) >= 7 && !s3_objects(&bucket).is_empty()
        })
        .await;
    assert_eq!(
        s.stored()[&format!("{}-0", s.topic)],
        vec![0, 1, 2, 3, 4, 6, 7]
    );
    // 8 fails -> 4 ok (0-3), 4 fails -> 2 fails -> 1 ok (4), 1 fails 3 times (5), 2 ok (6-7).
    assert_eq!(stats.bisections.load(Ordering::Relaxed), 3);
    assert_eq!(stats.invocations.load(Ordering::Relaxed), 9);
    assert_eq!(stats.records_dead_lettered.load(Ordering::Relaxed), 1);
    let sizes: Vec<i64> = s
        .batches()
        .iter()
        .map(|b| b["partitions"][format!("{}-0", s.topic)].as_i64().unwrap())
        .collect();
    // Failing invocations are logged too: 8 x, 4 ok, 4 x, 2 x, 1 ok, 1 x three times, 2 ok.
    assert_eq!(sizes, [8, 4, 4, 2, 1, 1, 1, 1, 2]);
    let objects = s3_objects(&bucket);
    assert_eq!(objects.len(), 1);
    let (key, doc) = &objects[0];
    assert!(key.starts_with("aws/lambda/"), "{key}");
    assert!(key.contains(&format!("/{}-0/", s.topic)), "{key}");
    assert_eq!(doc["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(doc["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(doc["responseContext"]["functionError"], "Unhandled");
    let info = &doc["KafkaBatchInfo"]["recordsInfo"][format!("{}-0", s.topic)];
    assert_eq!(info["firstRecordOffset"], "5");
    assert_eq!(info["lastRecordOffset"], "5");
    let payload: Value = serde_json::from_str(doc["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload["records"][format!("{}-0", s.topic)][0]["value"],
        "cDU="
    ); // "p5"
}

/// FilterCriteria ("Filtering events from Amazon MSK and self-managed Apache Kafka event
/// sources"): a record no pattern matches is committed and never delivered.
#[tokio::test]
async fn filtered_records_are_committed_not_delivered() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("filter", 1, kafka).await;
    let vals: Vec<String> = [
        r#"{"keep":true}"#,
        r#"{"keep":false}"#,
        "plain",
        r#"{"keep":true}"#,
    ]
    .map(String::from)
    .to_vec();
    s.produce(0, &vals).await;
    let mut config = s.config(&[]);
    config.behaviour.filters =
        FilterCriteria::parse(&[r#"{"value": {"keep": [true]}}"#.into()]).unwrap();
    let stats = s
        .run_until(config.clone(), |s| total(&s.stored()) >= 2)
        .await;
    assert_eq!(s.stored()[&format!("{}-0", s.topic)], vec![0, 3]);
    assert_eq!(stats.records_filtered.load(Ordering::Relaxed), 2);
    let mut client = KafkaClient::connect(s.kafka.clone()).await.unwrap();
    let tp = TopicPartition::new(s.topic.clone(), 0);
    let committed = client
        .committed_offsets(&format!("{}-group", s.topic), std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert_eq!(
        committed[&tp],
        Some(4),
        "the filtered records are committed"
    );
}

/// MaximumRecordAgeInSeconds: older records go to the destination without being delivered
/// (condition RecordAgeExceeded, no responseContext); here an SQS queue, as `aws sqs
/// receive-message` would list its messages. Without ReportBatchItemFailures a returned
/// batchItemFailures list is ignored.
#[tokio::test]
async fn old_records_go_to_the_queue_and_failures_are_ignored_without_report() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("age", 1, kafka).await;
    s.produce(0, &values("old", 2)).await; // timestamps of 2023
    let mut config = s.config(&[]);
    config.behaviour.max_record_age = Some(Duration::from_secs(60));
    config.dead_letter = DeadLetterTarget::OnFailure(OnFailure {
        kind: DestinationKind::parse("arn:aws:sqs:us-east-1:123456789012:q", &s.dir).unwrap(),
        context: RecordContext::new("TestMapping", "esm-test-function"),
    });
    let queue = s.dir.join("q.jsonl");
    let stats = s
        .run_until(config, |_| Scenario::lines(&queue).len() == 1)
        .await;
    assert!(s.stored().is_empty(), "nothing delivered");
    assert_eq!(stats.records_expired.load(Ordering::Relaxed), 2);
    let msg = &Scenario::lines(&queue)[0];
    let body: Value = serde_json::from_str(msg["Body"].as_str().unwrap()).unwrap();
    assert_eq!(body["requestContext"]["condition"], "RecordAgeExceeded");
    assert!(body["responseContext"].is_null());
    assert!(body.get("payload").is_none(), "SQS: metadata only");
    let info = &body["KafkaBatchInfo"]["recordsInfo"][format!("{}-0", s.topic)];
    assert_eq!(
        (
            info["firstRecordOffset"].as_str(),
            info["lastRecordOffset"].as_str()
        ),
        (Some("0"), Some("1"))
    );

    let s = Scenario::new("noreport", 1, s.kafka.clone()).await;
    s.produce(0, &values("n", 3)).await;
    let fail = format!("{}-0:1", s.topic);
    let mut config = s.config(&[("ESM_TEST_FAIL", fail.as_str())]);
    config.behaviour.report_batch_item_failures = false;
    let stats = s.run_until(config, |s| !s.batches().is_empty()).await;
    assert_eq!(stats.records_redelivered.load(Ordering::Relaxed), 0);
    assert_eq!(stats.records_processed.load(Ordering::Relaxed), 3);
    assert!(s.dead_lettered().is_empty());
}

/// A `kafka://` destination ("Using a Kafka topic as an on-failure destination"): one message
/// per failed record, keyed like it, its value the metadata with `recordInfo` and the payload.
#[tokio::test]
async fn kafka_destination_gets_one_message_per_failed_record() {
    let Some(kafka) = kafka() else { return };
    let s = Scenario::new("kdest", 1, kafka).await;
    s.produce(0, &values("q", 3)).await;
    let dest = format!("{}.on-failure", s.topic);
    let mut client = KafkaClient::connect(s.kafka.clone()).await.unwrap();
    client.create_topic(&dest, 1).await.unwrap();
    let fail = format!("{}-0:1", s.topic);
    let mut config = s.config(&[("ESM_TEST_FAIL", fail.as_str())]);
    config.max_retries = 0;
    config.dead_letter = DeadLetterTarget::OnFailure(OnFailure {
        kind: DestinationKind::parse(&format!("kafka://{dest}"), &s.dir).unwrap(),
        context: RecordContext::new("TestMapping", "esm-test-function"),
    });
    s.run_until(config, |s| total(&s.stored()) >= 1).await;
    let fetched = client
        .fetch(&[(TopicPartition::new(dest.clone(), 0), 0)], 1000, 1 << 20)
        .await
        .unwrap();
    let records: Vec<_> = fetched.into_iter().flat_map(|p| p.records).collect();
    assert_eq!(records.len(), 2, "offsets 1 and 2");
    assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    let doc: Value = serde_json::from_slice(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(doc["KafkaBatchInfo"]["recordInfo"]["offset"], "1");
    assert_eq!(doc["KafkaBatchInfo"]["batchSize"], 1);
    assert_eq!(
        doc["payload"]["records"][format!("{}-0", s.topic)][0]["offset"],
        1
    );
    assert!(
        doc["responseContext"].get("functionError").is_none(),
        "reported, not an error"
    );
}

/// `KAFKA_PRODUCER_PYTHON`: a Python with `confluent-kafka`. Panics naming the fix when absent.
fn producer_python() -> PathBuf {
    let fix = "run `scripts/kafka-broker up` (it installs confluent-kafka) and \
               `eval \"$(scripts/kafka-broker env)\"`";
    let python = std::env::var_os("KAFKA_PRODUCER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("KAFKA_PRODUCER_PYTHON is not set: {fix}"));
    assert!(
        python.is_file(),
        "KAFKA_PRODUCER_PYTHON={} does not exist: {fix}",
        python.display()
    );
    python
}

/// The compression codec of every record batch stored in partition 0 of `topic`, read raw.
async fn batch_codecs(kafka: &KafkaConfig, topic: &str) -> Vec<Compression> {
    let mut conn = BrokerConnection::connect(&kafka.bootstrap_servers[0])
        .await
        .unwrap();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(1000)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(64 << 20),
                ]),
        ]);
    let resp = conn.send(&req, 4).await.unwrap();
    let partition = &resp.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "raw fetch of {topic}");
    let mut records = partition.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_batch_info(&mut records)
        .unwrap()
        .into_iter()
        .map(|b| b.compression)
        .collect()
}

/// librdkafka produces `codec`-compressed batches; the runner delivers every record, in order,
/// with its exact value.
async fn librdkafka_batches_are_delivered(codec: &str, expected: Compression) {
    let Some(kafka) = kafka() else { return };
    let python = producer_python();
    let s = Scenario::new(codec, 1, kafka).await;
    let n = 500;
    let out = tokio::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/librdkafka_produce.py"
        ))
        .args([
            s.kafka.bootstrap_servers[0].as_str(),
            s.topic.as_str(),
            codec,
            &n.to_string(),
        ])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "librdkafka producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Else the test would prove nothing: librdkafka sends a batch uncompressed when that is smaller.
    let codecs = batch_codecs(&s.kafka, &s.topic).await;
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == expected),
        "stored batches: {codecs:?}, want {expected:?}"
    );

    let started = Instant::now();
    let stats = s
        .run_until(s.config(&[]), |s| total(&s.stored()) >= n)
        .await;
    let took = started.elapsed();
    let stored: Vec<(i64, String)> = Scenario::lines(&s.out)
        .into_iter()
        .filter(|l| l["kind"] == "stored")
        .map(|l| {
            (
                l["offset"].as_i64().unwrap(),
                l["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let filler = " the quick brown fox jumps over the lazy dog".repeat(4);
    let want: Vec<(i64, String)> = (0..n)
        .map(|i| (i as i64, format!("{codec}-{i}-{filler}")))
        .collect();
    assert_eq!(stored, want, "every record once, in order, value intact");
    assert!(s.dead_lettered().is_empty());
    assert_eq!(stats.records_processed.load(Ordering::Relaxed), n as u64);
    eprintln!(
        "{codec}: {n} records in {} {codec} batches delivered in {took:.2?} ({} invocations)",
        codecs.len(),
        stats.invocations.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn librdkafka_gzip_batches_are_delivered() {
    librdkafka_batches_are_delivered("gzip", Compression::Gzip).await;
}

#[tokio::test]
async fn librdkafka_snappy_batches_are_delivered() {
    librdkafka_batches_are_delivered("snappy", Compression::Snappy).await;
}

#[tokio::test]
async fn librdkafka_lz4_batches_are_delivered() {
    librdkafka_batches_are_delivered("lz4", Compression::Lz4).await;
}

#[tokio::test]
async fn librdkafka_zstd_batches_are_delivered() {
    librdkafka_batches_are_delivered("zstd", Compression::Zstd).await;
}
