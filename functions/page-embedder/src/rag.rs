//! Telling the RAG service which pages changed, after their vectors are stored: one POST per
//! changed page (`{"page_id", "vector", "chunks", "model", "content_hash"}`, `vector` being the
//! first chunk's, as the seed contract expects) or deleted page (`{"page_id", "deleted": true}`).
//! Best effort: a failure is logged and counted, never fails the batch (the vectors are already
//! stored); the pipeline remembers which pages were delivered and notifies a page again the next
//! time it sees it, a redelivery included. A notification about a page whose record carried a
//! W3C `traceparent` is sent in a child span of that record's (the batch's span otherwise, see
//! `lambda_kit::trace`): the call is that record's work alone.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lambda_kit::http::{self, Failure};
use lambda_kit::trace::TraceContext;
use serde::Serialize;

/// One chunk in a refresh notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkNote {
    /// Position in the page.
    pub chunk_index: usize,
    /// Hash of (embedded text, model, dimension).
    pub content_hash: String,
    /// The vector when it was computed in this invocation (changed chunks and chunk 0); absent for
    /// unchanged chunks, which the RAG service already has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// A notification body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Refresh {
    /// The page's vectors changed.
    Changed {
        /// The page written.
        page_id: String,
        /// Vector of chunk 0.
        vector: Vec<f32>,
        /// Every current chunk of the page.
        chunks: Vec<ChunkNote>,
        /// Model of the vectors.
        model: String,
        /// Hash over the page's chunk hashes.
        content_hash: String,
    },
    /// The page has no vectors any more.
    Deleted {
        /// The page deleted.
        page_id: String,
        /// Always `true`.
        deleted: bool,
    },
}

impl Refresh {
    /// The notification for a deleted page.
    ///
    /// ```
    /// let r = page_embedder::rag::Refresh::deleted("42");
    /// assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"page_id":"42","deleted":true}"#);
    /// ```
    pub fn deleted(page_id: impl Into<String>) -> Self {
        Refresh::Deleted {
            page_id: page_id.into(),
            deleted: true,
        }
    }

    /// The page the notification is about.
    pub fn page_id(&self) -> &str {
        match self {
            Refresh::Changed { page_id, .. } | Refresh::Deleted { page_id, .. } => page_id,
        }
    }
}

/// Delivery counts of one batch of notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Accepted (2xx).
    pub sent: usize,
    /// Failed (error status, timeout, connection).
    pub failed: usize,
    /// The pages whose notification was accepted (the function remembers them, so a failed one
    /// is sent again when the page is next seen).
    pub delivered: Vec<String>,
}

/// Receives refresh notifications.
pub trait RagNotifier: Send + Sync {
    /// Sends every notification; never fails, reports counts.
    fn notify(&self, refreshes: Vec<Refresh>) -> impl Future<Output = RefreshStats> + Send;

    /// [`notify`](Self::notify) with the trace context of each page's record, for notifiers that
    /// send it on (the default drops it).
    fn notify_traced(
        &self,
        refreshes: Vec<(Refresh, Option<TraceContext>)>,
    ) -> impl Future<Output = RefreshStats> + Send {
        self.notify(refreshes.into_iter().map(|(r, _)| r).collect())
    }
}

/// No RAG hook configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRag;

impl RagNotifier for NoRag {
    async fn notify(&self, _: Vec<Refresh>) -> RefreshStats {
        RefreshStats::default()
    }
}

/// POSTs notifications to `RAG_REFRESH_URL` with a timeout and bounded concurrency.
#[derive(Debug)]
pub struct HttpRag {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    concurrency: usize,
    failures: AtomicU64,
}

impl HttpRag {
    /// A notifier for `url` (`RAG_REFRESH_TIMEOUT_MS` default 5 s, `RAG_REFRESH_CONCURRENCY`).
    pub fn new(
        client: reqwest::Client,
        url: impl Into<String>,
        timeout: Duration,
        concurrency: usize,
    ) -> Self {
        Self {
            client,
            url: url.into(),
            timeout,
            concurrency: concurrency.max(1),
            failures: AtomicU64::new(0),
        }
    }

    /// Notifications that failed since start (for metrics and tests).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The hook's answer is not read for anything: a megabyte is plenty, more is not read.
    const ANSWER_LIMIT: http::Limit = http::Limit::new("RAG_REFRESH_URL", 1 << 20);

    async fn send_one(&self, refresh: Refresh, trace: Option<TraceContext>) -> bool {
        let page_id = refresh.page_id().to_owned();
        let request = self.client.post(&self.url).json(&refresh);
        let traceparent = trace.as_ref().map(TraceContext::traceparent);
        let sent = match trace {
            Some(record) => {
                let span = Some(record.child());
                let sent = http::attempt(request, self.timeout, None, Self::ANSWER_LIMIT);
                lambda_kit::trace::in_context(span, sent).await
            }
            None => http::attempt(request, self.timeout, None, Self::ANSWER_LIMIT).await,
        };
        let problem = match sent {
            Ok(_) => return true,
            Err(Failure::Status(r)) => format!("HTTP {}", r.status.as_u16()),
            Err(Failure::Transport(t)) => t.code.to_owned(),
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(page_id = %page_id, traceparent, error_code = "rag_refresh_failed", problem = %problem, "RAG refresh failed; vectors are stored");
        false
    }
}

impl RagNotifier for HttpRag {
    async fn notify(&self, refreshes: Vec<Refresh>) -> RefreshStats {
        self.notify_traced(refreshes.into_iter().map(|r| (r, None)).collect())
            .await
    }

    async fn notify_traced(&self, refreshes: Vec<(Refresh, Option<TraceContext>)>) -> RefreshStats {
        let n = refreshes.len();
        let sends: Vec<_> = refreshes
            .into_iter()
            .map(|(r, trace)| async move {
                let page_id = r.page_id().to_owned();
                (page_id, self.send_one(r, trace).await)
            })
            .collect();
        let results: Vec<(String, bool)> = futures_util::stream::iter(sends)
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let delivered: Vec<String> = results
            .into_iter()
            .filter_map(|(page_id, ok)| ok.then_some(page_id))
            .collect();
        RefreshStats {
            sent: delivered.len(),
            failed: n - delivered.len(),
            delivered,
        }
    }
}

/// `RAG_REFRESH_URL` unset: `None` notifies nobody.
impl<R: RagNotifier> RagNotifier for Option<R> {
    async fn notify(&self, refreshes: Vec<Refresh>) -> RefreshStats {
        match self {
            Some(r) => r.notify(refreshes).await,
            None => RefreshStats::default(),
        }
    }

    async fn notify_traced(&self, refreshes: Vec<(Refresh, Option<TraceContext>)>) -> RefreshStats {
        match self {
            Some(r) => r.notify_traced(refreshes).await,
            None => RefreshStats::default(),
        }
    }
}
