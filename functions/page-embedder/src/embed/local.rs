//! `EMBED_PROVIDER=local`: the [`Embedder`] running a sentence-transformers model in process
//! ([`local_embedder::LocalEmbedder`]), no server and no network. The forward pass is CPU-bound,
//! so it runs on tokio's blocking pool and never stalls the runtime's workers.

use std::sync::Arc;

use local_embedder::{LocalEmbedder, LocalEmbedderError};

use super::{EmbedError, Embedder};

/// The in-process provider; cheap to clone (the model is shared).
///
/// ```no_run
/// use page_embedder::embed::{Embedder, LocalProvider};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = LocalProvider::load("models/all-minilm-l6-v2", "all-MiniLM-L6-v2")?;
/// assert_eq!(provider.dimensions(), 384);
/// let v = provider.embed(&["a page about cats".to_string()]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalProvider {
    model: Arc<LocalEmbedder>,
    name: String,
}

impl LocalProvider {
    /// Loads the model from `dir` (do it once, at cold start); `name` is stored with every
    /// vector and is part of the content hash.
    pub fn load(dir: &str, name: &str) -> Result<Self, LocalEmbedderError> {
        Ok(Self::new(LocalEmbedder::load(dir)?, name))
    }

    /// Wraps an already loaded model.
    pub fn new(model: LocalEmbedder, name: &str) -> Self {
        Self {
            model: Arc::new(model),
            name: name.to_owned(),
        }
    }

    /// The loaded model.
    pub fn embedder(&self) -> &LocalEmbedder {
        &self.model
    }
}

fn embed_error(e: LocalEmbedderError, model: &str) -> EmbedError {
    if e.is_transient() {
        EmbedError::Unavailable {
            code: e.error_code(),
            message: e.to_string(),
            retry_after: None,
        }
    } else {
        // Tokenizer rejections are about the text: isolate it and dead-letter it.
        EmbedError::InputRejected {
            status: 422,
            message: format!("{model}: {e}"),
        }
    }
}

impl Embedder for LocalProvider {
    fn model(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.model.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model = self.model.clone();
        let texts = texts.to_vec();
        let joined = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|e| embed_error(e, &self.name)),
            Err(join) => Err(EmbedError::Unavailable {
                code: "local_embed_inference",
                message: format!("embedding task failed: {join}"),
                retry_after: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_kit::error::{Classify, ErrorClass};

    #[test]
    fn errors_keep_their_class() {
        let e = embed_error(
            LocalEmbedderError::Tokenize {
                index: 2,
                message: "bad".into(),
            },
            "m",
        );
        assert_eq!(e.class(), ErrorClass::Data);
        let e = LocalEmbedder::load("no-such-dir").unwrap_err();
        assert!(!e.is_transient());
    }

    #[tokio::test]
    async fn embeds_with_the_real_model_when_available() {
        let Some(dir) = std::env::var_os("LOCAL_MODEL_DIR") else {
            eprintln!(
                "SKIPPED: LOCAL_MODEL_DIR is unset (export LOCAL_MODEL_DIR=\"$(scripts/model)\")"
            );
            return;
        };
        let p = LocalProvider::load(dir.to_str().unwrap(), "all-MiniLM-L6-v2").unwrap();
        let texts = vec!["first page".to_string(), "second page".to_string()];
        let v = p.embed(&texts).await.unwrap();
        assert_eq!(v.len(), 2);
        for x in &v {
            super::super::check_vector(p.model(), p.dimensions(), x).unwrap();
        }
        assert_ne!(v[0], v[1]);
    }
}
