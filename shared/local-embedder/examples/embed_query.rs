//! Embeds one text with the model in `LOCAL_MODEL_DIR` and prints it as a pgvector literal
//! (`[0.1,-0.2,...]`), for nearest-neighbour queries with `<=>` (`scripts/demo` uses it):
//!
//! ```text
//! LOCAL_MODEL_DIR="$(scripts/model)" cargo run -q -p local-embedder --example embed_query -- "a text"
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let text: Vec<String> = std::env::args().skip(1).collect();
    if text.is_empty() {
        eprintln!("usage: embed_query <text...>  (LOCAL_MODEL_DIR names the model directory)");
        return ExitCode::from(2);
    }
    let text = text.join(" ");
    let result = local_embedder::LocalEmbedder::from_env().and_then(|e| e.embed(&[&text]));
    match result {
        Ok(vectors) => {
            let parts: Vec<String> = vectors[0].iter().map(f32::to_string).collect();
            println!("[{}]", parts.join(","));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embed_query: {e}");
            ExitCode::FAILURE
        }
    }
}
