//! JSON over HTTP for the stores that are not PostgREST (Qdrant, Stargate): one pooled client
//! with an auth header and timeouts, retries of transient faults within the deadline, errors
//! classified like the other stores' (408/429/5xx transient, a rejected body blames the input,
//! 401/403/404 blame the configuration), and path segments percent-encoded.

use std::sync::Arc;
use std::time::Duration;

use lambda_kit::error::ErrorClass;
use lambda_kit::http;
use lambda_kit::retry::{Deadline, RetryPolicy};
use lambda_kit::secrets::{Credential, PerValue, Refusal, Secret};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

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
            class: ErrorClass::Data,
            code: "store_invalid_key",
            message: format!("{field} {value:?} cannot be used as a URL path segment"),
        });
    }
    Ok(utf8_percent_encode(value, SEGMENT).to_string())
}

/// Largest answer read from Qdrant or Stargate: a read page holds at most 1000 rows of a page
/// id, a chunk index and a hash (about 200 KB), a write's answer a status; past 8 MiB the call
/// fails as an environment fault, having read no more.
pub(crate) const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Most rows one read of stored hashes follows pages for (Qdrant's `next_page_offset`, Stargate's
/// `pageState`): a server that keeps answering a next page would otherwise grow the result until
/// the deadline. A page of text has far fewer chunks.
pub(crate) const MAX_ROWS_READ: usize = 100_000;

/// The error for a read that passed [`MAX_ROWS_READ`].
pub(crate) fn too_many_rows(service: &str) -> StoreError {
    StoreError {
        class: ErrorClass::Environment,
        code: "store_too_many_rows",
        message: format!(
            "{service} kept answering further pages past {MAX_ROWS_READ} rows for one read; reading stopped (does the server ignore the page cursor?)"
        ),
    }
}

/// Extracts the error text from a service's error body.
pub(crate) type ErrorText = fn(&[u8]) -> Option<String>;

/// The string at `pointer` (`/status/error`) of a JSON body, when there is one.
pub(crate) fn json_text(body: &[u8], pointer: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer(pointer)?.as_str().map(str::to_owned)
}

/// What sets one REST service apart: its name, its auth header, its error body.
#[derive(Debug)]
pub(crate) struct Service {
    /// `qdrant` or `stargate`, for messages.
    pub name: &'static str,
    /// The setting of its URL (`QDRANT_URL`), named when it redirects or answers too much.
    pub url_var: &'static str,
    /// Header carrying the key (`api-key`, `x-cassandra-token`), lowercase.
    pub auth_header: &'static str,
    /// Reads the service's error body.
    pub error_text: ErrorText,
    /// Tells, from the error text of a 400/422, that the service refuses its own setup (a
    /// collection of another vector size, a vector name it lacks), not the rows: every write
    /// would fail alike, so nothing is dead-lettered.
    pub refuses_setup: fn(&str) -> bool,
}

/// A pooled JSON client for one service; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct JsonServiceClient {
    http: reqwest::Client,
    /// The key and the header carrying it; the key is re-read after a 401/403.
    auth: Option<Auth>,
    /// Timeout, retries and the answer's limit.
    sender: http::Sender,
    error_text: ErrorText,
    refuses_setup: fn(&str) -> bool,
}

/// The key of a [`JsonServiceClient`] and the header carrying it.
#[derive(Debug, Clone)]
struct Auth {
    name: HeaderName,
    key: Credential,
    /// The header value of the key's current value, checked and marked sensitive.
    value: Arc<PerValue<HeaderValue>>,
}

impl Auth {
    /// The header value of `key`, a value of this credential: made once per value.
    fn value(&self, service: &str, key: &Secret) -> Result<HeaderValue, StoreError> {
        self.value.get(key, |key| {
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| StoreError {
                class: ErrorClass::Environment,
                code: "store_key_unusable",
                message: format!(
                    "{service}: {} contains characters not allowed in an HTTP header; store the key alone",
                    self.key.source()
                ),
            })?;
            value.set_sensitive(true);
            Ok(value)
        })
    }
}

impl JsonServiceClient {
    /// A client of `service` on the process's one HTTP client (it connects within
    /// `HTTP_CONNECT_TIMEOUT_MS`); every request carries `timeout`, capped by the deadline. A
    /// key that cannot be sent in a header fails here (the cold start), naming its variable.
    pub(crate) fn new(
        service: &Service,
        key: Option<Credential>,
        http: reqwest::Client,
        timeout: Duration,
        retry: &RetryPolicy,
    ) -> Result<Self, StoreError> {
        let auth = match key {
            Some(key) => {
                let auth = Auth {
                    name: HeaderName::from_static(service.auth_header),
                    key,
                    value: Arc::default(),
                };
                auth.value(service.name, &auth.key.held())?;
                Some(auth)
            }
            None => None,
        };
        Ok(Self {
            http,
            auth,
            sender: http::Sender::new(
                service.name,
                timeout,
                retry.clone(),
                http::Limit::new(service.url_var, MAX_ANSWER),
            ),
            error_text: service.error_text,
            refuses_setup: service.refuses_setup,
        })
    }

    /// Sends `method url` with an optional JSON body, retrying transient faults until the
    /// deadline; returns the body of a 2xx answer. A 401/403 re-reads the key
    /// ([`Credential::call`]) and, when it changed, sends once more with the new one.
    pub(crate) async fn send(
        &self,
        deadline: &Deadline,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, StoreError> {
        let body = body.map(bytes::Bytes::from);
        let service = self.sender.service;
        let request = || {
            let request = self.http.request(method.clone(), url);
            match &body {
                Some(body) => request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
                None => request,
            }
        };
        let expired = || StoreError {
            class: ErrorClass::TRANSIENT,
            code: "deadline_exceeded",
            message: format!("deadline reached before the {service} call completed"),
        };
        let error = |failure: http::Failure<'_>| self.error(failure);
        let Some(auth) = &self.auth else {
            return self.sender.send(deadline, request, expired, error).await;
        };
        // A value re-read after a refusal or the TTL is checked as the cold start checked it.
        let value = |key: Secret| std::future::ready(auth.value(service, &key));
        let with_auth = |value: &HeaderValue| request().header(auth.name.clone(), value.clone());
        self.sender
            .send_with_credential(deadline, &auth.key, value, with_auth, expired, error)
            .await
    }

    /// Decodes a 2xx body.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(body).map_err(|e| StoreError {
            class: ErrorClass::Environment,
            code: "store_decode",
            message: format!("{} answer could not be decoded: {e}", self.sender.service),
        })
    }

    /// The stores' reading of a failed attempt: a rejected body (400/413/422) is the input's fault
    /// ([`ErrorClass::Data`]), unless the service says its own setup is at fault; 401/403/404 are
    /// the configuration's ([`ErrorClass::Environment`]).
    fn error(&self, failure: http::Failure<'_>) -> StoreError {
        let service = self.sender.service;
        let r = match failure {
            http::Failure::Status(r) => r,
            http::Failure::Transport(t) => {
                return StoreError {
                    class: t.class,
                    code: t.code,
                    message: format!("{service} request failed: {}", t.message),
                };
            }
        };
        let text = (self.error_text)(&r.body).unwrap_or_else(|| r.text().into_owned());
        let status = r.status.as_u16();
        let code = match status {
            400 | 422 => "store_bad_request",
            401 | 403 => "store_unauthorized",
            404 => "store_not_found",
            408 | 429 => "store_throttled",
            413 => "store_payload_too_large",
            500..=599 => "store_server_error",
            _ => "store_rejected",
        };
        let setup = matches!(status, 400 | 422) && (self.refuses_setup)(&text);
        let refused_input = matches!(status, 400 | 413 | 422) && !setup;
        StoreError {
            class: if refused_input {
                ErrorClass::Data
            } else {
                r.class()
            },
            code: if setup { "store_setup" } else { code },
            message: format!("{service} HTTP {status}: {}", r.clean(&text)),
        }
    }
}

/// A 401/403 is the service refusing the key; one that stands after the key was re-read says
/// which setting to fix.
impl Refusal for StoreError {
    fn is_refusal(&self) -> bool {
        self.code == "store_unauthorized"
    }

    fn with_note(mut self, note: String) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP server answering `200 {}` to every request, counting them.
    fn counting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = lambda_kit::testing::listener();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for mut sock in listener.incoming().flatten() {
                let _ = sock.read(&mut [0u8; 65536]);
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = sock.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
                );
            }
        });
        (url, requests)
    }

    fn qdrant_client(key: Credential) -> Result<JsonServiceClient, StoreError> {
        let service = Service {
            name: "qdrant",
            url_var: "QDRANT_URL",
            auth_header: "api-key",
            error_text: |_| None,
            refuses_setup: |_| false,
        };
        let retry = RetryPolicy::default();
        let timeout = Duration::from_secs(5);
        JsonServiceClient::new(&service, Some(key), reqwest::Client::new(), timeout, &retry)
    }

    /// A key with a character no header may hold (a newline pasted with it) fails the cold
    /// start naming its variable, not every batch; a rotation that stores such a key in the
    /// secret fails each call before any request, as an environment fault naming the secret.
    #[tokio::test]
    async fn a_key_that_cannot_be_a_header_fails_where_it_is_read() {
        let e =
            qdrant_client(Credential::fixed("QDRANT_API_KEY", Secret::new("k-1\n"))).unwrap_err();
        assert_eq!(e.code, "store_key_unusable");
        assert_eq!(e.class, ErrorClass::Environment, "{e:?}");
        assert!(e.message.contains("QDRANT_API_KEY"), "{}", e.message);
        assert!(!e.message.contains("k-1"), "{}", e.message);

        let value = Arc::new(std::sync::Mutex::new("k-1".to_owned()));
        let read = Arc::clone(&value);
        let policy = lambda_kit::secrets::RefreshPolicy {
            // Every use re-reads the secret.
            ttl: Some(Duration::ZERO),
            ..Default::default()
        };
        let key = Credential::from_reader(
            "prod/qdrant",
            "QDRANT_API_KEY_SECRET_ID",
            "key",
            policy,
            move || {
                let now = read.lock().unwrap().clone();
                async move { Ok(Some(Secret::new(now))) }
            },
        )
        .await
        .unwrap();
        let client = qdrant_client(key).unwrap();
        let (url, requests) = counting_server();
        let deadline = Deadline::after(Duration::from_secs(5));
        client
            .send(&deadline, Method::GET, &url, None)
            .await
            .unwrap();
        *value.lock().unwrap() = "k-2\u{7f}".into();
        let e = client
            .send(&deadline, Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(e.code, "store_key_unusable");
        assert_eq!(e.class, ErrorClass::Environment, "{e:?}");
        assert!(
            e.message.contains("prod/qdrant") && e.message.contains("QDRANT_API_KEY_SECRET_ID"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("k-2"), "{}", e.message);
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A valid key stored again is used at once.
        *value.lock().unwrap() = "k-3".into();
        client
            .send(&deadline, Method::GET, &url, None)
            .await
            .unwrap();
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn segments_stay_single_segments() {
        assert_eq!(segment("page_id", "a/b?c").unwrap(), "a%2Fb%3Fc");
        assert_eq!(segment("page_id", "../x").unwrap(), "%2E%2E%2Fx");
        assert_eq!(segment("page_id", "p-1_~").unwrap(), "p-1_~");
        assert_eq!(segment("page_id", "é #%").unwrap(), "%C3%A9%20%23%25");
        for bad in ["", ".", ".."] {
            let e = segment("page_id", bad).unwrap_err();
            assert_eq!(e.code, "store_invalid_key");
            assert_eq!(e.class, ErrorClass::Data);
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
