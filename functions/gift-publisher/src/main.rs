//! Lambda entry point: wiring only.

// The producer and the AWS SDK nest deep futures; the layout of `main` needs more than 128.
#![recursion_limit = "256"]

use gift_publisher::config::Config;
use lambda_kit::config::Env;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let handler = &Config::load(&Env::process()).await?.build();
    // One producer connection per execution environment, made during init; a broker that is
    // down now is not fatal: requests answer 503 and reconnect.
    if let Err(e) = handler.broker().connect_now().await {
        tracing::warn!(error_code = e.error_code(), error = %e, "no broker connection at cold start");
    }
    lambda_runtime::run(service_fn(move |event| handler.handle(event))).await
}
