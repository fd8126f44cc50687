//! `esm-local` command line: `run`, `publish`, `serve-api`, `create-topic`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use esm_local::dead_letter::DeadLetterTarget;
use esm_local::invoke::FunctionSpec;
use esm_local::kafka::{KafkaClient, KafkaConfig, OffsetSpec, Sasl, SaslMechanism};
use esm_local::publish::{Publisher, prepare_gift};
use esm_local::runner::{FunctionTarget, RunnerConfig, RunnerStats, run};
use tokio::io::AsyncBufReadExt;

const USAGE: &str = "\
esm-local: a local Kafka event source mapping for Lambda functions

USAGE:
  esm-local run --function PATH --topic T [options]     poll Kafka and drive the function
  esm-local publish --topic T [--file F] [--key-field F] gift JSON lines (stdin) -> Kafka
  esm-local serve-api --topic T [--listen ADDR]          POST /vault/save -> Kafka, 202 {\"queued\":true}
  esm-local create-topic --topic T [--partitions N]

COMMON:
  --bootstrap-servers H:P[,H:P]   default $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092
  --sasl-mechanism M              PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (no TLS)
  --sasl-username U               default $KAFKA_SASL_USERNAME
  --sasl-password P               default $KAFKA_SASL_PASSWORD (prefer the variable)

RUN:
  --topic T                       repeatable or comma-separated
  --function PATH                 function binary (served the Lambda Runtime API)
  --invoke-url URL                instead of --function: POST events there (cargo lambda watch)
  --env K=V                       repeatable; --env-file F reads K=V lines
  --function-name N               default: the binary's file name
  --group G                       consumer group, default esm-local-<function name>
  --batch-size N                  default 100
  --batching-window-ms MS         default 500
  --starting-position P           TRIM_HORIZON (default) | LATEST, when nothing is committed
  --max-retries N                 default 3; then the records are dead-lettered
  --retry-backoff-ms MS           default 500 (doubles per attempt, max 30 s)
  --concurrency N                 lanes / function processes, default 4 (capped at partitions)
  --timeout-s S                   function timeout, default 60
  --memory-mb N                   reported memory size, default 512
  --dead-letter-file F            default ./esm-dead-letters.jsonl
  --dead-letter-topic T           instead of the file
";

#[derive(Debug, Default)]
struct Args {
    flags: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut flags: HashMap<String, Vec<String>> = HashMap::new();
        let mut raw = raw.peekable();
        while let Some(a) = raw.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument `{a}`"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let v = raw
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    (name.to_owned(), v)
                }
            };
            flags.entry(name).or_default().push(value);
        }
        Ok(Self { flags })
    }
    fn one(&mut self, name: &str) -> Option<String> {
        self.flags.remove(name).and_then(|mut v| v.pop())
    }
    fn all(&mut self, name: &str) -> Vec<String> {
        self.flags.remove(name).unwrap_or_default()
    }
    fn num<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.one(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: `{v}` is not a valid number")),
        }
    }
    fn finish(self) -> Result<(), String> {
        match self.flags.keys().next() {
            Some(k) => Err(format!("unknown option --{k} (see --help)")),
            None => Ok(()),
        }
    }
}

fn kafka_config(args: &mut Args) -> Result<KafkaConfig, String> {
    let servers = args
        .one("bootstrap-servers")
        .or_else(|| std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok())
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let sasl = match args.one("sasl-mechanism") {
        None => None,
        Some(m) => {
            let mechanism: SaslMechanism = m.parse()?;
            let username = args
                .one("sasl-username")
                .or_else(|| std::env::var("KAFKA_SASL_USERNAME").ok())
                .ok_or(
                    "--sasl-username (or KAFKA_SASL_USERNAME) is required with --sasl-mechanism",
                )?;
            let password = args
                .one("sasl-password")
                .or_else(|| std::env::var("KAFKA_SASL_PASSWORD").ok())
                .ok_or(
                    "--sasl-password (or KAFKA_SASL_PASSWORD) is required with --sasl-mechanism",
                )?;
            Some(Sasl {
                mechanism,
                username,
                password,
            })
        }
    };
    Ok(KafkaConfig {
        bootstrap_servers: servers
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        sasl,
    })
}

fn topics(args: &mut Args) -> Result<Vec<String>, String> {
    let t: Vec<String> = args
        .all("topic")
        .iter()
        .flat_map(|t| t.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if t.is_empty() {
        Err("--topic is required".into())
    } else {
        Ok(t)
    }
}

fn env_pairs(args: &mut Args) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for f in args.all("env-file") {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("--env-file {f}: {e}"))?;
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
    for kv in args.all("env") {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--env `{kv}` is not K=V"))?;
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

fn runner_config(mut args: Args) -> Result<RunnerConfig, String> {
    let kafka = kafka_config(&mut args)?;
    let topics = topics(&mut args)?;
    let timeout = Duration::from_secs(args.num("timeout-s", 60)?);
    let env = env_pairs(&mut args)?;
    let (function, default_name) = match (args.one("function"), args.one("invoke-url")) {
        (Some(path), None) => {
            let path = PathBuf::from(path);
            let name = args.one("function-name").unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "function".into())
            });
            let spec = FunctionSpec {
                path,
                env,
                name: name.clone(),
                timeout,
                memory_mb: args.num("memory-mb", 512)?,
            };
            (FunctionTarget::Process(spec), name)
        }
        (None, Some(url)) => {
            let name = args
                .one("function-name")
                .unwrap_or_else(|| "function".into());
            (FunctionTarget::InvokeUrl(url, timeout), name)
        }
        _ => return Err("give exactly one of --function PATH or --invoke-url URL".into()),
    };
    let starting_position = match args
        .one("starting-position")
        .as_deref()
        .unwrap_or("TRIM_HORIZON")
    {
        "TRIM_HORIZON" | "EARLIEST" | "trim_horizon" | "earliest" => OffsetSpec::Earliest,
        "LATEST" | "latest" => OffsetSpec::Latest,
        other => {
            return Err(format!(
                "--starting-position `{other}`: use TRIM_HORIZON or LATEST"
            ));
        }
    };
    let dead_letter = match (args.one("dead-letter-topic"), args.one("dead-letter-file")) {
        (Some(_), Some(_)) => {
            return Err("give only one of --dead-letter-topic and --dead-letter-file".into());
        }
        (Some(t), None) => DeadLetterTarget::Topic(t),
        (None, f) => DeadLetterTarget::File(PathBuf::from(
            f.unwrap_or_else(|| "esm-dead-letters.jsonl".into()),
        )),
    };
    let config = RunnerConfig {
        kafka,
        topics,
        group: args
            .one("group")
            .unwrap_or_else(|| format!("esm-local-{default_name}")),
        batch_size: args.num("batch-size", 100)?,
        batching_window: Duration::from_millis(args.num("batching-window-ms", 500)?),
        starting_position,
        max_retries: args.num("max-retries", 3)?,
        retry_backoff: Duration::from_millis(args.num("retry-backoff-ms", 500)?),
        concurrency: args.num("concurrency", 4)?,
        dead_letter,
        function,
    };
    args.finish()?;
    Ok(config)
}

async fn publish(mut args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let kafka = kafka_config(&mut args)?;
    let topic = topics(&mut args)?.remove(0);
    let key_field = args.one("key-field");
    let file = args.one("file");
    args.finish()?;
    let mut publisher = Publisher::new(KafkaClient::connect(kafka).await?, &topic).await?;
    let reader: Box<dyn tokio::io::AsyncBufRead + Unpin> = match file {
        Some(f) => Box::new(tokio::io::BufReader::new(
            tokio::fs::File::open(&f)
                .await
                .map_err(|e| format!("{f}: {e}"))?,
        )),
        None => Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
    };
    let mut lines = reader.lines();
    let (mut n, mut total, mut chunk) = (0usize, 0usize, Vec::new());
    while let Some(line) = lines.next_line().await? {
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        chunk.push(prepare_gift(&line, n, key_field.as_deref())?);
        if chunk.len() >= 500 {
            total += publisher.send(std::mem::take(&mut chunk)).await?;
        }
    }
    total += publisher.send(chunk).await?;
    eprintln!("published {total} gifts to {topic}");
    Ok(())
}

async fn serve_api(mut args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let kafka = kafka_config(&mut args)?;
    let topic = topics(&mut args)?.remove(0);
    let listen = args
        .one("listen")
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let key_field = args.one("key-field");
    args.finish()?;
    let publisher = Publisher::new(KafkaClient::connect(kafka).await?, &topic).await?;
    esm_local::api::serve(&listen, publisher, key_field).await?;
    Ok(())
}

async fn create_topic(mut args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let kafka = kafka_config(&mut args)?;
    let topics = topics(&mut args)?;
    let partitions = args.num("partitions", 3)?;
    args.finish()?;
    let mut client = KafkaClient::connect(kafka).await?;
    for t in topics {
        client.create_topic(&t, partitions).await?;
        eprintln!("topic {t}: ready");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESM_LOCAL_LOG")
                .unwrap_or_else(|_| "esm_local=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut raw = std::env::args().skip(1);
    let cmd = raw.next().unwrap_or_default();
    if matches!(cmd.as_str(), "" | "-h" | "--help" | "help") {
        print!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let args = match Args::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("esm-local: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = match cmd.as_str() {
        "run" => match runner_config(args) {
            Err(e) => Err(e.into()),
            Ok(config) => {
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    tokio::signal::ctrl_c().await.ok();
                    tracing::info!("stopping after the current batches");
                    tx.send(true).ok();
                });
                run(config, Arc::new(RunnerStats::default()), rx)
                    .await
                    .map_err(Into::into)
            }
        },
        "publish" => publish(args).await,
        "serve-api" => serve_api(args).await,
        "create-topic" => create_topic(args).await,
        other => Err(format!("unknown command `{other}` (see --help)").into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esm-local: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
