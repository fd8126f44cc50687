//! The schema-registry stack tests (Avro, Protobuf, Glue): values written by an encoder that is
//! independent of the decoder under test (a script in `scripts/`), published keyless, and what
//! the run left in `vault` and `dead_letters` for a topic.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use esm_local::kafka::KafkaConfig;
use esm_local::runner::DeliverySettings;
use serde_json::Value;

use crate::esm::{function_binary, runner_config};
use crate::stack::{StackEnv, lit, unique};

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `encoder` (an `encode` command of `scripts/*-tool`) with `values` as JSON lines on its
/// standard input and returns the encoded values it prints, one hex line each.
pub fn encode(mut encoder: Command, values: &[Value]) -> Vec<Vec<u8>> {
    let what = format!("{encoder:?}");
    let mut child = encoder
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    for v in values {
        writeln!(stdin, "{v}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{what} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| hex::decode(l).unwrap_or_else(|e| panic!("{what} printed {l:?}: {e}")))
        .collect()
}

/// Values as records without keys, for [`publish`](crate::esm::publish).
pub fn keyless(values: Vec<Vec<u8>>) -> Vec<(Option<String>, Vec<u8>)> {
    values.into_iter().map(|v| (None, v)).collect()
}

/// Rows of `vault` from `topic`, narrowed by an SQL condition `extra` (`and ...`, or empty).
pub fn vault_count(stack: &StackEnv, topic: &str, extra: &str) -> i64 {
    stack
        .sql(&format!(
            "select count(*) from vault where kafka_topic = {} {extra}",
            lit(topic)
        ))
        .parse()
        .unwrap()
}

/// The dead letters of `topic`: `error_code@partition:offset`, comma-separated.
pub fn dead_letters(stack: &StackEnv, topic: &str) -> String {
    stack.sql(&format!(
        "select coalesce(string_agg(error_code || '@' || kafka_partition || ':' || kafka_offset, ','), '')
           from dead_letters where topic = {}",
        lit(topic)
    ))
}

/// A run's names: a unique id from `prefix`, its topic (`<id>-gifts`) and a scratch directory.
pub fn run_names(prefix: &str) -> (String, String, PathBuf) {
    let run = unique(prefix).replace('_', "-");
    let topic = format!("{run}-gifts");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    (run, topic, dir)
}

/// esm-local driving the real gift-persister binary over `topic` into `stack`, with `env` (the
/// value format, the registry) on top of the stack's API settings.
pub fn gift_runner(
    kafka: &KafkaConfig,
    stack: &StackEnv,
    (run, topic, dir): (&str, &str, &std::path::Path),
    env: &[(&str, &str)],
) -> DeliverySettings {
    let mut all = vec![
        ("SUPABASE_REST_URL".to_owned(), stack.rest_url.clone()),
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            stack.service_key.clone(),
        ),
    ];
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    runner_config(
        kafka,
        topic,
        &format!("{run}-esm"),
        &function_binary("gift-persister"),
        "gift-persister",
        all,
        dir.join("esm.dlq"),
    )
}
