//! One HTTP attempt for every client of the workspace (PostgREST, the embedding providers, Qdrant,
//! Stargate, the RAG hook): send with a timeout, read the whole body, classify the status or the
//! transport error (`Retry-After` included), and keep error bodies short and free of secrets.
//! Each client keeps its own error type: it turns a [`Failure`] into it with a small function.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{Classify, ErrorClass};
use crate::postgrest::Secret;
use crate::retry::{Deadline, RetryPolicy};

/// Longest error body kept in an error message.
pub const MAX_ERROR_BODY: usize = 512;

/// Classifies a non-success HTTP status: 408, 429 and 5xx (except 501) are transient, every other
/// status is permanent. A transient class carries the wait asked for in the headers.
///
/// ```
/// use lambda_kit::http::classify_status;
/// use reqwest::{StatusCode, header::HeaderMap};
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "3".parse().unwrap());
/// let class = classify_status(StatusCode::TOO_MANY_REQUESTS, &h);
/// assert_eq!(class.retry_after(), Some(std::time::Duration::from_secs(3)));
/// assert!(classify_status(StatusCode::NOT_IMPLEMENTED, &h).is_permanent());
/// assert!(classify_status(StatusCode::BAD_REQUEST, &h).is_permanent());
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
        ErrorClass::Permanent
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
/// undecodable response are permanent.
pub fn classify_reqwest(err: &reqwest::Error) -> ErrorClass {
    if err.is_builder() || err.is_redirect() || err.is_decode() {
        ErrorClass::Permanent
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
    /// The status.
    pub status: StatusCode,
    /// The headers (`Retry-After`, `retry-after-ms`).
    pub headers: HeaderMap,
    /// The body.
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
/// [`crate::trace`]), reads the whole body and returns it for a 2xx answer;
/// anything else is a [`Failure`] whose messages never contain `secret`.
///
/// ```
/// use lambda_kit::http::{Failure, attempt};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A port with nothing listening.
/// let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/"));
/// match attempt(request, Duration::from_secs(1), Some("sk-1")).await {
///     Err(Failure::Transport(t)) => assert!(t.class.is_transient()),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
pub async fn attempt<'s>(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    secret: Option<&'s str>,
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
    let response = request.timeout(timeout).send().await.map_err(transport)?;
    let status = response.status();
    if status.is_success() {
        return response.bytes().await.map_err(transport);
    }
    // Only a rejection reads its headers (`Retry-After`, content type): no copy on success.
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(transport)?;
    Err(Failure::Status(Rejection {
        status,
        headers,
        body,
        secret,
    }))
}

/// How one client sends its requests: [`attempt`] after [`attempt`] under
/// [`retry`](crate::retry::retry), each with the client's timeout capped by the time left before
/// the deadline.
///
/// ```
/// use lambda_kit::http::Sender;
/// use lambda_kit::retry::RetryPolicy;
/// use std::time::Duration;
///
/// let s = Sender::new("qdrant", Duration::from_secs(10), RetryPolicy::default(), None);
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
    /// The key the service is called with, removed from every error message.
    pub secret: Option<Secret>,
}

impl Sender {
    /// A sender for `service`.
    pub fn new(
        service: &'static str,
        timeout: Duration,
        retry: RetryPolicy,
        secret: Option<Secret>,
    ) -> Self {
        Self {
            service,
            timeout,
            retry,
            secret,
        }
    }

    /// Sends the request `build` makes (once per attempt, auth headers included), retrying
    /// transient failures until the policy or the deadline says stop; returns the body of the
    /// 2xx answer. `error` is the client's classification of a [`Failure`]; `expired` its error
    /// for a deadline reached before an attempt could start.
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
        let secret = self.secret.as_ref().map(Secret::expose);
        crate::retry::retry(&self.retry, deadline, expired, |at| {
            let request = build();
            let timeout = self.timeout.min(at.remaining);
            let error = &error;
            async move {
                attempt(request, timeout, secret).await.map_err(|failure| {
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
                classify_status(StatusCode::from_u16(s).unwrap(), &h).is_permanent(),
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
        let ok = attempt(client.get(server.url()), Duration::from_secs(5), None)
            .await
            .unwrap();
        assert_eq!(&ok[..], b"[1]");
        let Err(Failure::Status(r)) = attempt(
            client.get(server.url()),
            Duration::from_secs(5),
            Some("sk-9"),
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

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // Bind then drop a listener to get a port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(classify_reqwest(&err).is_transient());
        assert_eq!(reqwest_error_code(&err), "http_connect");
    }
}
