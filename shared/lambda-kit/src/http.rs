//! One HTTP attempt for every client of the workspace (PostgREST, the embedding providers, Qdrant,
//! Stargate, the schema registry, the RAG hook, OTLP): send with a timeout, read the body through
//! a byte limit, classify the status or the transport error (`Retry-After` included), and keep
//! error bodies short and free of secrets. Each client keeps its own error type: it turns a
//! [`Failure`] into it with a small function.
//!
//! Bounded by construction: a 2xx body is read chunk by chunk and given up as soon as it passes
//! the client's [`Limit`] (an endless or oversized answer costs at most the limit in memory, and
//! fails the call as an environment fault naming the setting); an error body is read up to
//! [`MAX_ERROR_READ`] bytes and the rest is left unread. Clients are built with
//! [`client_builder`], which follows no redirect: a 3xx fails the call, naming the setting whose
//! URL redirected, so a credential never reaches another host.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{Classify, ErrorClass};
use crate::retry::{Deadline, RetryPolicy};
use crate::secrets::{Credential, Refusal, Secret};

/// Longest error body kept in an error message.
pub const MAX_ERROR_BODY: usize = 512;

/// Longest part of an error (non-2xx) body that is read: the services' error JSON (PostgREST's
/// `code`/`message`/`details`/`hint`, OpenAI's and Ollama's `error`, Qdrant's `status.error`,
/// the registry's `error_code`/`message`) fits in far less; the rest is not read.
pub const MAX_ERROR_READ: usize = 4 * 1024;

/// What one client accepts from its server: the setting that holds the server's URL (named when
/// the server redirects or answers too much) and the largest 2xx body read.
///
/// ```
/// use lambda_kit::http::Limit;
/// let l = Limit::new("QDRANT_URL", 8 << 20);
/// assert_eq!((l.setting, l.max_body), ("QDRANT_URL", 8 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limit {
    /// The environment variable holding the URL (`SUPABASE_URL`, `EMBED_BASE_URL`, ...).
    pub setting: &'static str,
    /// Largest 2xx body, in bytes.
    pub max_body: usize,
}

impl Limit {
    /// A limit of `max_body` bytes for the server named by `setting`.
    pub const fn new(setting: &'static str, max_body: usize) -> Self {
        Self { setting, max_body }
    }
}

/// A `reqwest` client builder for a client that may carry a credential: redirects are not
/// followed (reqwest would send `apikey`, `api-key`, `x-cassandra-token` and basic auth on to
/// whatever host a 3xx names); [`attempt`] turns a 3xx into an error naming the setting.
///
/// ```
/// let client = lambda_kit::http::client_builder().build().unwrap();
/// # drop(client);
/// ```
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// Classifies a non-success HTTP status: 408, 429 and 5xx (except 501) are transient, every other
/// status is [`ErrorClass::Environment`]. A transient class carries the wait asked for in the
/// headers. A status alone never blames the record: a client that knows which refusals are about
/// the data it sent (PostgREST's 400 with a data SQLSTATE, a provider's 422) says
/// [`ErrorClass::Data`] itself.
///
/// ```
/// use lambda_kit::error::ErrorClass;
/// use lambda_kit::http::classify_status;
/// use reqwest::{StatusCode, header::HeaderMap};
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "3".parse().unwrap());
/// let class = classify_status(StatusCode::TOO_MANY_REQUESTS, &h);
/// assert_eq!(class.retry_after(), Some(std::time::Duration::from_secs(3)));
/// assert_eq!(classify_status(StatusCode::NOT_IMPLEMENTED, &h), ErrorClass::Environment);
/// assert_eq!(classify_status(StatusCode::BAD_REQUEST, &h), ErrorClass::Environment);
/// ```
pub fn classify_status(status: StatusCode, headers: &HeaderMap) -> ErrorClass {
    let transient = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
    if transient {
        ErrorClass::Transient {
            retry_after: retry_after(headers, SystemTime::now()),
        }
    } else {
        ErrorClass::Environment
    }
}

/// The wait requested by `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an
/// HTTP-date, relative to `now`). Dates in the past mean "no wait".
///
/// ```
/// use lambda_kit::http::retry_after;
/// use reqwest::header::HeaderMap;
/// use std::time::{Duration, SystemTime};
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after-ms", "1500".parse().unwrap());
/// assert_eq!(retry_after(&h, SystemTime::now()), Some(Duration::from_millis(1500)));
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
        return Some(Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0));
    }
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let date =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let at = SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classifies a transport error from reqwest: connection refused or reset, timeouts and other
/// failures while sending are transient; an invalid request (builder), a redirect loop or an
/// undecodable response are [`ErrorClass::Environment`] (the client or the server, never the
/// record).
pub fn classify_reqwest(err: &reqwest::Error) -> ErrorClass {
    if err.is_builder() || err.is_redirect() || err.is_decode() {
        ErrorClass::Environment
    } else {
        ErrorClass::TRANSIENT
    }
}

/// Low-cardinality code of a reqwest transport error.
pub fn reqwest_error_code(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "http_timeout"
    } else if err.is_connect() {
        "http_connect"
    } else if err.is_builder() {
        "http_invalid_request"
    } else if err.is_decode() {
        "http_decode"
    } else if err.is_redirect() {
        "http_redirect"
    } else {
        "http_transport"
    }
}

/// A transport error as text, with the full chain of causes (reqwest's own message is terse).
pub fn describe_reqwest(err: &reqwest::Error) -> String {
    let mut s = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// An error body made safe for messages: every occurrence of `secret` replaced, control
/// characters dropped, cut to [`MAX_ERROR_BODY`] bytes on a character boundary.
///
/// ```
/// use lambda_kit::http::sanitize_body;
/// assert_eq!(sanitize_body("bad key sk-123", Some("sk-123")), "bad key [REDACTED]");
/// assert!(sanitize_body(&"x".repeat(10_000), None).len() <= 520);
/// ```
pub fn sanitize_body(body: &str, secret: Option<&str>) -> String {
    let mut s = match secret {
        Some(secret) if !secret.is_empty() => body.replace(secret, "[REDACTED]"),
        _ => body.to_owned(),
    };
    s.retain(|c| !c.is_control() || c == ' ');
    if s.len() > MAX_ERROR_BODY {
        let mut cut = MAX_ERROR_BODY;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A failed HTTP attempt, before the client turns it into its own error type.
#[derive(Debug)]
pub enum Failure<'s> {
    /// No complete answer.
    Transport(Transport),
    /// An answer with a status other than 2xx, read whole.
    Status(Rejection<'s>),
}

/// No complete answer: connection refused or reset, timeout, body cut short.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Transport {
    /// Low-cardinality code ([`reqwest_error_code`]).
    pub code: &'static str,
    /// [`classify_reqwest`].
    pub class: ErrorClass,
    /// The error and its causes ([`describe_reqwest`]), secret removed.
    pub message: String,
}

/// A non-2xx answer. Its body is the service's to read (each has its own error JSON); what is
/// taken from it for a message goes through [`Rejection::clean`].
pub struct Rejection<'s> {
    /// The non-2xx status the service answered.
    pub status: StatusCode,
    /// The headers (`Retry-After`, `retry-after-ms`).
    pub headers: HeaderMap,
    /// The error body, at most [`MAX_ERROR_READ`] bytes of it.
    pub body: Bytes,
    secret: Option<&'s str>,
}

impl Rejection<'_> {
    /// [`classify_status`]: 408, 429 and 5xx but 501 are transient, with the wait asked for.
    pub fn class(&self) -> ErrorClass {
        classify_status(self.status, &self.headers)
    }

    /// The body as text (invalid UTF-8 replaced), not yet cleaned.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// `text` made fit for a message: [`sanitize_body`] with the client's secret.
    pub fn clean(&self, text: &str) -> String {
        sanitize_body(text, self.secret)
    }
}

impl fmt::Debug for Rejection<'_> {
    // The secret stays out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.clean(&self.text()))
            .finish()
    }
}

/// Sends `request` once with `timeout` (with the current span's `traceparent`/`tracestate`, see
/// [`crate::trace`]), reads the body through `limit` and returns it for a 2xx answer;
/// anything else is a [`Failure`] whose messages never contain `secret`:
/// - a 2xx body longer than `limit.max_body` (announced or read): [`Failure::Transport`]
///   `http_body_too_large`, [`ErrorClass::Environment`] (the same answer would come again; the
///   batch is redelivered, no record is blamed), naming the host and the limit; reading stops at
///   the limit;
/// - a 3xx (the client follows no redirect, see [`client_builder`]): [`Failure::Transport`]
///   `http_redirect`, [`ErrorClass::Environment`], naming `limit.setting` and the host
///   redirected to;
/// - another status: [`Failure::Status`] with at most [`MAX_ERROR_READ`] bytes of its body.
///
/// The timeout covers the body too: a body that trickles in forever fails as `http_timeout`.
///
/// ```
/// use lambda_kit::http::{Failure, Limit, attempt};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A port with nothing listening.
/// let port = lambda_kit::testing::unused_port();
/// let request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/"));
/// let limit = Limit::new("SOME_URL", 1 << 20);
/// match attempt(request, Duration::from_secs(1), Some("sk-1"), limit).await {
///     Err(Failure::Transport(t)) => assert!(t.class.is_transient()),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
pub async fn attempt<'s>(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    secret: Option<&'s str>,
    limit: Limit,
) -> Result<Bytes, Failure<'s>> {
    let transport = |e: reqwest::Error| {
        Failure::Transport(Transport {
            code: reqwest_error_code(&e),
            class: classify_reqwest(&e),
            message: sanitize_body(&describe_reqwest(&e), secret),
        })
    };
    // The current span's W3C trace context (crate::trace), when the batch runs in one.
    let request = crate::trace::propagate(request);
    let mut response = request.timeout(timeout).send().await.map_err(transport)?;
    let status = response.status();
    if status.is_success() {
        return match read_limited(&mut response, limit.max_body).await {
            Ok(Some(body)) => Ok(body),
            Ok(None) => Err(Failure::Transport(Transport {
                code: "http_body_too_large",
                class: ErrorClass::Environment,
                message: format!(
                    "the answer of {} is larger than {} bytes, the limit for {}; reading stopped there",
                    host(response.url()),
                    limit.max_body,
                    limit.setting
                ),
            })),
            Err(e) => Err(transport(e)),
        };
    }
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| response.url().join(l).ok())
            .map_or_else(|| "no valid Location".to_owned(), |u| host(&u));
        return Err(Failure::Transport(Transport {
            code: "http_redirect",
            class: ErrorClass::Environment,
            message: format!(
                "{} answered HTTP {} redirecting to {to}; redirects are not followed (the request carries a credential): set {} to the URL that answers",
                host(response.url()),
                status.as_u16(),
                limit.setting
            ),
        }));
    }
    // Only a rejection reads its headers (`Retry-After`, content type): no copy on success.
    let headers = response.headers().clone();
    let body = read_prefix(&mut response, MAX_ERROR_READ)
        .await
        .map_err(transport)?;
    Err(Failure::Status(Rejection {
        status,
        headers,
        body,
        secret,
    }))
}

/// The scheme, host and port of `url`: what a message says about a server (never its path or
/// query, which may carry tokens).
fn host(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        (None, _) => url.scheme().to_owned(),
    }
}

/// The whole body when it is at most `max` bytes, `None` as soon as it is known to be longer
/// (from `Content-Length` before reading, or from the bytes read); what was read is dropped with
/// the connection.
async fn read_limited(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Option<Bytes>, reqwest::Error> {
    let announced = response.content_length().unwrap_or(0);
    if announced > max as u64 {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = response.chunk().await? {
        if chunk.len() > max - body.len() {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(body)))
}

/// At most the first `max` bytes of the body; the rest is not read.
async fn read_prefix(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Bytes, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == max {
            break;
        }
    }
    Ok(Bytes::from(body))
}

/// How one client sends its requests: [`attempt`] after [`attempt`] under
/// [`retry`](crate::retry::retry), each with the client's timeout capped by the time left before
/// the deadline; a client that sends a key sends through
/// [`send_with_credential`](Self::send_with_credential).
///
/// ```
/// use lambda_kit::http::{Limit, Sender};
/// use lambda_kit::retry::RetryPolicy;
/// use std::time::Duration;
///
/// let limit = Limit::new("QDRANT_URL", 8 << 20);
/// let s = Sender::new("qdrant", Duration::from_secs(10), RetryPolicy::default(), limit);
/// assert_eq!(s.service, "qdrant");
/// ```
#[derive(Debug, Clone)]
pub struct Sender {
    /// The service, for logs (`postgrest`, `qdrant`, ...).
    pub service: &'static str,
    /// Timeout of one request (further capped by the deadline).
    pub timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// The setting of the service's URL and the largest answer read.
    pub limit: Limit,
}

impl Sender {
    /// A sender for `service`, reading answers through `limit`.
    pub fn new(service: &'static str, timeout: Duration, retry: RetryPolicy, limit: Limit) -> Self {
        Self {
            service,
            timeout,
            retry,
            limit,
        }
    }

    /// Sends the request `build` makes (once per attempt), retrying transient failures until
    /// the policy or the deadline says stop; returns the body of the 2xx answer. `error` is the
    /// client's classification of a [`Failure`]; `expired` its error for a deadline reached
    /// before an attempt could start.
    pub async fn send<E, B, X, M>(
        &self,
        deadline: &Deadline,
        build: B,
        expired: X,
        error: M,
    ) -> Result<Bytes, E>
    where
        E: Classify,
        B: Fn() -> reqwest::RequestBuilder,
        X: FnOnce() -> E,
        M: Fn(Failure<'_>) -> E,
    {
        self.send_as(None, deadline, build, expired, error).await
    }

    /// [`send`](Self::send) for a client that sends `key`: `auth` makes what the request
    /// carries of the key's current value (its auth headers; an error there fails the call
    /// without a request), `build` makes the request with it. A refusal of the key
    /// ([`Refusal::is_refusal`], the service's 401/403) re-reads it and sends once more when it
    /// changed ([`Credential::call`]); a refusal that stands carries the note naming the setting
    /// to fix ([`Refusal::with_note`]). No message contains the value sent.
    pub async fn send_with_credential<A, E, H, HF, B, X, M>(
        &self,
        deadline: &Deadline,
        key: &Credential,
        auth: H,
        build: B,
        expired: X,
        error: M,
    ) -> Result<Bytes, E>
    where
        E: Classify + Refusal,
        H: Fn(Secret) -> HF,
        HF: Future<Output = Result<A, E>>,
        B: Fn(&A) -> reqwest::RequestBuilder,
        X: Fn() -> E,
        M: Fn(Failure<'_>) -> E,
    {
        let (auth, build, expired, error) = (&auth, &build, &expired, &error);
        // Boxed: the nested futures of call -> retry -> attempt otherwise make the type of every
        // caller's future deep enough to overflow rustc's layout query depth in a function's main.
        Box::pin(key.call(E::is_refusal, E::with_note, |secret| async move {
            let sent = auth(secret.clone()).await?;
            let secret = Some(secret.expose());
            self.send_as(secret, deadline, || build(&sent), expired, error)
                .await
        }))
        .await
    }

    /// [`send`](Self::send), `secret` removed from every error message.
    async fn send_as<E, B, X, M>(
        &self,
        secret: Option<&str>,
        deadline: &Deadline,
        build: B,
        expired: X,
        error: M,
    ) -> Result<Bytes, E>
    where
        E: Classify,
        B: Fn() -> reqwest::RequestBuilder,
        X: FnOnce() -> E,
        M: Fn(Failure<'_>) -> E,
    {
        crate::retry::retry(&self.retry, deadline, expired, |at| {
            let request = build();
            let timeout = self.timeout.min(at.remaining);
            let error = &error;
            async move {
                attempt(request, timeout, secret, self.limit)
                    .await
                    .map_err(|failure| {
                        let status = match &failure {
                            Failure::Status(r) => Some(r.status.as_u16()),
                            Failure::Transport(_) => None,
                        };
                        let err = error(failure);
                        if let Some(status) = status {
                            tracing::debug!(
                                service = self.service,
                                status,
                                error_code = err.error_code(),
                                "error answer"
                            );
                        }
                        err
                    })
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn statuses() {
        let h = HeaderMap::new();
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                classify_status(StatusCode::from_u16(s).unwrap(), &h).is_transient(),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 405, 409, 413, 422, 501] {
            assert!(
                classify_status(StatusCode::from_u16(s).unwrap(), &h) == ErrorClass::Environment,
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_date_and_ms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            retry_after(&headers(&[("retry-after", "120")]), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
                now
            ),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "-5")]), now),
            None
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn sanitize_keeps_unicode_boundaries_and_removes_secret() {
        let body = format!("{}é", "a".repeat(MAX_ERROR_BODY - 1));
        let s = sanitize_body(&body, None);
        assert!(s.ends_with('…'));
        let s = sanitize_body("line1\nline2 key=abc", Some("abc"));
        assert_eq!(s, "line1line2 key=[REDACTED]");
    }

    #[tokio::test]
    async fn attempt_returns_the_body_or_the_rejection_without_the_secret() {
        use crate::testing::MockServer;
        let server = MockServer::start(vec![
            (200, vec![], "[1]".into()),
            (
                503,
                vec![("retry-after", "2")],
                r#"{"error":"busy, key sk-9"}"#.into(),
            ),
        ])
        .await;
        let client = reqwest::Client::new();
        let ok = attempt(
            client.get(server.url()),
            Duration::from_secs(5),
            None,
            LIMIT,
        )
        .await
        .unwrap();
        assert_eq!(&ok[..], b"[1]");
        let Err(Failure::Status(r)) = attempt(
            client.get(server.url()),
            Duration::from_secs(5),
            Some("sk-9"),
            LIMIT,
        )
        .await
        else {
            panic!("expected a rejection");
        };
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.class().retry_after(), Some(Duration::from_secs(2)));
        assert!(r.text().contains("sk-9"));
        assert_eq!(r.clean(&r.text()), r#"{"error":"busy, key [REDACTED]"}"#);
        assert!(!format!("{r:?}").contains("sk-9"));
    }

    const LIMIT: Limit = Limit::new("TEST_URL", 1 << 20);

    #[tokio::test]
    async fn an_endless_body_fails_at_the_limit_and_reading_stops() {
        use crate::testing::EndlessServer;
        let server = EndlessServer::start().await;
        let limit = Limit::new("EMBED_BASE_URL", 256 * 1024);
        let Err(Failure::Transport(t)) = attempt(
            client_builder().build().unwrap().get(server.url()),
            Duration::from_secs(30),
            Some("sk-9"),
            limit,
        )
        .await
        else {
            panic!("expected a transport failure");
        };
        assert_eq!(t.code, "http_body_too_large");
        assert_eq!(t.class, ErrorClass::Environment);
        assert!(t.message.contains("262144 bytes"), "{}", t.message);
        assert!(t.message.contains("EMBED_BASE_URL"), "{}", t.message);
        assert!(t.message.contains("http://127.0.0.1:"), "{}", t.message);
        // The client hung up: the server's writes fail and its loop ends, having sent the limit
        // plus what the sockets' buffers held, not more.
        for _ in 0..500 {
            if server.ended() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.ended(), 1, "the connection was closed");
        assert!(server.sent() < 64 << 20, "sent {}", server.sent());
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_not_read() {
        use crate::testing::MockServer;
        let server = MockServer::start(vec![(200, vec![], "x".repeat(2000))]).await;
        let Err(Failure::Transport(t)) = attempt(
            reqwest::Client::new().get(server.url()),
            Duration::from_secs(5),
            None,
            Limit::new("QDRANT_URL", 1000),
        )
        .await
        else {
            panic!("expected a transport failure");
        };
        assert_eq!(t.code, "http_body_too_large");
        assert!(t.message.contains("QDRANT_URL"), "{}", t.message);
        // At the limit exactly, the body is whole.
        let server = MockServer::start(vec![(200, vec![], "x".repeat(1000))]).await;
        let ok = attempt(
            reqwest::Client::new().get(server.url()),
            Duration::from_secs(5),
            None,
            Limit::new("QDRANT_URL", 1000),
        )
        .await
        .unwrap();
        assert_eq!(ok.len(), 1000);
    }

    #[tokio::test]
    async fn an_error_body_is_read_only_up_to_a_few_kilobytes() {
        use crate::testing::MockServer;
        let server = MockServer::start(vec![(500, vec![], "e".repeat(1 << 20))]).await;
        let Err(Failure::Status(r)) = attempt(
            reqwest::Client::new().get(server.url()),
            Duration::from_secs(5),
            None,
            LIMIT,
        )
        .await
        else {
            panic!("expected a rejection");
        };
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.body.len(), MAX_ERROR_READ);
    }

    /// The attack of issue 20: a server answering 307 to another host. reqwest's default policy
    /// follows it and sends every header but `Authorization`/`Cookie` on (a different port is a
    /// different origin), so an `apikey` reaches the second server; [`client_builder`]'s client
    /// stops at the 307 and names the setting.
    #[tokio::test]
    async fn a_redirect_is_not_followed_and_the_key_stays_home() {
        use crate::testing::MockServer;
        let thief = MockServer::start(vec![(200, vec![], "[]".into())]).await;
        let location: &'static str = Box::leak(format!("{}/stolen", thief.url()).into_boxed_str());
        let server =
            MockServer::start(vec![(307, vec![("location", location)], String::new())]).await;
        let request = |client: &reqwest::Client| {
            client
                .get(server.url())
                .header("apikey", "sk-live-1")
                .header("api-key", "sk-live-2")
                .header("x-cassandra-token", "sk-live-3")
                .basic_auth("user", Some("sk-live-4"))
        };
        let Err(Failure::Transport(t)) = attempt(
            request(&client_builder().build().unwrap()),
            Duration::from_secs(5),
            Some("sk-live-1"),
            Limit::new("SUPABASE_URL", 1 << 20),
        )
        .await
        else {
            panic!("expected a transport failure");
        };
        assert_eq!(t.code, "http_redirect");
        assert_eq!(t.class, ErrorClass::Environment);
        assert!(t.message.contains("SUPABASE_URL"), "{}", t.message);
        assert!(t.message.contains("307"), "{}", t.message);
        assert!(t.message.contains(&thief.url()), "{}", t.message);
        assert!(
            !t.message.contains("/stolen"),
            "no path in messages: {}",
            t.message
        );
        assert_eq!(server.requests().len(), 1);
        assert!(
            thief.requests().is_empty(),
            "the second server saw no request"
        );

        // Without the policy (what every client had before): the keys reach the other server.
        let _ = attempt(
            request(&reqwest::Client::new()),
            Duration::from_secs(5),
            None,
            LIMIT,
        )
        .await;
        let seen = thief.requests();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].head.contains("sk-live-1"), "{}", seen[0].head);
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // Bind then drop a listener to get a port with nothing listening.
        let port = crate::testing::unused_port();
        let err = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(classify_reqwest(&err).is_transient());
        assert_eq!(reqwest_error_code(&err), "http_connect");
    }
}
