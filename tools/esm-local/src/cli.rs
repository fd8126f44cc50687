//! The `esm-local` command line (clap): subcommands, flags with their defaults and environment
//! fallbacks, and their conversion into the runner's delivery settings and the publisher's
//! configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::dead_letter::DeadLetterTarget;
use crate::filter::FilterCriteria;
use crate::invoke::FunctionSpec;
use crate::kafka::{KafkaConfig, OffsetSpec};
use crate::mapping::{EventRecordFormat, MappingSettings};
use crate::on_failure::{DestinationKind, OnFailure, RecordContext};
use crate::runner::{DeliverySettings, FunctionTarget, MappingBehaviour};
use crate::template::Template;

/// esm-local: a local Kafka event source mapping for Lambda functions.
///
/// Connects to Kafka in plaintext only (no SASL, no TLS): it is for local brokers.
#[derive(Debug, Parser)]
#[command(name = "esm-local", version, args_override_self = true)]
pub struct Cli {
    /// What to do; without one, this help is printed.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll Kafka and drive the function.
    Run(Box<RunArgs>),
    /// Gift JSON lines (stdin or --file) -> Kafka.
    Publish(PublishArgs),
    /// POST /vault/save -> Kafka, answering 202 {"queued":true}.
    ServeApi(ServeApiArgs),
    /// Create topics (an existing topic is left as it is).
    CreateTopic(CreateTopicArgs),
}

/// The cluster, for every subcommand.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated `host:port` list.
    #[arg(
        long,
        value_name = "H:P[,H:P]",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
}

impl KafkaArgs {
    /// The plaintext Kafka configuration.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(split_list(std::slice::from_ref(&self.bootstrap_servers)))
    }
}

/// `--topic`, repeatable or comma-separated.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Topic; repeatable or comma-separated.
    #[arg(long = "topic", value_name = "T", required = true)]
    pub topics: Vec<String>,
}

impl TopicArgs {
    /// Every topic named, in order.
    pub fn all(&self) -> Result<Vec<String>, String> {
        let t = split_list(&self.topics);
        if t.is_empty() {
            Err("--topic is required".into())
        } else {
            Ok(t)
        }
    }

    /// The first topic named (publishing goes to one topic).
    pub fn first(&self) -> Result<String, String> {
        Ok(self.all()?.remove(0))
    }
}

/// `esm-local run`.
///
/// With `--template T --mapping ID` the mapping's own settings come from the template (see
/// [`crate::mapping`]); a flag given explicitly wins over the template, and the defaults below
/// apply when neither sets a value.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic; repeatable or comma-separated [default with --template: the mapping's Topics].
    #[arg(long = "topic", value_name = "T", required_unless_present = "template")]
    pub topics: Vec<String>,
    /// SAM/CloudFormation template holding the mapping (e.g. template.yaml).
    #[arg(long, value_name = "FILE", requires = "mapping")]
    pub template: Option<PathBuf>,
    /// Logical id of the AWS::Lambda::EventSourceMapping to run (e.g. GiftPersisterMskMapping).
    #[arg(long, value_name = "ID", requires = "template")]
    pub mapping: Option<String>,
    /// Template parameter values, like `sam deploy --parameter-overrides`; repeatable.
    #[arg(long = "parameter-overrides", value_name = "K=V", num_args = 1.., requires = "template")]
    pub parameter_overrides: Vec<String>,
    /// The stack name the template's `AWS::StackName` resolves to.
    #[arg(long, value_name = "NAME", default_value = "esm-local")]
    pub stack_name: String,
    /// Function binary, served the Lambda Runtime API.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "invoke_url",
        conflicts_with = "invoke_url"
    )]
    pub function: Option<PathBuf>,
    /// Instead of --function: POST events there (`cargo lambda watch`).
    #[arg(long, value_name = "URL")]
    pub invoke_url: Option<String>,
    /// Function environment variable; repeatable (over the template's and --env-file's).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// File of K=V lines (`export ` prefixes, blank lines and # comments allowed); repeatable.
    #[arg(long = "env-file", value_name = "F")]
    pub env_files: Vec<PathBuf>,
    /// Function name [default: the binary's file name].
    #[arg(long, value_name = "N")]
    pub function_name: Option<String>,
    /// Consumer group [default: the mapping's ConsumerGroupId, else `esm-local-<function name>`].
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// Records per batch at most [default: BatchSize, else 100].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Longest time to gather a batch [default: MaximumBatchingWindowInSeconds, else 500].
    #[arg(long, value_name = "MS")]
    pub batching_window_ms: Option<u64>,
    /// Where to start when the group has no committed offset: TRIM_HORIZON or LATEST
    /// [default: StartingPosition, else TRIM_HORIZON].
    #[arg(long, value_name = "P", value_parser = parse_starting_position)]
    pub starting_position: Option<OffsetSpec>,
    /// Retries of a failing batch before it goes to the on-failure destination; -1 = until the
    /// records expire (10 when a destination is set) [default: MaximumRetryAttempts, else 3].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub max_retries: Option<i64>,
    /// Records older than this go to the destination undelivered; -1 = no limit
    /// [default: MaximumRecordAgeInSeconds, else -1].
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub max_record_age_s: Option<i64>,
    /// Split a batch that fails as a whole in two [default: BisectBatchOnFunctionError, else false].
    #[arg(long, value_name = "BOOL")]
    pub bisect_batch_on_function_error: Option<bool>,
    /// Honour batchItemFailures [default: FunctionResponseTypes has ReportBatchItemFailures; true
    /// without a template].
    #[arg(long, value_name = "BOOL")]
    pub report_batch_item_failures: Option<bool>,
    /// Lambda event filter pattern (JSON on `value`); repeatable, ORed [default: FilterCriteria].
    #[arg(long = "filter-pattern", value_name = "JSON")]
    pub filter_patterns: Vec<String>,
    /// Deliver as a mapping with a schema registry and EventRecordFormat SOURCE does: values
    /// (and keys) in the Confluent wire format lose the prefix and get valueSchemaMetadata with
    /// this dataFormat (AVRO, PROTOBUF, JSON) [default with a SOURCE mapping: from the
    /// function's VALUE_FORMAT (protobuf: PROTOBUF, else AVRO); without: records as produced].
    #[arg(long, value_name = "FORMAT", value_parser = ["AVRO", "PROTOBUF", "JSON"])]
    pub source_data_format: Option<String>,
    /// First retry wait (doubles per attempt, max 30 s).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub retry_backoff_ms: u64,
    /// Lanes = function processes (capped at the partition count).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,
    /// Function timeout [default: the function's Timeout, else 60].
    #[arg(long, value_name = "S")]
    pub timeout_s: Option<u64>,
    /// Memory size reported to the function [default: the function's MemorySize, else 512].
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u32>,
    /// On-failure destination as the mapping's DestinationConfig names it: arn:aws:s3:::BUCKET
    /// (a directory under --on-failure-dir), arn:aws:sqs:REGION:ACCOUNT:QUEUE (a JSON-lines
    /// file there) or kafka://TOPIC [default: the mapping's].
    #[arg(long, value_name = "DEST", conflicts_with_all = ["dead_letter_file", "dead_letter_topic"])]
    pub on_failure: Option<String>,
    /// Where S3 buckets and SQS queues of the destination are kept.
    #[arg(long, value_name = "DIR", default_value = "esm-on-failure")]
    pub on_failure_dir: PathBuf,
    /// esm-local's own dead-letter lines instead of a destination [default without a
    /// template or --on-failure: ./esm-dead-letters.jsonl].
    #[arg(long, value_name = "F")]
    pub dead_letter_file: Option<PathBuf>,
    /// Instead of the file: esm-local's own dead-letter records to this topic.
    #[arg(long, value_name = "T", conflicts_with = "dead_letter_file")]
    pub dead_letter_topic: Option<String>,
}

/// The retries Lambda applies when infinite retries meet an on-failure destination ("Using a
/// Kafka topic as an on-failure destination").
pub const INFINITE_RETRIES_WITH_DESTINATION: u32 = 10;

impl RunArgs {
    /// Parses the flags of `esm-local run` (without `esm-local run` itself), as the command line
    /// does: for tests and benches that build a runner the way a user would.
    pub fn parse_flags<S: AsRef<str>>(flags: &[S]) -> Result<Self, String> {
        let args = ["esm-local", "run"]
            .into_iter()
            .chain(flags.iter().map(AsRef::as_ref));
        match Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            Some(Command::Run(r)) => Ok(*r),
            _ => Err("not a run command".into()),
        }
    }

    /// The delivery settings of the run; reads the template and the `--env-file`s.
    pub fn into_settings(self) -> Result<DeliverySettings, String> {
        let mapping = self.template_mapping()?;
        let m = mapping.as_ref();
        let topics = if self.topics.is_empty() {
            m.map(|m| m.topics.clone()).unwrap_or_default()
        } else {
            split_list(&self.topics)
        };
        if topics.is_empty() {
            return Err("--topic is required".into());
        }
        let (function, default_name) = self.function_target(m)?;
        let group = self
            .group
            .clone()
            .or(m.and_then(|m| m.consumer_group.clone()))
            .unwrap_or_else(|| format!("esm-local-{default_name}"));
        let dead_letter = self.dead_letter_target(m, &group, &default_name)?;
        let max_retries = self.max_retries(m, &dead_letter)?;
        let behaviour = self.behaviour(m)?;
        Ok(DeliverySettings {
            kafka: self.kafka.config(),
            topics,
            group,
            batch_size: self
                .batch_size
                .or(m.and_then(|m| m.batch_size))
                .unwrap_or(100),
            batching_window: self
                .batching_window_ms
                .map(Duration::from_millis)
                .or(m.and_then(|m| m.batching_window))
                .unwrap_or(Duration::from_millis(500)),
            starting_position: self
                .starting_position
                .or(m.and_then(|m| m.starting_position))
                .unwrap_or(OffsetSpec::Earliest),
            max_retries,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            concurrency: self.concurrency,
            dead_letter,
            function,
            behaviour,
        })
    }

    /// The mapping `--mapping` of `--template`, with `--parameter-overrides`; `None` without a
    /// template.
    fn template_mapping(&self) -> Result<Option<MappingSettings>, String> {
        let (Some(t), Some(m)) = (&self.template, &self.mapping) else {
            return Ok(None);
        };
        let text =
            std::fs::read_to_string(t).map_err(|e| format!("--template {}: {e}", t.display()))?;
        let overrides = self
            .parameter_overrides
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("--parameter-overrides `{kv}` is not K=V"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let template = Template::parse(&text, &overrides, &self.stack_name)
            .map_err(|e| format!("{}: {e}", t.display()))?;
        let settings = MappingSettings::from_template(&template, m)
            .map_err(|e| format!("{}: {e}", t.display()))?;
        if let Some(c) = &settings.inactive_condition {
            tracing::warn!(mapping = %m, condition = %c, "the stack would not create this mapping with these parameters (its Condition is false); running it anyway");
        }
        if settings.event_record_format == EventRecordFormat::Json {
            return Err(format!(
                "{}: Resources.{m}: SchemaRegistryConfig.EventRecordFormat JSON needs the \
                 mapping's schema registry to convert values, which esm-local does not \
                 run: give --parameter-overrides SchemaRegistryEventRecordFormat=SOURCE \
                 or None (the functions then decode the values themselves)",
                t.display()
            ));
        }
        Ok(Some(settings))
    }

    /// The function (a binary, or a URL) with its environment, and the name it goes by.
    fn function_target(
        &self,
        m: Option<&MappingSettings>,
    ) -> Result<(FunctionTarget, String), String> {
        let timeout = self
            .timeout_s
            .map(Duration::from_secs)
            .or(m.map(|m| m.timeout))
            .unwrap_or(Duration::from_secs(60));
        let mut env = m.map(|m| m.env.clone()).unwrap_or_default();
        env.extend(env_pairs(&self.env_files, &self.env)?);
        match (&self.function, &self.invoke_url) {
            (Some(path), None) => {
                let name = self.function_name.clone().unwrap_or_else(|| {
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "function".into())
                });
                let spec = FunctionSpec {
                    path: path.clone(),
                    env,
                    name: name.clone(),
                    timeout,
                    memory_mb: self.memory_mb.or(m.map(|m| m.memory_mb)).unwrap_or(512),
                };
                Ok((FunctionTarget::Process(spec), name))
            }
            (None, Some(url)) => {
                let name = self
                    .function_name
                    .clone()
                    .unwrap_or_else(|| "function".into());
                Ok((FunctionTarget::InvokeUrl(url.clone(), timeout), name))
            }
            _ => Err("give exactly one of --function PATH or --invoke-url URL".into()),
        }
    }

    /// Where exhausted records go: esm-local's own dead letters when asked for, else the
    /// destination (flag over mapping); a mapping without one drops them, as Lambda does.
    fn dead_letter_target(
        &self,
        m: Option<&MappingSettings>,
        group: &str,
        function_name: &str,
    ) -> Result<DeadLetterTarget, String> {
        let destination = self
            .on_failure
            .clone()
            .or(m.and_then(|m| m.on_failure.clone()));
        Ok(
            match (&self.dead_letter_topic, &self.dead_letter_file, destination) {
                (Some(t), _, _) => DeadLetterTarget::Topic(t.clone()),
                (None, Some(f), _) => DeadLetterTarget::File(f.clone()),
                (None, None, Some(d)) => DeadLetterTarget::OnFailure(OnFailure {
                    kind: DestinationKind::parse(&d, &self.on_failure_dir)?,
                    context: RecordContext::new(
                        m.map_or(group, |m| m.logical_id.as_str()),
                        function_name,
                    ),
                }),
                (None, None, None) if m.is_some() => DeadLetterTarget::Drop,
                (None, None, None) => {
                    DeadLetterTarget::File(PathBuf::from("esm-dead-letters.jsonl"))
                }
            },
        )
    }

    /// `--max-retries` or `MaximumRetryAttempts`; -1 means until the records expire, capped
    /// with a destination as Lambda caps it.
    fn max_retries(
        &self,
        m: Option<&MappingSettings>,
        dead_letter: &DeadLetterTarget,
    ) -> Result<u32, String> {
        match self
            .max_retries
            .or(m.and_then(|m| m.maximum_retry_attempts))
            .unwrap_or(3)
        {
            -1 if matches!(dead_letter, DeadLetterTarget::Drop) => Ok(u32::MAX),
            -1 => Ok(INFINITE_RETRIES_WITH_DESTINATION),
            n => u32::try_from(n).map_err(|_| format!("--max-retries {n}: use -1..=10000")),
        }
    }

    /// The mapping's error handling, filters and record format, flags over the template.
    fn behaviour(&self, m: Option<&MappingSettings>) -> Result<MappingBehaviour, String> {
        let max_record_age = match self
            .max_record_age_s
            .or(m.and_then(|m| m.maximum_record_age_s))
        {
            None | Some(-1) => None,
            Some(s) => Some(Duration::from_secs(s.unsigned_abs())),
        };
        let patterns = if self.filter_patterns.is_empty() {
            m.map(|m| m.filter_patterns.clone()).unwrap_or_default()
        } else {
            self.filter_patterns.clone()
        };
        Ok(MappingBehaviour {
            report_batch_item_failures: self
                .report_batch_item_failures
                .or(m.map(|m| m.report_batch_item_failures))
                .unwrap_or(true),
            bisect_batch_on_function_error: self
                .bisect_batch_on_function_error
                .or(m.map(|m| m.bisect_batch_on_function_error))
                .unwrap_or(false),
            max_record_age,
            filters: FilterCriteria::parse(&patterns)?,
            source_data_format: self.source_data_format.clone().or_else(|| {
                let m = m.filter(|m| m.event_record_format == EventRecordFormat::Source)?;
                let protobuf = m
                    .env
                    .iter()
                    .any(|(k, v)| k == "VALUE_FORMAT" && v == "protobuf");
                Some(if protobuf { "PROTOBUF" } else { "AVRO" }.to_owned())
            }),
        })
    }
}

/// `esm-local publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Read the JSON lines from this file instead of stdin.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// Field of each gift whose value becomes the record key.
    #[arg(long, value_name = "F")]
    pub key_field: Option<String>,
}

/// `esm-local serve-api`.
#[derive(Debug, Clone, Args)]
pub struct ServeApiArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

/// `esm-local create-topic`.
#[derive(Debug, Clone, Args)]
pub struct CreateTopicArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Partitions of each new topic.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub partitions: i32,
}

/// Splits repeatable, comma-separated values, dropping blanks.
fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn parse_starting_position(s: &str) -> Result<OffsetSpec, String> {
    match s {
        "TRIM_HORIZON" | "EARLIEST" | "trim_horizon" | "earliest" => Ok(OffsetSpec::Earliest),
        "LATEST" | "latest" => Ok(OffsetSpec::Latest),
        other => Err(format!("`{other}`: use TRIM_HORIZON or LATEST")),
    }
}

/// The `--env-file` entries in order, then the `--env` ones (so a flag overrides a file).
pub fn env_pairs(files: &[PathBuf], env: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f);
        let f = f.display();
        let text = text.map_err(|e| format!("--env-file {f}: {e}"))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("--env-file {f}: line {} is not K=V", i + 1))?;
            out.push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
        }
    }
    for kv in env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--env `{kv}` is not K=V"))?;
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("esm-local").chain(args.iter().copied()))?;
        Ok(cli.command.expect("a subcommand"))
    }

    /// `run --topic t --function f` (a run that starts) followed by `extra`.
    fn run_args(extra: &[&'static str]) -> Vec<&'static str> {
        let mut args = vec!["run", "--topic", "t", "--function", "f"];
        args.extend_from_slice(extra);
        args
    }

    fn run(args: &[&str]) -> DeliverySettings {
        match parse(args).unwrap() {
            Command::Run(r) => (*r).into_settings().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults() {
        let c = run(&[
            "run",
            "--topic",
            "t",
            "--function",
            "target/debug/gift-persister",
        ]);
        assert_eq!(c.topics, ["t"]);
        assert_eq!(c.group, "esm-local-gift-persister");
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.batching_window, Duration::from_millis(500));
        assert_eq!(c.starting_position, OffsetSpec::Earliest);
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.retry_backoff, Duration::from_millis(500));
        assert_eq!(c.concurrency, 4);
        assert!(
            matches!(&c.dead_letter, DeadLetterTarget::File(f) if f == &PathBuf::from("esm-dead-letters.jsonl"))
        );
        let FunctionTarget::Process(spec) = &c.function else {
            panic!("{:?}", c.function)
        };
        assert_eq!(spec.name, "gift-persister");
        assert_eq!(spec.timeout, Duration::from_secs(60));
        assert_eq!(spec.memory_mb, 512);
        assert!(spec.env.is_empty());
    }

    #[test]
    fn run_flags_in_both_spellings_and_last_one_wins() {
        let c = run(&[
            "run",
            "--topic=a,b",
            "--topic",
            " c ,",
            "--invoke-url",
            "http://127.0.0.1:9000/invoke",
            "--batch-size=10",
            "--batch-size",
            "20",
            "--batching-window-ms",
            "0",
            "--starting-position",
            "LATEST",
            "--max-retries",
            "0",
            "--retry-backoff-ms",
            "20",
            "--concurrency",
            "1",
            "--timeout-s",
            "5",
            "--env",
            "A=1",
            "--env=B=x=y",
            "--dead-letter-topic",
            "dlq",
            "--group",
            "g",
            "--bootstrap-servers",
            "h1:9092, h2:9093",
        ]);
        assert_eq!(c.topics, ["a", "b", "c"]);
        assert_eq!(c.kafka.bootstrap_servers, ["h1:9092", "h2:9093"]);
        assert_eq!(c.group, "g");
        assert_eq!(c.batch_size, 20);
        assert_eq!(c.batching_window, Duration::ZERO);
        assert_eq!(c.starting_position, OffsetSpec::Latest);
        assert_eq!(c.max_retries, 0);
        assert_eq!(c.retry_backoff, Duration::from_millis(20));
        assert_eq!(c.concurrency, 1);
        assert!(matches!(&c.dead_letter, DeadLetterTarget::Topic(t) if t == "dlq"));
        assert!(
            matches!(&c.function, FunctionTarget::InvokeUrl(u, t) if u == "http://127.0.0.1:9000/invoke" && *t == Duration::from_secs(5))
        );
    }

    #[test]
    fn env_file_then_env_flags() {
        let dir = std::env::temp_dir().join(format!("esm-cli-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("env");
        std::fs::write(&file, "# comment\n\nexport A=\"1\"\nB = two\n").unwrap();
        let c = run(&[
            "run",
            "--topic",
            "t",
            "--function",
            "/bin/f",
            "--env-file",
            file.to_str().unwrap(),
            "--env",
            "A=3",
        ]);
        std::fs::remove_dir_all(&dir).ok();
        let FunctionTarget::Process(spec) = c.function else {
            panic!()
        };
        let env: Vec<(&str, &str)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "1"), ("B", "two"), ("A", "3")]);
    }

    #[test]
    fn starting_position_spellings() {
        for (s, want) in [
            ("TRIM_HORIZON", OffsetSpec::Earliest),
            ("earliest", OffsetSpec::Earliest),
            ("latest", OffsetSpec::Latest),
        ] {
            let c = run(&run_args(&["--starting-position", s]));
            assert_eq!(c.starting_position, want, "{s}");
        }
        let e = parse(&run_args(&["--starting-position", "AT_TIMESTAMP"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use TRIM_HORIZON or LATEST"), "{e}");
    }

    #[test]
    fn mistakes_are_refused_naming_the_flag() {
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["run", "--function", "f"], "--topic"),
            (vec!["run", "--topic", "t"], "--function"),
            (run_args(&["--invoke-url", "u"]), "--invoke-url"),
            (
                run_args(&["--dead-letter-file", "x", "--dead-letter-topic", "y"]),
                "--dead-letter-topic",
            ),
            (run_args(&["--batch-size", "x"]), "--batch-size"),
            (run_args(&["--sasl-mechanism", "PLAIN"]), "--sasl-mechanism"),
            (vec!["publish", "--topic"], "--topic"),
            (vec!["consume", "--topic", "t"], "consume"),
        ];
        for (args, flag) in &cases {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        let Command::Run(r) = parse(&["run", "--topic", ",", "--function", "f"]).unwrap() else {
            panic!()
        };
        assert_eq!((*r).into_settings().unwrap_err(), "--topic is required");
        let Command::Run(r) = parse(&run_args(&["--env", "A"])).unwrap() else {
            panic!()
        };
        assert!((*r).into_settings().unwrap_err().contains("not K=V"));
    }

    const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");

    fn from_template(extra: &[&str]) -> Result<DeliverySettings, String> {
        let mut args = vec![
            "run",
            "--template",
            TEMPLATE,
            "--mapping",
            "GiftPersisterMskMapping",
            "--function",
            "target/debug/gift-persister",
            "--parameter-overrides",
            "SupabaseUrl=http://127.0.0.1:54321",
            "SupabaseKeySecretArn=",
        ];
        args.extend_from_slice(extra);
        match parse(&args).map_err(|e| e.to_string())? {
            Command::Run(r) => (*r).into_settings(),
            other => panic!("{other:?}"),
        }
    }

    /// The deployed mapping's settings, from the project's template.yaml.
    #[test]
    fn run_takes_the_mapping_from_the_template() {
        let c = from_template(&["--on-failure-dir", "of"]).unwrap();
        assert_eq!(c.topics, ["gift_events"]);
        assert_eq!(c.group, "gift-persister");
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.batching_window, Duration::from_secs(1));
        assert_eq!(c.max_retries, 5);
        assert!(c.behaviour.bisect_batch_on_function_error);
        assert!(c.behaviour.report_batch_item_failures);
        assert_eq!(c.behaviour.max_record_age, None);
        let DeadLetterTarget::OnFailure(d) = &c.dead_letter else {
            panic!("{:?}", c.dead_letter)
        };
        assert_eq!(
            d.kind,
            DestinationKind::S3(PathBuf::from("of/FailureBucket"))
        );
        let FunctionTarget::Process(spec) = &c.function else {
            panic!()
        };
        assert_eq!(spec.timeout, Duration::from_secs(60));
        assert_eq!(spec.memory_mb, 256);
        assert!(
            spec.env
                .iter()
                .any(|(k, v)| k == "GIFTS_TABLE" && v == "vault")
        );
        assert!(
            spec.env
                .iter()
                .any(|(k, v)| k == "METRICS_SERVICE" && v == "esm-local"),
            "AWS::StackName is --stack-name"
        );
    }

    #[test]
    fn flags_override_the_template_and_minus_one_is_capped_with_a_destination() {
        let c = from_template(&[
            "GiftsTable=other",
            "MaximumRetryAttempts=-1",
            "OnFailureDestination=SQS",
            "--batch-size",
            "7",
            "--bisect-batch-on-function-error",
            "false",
            "--max-record-age-s",
            "120",
            "--env",
            "GIFTS_TABLE=mine",
            "--group",
            "g",
            "--timeout-s",
            "9",
        ])
        .unwrap();
        assert_eq!(c.batch_size, 7);
        assert_eq!(c.group, "g");
        assert!(!c.behaviour.bisect_batch_on_function_error);
        assert_eq!(c.behaviour.max_record_age, Some(Duration::from_secs(120)));
        assert_eq!(
            c.max_retries, INFINITE_RETRIES_WITH_DESTINATION,
            "-1 with a destination"
        );
        assert!(matches!(&c.dead_letter, DeadLetterTarget::OnFailure(d)
            if d.kind == DestinationKind::Sqs(PathBuf::from("esm-on-failure/GiftPersisterFailureQueue.jsonl"))));
        let FunctionTarget::Process(spec) = &c.function else {
            panic!()
        };
        assert_eq!(spec.timeout, Duration::from_secs(9));
        let table: Vec<&str> = spec
            .env
            .iter()
            .filter(|(k, _)| k == "GIFTS_TABLE")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(table, ["other", "mine"], "--env comes last, so it wins");
        let c = from_template(&["--max-retries", "-1", "--dead-letter-file", "x.jsonl"]).unwrap();
        assert_eq!(c.max_retries, INFINITE_RETRIES_WITH_DESTINATION);
        let c = from_template(&["--on-failure", "kafka://t.dlq"]).unwrap();
        assert!(matches!(&c.dead_letter, DeadLetterTarget::OnFailure(d)
            if d.kind == DestinationKind::Kafka("t.dlq".into())));
    }

    #[test]
    fn template_problems_name_the_mapping_and_the_setting() {
        let e = from_template(&["GiftBatchSize=0"]).unwrap_err();
        assert!(
            e.contains("GiftPersisterMskMapping.Properties.BatchSize"),
            "{e}"
        );
        let e = from_template(&[
            "SchemaRegistryUri=https://r.example",
            "SchemaRegistryEventRecordFormat=JSON",
        ])
        .unwrap_err();
        assert!(e.contains("EventRecordFormat JSON"), "{e}");
        assert!(e.contains("SchemaRegistryEventRecordFormat=SOURCE"), "{e}");
        let c = from_template(&[
            "SchemaRegistryUri=https://r.example",
            "SchemaRegistryEventRecordFormat=SOURCE",
            "ValueFormat=protobuf",
        ])
        .unwrap();
        assert_eq!(c.behaviour.source_data_format.as_deref(), Some("PROTOBUF"));
        assert_eq!(
            from_template(&[]).unwrap().behaviour.source_data_format,
            None
        );
        let e = from_template(&["NoSuchParameter=1"]).unwrap_err();
        assert!(e.contains("`NoSuchParameter` is not a parameter"), "{e}");
        let e = from_template(&["--on-failure", "arn:aws:sns:us-east-1:1:t"]).unwrap_err();
        assert!(e.contains("SNS"), "{e}");
        let e = parse(&["run", "--mapping", "X", "--function", "f", "--topic", "t"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--template"), "{e}");
    }

    #[test]
    fn other_subcommands() {
        let Command::Publish(p) =
            parse(&["publish", "--topic", "a,b", "--key-field", "page_id"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(p.topics.first().unwrap(), "a");
        assert_eq!(p.key_field.as_deref(), Some("page_id"));
        assert!(p.file.is_none());
        let Command::ServeApi(s) = parse(&["serve-api", "--topic", "g"]).unwrap() else {
            panic!()
        };
        assert_eq!(s.listen, "127.0.0.1:8080");
        let Command::CreateTopic(c) =
            parse(&["create-topic", "--topic", "a", "--topic", "b"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.partitions, 3);
        assert_eq!(c.topics.all().unwrap(), ["a", "b"]);
    }

    #[test]
    fn no_subcommand_is_not_an_error() {
        assert!(
            Cli::try_parse_from(["esm-local"])
                .unwrap()
                .command
                .is_none()
        );
    }
}
