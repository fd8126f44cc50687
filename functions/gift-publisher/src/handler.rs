//! `POST /vault/save`: validate, stamp, publish, and answer only once the broker has the gift.
//!
//! | answer | when |
//! | --- | --- |
//! | `202 {"queued": true, "event_id": ..}` | the broker acknowledged the record (`acks=all`) |
//! | `400` problem document | the body is not JSON, not a valid gift (one entry per bad field), or the client's key (`Idempotency-Key`, else the body's `event_id`) is unusable |
//! | `404` / `405` | another path / another method |
//! | `413` | the body is over `GIFT_MAX_BODY_BYTES`, or the broker refused the record's size |
//! | `503` with `Retry-After` | the broker is down, slow, or refuses the producer (auth, missing topic) |
//!
//! `ts` is stamped (epoch seconds) when absent. `event_id`, the persister's idempotency key, is
//! derived from the caller and the `Idempotency-Key` header when sent, else the body's own
//! `event_id` (see [`crate::idempotency`]), else a fresh UUID: a client retrying a POST with the
//! same key gets one vault row, and no other caller can take that row by sending the same key.
//!
//! A `503` tells the caller what to do (retry after `Retry-After` seconds with the same key) and
//! carries the request id; why the broker failed goes only to the log, under that request id.

use std::time::Instant;

use gift_persister::gift::{Gift, GiftError, GiftLimits};
use lambda_kit::metrics::{MetricSet, Metrics, now_ms};
use lambda_kit::retry::{Deadline, DeadlineSettings};
use lambda_runtime::LambdaEvent;
use serde_json::{Map, Value, json};

use crate::http::{HttpRequest, HttpResponse};
use crate::idempotency::{Caller, client_key};
use crate::kafka::{Broker, Delivery, OutRecord, SendError};

/// The route this function serves (an HTTP API stage prefix is allowed before it).
pub const ROUTE: &str = "/vault/save";

/// Trace context headers copied from the request to the record, so a trace runs from the caller
/// through the topic to the persister.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Bounds of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Gift validation bounds (shared with gift-persister).
    pub gift: GiftLimits,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            gift: GiftLimits::default(),
        }
    }
}

/// The function: a producer plus the request rules.
#[derive(Debug)]
pub struct Publisher<B> {
    broker: B,
    topic: String,
    limits: RequestLimits,
    deadline: DeadlineSettings,
    retry_after: std::time::Duration,
    metrics: Metrics,
}

/// What became of one request: the metric it counts in (not a record's partial-response outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestOutcome {
    Published,
    Rejected,
    Failed,
}

impl<B: Broker> Publisher<B> {
    /// A publisher to `topic` through `broker`.
    pub fn new(
        broker: B,
        topic: String,
        limits: RequestLimits,
        deadline: DeadlineSettings,
        retry_after: std::time::Duration,
    ) -> Self {
        Self {
            broker,
            topic,
            limits,
            deadline,
            retry_after,
            metrics: Metrics::disabled(),
        }
    }

    /// Emits one EMF line per request.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The producer (tests inspect it).
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// The Lambda entry point.
    pub async fn handle(
        &self,
        event: LambdaEvent<HttpRequest>,
    ) -> Result<HttpResponse, lambda_runtime::Error> {
        let deadline = Deadline::from_context(&event.context, &self.deadline);
        Ok(self.respond(&event.payload, deadline).await)
    }

    /// Answers one request.
    pub async fn respond(&self, request: &HttpRequest, deadline: Deadline) -> HttpResponse {
        let started = Instant::now();
        let (response, outcome) = self.answer(request, deadline).await;
        let mut m = MetricSet::new();
        m.count(
            "GiftsPublished",
            u64::from(outcome == RequestOutcome::Published),
        )
        .count(
            "GiftsRejected",
            u64::from(outcome == RequestOutcome::Rejected),
        )
        .count(
            "PublishFailed",
            u64::from(outcome == RequestOutcome::Failed),
        )
        .millis("Duration", started.elapsed().as_millis() as u64);
        self.metrics.emit(&m);
        response
    }

    async fn answer(
        &self,
        request: &HttpRequest,
        deadline: Deadline,
    ) -> (HttpResponse, RequestOutcome) {
        let path = request.raw_path.trim_end_matches('/');
        if !path.ends_with(ROUTE) {
            let detail = format!("this function serves POST {ROUTE}");
            return rejected(HttpResponse::problem(
                404,
                "not_found",
                "Not found",
                &detail,
                vec![],
            ));
        }
        if request.method() != "POST" {
            let detail = format!("{ROUTE} accepts POST only");
            let r = HttpResponse::problem(
                405,
                "method_not_allowed",
                "Method not allowed",
                &detail,
                vec![],
            );
            return rejected(r.header("allow", "POST"));
        }
        let body = match self.body_within_limit(request) {
            Ok(b) => b,
            Err(r) => return rejected(r),
        };
        let prepared = match self.prepare(request, &body) {
            Ok(p) => p,
            Err(r) => return rejected(r),
        };
        let event_id = prepared.event_id.clone();
        let page_id = prepared.page_id;
        let remaining = deadline.remaining();
        let sent = match tokio::time::timeout(remaining, self.broker.send(prepared.record)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Unavailable(format!(
                "the function's deadline passed before the broker acknowledged ({} ms left)",
                remaining.as_millis()
            ))),
        };
        self.settled(request, &event_id, page_id, sent)
    }

    /// The answer to a gift the broker took (202), refused as too large (413), or could not take
    /// (503 with `Retry-After`).
    fn settled(
        &self,
        request: &HttpRequest,
        event_id: &str,
        page_id: i64,
        sent: Result<Delivery, SendError>,
    ) -> (HttpResponse, RequestOutcome) {
        match sent {
            Ok(d) => {
                tracing::info!(
                    event_id,
                    page_id,
                    topic = self.topic,
                    partition = d.partition,
                    offset = d.offset,
                    "gift published"
                );
                (
                    HttpResponse::json(202, &json!({"queued": true, "event_id": event_id})),
                    RequestOutcome::Published,
                )
            }
            Err(e @ SendError::TooLarge(_)) => {
                let request_id = request_id(request);
                tracing::warn!(request_id, event_id, page_id, error_code = e.error_code(), error = %e, "gift refused by the broker");
                let r = with_request_id(
                    413,
                    e.error_code(),
                    "Gift too large for the topic",
                    "the broker refused the gift as larger than the topic accepts; send a smaller one",
                    &request_id,
                );
                rejected(r)
            }
            Err(e) => {
                // The cause (broker addresses, topic, authentication) is for the operator: the
                // log has it under the request id the caller gets.
                let request_id = request_id(request);
                tracing::error!(request_id, event_id, page_id, error_code = e.error_code(), error = %e, "gift not published");
                let secs = self.retry_after.as_secs().max(1);
                let detail = format!(
                    "the gift was not published; retry after {secs} s with the same Idempotency-Key (request id {request_id})"
                );
                let r = with_request_id(
                    503,
                    e.error_code(),
                    "Broker unavailable",
                    &detail,
                    &request_id,
                );
                (
                    r.header("retry-after", secs.to_string()),
                    RequestOutcome::Failed,
                )
            }
        }
    }

    /// The decoded body, or the 413/400 when it is over `max_body_bytes` or not valid base64.
    fn body_within_limit(&self, request: &HttpRequest) -> Result<Vec<u8>, HttpResponse> {
        let max = self.limits.max_body_bytes;
        if request.body_len() > max {
            return Err(too_large(request.body_len(), max));
        }
        match request.body_bytes() {
            Ok(b) if b.len() > max => Err(too_large(b.len(), max)),
            Ok(b) => Ok(b),
            Err(e) => Err(bad_request("invalid_body_encoding", &e.to_string(), vec![])),
        }
    }

    /// The record for a valid body, or the 400 naming what is wrong.
    fn prepare(&self, request: &HttpRequest, body: &[u8]) -> Result<Prepared, HttpResponse> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            bad_request(
                "invalid_json",
                &format!("the body is not JSON: {e}"),
                vec![],
            )
        })?;
        let Value::Object(mut gift) = value else {
            let e = GiftError::NotAnObject(event_decoding::json_kind(&value));
            return Err(bad_request(
                "invalid_gift",
                &e.to_string(),
                vec![problem(&e)],
            ));
        };
        let now = now_ms();
        let max = self.limits.gift.max_event_id_chars;
        // A body `event_id` that is no usable key is reported with the gift's other problems.
        let mut key_problem = None;
        if let Some(key) = request.header("idempotency-key") {
            let key = client_key(key, max).map_err(|p| {
                let entry = key_problem_entry("Idempotency-Key", &p);
                bad_request(
                    "invalid_gift",
                    &format!("Idempotency-Key: {p}"),
                    vec![entry],
                )
            })?;
            gift.insert(
                "event_id".into(),
                Value::String(Caller::of(request).event_id(key)),
            );
        } else if let Some(Value::String(key)) = gift.get("event_id") {
            // The body's own id is a client-chosen key too: the same rule, scoped like the
            // header. (Another type is left for the validation below to refuse.)
            match client_key(key, max) {
                Ok(key) => {
                    let id = Caller::of(request).event_id(key);
                    gift.insert("event_id".into(), Value::String(id));
                }
                Err(p) => {
                    gift.remove("event_id");
                    key_problem = Some(key_problem_entry("event_id", &p));
                }
            }
        } else if gift.get("event_id").is_none_or(Value::is_null) {
            gift.insert(
                "event_id".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
        }
        if gift.get("ts").is_none_or(Value::is_null) {
            gift.insert("ts".into(), json!(now as f64 / 1000.0));
        }
        let checked = match (
            Gift::validate_all(Value::Object(gift), now, &self.limits.gift),
            key_problem,
        ) {
            (Ok(checked), None) => checked,
            (checked, key_problem) => {
                // `event_id` is the last field validate_all checks: its entry goes last.
                let problems = checked.err().unwrap_or_default();
                let mut details: Vec<String> = problems.iter().map(ToString::to_string).collect();
                let mut entries: Vec<Value> = problems.iter().map(problem).collect();
                if let Some(entry) = key_problem {
                    details.extend(entry["message"].as_str().map(str::to_owned));
                    entries.push(entry);
                }
                return Err(bad_request("invalid_gift", &details.join("; "), entries));
            }
        };
        let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
        for name in TRACE_HEADERS {
            if let Some(v) = request.header(name) {
                headers.push((name.to_owned(), v.as_bytes().to_vec()));
            }
        }
        Ok(Prepared {
            event_id: checked.event_id,
            page_id: checked.page_id,
            record: OutRecord {
                key: checked.page_id.to_string().into_bytes(),
                // The validated gift keeps the whole object (stamps included) as `raw`.
                value: serde_json::to_vec(&checked.raw).expect("a JSON object serializes"),
                headers,
                timestamp_ms: now,
            },
        })
    }
}

struct Prepared {
    event_id: String,
    page_id: i64,
    record: OutRecord,
}

/// The id AWS gave the request, or a fresh one when the event has none (a local run).
fn request_id(request: &HttpRequest) -> String {
    request
        .request_context
        .request_id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn rejected(response: HttpResponse) -> (HttpResponse, RequestOutcome) {
    (response, RequestOutcome::Rejected)
}

fn too_large(len: usize, max: usize) -> HttpResponse {
    let detail = format!("the body is {len} bytes, at most {max} are accepted");
    HttpResponse::problem(413, "body_too_large", "Body too large", &detail, vec![])
}

/// A problem document about the broker's answer, carrying the request id under which the log
/// has the cause; serialized once.
fn with_request_id(
    status: u16,
    code: &str,
    title: &str,
    detail: &str,
    request_id: &str,
) -> HttpResponse {
    let mut doc = HttpResponse::problem_doc(status, code, title, detail);
    doc.insert("request_id".into(), request_id.into());
    HttpResponse::problem_from(status, &doc)
}

/// The `errors` entry of an unusable client key (`field`: `Idempotency-Key` or `event_id`).
fn key_problem_entry(field: &str, problem: &str) -> Value {
    json!({"field": field, "code": "invalid_idempotency_key", "message": format!("{field}: {problem}")})
}

fn bad_request(code: &str, detail: &str, errors: Vec<Value>) -> HttpResponse {
    HttpResponse::problem(400, code, "Invalid gift", detail, errors)
}

/// One `errors` entry: the field, the persister's error code, the message.
fn problem(e: &GiftError) -> Value {
    let mut entry = Map::new();
    entry.insert(
        "field".into(),
        e.field().map_or(Value::Null, |f| Value::String(f.into())),
    );
    entry.insert("code".into(), Value::String(e.error_code().into()));
    entry.insert("message".into(), Value::String(e.to_string()));
    Value::Object(entry)
}
