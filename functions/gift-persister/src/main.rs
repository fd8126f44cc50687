//! Lambda entry point: wiring only.

use gift_persister::config::Config;
use gift_persister::handler::{Handler, Settings};
use gift_persister::store::PostgrestGiftStore;
use lambda_kit::config::Env;
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::metrics::Metrics;
use lambda_kit::postgrest::PostgrestClient;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env().await?;
    let metrics = Metrics::from_env(&Env::process(), env!("CARGO_PKG_NAME"))?;
    let client = PostgrestClient::new(config.postgrest.clone())?;
    let handler = Handler::new(
        PostgrestGiftStore::new(client.clone(), config.gifts_table.clone(), config.limits),
        PostgrestDeadLetters::new(client, config.dead_letter_table.clone(), config.limits),
        Settings {
            gift_limits: config.gift_limits,
            deadline: config.deadline.clone(),
        },
    )
    .with_metrics(metrics);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event| handler.handle(event))).await
}
