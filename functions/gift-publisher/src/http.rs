//! The HTTP shapes Lambda hands the function: the payload format 2.0 event that both a Lambda
//! Function URL and an API Gateway HTTP API send, and the response both accept.
//!
//! Only the fields the function reads are declared; everything else in the event is ignored.
//! Header names arrive lower-cased, repeated headers joined with commas (as AWS documents for
//! payload format 2.0).

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One request (payload format 2.0).
///
/// ```
/// use gift_publisher::http::HttpRequest;
/// let r: HttpRequest = serde_json::from_value(serde_json::json!({
///     "version": "2.0", "rawPath": "/vault/save",
///     "headers": {"idempotency-key": "k1"},
///     "requestContext": {"http": {"method": "POST"}},
///     "body": "eyJhIjoxfQ==", "isBase64Encoded": true
/// })).unwrap();
/// assert_eq!(r.method(), "POST");
/// assert_eq!(r.header("Idempotency-Key"), Some("k1"));
/// assert_eq!(r.body_bytes().unwrap(), br#"{"a":1}"#);
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// The path without the query string (for an HTTP API with a named stage, the stage
    /// included).
    #[serde(default)]
    pub raw_path: String,
    /// Headers, names lower-cased.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// The body as text, or base64 when `is_base64_encoded`.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64.
    #[serde(default)]
    pub is_base64_encoded: bool,
    /// Method and request id.
    #[serde(default)]
    pub request_context: RequestContext,
}

/// `requestContext` of a payload format 2.0 event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// `requestContext.http`.
    #[serde(default)]
    pub http: HttpContext,
    /// The request id AWS assigned.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `requestContext.http` of a payload format 2.0 event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpContext {
    /// The HTTP method.
    #[serde(default)]
    pub method: String,
}

/// The body is marked base64 but is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request body is marked base64-encoded but is not valid base64")]
pub struct BodyEncodingError;

impl HttpRequest {
    /// The method, upper-cased.
    pub fn method(&self) -> String {
        self.request_context.http.method.to_ascii_uppercase()
    }

    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase() == name)
            .map(|(_, v)| v.as_str())
    }

    /// Length of the body in bytes once decoded, without decoding it (base64 is 4 characters per
    /// 3 bytes, less one byte per `=` of padding; exact for valid base64).
    pub fn body_len(&self) -> usize {
        let Some(body) = &self.body else { return 0 };
        if self.is_base64_encoded {
            let padding = body.bytes().rev().take(2).filter(|b| *b == b'=').count();
            (body.len() / 4 * 3).saturating_sub(padding)
        } else {
            body.len()
        }
    }

    /// The body's bytes.
    pub fn body_bytes(&self) -> Result<Vec<u8>, BodyEncodingError> {
        match (&self.body, self.is_base64_encoded) {
            (None, _) => Ok(Vec::new()),
            (Some(b), false) => Ok(b.clone().into_bytes()),
            (Some(b), true) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| BodyEncodingError),
        }
    }
}

/// One response (payload format 2.0; a Function URL takes the same shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    /// Status code.
    pub status_code: u16,
    /// Headers.
    pub headers: HashMap<String, String>,
    /// Body (JSON text).
    pub body: String,
    /// Always false: bodies are JSON text.
    pub is_base64_encoded: bool,
}

impl HttpResponse {
    /// A JSON response.
    pub fn json(status: u16, body: &Value) -> Self {
        Self::with_type(status, "application/json", body)
    }

    /// An RFC 9457 problem document (`application/problem+json`): `title` and `detail` for
    /// people, `code` for programs, and `errors` (one per bad field) when there are any.
    pub fn problem(status: u16, code: &str, title: &str, detail: &str, errors: Vec<Value>) -> Self {
        let mut doc = json!({
            // A URN, not a URL: RFC 9457 allows a type that does not resolve, and there is no
            // page to point at.
            "type": format!("urn:kafka-lambdas:problem:{code}"),
            "title": title,
            "status": status,
            "code": code,
            "detail": detail,
        });
        if !errors.is_empty() {
            doc["errors"] = Value::Array(errors);
        }
        Self::with_type(status, "application/problem+json", &doc)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_owned(), value.into());
        self
    }

    /// The body parsed as JSON (tests, local runner).
    pub fn body_json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn with_type(status: u16, content_type: &str, body: &Value) -> Self {
        Self {
            status_code: status,
            headers: HashMap::from([("content-type".to_owned(), content_type.to_owned())]),
            body: body.to_string(),
            is_base64_encoded: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_url_and_http_api_events_parse_alike() {
        // The example events of the Lambda Function URL and HTTP API (payload 2.0) docs, trimmed.
        let url: HttpRequest = serde_json::from_str(include_str!(
            "../../../events/gift-publisher-function-url.json"
        ))
        .unwrap();
        let api: HttpRequest =
            serde_json::from_str(include_str!("../../../events/gift-publisher-http-api.json"))
                .unwrap();
        for r in [&url, &api] {
            assert_eq!(r.method(), "POST");
            assert!(r.raw_path.ends_with("/vault/save"), "{}", r.raw_path);
            let body: Value = serde_json::from_slice(&r.body_bytes().unwrap()).unwrap();
            assert_eq!(body["page_id"], 42);
        }
        assert!(api.is_base64_encoded);
    }

    #[test]
    fn bad_base64_is_an_error_and_length_is_estimated_without_decoding() {
        let r = HttpRequest {
            body: Some("!!!".into()),
            is_base64_encoded: true,
            ..HttpRequest::default()
        };
        assert_eq!(r.body_bytes(), Err(BodyEncodingError));
        // Exact for every padding: 0, 1 and 2 `=` (a body of exactly the limit is not refused).
        for text in ["hello!", "hello", "hell", ""] {
            let r = HttpRequest {
                body: Some(base64::engine::general_purpose::STANDARD.encode(text)),
                is_base64_encoded: true,
                ..HttpRequest::default()
            };
            assert_eq!(r.body_len(), text.len(), "{text:?}");
            assert_eq!(r.body_len(), r.body_bytes().unwrap().len());
        }
    }

    #[test]
    fn problem_documents_follow_rfc_9457() {
        let r = HttpResponse::problem(400, "invalid_gift", "Invalid gift", "2 fields", vec![]);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        let doc = r.body_json();
        assert_eq!(doc["status"], 400);
        assert_eq!(doc["title"], "Invalid gift");
        assert_eq!(doc["type"], "urn:kafka-lambdas:problem:invalid_gift");
        assert!(doc.get("errors").is_none());
    }
}
