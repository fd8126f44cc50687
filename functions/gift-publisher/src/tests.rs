//! The request rules against an in-memory broker; the real broker is exercised end to end in
//! `tests/tests/stack/gift_publisher.rs`.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use gift_persister::gift::{Gift, GiftLimits};
use lambda_kit::retry::{Deadline, DeadlineSettings};
use serde_json::{Value, json};

use crate::config::RequestLimits;
use crate::handler::Publisher;
use crate::http::{HttpRequest, HttpResponse};
use crate::kafka::{Broker, Delivery, OutRecord, SendError};

/// What the in-memory broker does with a record.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Accept,
    Down,
    TooLarge,
    Hang,
}

#[derive(Debug)]
struct MemoryBroker {
    mode: Mutex<Mode>,
    records: Mutex<Vec<OutRecord>>,
}

impl MemoryBroker {
    fn new(mode: Mode) -> Self {
        Self {
            mode: Mutex::new(mode),
            records: Mutex::new(Vec::new()),
        }
    }
}

impl Broker for MemoryBroker {
    async fn send(&self, record: OutRecord) -> Result<Delivery, SendError> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Accept => {
                let mut records = self.records.lock().unwrap();
                records.push(record);
                Ok(Delivery {
                    partition: 0,
                    offset: records.len() as i64 - 1,
                })
            }
            Mode::Down => Err(SendError::Unavailable(
                "connecting: connection refused".into(),
            )),
            Mode::TooLarge => Err(SendError::TooLarge("broker error MessageTooLarge".into())),
            Mode::Hang => std::future::pending().await,
        }
    }
}

fn publisher(mode: Mode) -> Publisher<MemoryBroker> {
    Publisher::new(
        MemoryBroker::new(mode),
        "gift_events".into(),
        RequestLimits {
            max_body_bytes: 4096,
            gift: GiftLimits::default(),
        },
        DeadlineSettings::default(),
        Duration::from_secs(2),
    )
}

fn post(body: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        raw_path: "/vault/save".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: Some(body.to_owned()),
        is_base64_encoded: false,
        request_context: serde_json::from_value(json!({"http": {"method": "POST"}})).unwrap(),
    }
}

async fn send(p: &Publisher<MemoryBroker>, req: &HttpRequest) -> HttpResponse {
    p.respond(req, Deadline::after(Duration::from_secs(5)))
        .await
}

fn published(p: &Publisher<MemoryBroker>) -> Vec<OutRecord> {
    p_broker(p).records.lock().unwrap().clone()
}

fn p_broker(p: &Publisher<MemoryBroker>) -> &MemoryBroker {
    p.broker()
}

#[tokio::test]
async fn a_valid_gift_is_stamped_keyed_by_page_and_acknowledged() {
    let p = publisher(Mode::Accept);
    let r = send(
        &p,
        &post(
            r#"{"page_id": 42, "question": "Q?", "answer": "A", "extra": [1]}"#,
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        ),
    )
    .await;
    assert_eq!(r.status_code, 202, "{}", r.body);
    let body = r.body_json();
    assert_eq!(body["queued"], true);
    let event_id = body["event_id"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(event_id).unwrap().get_version_num(),
        4
    );

    let records = published(&p);
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec.key, b"42");
    let value: Value = serde_json::from_slice(&rec.value).unwrap();
    assert_eq!(value["event_id"], event_id);
    assert_eq!(value["extra"], json!([1]), "unknown fields are kept");
    let ts = value["ts"].as_f64().unwrap();
    assert!(
        (ts * 1000.0 - rec.timestamp_ms as f64).abs() < 1.0,
        "ts stamped now"
    );
    assert!(
        rec.headers
            .iter()
            .any(|(k, v)| k == "traceparent" && v.starts_with(b"00-4bf9"))
    );
    // What was published is exactly what the persister accepts, with the same id.
    let g = Gift::validate(value, 0, &GiftLimits::default()).unwrap();
    assert_eq!(g.event_id, event_id);
}

#[tokio::test]
async fn the_idempotency_key_wins_and_a_clients_ts_is_kept() {
    let p = publisher(Mode::Accept);
    let body = r#"{"page_id": 7, "question": "Q", "answer": "A", "ts": 1700000000.5, "event_id": "from-body"}"#;
    for _ in 0..2 {
        let r = send(&p, &post(body, &[("Idempotency-Key", "retry-key-1")])).await;
        assert_eq!(r.body_json()["event_id"], "retry-key-1");
    }
    let records = published(&p);
    let ids: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.value).unwrap()["event_id"].clone())
        .collect();
    assert_eq!(ids, [json!("retry-key-1"), json!("retry-key-1")]);
    let v: Value = serde_json::from_slice(&records[0].value).unwrap();
    assert_eq!(v["ts"], json!(1700000000.5));
    // Without a header, the body's own event_id stays.
    let r = send(&p, &post(body, &[])).await;
    assert_eq!(r.body_json()["event_id"], "from-body");
}

#[tokio::test]
async fn a_bad_gift_gets_400_naming_every_bad_field_and_nothing_is_published() {
    let p = publisher(Mode::Accept);
    let r = send(
        &p,
        &post(
            r#"{"page_id": "forty-two", "question": "", "ts": "soon"}"#,
            &[],
        ),
    )
    .await;
    assert_eq!(r.status_code, 400);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let doc = r.body_json();
    assert_eq!(doc["code"], "invalid_gift");
    let fields: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["page_id", "question", "answer", "ts"]);
    assert_eq!(doc["errors"][2]["code"], "missing_field");

    for (body, code) in [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_gift"),
        ("", "invalid_json"),
    ] {
        let r = send(&p, &post(body, &[])).await;
        assert_eq!(
            (r.status_code, r.body_json()["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let long_key = "k".repeat(201);
    for key in ["  ", long_key.as_str(), "a\u{7}b"] {
        let r = send(
            &p,
            &post(
                r#"{"page_id": 1, "question": "Q", "answer": "A"}"#,
                &[("idempotency-key", key)],
            ),
        )
        .await;
        assert_eq!(r.status_code, 400, "{key:?}");
        assert_eq!(r.body_json()["errors"][0]["field"], "Idempotency-Key");
    }
    assert!(published(&p).is_empty());
}

#[tokio::test]
async fn size_route_and_method_are_checked_before_the_body() {
    let p = publisher(Mode::Accept);
    let big = format!(
        r#"{{"page_id": 1, "question": "Q", "answer": "{}"}}"#,
        "a".repeat(5000)
    );
    let r = send(&p, &post(&big, &[])).await;
    assert_eq!(r.status_code, 413);
    assert!(
        r.body_json()["detail"]
            .as_str()
            .unwrap()
            .contains("at most 4096")
    );
    // The same body base64-encoded (as API Gateway sends binary bodies) is measured decoded.
    let mut req = post(&base64::engine::general_purpose::STANDARD.encode(&big), &[]);
    req.is_base64_encoded = true;
    assert_eq!(send(&p, &req).await.status_code, 413);

    // Exactly the limit is fine, as text and base64-encoded (padding counted right).
    let head = r#"{"page_id": 1, "question": "Q", "answer": ""#;
    let exact = format!("{head}{}\"}}", "a".repeat(4096 - head.len() - 2));
    assert_eq!(exact.len(), 4096);
    assert_eq!(send(&p, &post(&exact, &[])).await.status_code, 202);
    let mut req = post(
        &base64::engine::general_purpose::STANDARD.encode(&exact),
        &[],
    );
    req.is_base64_encoded = true;
    assert_eq!(send(&p, &req).await.status_code, 202);

    let mut req = post("{}", &[]);
    req.raw_path = "/vault/load".into();
    assert_eq!(send(&p, &req).await.status_code, 404);
    // An HTTP API stage prefix and a trailing slash are fine.
    let mut req = post(r#"{"page_id": 1, "question": "Q", "answer": "A"}"#, &[]);
    req.raw_path = "/prod/vault/save/".into();
    assert_eq!(send(&p, &req).await.status_code, 202);
    let mut req = post("{}", &[]);
    req.request_context = serde_json::from_value(json!({"http": {"method": "GET"}})).unwrap();
    let r = send(&p, &req).await;
    assert_eq!(
        (r.status_code, r.headers.get("allow").map(String::as_str)),
        (405, Some("POST"))
    );
    assert_eq!(published(&p).len(), 3);
}

#[tokio::test]
async fn a_broker_that_is_down_or_hangs_gets_503_with_retry_after() {
    let good = r#"{"page_id": 1, "question": "Q", "answer": "A"}"#;
    let p = publisher(Mode::Down);
    let r = send(&p, &post(good, &[])).await;
    assert_eq!(r.status_code, 503);
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.body_json()["code"], "broker_unavailable");

    // A broker that never answers: the function's deadline bounds the wait.
    let p = publisher(Mode::Hang);
    let r = p
        .respond(&post(good, &[]), Deadline::after(Duration::from_millis(50)))
        .await;
    assert_eq!(r.status_code, 503);
    assert!(
        r.body_json()["detail"]
            .as_str()
            .unwrap()
            .contains("deadline")
    );

    let p = publisher(Mode::TooLarge);
    assert_eq!(send(&p, &post(good, &[])).await.status_code, 413);
}

#[tokio::test]
async fn one_metrics_line_per_request_names_its_outcome() {
    let (metrics, captured) =
        lambda_kit::metrics::Metrics::capture("KafkaLambdas", "gift-publisher");
    let p = publisher(Mode::Accept).with_metrics(metrics);
    send(
        &p,
        &post(r#"{"page_id": 1, "question": "Q", "answer": "A"}"#, &[]),
    )
    .await;
    send(&p, &post("{}", &[])).await;
    let docs = captured.documents();
    assert_eq!(docs.len(), 2);
    for doc in &docs {
        lambda_kit::metrics::check_emf(doc).unwrap();
    }
    assert_eq!(
        (
            docs[0]["GiftsPublished"].as_u64(),
            docs[0]["GiftsRejected"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            docs[1]["GiftsPublished"].as_u64(),
            docs[1]["GiftsRejected"].as_u64()
        ),
        (Some(0), Some(1))
    );
}
