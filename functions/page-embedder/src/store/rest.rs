//! JSON over HTTP for the stores that are not PostgREST (Qdrant, Stargate): one pooled client
//! with an auth header and timeouts, retries of transient faults within the deadline, errors
//! classified like the other stores' (408/429/5xx transient, a rejected body blames the input,
//! 401/403/404 blame the configuration), and path segments percent-encoded.

use std::time::Duration;

use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::http;
use lambda_kit::postgrest::Secret;
use lambda_kit::retry::{Deadline, RetryPolicy};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use super::StoreError;

/// Everything but `A-Z a-z 0-9 - _ ~` is encoded, `.` included: a segment of dots would
/// otherwise be resolved as `.`/`..` by URL normalisation.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// One user-controlled path segment, percent-encoded so that it stays exactly one segment.
///
/// Refuses values that no encoding can carry as a segment: the empty string (it would address
/// the parent resource) and `.`/`..` (URL parsers resolve them even when percent-encoded, per the
/// WHATWG URL standard).
pub(crate) fn segment(field: &str, value: &str) -> Result<String, StoreError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(StoreError {
            class: ErrorClass::Permanent,
            code: "store_invalid_key",
            blames_input: true,
            message: format!("{field} {value:?} cannot be used as a URL path segment"),
        });
    }
    Ok(utf8_percent_encode(value, SEGMENT).to_string())
}

/// Extracts the error text from a service's error body.
pub(crate) type ErrorText = fn(&[u8]) -> Option<String>;

/// Settings of a [`RestClient`].
#[derive(Debug, Clone)]
pub(crate) struct RestSettings {
    /// `qdrant` or `stargate`, for messages.
    pub service: &'static str,
    /// Header carrying the key (`api-key`, `X-Cassandra-Token`) and the key.
    pub auth: Option<(HeaderName, Secret)>,
    /// One request.
    pub request_timeout: Duration,
    /// The process's one HTTP client (it connects within `HTTP_CONNECT_TIMEOUT_MS`); every
    /// request sets its own timeout.
    pub http: reqwest::Client,
    /// Retries of transient faults.
    pub retry: RetryPolicy,
    /// Reads the service's error body.
    pub error_text: ErrorText,
}

/// A pooled JSON client for one service; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RestClient {
    http: reqwest::Client,
    service: &'static str,
    auth: Option<(HeaderName, HeaderValue)>,
    secret: Option<Secret>,
    request_timeout: Duration,
    retry: RetryPolicy,
    error_text: ErrorText,
}

impl RestClient {
    pub(crate) fn new(settings: RestSettings) -> Result<Self, StoreError> {
        let build_error = |message: String| StoreError {
            class: ErrorClass::Permanent,
            code: "store_client_build",
            blames_input: false,
            message: format!("{} client: {message}", settings.service),
        };
        let (auth, secret) = match &settings.auth {
            Some((name, secret)) => {
                let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                    build_error("the key contains characters not allowed in a header".into())
                })?;
                value.set_sensitive(true);
                (Some((name.clone(), value)), Some(secret.clone()))
            }
            None => (None, None),
        };
        Ok(Self {
            http: settings.http.clone(),
            service: settings.service,
            auth,
            secret,
            request_timeout: settings.request_timeout,
            retry: settings.retry,
            error_text: settings.error_text,
        })
    }

    /// Sends `method url` with an optional JSON body, retrying transient faults until the
    /// deadline; returns the status and body of a 2xx answer.
    pub(crate) async fn send(
        &self,
        deadline: &Deadline,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, bytes::Bytes), StoreError> {
        let body = body.map(bytes::Bytes::from);
        lambda_kit::retry::retry(
            &self.retry,
            deadline,
            || StoreError {
                class: ErrorClass::TRANSIENT,
                code: "deadline_exceeded",
                blames_input: false,
                message: format!(
                    "deadline reached before the {} call completed",
                    self.service
                ),
            },
            |attempt| {
                let mut request = self
                    .http
                    .request(method.clone(), url)
                    .timeout(self.request_timeout.min(attempt.remaining));
                if let Some((name, value)) = &self.auth {
                    request = request.header(name.clone(), value.clone());
                }
                if let Some(body) = &body {
                    request = request
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone());
                }
                async move {
                    let response = request.send().await.map_err(|e| self.transport(&e))?;
                    let status = response.status();
                    let headers = response.headers().clone();
                    let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
                    if status.is_success() {
                        return Ok((status, bytes));
                    }
                    let err = self.api_error(status, &headers, &bytes);
                    tracing::debug!(
                        service = self.service,
                        status = status.as_u16(),
                        error_code = err.error_code(),
                        "vector store error"
                    );
                    Err(err)
                }
            },
        )
        .await
    }

    /// Decodes a 2xx body.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(body).map_err(|e| StoreError {
            class: ErrorClass::Permanent,
            code: "store_decode",
            blames_input: false,
            message: format!("{} answer could not be decoded: {e}", self.service),
        })
    }

    fn secret(&self) -> Option<&str> {
        self.secret.as_ref().map(Secret::expose)
    }

    fn transport(&self, e: &reqwest::Error) -> StoreError {
        StoreError {
            class: http::classify_reqwest(e),
            code: http::reqwest_error_code(e),
            blames_input: false,
            message: format!(
                "{} request failed: {}",
                self.service,
                http::sanitize_body(&http::describe_reqwest(e), self.secret())
            ),
        }
    }

    fn api_error(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> StoreError {
        let text =
            (self.error_text)(body).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let code = match status.as_u16() {
            400 | 422 => "store_bad_request",
            401 | 403 => "store_unauthorized",
            404 => "store_not_found",
            408 | 429 => "store_throttled",
            413 => "store_payload_too_large",
            500..=599 => "store_server_error",
            _ => "store_rejected",
        };
        StoreError {
            class: http::classify_status(status, headers),
            code,
            blames_input: matches!(status.as_u16(), 400 | 413 | 422),
            message: format!(
                "{} HTTP {}: {}",
                self.service,
                status.as_u16(),
                http::sanitize_body(&text, self.secret())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_stay_single_segments() {
        assert_eq!(segment("page_id", "a/b?c").unwrap(), "a%2Fb%3Fc");
        assert_eq!(segment("page_id", "../x").unwrap(), "%2E%2E%2Fx");
        assert_eq!(segment("page_id", "p-1_~").unwrap(), "p-1_~");
        assert_eq!(segment("page_id", "é #%").unwrap(), "%C3%A9%20%23%25");
        for bad in ["", ".", ".."] {
            let e = segment("page_id", bad).unwrap_err();
            assert_eq!(e.code, "store_invalid_key");
            assert!(e.blames_input && e.class.is_permanent());
            assert!(e.message.contains("page_id"), "{}", e.message);
        }
    }

    #[test]
    fn encoded_segments_survive_url_parsing() {
        for id in ["../x", "a/b?c", "..%2F", "%2e%2e", "x#y", "..."] {
            let url = format!(
                "http://h/v2/keyspaces/k/t/{}",
                segment("page_id", id).unwrap()
            );
            let parsed = reqwest::Url::parse(&url).unwrap();
            let segs: Vec<_> = parsed.path_segments().unwrap().collect();
            assert_eq!(segs.len(), 5, "{id}: {parsed}");
            let decoded = percent_encoding::percent_decode_str(segs[4])
                .decode_utf8()
                .unwrap();
            assert_eq!(decoded, id);
            assert!(parsed.query().is_none() && parsed.fragment().is_none());
        }
    }
}
