//! Classifying HTTP outcomes: which statuses and transport errors are worth a retry, how long the
//! server asked us to wait, and how to keep error bodies short and free of secrets.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::ErrorClass;

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
