//! `esm-local` command line: `run`, `publish`, `serve-api`, `create-topic` (flags in `cli.rs`).

use std::sync::Arc;

use clap::{CommandFactory, Parser};
use esm_local::cli::{Cli, Command, CreateTopicArgs, PublishArgs, ServeApiArgs};
use esm_local::kafka::KafkaClient;
use esm_local::publish::{Publisher, prepare_gift};
use esm_local::runner::{RunnerStats, run};
use tokio::io::AsyncBufReadExt;

async fn publish(args: PublishArgs) -> Result<(), Box<dyn std::error::Error>> {
    let topic = args.topics.first()?;
    let mut publisher =
        Publisher::new(KafkaClient::connect(args.kafka.config()).await?, &topic).await?;
    let reader: Box<dyn tokio::io::AsyncBufRead + Unpin> = match &args.file {
        Some(f) => Box::new(tokio::io::BufReader::new(
            tokio::fs::File::open(f)
                .await
                .map_err(|e| format!("{}: {e}", f.display()))?,
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
        chunk.push(prepare_gift(&line, n, args.key_field.as_deref())?);
        if chunk.len() >= 500 {
            total += publisher.send(std::mem::take(&mut chunk)).await?;
        }
    }
    total += publisher.send(chunk).await?;
    eprintln!("published {total} gifts to {topic}");
    Ok(())
}

async fn serve_api(args: ServeApiArgs) -> Result<(), Box<dyn std::error::Error>> {
    // gift-publisher's own configuration, for a local plaintext broker; its other settings
    // (GIFT_MAX_BODY_BYTES, PUBLISH_TIMEOUT_MS, ...) come from the environment as deployed.
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.extend([
        (
            "KAFKA_BOOTSTRAP_SERVERS".into(),
            args.kafka.bootstrap_servers.clone(),
        ),
        ("GIFT_TOPIC".into(), args.topics.first()?),
        ("KAFKA_SECURITY".into(), "plaintext".into()),
        ("METRICS_ENABLED".into(), "false".into()),
    ]);
    let config =
        gift_publisher::config::Config::load(&lambda_kit::config::Env::from_pairs(env)).await?;
    esm_local::api::serve(&args.listen, config.build()).await?;
    Ok(())
}

async fn create_topic(args: CreateTopicArgs) -> Result<(), Box<dyn std::error::Error>> {
    let topics = args.topics.all()?;
    let mut client = KafkaClient::connect(args.kafka.config()).await?;
    for t in topics {
        client.create_topic(&t, args.partitions).await?;
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
    let result: Result<(), Box<dyn std::error::Error>> = match Cli::parse().command {
        None => {
            print!("{}", Cli::command().render_help());
            return std::process::ExitCode::SUCCESS;
        }
        Some(Command::Run(args)) => match (*args).into_settings() {
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
        Some(Command::Publish(args)) => publish(args).await,
        Some(Command::ServeApi(args)) => serve_api(args).await,
        Some(Command::CreateTopic(args)) => create_topic(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esm-local: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
