//! Wiring only: tracing, configuration, clients, runtime loop.

use lambda_kit::config::Env;
use lambda_kit::dead_letter::PostgrestDeadLetters;
use lambda_kit::metrics::Metrics;
use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig};
use lambda_kit::secrets::{SecretSpec, resolve};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use page_embedder::config::{Config, KeySource, Provider};
use page_embedder::embed::{OllamaEmbedder, OpenAiEmbedder, ProviderEmbedder};
use page_embedder::embedding::EmbedSettings;
use page_embedder::handler::Handler;
use page_embedder::pipeline::{Pipeline, Settings};
use page_embedder::rag::HttpRag;
use page_embedder::store::AnyStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let env = Env::process();
    let config = Config::from_env(&env)?;
    let metrics = Metrics::from_env(&env, env!("CARGO_PKG_NAME"))?;

    let key = resolve(
        &env,
        &SecretSpec::new("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY_SECRET_ID", "key"),
    )
    .await?;
    let postgrest_config = PostgrestConfig::from_env(&env, key)?;
    // One connection pool (and one load of the TLS roots) for PostgREST, the embedding provider
    // and the RAG service, connecting within HTTP_CONNECT_TIMEOUT_MS; every request sets its own
    // timeout.
    let http = reqwest::Client::builder()
        .connect_timeout(postgrest_config.connect_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()?;
    let api_key = match &config.embed.api_key {
        KeySource::None => None,
        _ => Some(
            resolve(
                &env,
                &SecretSpec::new("OPENAI_API_KEY", "OPENAI_API_KEY_SECRET_ID", "key"),
            )
            .await?,
        ),
    };
    let e = &config.embed;
    let embedder = match e.provider {
        Provider::OpenAi => ProviderEmbedder::OpenAi(
            OpenAiEmbedder::new(
                http.clone(),
                &e.base_url,
                &e.model,
                e.dimensions,
                e.dimensions_explicit,
                api_key.map(|k| k.expose().to_owned()),
            )
            .with_timeout(e.timeout),
        ),
        #[cfg(feature = "local-embedder")]
        Provider::Local => {
            let dir = e.local_model_dir.as_deref().unwrap_or_default();
            let local = page_embedder::embed::LocalProvider::load(dir, &e.model)?;
            let dims = local.embedder().dimensions();
            if dims != e.dimensions {
                return Err(format!(
                    "EMBED_DIM is {} but the model in LOCAL_MODEL_DIR produces {dims}",
                    e.dimensions
                )
                .into());
            }
            ProviderEmbedder::Local(local)
        }
        #[cfg(not(feature = "local-embedder"))]
        Provider::Local => {
            return Err(
                "EMBED_PROVIDER=local: this binary was built without the local-embedder feature \
                        (cargo build --features local-embedder)"
                    .into(),
            );
        }
        _ => ProviderEmbedder::Ollama(
            OllamaEmbedder::new(
                http.clone(),
                &e.base_url,
                &e.model,
                e.dimensions,
                e.dimensions_explicit,
            )
            .with_keep_alive(e.keep_alive.clone())
            .with_timeout(e.timeout),
        ),
    };

    let postgrest = PostgrestClient::with_http(postgrest_config, http.clone())?;
    let store = AnyStore::from_config(&config, &env, postgrest.clone()).await?;
    let dead_letters = PostgrestDeadLetters::new(
        postgrest,
        env.identifier_or("DEAD_LETTER_TABLE", "dead_letters")?,
        lambda_kit::batch::ChunkLimits::from_env(&env)?,
    );
    let rag = config
        .rag
        .as_ref()
        .map(|r| HttpRag::new(http.clone(), r.url.clone(), r.timeout, r.concurrency));

    let handler = Handler {
        pipeline: Pipeline {
            embedder,
            store,
            rag,
            settings: Settings {
                page_id_field: config.page_id_field.clone(),
                body_field: config.body_field.clone(),
                doc_prefix: e.doc_prefix.clone(),
                limits: e.limits,
                embed: EmbedSettings {
                    batch_size: e.batch_size,
                    concurrency: e.concurrency,
                    retry: e.retry.clone(),
                },
                rag_enabled: config.rag.is_some(),
            },
        },
        dead_letters,
        // The package name, not AWS_LAMBDA_FUNCTION_NAME: dead letters are keyed by function name,
        // topic, partition and offset, and a redeploy under a new name must still dedupe a
        // redelivered record (gift-persister does the same).
        function_name: env!("CARGO_PKG_NAME").to_owned(),
        deadline: config.deadline.clone(),
    };
    let (handler, metrics) = (&handler, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        handler.handle_with_metrics(event, metrics)
    }))
    .await
}
