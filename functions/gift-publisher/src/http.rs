//! The HTTP shapes Lambda hands the function: the payload format 2.0 event that both a Lambda
//! Function URL and an API Gateway HTTP API send, and the response both accept.
//!
//! Only the fields the function reads are declared; everything else in the event is ignored.
//! Header names arrive lower-cased, repeated headers joined with commas (as AWS documents for
//! payload format 2.0).

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One request (payload format 2.0).
///
/// Its `Debug` prints no header value that may carry a credential (see [`is_credential_header`])
/// and only the body's length: a request logged by mistake leaks neither a signature nor a token.
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
#[derive(Clone, Default, Deserialize)]
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
    /// Who called, as the front door's authorizer established it (absent when the endpoint has
    /// no authorization, e.g. a local run).
    #[serde(default)]
    pub authorizer: Option<Authorizer>,
}

/// `requestContext.authorizer`: an IAM principal (function URL or HTTP API with `AWS_IAM`) or
/// the claims of a JWT the HTTP API's JWT authorizer validated. Only the identifying fields are
/// declared; the access key id and the other claims are not read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Authorizer {
    /// `requestContext.authorizer.iam`.
    #[serde(default)]
    pub iam: Option<IamIdentity>,
    /// `requestContext.authorizer.jwt`.
    #[serde(default)]
    pub jwt: Option<JwtAuthorizer>,
}

/// The SigV4 signer of the request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IamIdentity {
    /// The caller's account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// `arn:aws:iam::ACCOUNT:user/NAME`, or `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    #[serde(default)]
    pub user_arn: Option<String>,
    /// The unique id of the user, or `ROLE_ID:SESSION` of a role session.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// What the JWT authorizer passes on.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JwtAuthorizer {
    /// The token's claims (strings, as API Gateway passes them).
    #[serde(default)]
    pub claims: JwtClaims,
}

/// The claims that identify a token's holder.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JwtClaims {
    /// Issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// Subject.
    #[serde(default)]
    pub sub: Option<String>,
    /// The OAuth client of a client-credentials token that carries no `sub`.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Whether a header's value may carry a credential: `authorization` (a SigV4 signature or a
/// bearer token), `proxy-authorization`, cookies, `x-api-key`, and every `x-amz-*` header
/// (`x-amz-security-token` is a session token; the others travel with it). `Debug` output shows
/// such a header's name only.
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || name.starts_with("x-amz-")
}

/// The headers as `Debug` shows them: credential-bearing values replaced.
struct RedactedHeaders<'a>(&'a HashMap<String, String>);

impl std::fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        let mut map = f.debug_map();
        for name in names {
            if is_credential_header(name) {
                map.entry(name, &format_args!("<redacted>"));
            } else {
                map.entry(name, &self.0[name]);
            }
        }
        map.finish()
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("raw_path", &self.raw_path)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body_len", &self.body_len())
            .field("is_base64_encoded", &self.is_base64_encoded)
            .field("request_context", &self.request_context)
            .finish()
    }
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
    /// HTTP status (202, 400, 413, 503, ...).
    pub status_code: u16,
    /// Response headers by name (`content-type`, `retry-after`, ...).
    pub headers: HashMap<String, String>,
    /// Body (JSON text).
    pub body: String,
    /// Always false: bodies are JSON text.
    pub is_base64_encoded: bool,
}

impl HttpResponse {
    /// A JSON response.
    pub fn json(status: u16, body: &Value) -> Self {
        Self::with_type(status, "application/json", body.to_string())
    }

    /// An RFC 9457 problem document (`application/problem+json`): `title` and `detail` for
    /// people, `code` for programs, and `errors` (one per bad field) when there are any.
    pub fn problem(status: u16, code: &str, title: &str, detail: &str, errors: Vec<Value>) -> Self {
        let mut doc = Self::problem_doc(status, code, title, detail);
        if !errors.is_empty() {
            doc.insert("errors".into(), Value::Array(errors));
        }
        Self::problem_from(status, &doc)
    }

    /// The members of a problem document, for an answer that adds its own extension members
    /// (`request_id`) before [`problem_from`](Self::problem_from) serializes it, once.
    ///
    /// ```
    /// use gift_publisher::http::HttpResponse;
    /// let mut doc = HttpResponse::problem_doc(503, "broker_unavailable", "Broker unavailable", "retry");
    /// doc.insert("request_id".into(), "r-1".into());
    /// let r = HttpResponse::problem_from(503, &doc);
    /// assert_eq!(r.body_json()["request_id"], "r-1");
    /// assert_eq!(r.headers["content-type"], "application/problem+json");
    /// ```
    pub fn problem_doc(status: u16, code: &str, title: &str, detail: &str) -> Map<String, Value> {
        let mut doc = Map::new();
        // A URN, not a URL: RFC 9457 allows a type that does not resolve, and there is no page
        // to point at.
        doc.insert(
            "type".into(),
            format!("urn:kafka-lambdas:problem:{code}").into(),
        );
        doc.insert("title".into(), title.into());
        doc.insert("status".into(), status.into());
        doc.insert("code".into(), code.into());
        doc.insert("detail".into(), detail.into());
        doc
    }

    /// The response carrying the problem document `doc`.
    pub fn problem_from(status: u16, doc: &Map<String, Value>) -> Self {
        let body = serde_json::to_string(doc).expect("a JSON map serializes");
        Self::with_type(status, "application/problem+json", body)
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

    fn with_type(status: u16, content_type: &str, body: String) -> Self {
        Self {
            status_code: status,
            headers: HashMap::from([("content-type".to_owned(), content_type.to_owned())]),
            body,
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
    fn debug_output_never_shows_a_credential_header() {
        // A SigV4-signed function URL request (the headers AWS documents for a signed request)
        // plus the other carriers of credentials, in mixed case as a client may send them.
        let secrets = [
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261129/eu-west-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=5ecre7519a7ure",
            ),
            (
                "x-amz-security-token",
                "IQoJb3JpZ2luX2VjEXAMPLEsessiontoken",
            ),
            ("X-Amz-Date", "20261129T210000Z-stamp"),
            (
                "x-amz-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb924sha",
            ),
            ("cookie", "session=c00k1e-value"),
            ("x-api-key", "api-key-value-123"),
            ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
        ];
        let mut r: HttpRequest = serde_json::from_str(include_str!(
            "../../../events/gift-publisher-function-url.json"
        ))
        .unwrap();
        for (k, v) in secrets {
            r.headers.insert(k.into(), v.into());
        }
        let shown = format!("{r:?}");
        for (name, value) in secrets {
            assert!(!shown.contains(value), "{name} shown in {shown}");
            assert!(shown.contains(name), "{name} not named in {shown}");
        }
        assert!(shown.contains("<redacted>"));
        // The rest stays useful: ordinary headers, the path, the request id.
        assert!(shown.contains("sample-function-url-1"), "{shown}");
        assert!(
            shown.contains("7b4c1f58-0d2e-4a8f-9c3b-5e6d7f8a9b0c"),
            "{shown}"
        );
        assert!(
            !shown.contains("What does the vault keep?"),
            "the body is not printed"
        );
        // The alternate form (`{:#?}`) goes through the same code.
        assert!(!format!("{r:#?}").contains("5ecre7519a7ure"));
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
