//! `kl` command line (flags and commands in `cli.rs`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KL_LOG")
                .unwrap_or_else(|_| "kl=info,esm_local=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    kl::cli::run(kl::cli::Cli::parse()).await
}
