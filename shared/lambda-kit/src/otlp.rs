//! Optional OpenTelemetry export of each batch's span: one OTLP/HTTP JSON
//! `ExportTraceServiceRequest` per traced batch, POSTed to a collector (the ADOT Lambda layer's
//! listens on `http://localhost:4318`). Off unless `OTEL_TRACES_EXPORTER=otlp`.
//!
//! Settings (the OpenTelemetry SDK variables, read once at cold start by [`OtlpExporter::from_env`]):
//! - `OTEL_TRACES_EXPORTER`: `otlp` turns export on; unset or `none` leaves it off.
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as given), else `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   followed by `/v1/traces`, else `http://localhost:4318/v1/traces`.
//! - `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: only `http/json`.
//! - `OTEL_EXPORTER_OTLP_TIMEOUT`: milliseconds, default 1000 (shorter than the SDKs' 10 s: the
//!   export waits inside the invocation), further capped by the invocation deadline.
//! - `OTEL_SERVICE_NAME`: the resource's `service.name`, default the function name.
//!
//! The span follows the messaging semantic conventions for a Kafka consumer's batch: kind
//! `CONSUMER`, `messaging.system` = `kafka`, `messaging.operation.type` = `process`,
//! `messaging.destination.name` (when the batch has one topic), `messaging.batch.message_count`;
//! its parent is the first traced record's span, its links are the other records' span contexts.
//! Status `ERROR` when records failed (reported for redelivery), `UNSET` otherwise. Only a batch
//! whose span is sampled (the producer's flag, as a parent-based sampler decides) is exported.
//!
//! In OTLP/JSON, trace and span ids are lower-case hex strings (not base64), 64-bit integers are
//! decimal strings, enums are integers and field names lowerCamelCase.
//!
//! Written here rather than with `opentelemetry-otlp` and `opentelemetry_sdk` (0.33.1, released
//! 2026-10-09, well kept). Measured 2026-12-07 on a minimal Lambda binary (lambda_runtime,
//! tokio, reqwest with rustls, serde_json; the workspace's release profile) exporting one span
//! over `http-json` with the async reqwest client, with and without them: 22 more crates
//! (`cargo tree -e normal`; 7 new to the workspace, among them `opentelemetry-proto` and
//! `async-trait`) and +293 KB (5,419,496 -> 5,712,720 bytes, +5.4%). Their model also fits a
//! Lambda batch badly: the SDK's batch processor exports from a thread of its own, which Lambda
//! freezes between invocations (every invocation would have to `force_flush`), its docs rule out
//! the async reqwest client with that processor, the export timeout is 10 s unless set, and the
//! span's ids, parent and links would go through a `Tracer` from the contexts `trace.rs` has
//! already parsed. This file sends one request per batch inside the invocation, bounded by the
//! deadline, with the runner's error codes.
//!
//! ```
//! use lambda_kit::config::Env;
//! use lambda_kit::otlp::OtlpExporter;
//! assert!(OtlpExporter::from_env(&Env::empty(), "f").unwrap().is_none());
//! let env = Env::from_pairs([("OTEL_TRACES_EXPORTER", "otlp")]);
//! let e = OtlpExporter::from_env(&env, "f").unwrap().unwrap();
//! assert_eq!(e.endpoint(), "http://localhost:4318/v1/traces");
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_decoding::{Counts, KafkaRecord};
use serde_json::{Value, json};

use crate::config::{ConfigError, Env};
use crate::http::{Failure, attempt};
use crate::retry::Deadline;
use crate::trace::BatchTrace;

/// Most links one exported span carries (the SDKs' default span limit); the rest are counted in
/// `droppedLinksCount`.
pub const MAX_SPAN_LINKS: usize = 128;

/// Default bound of one export.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The ADOT (and OpenTelemetry) Lambda layers' collector, OTLP/HTTP.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// The collector's answer is an `ExportTraceServiceResponse` (a partial-success count and a
/// message): a few hundred bytes; more than this is not read.
const ANSWER_LIMIT: crate::http::Limit =
    crate::http::Limit::new("OTEL_EXPORTER_OTLP_ENDPOINT", 64 * 1024);

/// SpanKind `SPAN_KIND_CONSUMER`.
const KIND_CONSUMER: u8 = 5;
/// StatusCode `STATUS_CODE_UNSET`, `STATUS_CODE_ERROR`.
const STATUS_UNSET: u8 = 0;
const STATUS_ERROR: u8 = 2;

/// Where and how batch spans are exported.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    endpoint: String,
    service_name: String,
    timeout: Duration,
    http: reqwest::Client,
}

/// What one batch did, for its span.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpan<'a> {
    /// The batch's trace contexts.
    pub trace: &'a BatchTrace,
    /// The batch's records.
    pub records: &'a [KafkaRecord],
    /// Outcome counts.
    pub counts: &'a Counts,
    /// The first failure's code, if any record failed.
    pub failure_code: Option<&'a str>,
    /// When the runner started on the batch.
    pub start: SystemTime,
    /// When it had settled every record.
    pub end: SystemTime,
}

/// An export that did not go through: logged by the runner, never fails the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportError {
    /// Low-cardinality code: `otlp_connect`, `otlp_timeout`, `otlp_transport`, `otlp_status`,
    /// `otlp_partial_success`, `otlp_no_time`.
    pub code: &'static str,
    /// What happened (no secret: the endpoint may not carry credentials).
    pub message: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl OtlpExporter {
    /// The exporter the environment asks for; `None` when export is off (the default). A bad
    /// setting is an error naming its variable.
    pub fn from_env(env: &Env, function_name: &str) -> Result<Option<Self>, ConfigError> {
        match env
            .get("OTEL_TRACES_EXPORTER")
            .map(|v| v.to_ascii_lowercase())
        {
            None => return Ok(None),
            Some(v) if v == "none" => return Ok(None),
            Some(v) if v == "otlp" => {}
            Some(_) => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_EXPORTER",
                    "expected otlp or none (OTLP over HTTP/JSON is the only exporter built in)",
                ));
            }
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = env.get(var).filter(|p| p != "http/json") {
                return Err(ConfigError::new(
                    var,
                    format!("{p:?} is not supported: the functions export http/json"),
                ));
            }
        }
        let (var, endpoint) = match (
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(e), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{DEFAULT_ENDPOINT}/v1/traces"),
            ),
        };
        // No credential is sent (no OTEL_EXPORTER_OTLP_HEADERS): http:// stays allowed; userinfo
        // is refused, transport errors would quote it.
        let url = crate::config::check_url(var, &endpoint, false)?;
        let timeout = env.millis_or("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "must be greater than 0",
            ));
        }
        let service_name = env
            .get("OTEL_SERVICE_NAME")
            .or_else(|| env.get("AWS_LAMBDA_FUNCTION_NAME"))
            .unwrap_or_else(|| function_name.to_owned());
        let http = crate::http::client_builder()
            .connect_timeout(timeout)
            .build()
            .map_err(|e| {
                ConfigError::new(
                    "OTEL_TRACES_EXPORTER",
                    format!(
                        "cannot build the HTTP client: {}",
                        crate::http::describe_reqwest(&e)
                    ),
                )
            })?;
        Ok(Some(Self {
            endpoint: url.to_string(),
            service_name,
            timeout,
            http,
        }))
    }

    /// The URL spans are POSTed to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The `ExportTraceServiceRequest` for `batch`, or `None` when the batch has no sampled span.
    pub fn request(&self, batch: &BatchSpan<'_>) -> Option<Value> {
        let span = batch.trace.span().filter(|s| s.sampled())?;
        let topics: BTreeSet<&str> = batch.records.iter().map(|r| &*r.topic).collect();
        let partitions: BTreeSet<i32> = batch.records.iter().map(|r| r.partition).collect();
        let topic = (topics.len() == 1).then(|| *topics.first().expect("one topic"));
        let mut attributes = vec![
            string_attr("messaging.system", "kafka"),
            string_attr("messaging.operation.type", "process"),
            string_attr("messaging.operation.name", "process"),
            int_attr("messaging.batch.message_count", batch.records.len() as u64),
        ];
        if let Some(topic) = topic {
            attributes.push(string_attr("messaging.destination.name", topic));
        }
        if let (Some(p), 1) = (partitions.first(), partitions.len()) {
            attributes.push(string_attr(
                "messaging.destination.partition.id",
                &p.to_string(),
            ));
        }
        let c = batch.counts;
        for (key, n) in [
            ("kafka_lambdas.records.stored", c.stored),
            ("kafka_lambdas.records.skipped", c.skipped),
            ("kafka_lambdas.records.dead_lettered", c.dead_lettered),
            ("kafka_lambdas.records.failed", c.failed),
        ] {
            attributes.push(int_attr(key, n as u64));
        }
        let status = if c.failed > 0 {
            let code = batch.failure_code.unwrap_or("failed");
            attributes.push(string_attr("error.type", code));
            json!({
                "code": STATUS_ERROR,
                "message": format!("{} of {} records failed ({code}); reported for redelivery", c.failed, batch.records.len()),
            })
        } else {
            json!({ "code": STATUS_UNSET })
        };
        let (linked, total) = batch.trace.linked_spans(MAX_SPAN_LINKS);
        let links: Vec<Value> = linked
            .iter()
            .map(|cx| {
                let mut link = json!({
                    "traceId": cx.trace_id(),
                    "spanId": cx.span_id(),
                    "flags": u32::from(cx.flags()),
                });
                if let Some(ts) = cx.tracestate() {
                    link["traceState"] = json!(ts);
                }
                link
            })
            .collect();
        let mut out = json!({
            "traceId": span.trace_id(),
            "spanId": span.span_id(),
            "name": match topic {
                Some(t) => format!("process {t}"),
                None => "process".to_owned(),
            },
            "kind": KIND_CONSUMER,
            "startTimeUnixNano": unix_nanos(batch.start).to_string(),
            "endTimeUnixNano": unix_nanos(batch.end.max(batch.start)).to_string(),
            "attributes": attributes,
            "links": links,
            "droppedLinksCount": total - linked.len(),
            "status": status,
            "flags": u32::from(span.flags()),
        });
        if let Some(parent) = batch.trace.parent_span_id() {
            out["parentSpanId"] = json!(parent);
        }
        if let Some(ts) = span.tracestate() {
            out["traceState"] = json!(ts);
        }
        Some(json!({
            "resourceSpans": [{
                "resource": { "attributes": [
                    string_attr("service.name", &self.service_name),
                    string_attr("cloud.provider", "aws"),
                    string_attr("cloud.platform", "aws_lambda"),
                ]},
                "scopeSpans": [{
                    "scope": { "name": "lambda-kit", "version": env!("CARGO_PKG_VERSION") },
                    "spans": [out],
                }],
            }],
        }))
    }

    /// POSTs the batch's span once (no retry), within the export timeout and `deadline`. A batch
    /// without a sampled span sends nothing.
    pub async fn export(
        &self,
        batch: &BatchSpan<'_>,
        deadline: &Deadline,
    ) -> Result<(), ExportError> {
        let Some(body) = self.request(batch) else {
            return Ok(());
        };
        let timeout = self.timeout.min(deadline.remaining());
        if timeout.is_zero() {
            return Err(ExportError {
                code: "otlp_no_time",
                message: "the invocation deadline left no time to export the batch span".into(),
            });
        }
        let request = self.http.post(&self.endpoint).json(&body);
        match attempt(request, timeout, None, ANSWER_LIMIT).await {
            Ok(answer) => partial_success(&answer),
            Err(Failure::Transport(t)) => Err(ExportError {
                code: match t.code {
                    "http_connect" => "otlp_connect",
                    "http_timeout" => "otlp_timeout",
                    _ => "otlp_transport",
                },
                message: t.message,
            }),
            Err(Failure::Status(r)) => Err(ExportError {
                code: "otlp_status",
                message: format!(
                    "the collector answered {}: {}",
                    r.status,
                    r.clean(&r.text())
                ),
            }),
        }
    }
}

/// A 2xx answer may still say the span was refused (`partialSuccess.rejectedSpans`).
fn partial_success(answer: &[u8]) -> Result<(), ExportError> {
    let Ok(v) = serde_json::from_slice::<Value>(answer) else {
        return Ok(()); // an empty or protobuf body: accepted
    };
    let p = &v["partialSuccess"];
    let rejected = match &p["rejectedSpans"] {
        Value::String(s) => s.parse::<u64>().unwrap_or(0),
        n => n.as_u64().unwrap_or(0),
    };
    if rejected == 0 {
        return Ok(());
    }
    Err(ExportError {
        code: "otlp_partial_success",
        message: format!(
            "the collector rejected {rejected} span(s): {}",
            crate::http::sanitize_body(p["errorMessage"].as_str().unwrap_or(""), None)
        ),
    })
}

fn string_attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// An int64 attribute: a decimal string in OTLP/JSON.
fn int_attr(key: &str, value: u64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockServer;
    use crate::trace::{TRACEPARENT, TRACESTATE};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn exporter(endpoint: &str) -> OtlpExporter {
        let env = Env::from_pairs([
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("AWS_LAMBDA_FUNCTION_NAME", "gift-persister-prod"),
        ]);
        OtlpExporter::from_env(&env, "gift-persister")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn settings() {
        let get = |pairs: &[(&str, &str)]| {
            OtlpExporter::from_env(&Env::from_pairs(pairs.iter().copied()), "fn")
        };
        assert!(get(&[("OTEL_TRACES_EXPORTER", "none")]).unwrap().is_none());
        let e = get(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint(), "http://collector:4318/v1/traces");
        assert_eq!(e.service_name(), "fn");
        let e = get(&[
            ("OTEL_TRACES_EXPORTER", "OTLP"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://x.example/custom/path",
            ),
            ("OTEL_SERVICE_NAME", "svc"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint(), "https://x.example/custom/path");
        assert_eq!(e.service_name(), "svc");
        for (pairs, var) in [
            (
                vec![("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
                ],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "https://u:sk-secret@x.example/v1/traces",
                    ),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
                ],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
        ] {
            let e = get(&pairs).unwrap_err();
            assert_eq!(e.var, var);
            assert!(!e.to_string().contains("sk-secret"), "{e}");
        }
    }

    fn records() -> Vec<KafkaRecord> {
        vec![
            KafkaRecord::new("gifts", 3, 10, 0),
            KafkaRecord::new("gifts", 3, 11, 0)
                .with_header(TRACEPARENT, TP)
                .with_header(TRACESTATE, "congo=t61rcWkgMzE"),
            KafkaRecord::new("gifts", 3, 12, 0).with_header(TRACEPARENT, OTHER),
            KafkaRecord::new("gifts", 3, 13, 0).with_header(TRACEPARENT, OTHER),
        ]
    }

    #[test]
    fn the_request_is_otlp_json() {
        let records = records();
        let trace = BatchTrace::of(&records);
        let counts = Counts {
            stored: 2,
            skipped: 0,
            dead_lettered: 1,
            failed: 1,
        };
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let batch = BatchSpan {
            trace: &trace,
            records: &records,
            counts: &counts,
            failure_code: Some("db_unavailable"),
            start,
            end: start + Duration::from_millis(5),
        };
        let req = exporter("http://127.0.0.1:1").request(&batch).unwrap();
        let rs = &req["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "gift-persister-prod"
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], trace.span().unwrap().span_id());
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["traceState"], "congo=t61rcWkgMzE");
        assert_eq!(span["kind"], 5);
        assert_eq!(span["name"], "process gifts");
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["endTimeUnixNano"], "1700000000128456789");
        assert_eq!(span["status"]["code"], 2);
        assert!(
            span["status"]["message"]
                .as_str()
                .unwrap()
                .contains("db_unavailable")
        );
        assert_eq!(
            span["links"].as_array().unwrap().len(),
            1,
            "one distinct other context"
        );
        assert_eq!(
            span["links"][0]["traceId"],
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(span["links"][0]["spanId"], "b7ad6b7169203331");
        assert_eq!(span["droppedLinksCount"], 0);
        let attr = |k: &str| {
            span["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == k)
                .map(|a| a["value"].clone())
        };
        assert_eq!(attr("messaging.system").unwrap()["stringValue"], "kafka");
        assert_eq!(
            attr("messaging.destination.name").unwrap()["stringValue"],
            "gifts"
        );
        assert_eq!(
            attr("messaging.destination.partition.id").unwrap()["stringValue"],
            "3"
        );
        assert_eq!(
            attr("messaging.batch.message_count").unwrap()["intValue"],
            "4"
        );
        assert_eq!(attr("error.type").unwrap()["stringValue"], "db_unavailable");

        // Success leaves the status unset; no parent trace means no span; an unsampled one too.
        let ok = Counts {
            failed: 0,
            ..counts
        };
        let req = exporter("http://127.0.0.1:1")
            .request(&BatchSpan {
                counts: &ok,
                failure_code: None,
                ..batch
            })
            .unwrap();
        assert_eq!(
            req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"]["code"],
            0
        );
        let untraced = BatchTrace::of(&records[..1]);
        assert!(
            exporter("http://127.0.0.1:1")
                .request(&BatchSpan {
                    trace: &untraced,
                    ..batch
                })
                .is_none()
        );
        let unsampled = [KafkaRecord::new("gifts", 0, 0, 0).with_header(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )];
        let unsampled = BatchTrace::of(&unsampled);
        assert!(
            exporter("http://127.0.0.1:1")
                .request(&BatchSpan {
                    trace: &unsampled,
                    ..batch
                })
                .is_none()
        );
    }

    #[tokio::test]
    async fn export_posts_once_and_reports_what_fails() {
        let records = records();
        let trace = BatchTrace::of(&records);
        let counts = Counts::default();
        let now = SystemTime::now();
        let batch = BatchSpan {
            trace: &trace,
            records: &records,
            counts: &counts,
            failure_code: None,
            start: now,
            end: now,
        };
        let deadline = Deadline::after(Duration::from_secs(5));
        let server = MockServer::start(vec![
            (200, vec![], "{}".into()),
            (
                200,
                vec![],
                r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"too old"}}"#.into(),
            ),
            (500, vec![], "collector broke".into()),
        ])
        .await;
        let e = exporter(&server.url());
        e.export(&batch, &deadline).await.unwrap();
        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].head.starts_with("POST /v1/traces "),
            "{}",
            seen[0].head
        );
        assert!(
            seen[0]
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body, e.request(&batch).unwrap());
        let err = e.export(&batch, &deadline).await.unwrap_err();
        assert_eq!(err.code, "otlp_partial_success");
        let err = e.export(&batch, &deadline).await.unwrap_err();
        assert_eq!(err.code, "otlp_status");
        assert!(err.message.contains("500"), "{err}");

        let port = crate::testing::unused_port();
        let err = exporter(&format!("http://127.0.0.1:{port}"))
            .export(&batch, &deadline)
            .await
            .unwrap_err();
        assert_eq!(err.code, "otlp_connect");
        let err = e
            .export(&batch, &Deadline::after(Duration::ZERO))
            .await
            .unwrap_err();
        assert_eq!(err.code, "otlp_no_time");
    }
}
