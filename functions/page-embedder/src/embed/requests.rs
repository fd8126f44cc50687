//! Running many texts through an [`Embedder`]: requests of at most `batch_size` texts, at most
//! `concurrency` in flight, each retried with backoff (honouring `Retry-After` /
//! `retry-after-ms`) within the invocation deadline, and an input the provider rejects isolated
//! by bisecting its request so one bad text does not fail its neighbours.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use lambda_kit::bulk::bisect;
use lambda_kit::error::Classify;
use lambda_kit::retry::{Deadline, RetryPolicy, retry};

use super::{EmbedError, Embedder, check_vector};

/// A result tagged with the index of its input.
type Indexed = (usize, Result<Vec<f32>, EmbedError>);

/// How texts are grouped and retried.
#[derive(Debug, Clone)]
pub struct EmbedSettings {
    /// Texts per request.
    pub batch_size: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Retry policy of one request.
    pub retry: RetryPolicy,
}

/// Per-text results, in input order, and the number of HTTP requests made.
#[derive(Debug)]
pub struct Embedded {
    /// One result per input text: a checked vector or the error of its request.
    pub results: Vec<Result<Vec<f32>, EmbedError>>,
    /// Provider calls made (retries and bisections included).
    pub requests: usize,
}

/// Embeds every text; see the module documentation.
pub async fn embed_all<E: Embedder>(
    embedder: &E,
    texts: &[String],
    settings: &EmbedSettings,
    deadline: &Deadline,
) -> Embedded {
    let requests = AtomicUsize::new(0);
    let batch = settings.batch_size.max(1);
    // The futures are built before streaming them: a closure taking borrowed slices would make
    // the future lose `Send` (its signature is not general over the slice's lifetime).
    let calls: Vec<_> = (0..texts.len())
        .step_by(batch)
        .map(|start| {
            let group = &texts[start..(start + batch).min(texts.len())];
            embed_group(embedder, group, start, settings, deadline, &requests)
        })
        .collect();
    let parts: Vec<Vec<Indexed>> = futures_util::stream::iter(calls)
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    let mut results: Vec<Option<Result<Vec<f32>, EmbedError>>> =
        (0..texts.len()).map(|_| None).collect();
    for (i, r) in parts.into_iter().flatten() {
        results[i] = Some(r);
    }
    Embedded {
        results: results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(EmbedError::InvalidResponse {
                        model: embedder.model().to_owned(),
                        message: "no result".into(),
                    })
                })
            })
            .collect(),
        requests: requests.load(Ordering::Relaxed),
    }
}

async fn embed_group<E: Embedder>(
    embedder: &E,
    texts: &[String],
    offset: usize,
    settings: &EmbedSettings,
    deadline: &Deadline,
    requests: &AtomicUsize,
) -> Vec<(usize, Result<Vec<f32>, EmbedError>)> {
    // Which input is at fault is not said: bisect until it is isolated.
    let tried = bisect(std::iter::once(0..texts.len()), |range| {
        call(embedder, &texts[range], settings, deadline, requests)
    })
    .await;
    let mut out = Vec::with_capacity(texts.len());
    for (range, result) in tried {
        match result {
            Ok(vectors) => {
                for (i, v) in range.zip(vectors) {
                    let checked =
                        check_vector(embedder.model(), embedder.dimensions(), &v).map(|()| v);
                    out.push((offset + i, checked));
                }
            }
            Err(e) => {
                tracing::warn!(error_code = e.error_code(), inputs = range.len(), error = %e, "embedding request failed");
                out.extend(range.map(|i| (offset + i, Err((*e).clone()))));
            }
        }
    }
    out
}

async fn call<E: Embedder>(
    embedder: &E,
    texts: &[String],
    settings: &EmbedSettings,
    deadline: &Deadline,
    requests: &AtomicUsize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let expired = || EmbedError::Unavailable {
        code: "deadline_exceeded",
        message: "the invocation deadline passed before the embedding request could complete"
            .into(),
        retry_after: None,
    };
    retry(&settings.retry, deadline, expired, |attempt| {
        requests.fetch_add(1, Ordering::Relaxed);
        async move {
            match tokio::time::timeout(attempt.remaining, embedder.embed(texts)).await {
                Ok(r) => r,
                Err(_) => Err(EmbedError::Unavailable {
                    code: "http_timeout",
                    message: "embedding request cut at the invocation deadline".into(),
                    retry_after: None,
                }),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Vectors are `[len, 1, 1]`; texts containing "BAD" make the whole request fail with
    /// `InputTooLong` (like Ollama, without saying which), and the first `fail_first` calls fail
    /// with a 429 asking for a short wait.
    struct Fake {
        calls: Mutex<Vec<usize>>,
        fail_first: Mutex<usize>,
        dims: usize,
    }

    impl Embedder for Fake {
        fn model(&self) -> &str {
            "fake"
        }
        fn dimensions(&self) -> usize {
            3
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.calls.lock().unwrap().push(texts.len());
            {
                let mut f = self.fail_first.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return Err(EmbedError::Unavailable {
                        code: "embed_throttled",
                        message: "429".into(),
                        retry_after: Some(Duration::from_millis(5)),
                    });
                }
            }
            if texts.iter().any(|t| t.contains("BAD")) {
                return Err(EmbedError::InputTooLong {
                    model: "fake".into(),
                    message: "too long".into(),
                });
            }
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32; self.dims])
                .collect())
        }
    }

    fn fake(fail_first: usize, dims: usize) -> Fake {
        Fake {
            calls: Mutex::new(Vec::new()),
            fail_first: Mutex::new(fail_first),
            dims,
        }
    }

    fn settings(batch_size: usize) -> EmbedSettings {
        EmbedSettings {
            batch_size,
            concurrency: 2,
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
        }
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    async fn embed_within_5s(f: &Fake, t: &[String], batch_size: usize) -> Embedded {
        embed_all(
            f,
            t,
            &settings(batch_size),
            &Deadline::after(Duration::from_secs(5)),
        )
        .await
    }

    #[tokio::test]
    async fn batches_and_keeps_order() {
        let f = fake(0, 3);
        let t = texts(&["a", "bb", "ccc", "dddd", "eeeee"]);
        let out = embed_within_5s(&f, &t, 2).await;
        assert_eq!(out.requests, 3);
        let firsts: Vec<f32> = out.results.iter().map(|r| r.as_ref().unwrap()[0]).collect();
        assert_eq!(firsts, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[tokio::test]
    async fn throttling_is_retried() {
        let f = fake(2, 3);
        let out = embed_within_5s(&f, &texts(&["a"]), 8).await;
        assert!(out.results[0].is_ok());
        assert_eq!(out.requests, 3);
    }

    #[tokio::test]
    async fn a_rejected_input_is_isolated_by_bisection() {
        let f = fake(0, 3);
        let t = texts(&["a", "b", "BAD", "d"]);
        let out = embed_within_5s(&f, &t, 4).await;
        assert!(matches!(
            out.results[2],
            Err(EmbedError::InputTooLong { .. })
        ));
        for i in [0, 1, 3] {
            assert!(out.results[i].is_ok(), "{i}");
        }
    }

    #[tokio::test]
    async fn wrong_dimension_is_an_environment_fault_naming_model_dims_and_setting() {
        let f = fake(0, 2);
        let out = embed_within_5s(&f, &texts(&["a"]), 8).await;
        let err = out.results[0].as_ref().unwrap_err();
        assert_eq!(err.class(), lambda_kit::error::ErrorClass::Environment);
        assert_eq!(err.error_code(), "embed_wrong_dimension");
        let msg = err.to_string();
        assert!(
            msg.contains("model fake answered 2 dimensions where EMBED_DIM is 3"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn expired_deadline_fails_transiently_without_calls() {
        let f = fake(0, 3);
        let out = embed_all(
            &f,
            &texts(&["a"]),
            &settings(8),
            &Deadline::after(Duration::ZERO),
        )
        .await;
        assert!(out.results[0].as_ref().unwrap_err().class().is_transient());
        assert!(f.calls.lock().unwrap().is_empty());
    }
}
