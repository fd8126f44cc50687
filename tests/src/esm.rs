//! Real-Kafka end-to-end helpers: the broker's address (tests skip loudly without it), the
//! function binaries built by cargo, an in-process `esm-local` runner driving one of them, and
//! publishing JSON values.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esm_local::dead_letter::DeadLetterTarget;
use esm_local::invoke::FunctionSpec;
use esm_local::kafka::{KafkaClient, KafkaConfig, OffsetSpec, ProduceRecord, TopicPartition};
use esm_local::runner::{
    DeliverySettings, FunctionTarget, MappingBehaviour, RunnerError, RunnerStats, run,
};
use tokio::sync::watch;

/// `KAFKA_BOOTSTRAP_SERVERS` (`scripts/kafka-broker env`), or `None` after a loud SKIP line.
pub fn kafka_or_skip(test: &str) -> Option<KafkaConfig> {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(s) if !s.trim().is_empty() => Some(KafkaConfig::new(
            s.split(',').map(|s| s.trim().to_owned()).collect(),
        )),
        _ => {
            eprintln!(
                "\n!!!! SKIPPED {test}: KAFKA_BOOTSTRAP_SERVERS is not set \
                 (run `scripts/kafka-broker up` and `eval \"$(scripts/kafka-broker env)\"`) !!!!\n"
            );
            None
        }
    }
}

/// The binary `name` of this workspace, built in the same profile as the running test or bench
/// (`target/<profile>/deps/<exe>` -> `target/<profile>/<name>`); panics naming the build command
/// when it is missing.
pub fn function_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<exe>");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} does not exist: build it first in the same profile (`cargo build -p {name}`; \
         `scripts/test` does it before running the tests)",
        path.display()
    );
    path
}

/// A runner configuration with the ESM defaults (batch 100, window 500 ms, TRIM_HORIZON) for
/// `function` (a binary) on `topic`, dead-lettering exhausted records to `dead_letter_file`.
/// Retries are many and short: an outage must delay records, not dead-letter them.
pub fn runner_config(
    kafka: &KafkaConfig,
    topic: &str,
    group: &str,
    function: &Path,
    function_name: &str,
    env: Vec<(String, String)>,
    dead_letter_file: PathBuf,
) -> DeliverySettings {
    let mut env = env;
    // The functions log to the test's stderr: errors only, unless asked for more.
    if std::env::var_os("AWS_LAMBDA_LOG_LEVEL").is_none() {
        env.push(("AWS_LAMBDA_LOG_LEVEL".into(), "error".into()));
    }
    DeliverySettings {
        kafka: kafka.clone(),
        topics: vec![topic.to_owned()],
        group: group.to_owned(),
        batch_size: 100,
        batching_window: Duration::from_millis(500),
        starting_position: OffsetSpec::Earliest,
        max_retries: 30,
        retry_backoff: Duration::from_millis(100),
        concurrency: 4,
        dead_letter: DeadLetterTarget::File(dead_letter_file),
        function: FunctionTarget::Process(FunctionSpec {
            path: function.to_owned(),
            env,
            name: function_name.to_owned(),
            timeout: Duration::from_secs(30),
            memory_mb: 256,
        }),
        behaviour: MappingBehaviour::default(),
    }
}

/// An `esm-local` runner in this process; [`Runner::stop`] lets lanes finish their batch.
#[derive(Debug)]
pub struct Runner {
    /// Counters of the runner.
    pub stats: Arc<RunnerStats>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), RunnerError>>,
}

impl Runner {
    /// Starts `config`.
    pub fn start(config: DeliverySettings) -> Self {
        let stats = Arc::new(RunnerStats::default());
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(run(config, Arc::clone(&stats), rx));
        Self {
            stats,
            shutdown,
            task,
        }
    }

    /// Panics with the runner's error if it stopped by itself.
    pub fn assert_running(&self) {
        assert!(!self.task.is_finished(), "the runner stopped on its own");
    }

    /// Stops the runner and returns its result.
    pub async fn stop(self) -> Result<(), RunnerError> {
        let _ = self.shutdown.send(true);
        self.task.await.expect("runner task")
    }
}

/// A connected client that creates `topic` with `partitions` partitions.
pub async fn create_topic(kafka: &KafkaConfig, topic: &str, partitions: i32) -> KafkaClient {
    let mut client = KafkaClient::connect(kafka.clone())
        .await
        .expect("connect to the broker");
    client
        .create_topic(topic, partitions)
        .await
        .expect("create topic");
    client
}

/// Produces `(key, value)` records to `topic`/`partition` in one request.
pub async fn publish(
    client: &mut KafkaClient,
    topic: &str,
    partition: i32,
    records: &[(Option<String>, Vec<u8>)],
) {
    let recs: Vec<ProduceRecord> = records
        .iter()
        .map(|(k, v)| ProduceRecord {
            key: k.as_ref().map(|k| k.clone().into_bytes()),
            value: Some(v.clone()),
            headers: vec![],
            timestamp_ms: now_ms() as i64,
        })
        .collect();
    client
        .produce(&TopicPartition::new(topic.to_owned(), partition), &recs)
        .await
        .expect("produce");
}

/// Polls `probe` every 100 ms until it returns `true` or `timeout` passes; returns whether it did.
pub async fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if probe() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
