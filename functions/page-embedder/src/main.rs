//! Wiring only: tracing, configuration, the handler it builds, the runtime loop.

// The runner, the PostgREST client's credential refresh and the AWS SDK nest deep futures; the
// layout of `main` needs more than 128.
#![recursion_limit = "256"]

use lambda_kit::config::Env;
use lambda_runtime::Error;
use page_embedder::config::Config;

/// Every batch allocates and frees many small strings and maps; mimalloc keeps the pages it
/// had (see `mimalloc` in the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let handler = &Config::load(&Env::process()).await?.build()?;
    // The payload is decoded from the invocation's bytes (lambda-kit's runtime layer).
    lambda_kit::runtime::run(move |event| handler.handle(event)).await
}
