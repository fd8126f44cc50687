//! Lambda entry point: wiring only.

use lambda_runtime::{Error, service_fn};
use table_sink::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let handler = &Config::from_env().await?.build()?;
    lambda_runtime::run(service_fn(move |event| handler.handle(event))).await
}
