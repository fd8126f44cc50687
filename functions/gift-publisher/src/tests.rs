//! The request rules against an in-memory broker; the real broker is exercised end to end in
//! `tests/tests/stack/gift_publisher.rs`.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use gift_persister::gift::{Gift, GiftLimits};
use lambda_kit::retry::{Deadline, DeadlineSettings};
use serde_json::{Value, json};

use crate::handler::Publisher;
use crate::handler::RequestLimits;
use crate::http::{HttpRequest, HttpResponse};
use crate::idempotency::Caller;
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

/// `post` signed by the IAM user `name` (a function URL's `requestContext.authorizer.iam`).
fn post_as(name: &str, body: &str, headers: &[(&str, &str)]) -> HttpRequest {
    let mut r = post(body, headers);
    r.request_context = serde_json::from_value(json!({
        "http": {"method": "POST"},
        "authorizer": {"iam": {
            "accountId": "111122223333",
            "userArn": format!("arn:aws:iam::111122223333:user/{name}"),
            "userId": format!("AIDA{name}")
        }}
    }))
    .unwrap();
    r
}

fn published_ids(p: &Publisher<MemoryBroker>) -> Vec<String> {
    published(p)
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.value).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_idempotency_key_wins_and_a_clients_ts_is_kept() {
    let p = publisher(Mode::Accept);
    let body = r#"{"page_id": 7, "question": "Q", "answer": "A", "ts": 1700000000.5, "event_id": "from-body"}"#;
    let key_id = Caller::Iam("arn:aws:iam::111122223333:user/alice".into()).event_id("retry-key-1");
    for _ in 0..2 {
        let r = send(
            &p,
            &post_as("alice", body, &[("Idempotency-Key", "retry-key-1")]),
        )
        .await;
        assert_eq!(r.body_json()["event_id"], key_id.as_str());
    }
    assert_eq!(published_ids(&p), [key_id.clone(), key_id]);
    let v: Value = serde_json::from_slice(&published(&p)[0].value).unwrap();
    assert_eq!(v["ts"], json!(1700000000.5));
    // Without a header, the body's own event_id is the key (scoped the same way).
    let r = send(&p, &post_as("alice", body, &[])).await;
    assert_eq!(
        r.body_json()["event_id"],
        Caller::Iam("arn:aws:iam::111122223333:user/alice".into())
            .event_id("from-body")
            .as_str()
    );
}

#[tokio::test]
async fn one_callers_key_cannot_take_another_callers_gift() {
    // Alice and Mallory send the same Idempotency-Key with different gifts: both are published
    // under different event_ids (two vault rows), and Alice's own retry keeps her id (one row).
    // The same holds for a key sent as the body's event_id.
    let p = publisher(Mode::Accept);
    let gift = |answer: &str| format!(r#"{{"page_id": 7, "question": "Q", "answer": "{answer}"}}"#);
    let key = [("Idempotency-Key", "order-1001")];
    let mallory = send(&p, &post_as("mallory", &gift("forged"), &key)).await;
    let alice = send(&p, &post_as("alice", &gift("real"), &key)).await;
    let retry = send(&p, &post_as("alice", &gift("real"), &key)).await;
    for r in [&mallory, &alice, &retry] {
        assert_eq!(r.status_code, 202, "{}", r.body);
    }
    let ids = published_ids(&p);
    assert_eq!(ids.len(), 3);
    assert_ne!(ids[0], ids[1], "two callers, one key: two gifts");
    assert_eq!(ids[1], ids[2], "one caller, one key: one gift");
    assert_eq!(alice.body_json()["event_id"], ids[1].as_str());
    assert!(!ids.iter().any(|id| id == "order-1001"));
    // The persister sees distinct ids, so Mallory's gift cannot shadow Alice's row.
    let answers: Vec<Value> = published(&p)
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.value).unwrap()["answer"].clone())
        .collect();
    assert_eq!(answers, [json!("forged"), json!("real"), json!("real")]);

    let in_body = r#"{"page_id": 7, "question": "Q", "answer": "A", "event_id": "order-1001"}"#;
    let m = send(&p, &post_as("mallory", in_body, &[])).await;
    let a = send(&p, &post_as("alice", in_body, &[])).await;
    assert_ne!(m.body_json()["event_id"], a.body_json()["event_id"]);
    assert_eq!(
        a.body_json()["event_id"],
        ids[1].as_str(),
        "header or body: one key"
    );
    // A JWT holder of the same name is yet another caller.
    let mut jwt = post(&gift("real"), &key);
    jwt.request_context = serde_json::from_value(json!({
        "http": {"method": "POST"},
        "authorizer": {"jwt": {"claims": {"iss": "https://auth.example.com/", "sub": "alice"}}}
    }))
    .unwrap();
    let j = send(&p, &jwt).await;
    assert_ne!(j.body_json()["event_id"], alice.body_json()["event_id"]);
}

/// One key whichever way it comes: `k` in the header, `"k "` or `" k"` in the body are one
/// gift (the header used to be trimmed before hashing and the body's `event_id` not, so a
/// client moving its key, or padding it, made a second vault row).
#[tokio::test]
async fn a_key_is_trimmed_alike_in_the_header_and_the_body() {
    let p = publisher(Mode::Accept);
    let gift = |event_id: &str| {
        json!({"page_id": 7, "question": "Q", "answer": "A", "event_id": event_id}).to_string()
    };
    let header = send(
        &p,
        &post_as("alice", &gift("ignored"), &[("Idempotency-Key", "k")]),
    )
    .await;
    let padded_header = send(
        &p,
        &post_as("alice", &gift("ignored"), &[("Idempotency-Key", " k ")]),
    )
    .await;
    let body = send(&p, &post_as("alice", &gift("k"), &[])).await;
    let padded_body = send(&p, &post_as("alice", &gift("k "), &[])).await;
    let tab_body = send(&p, &post_as("alice", &gift("\tk"), &[])).await;
    let expected = Caller::Iam("arn:aws:iam::111122223333:user/alice".into()).event_id("k");
    for r in [&header, &padded_header, &body, &padded_body, &tab_body] {
        assert_eq!(r.status_code, 202, "{}", r.body);
        assert_eq!(r.body_json()["event_id"], expected.as_str());
    }

    // A body key the header would refuse is refused too (a control character used to pass
    // unscoped checks), listed after the gift's other problems; nothing is published.
    let published_before = published(&p).len();
    let long = "k".repeat(201);
    for bad in ["  ", "a\u{7}b", long.as_str()] {
        let body = json!({"page_id": -1, "question": "Q", "answer": "A", "event_id": bad});
        let r = send(&p, &post_as("alice", &body.to_string(), &[])).await;
        assert_eq!(r.status_code, 400, "{bad:?}");
        let doc = r.body_json();
        let fields = error_fields(&doc);
        assert_eq!(fields, ["page_id", "event_id"], "{bad:?}: {doc}");
        assert_eq!(doc["errors"][1]["code"], "invalid_idempotency_key");
        assert!(
            !r.body.contains(r"a\u0007b"),
            "the key is not echoed: {}",
            r.body
        );
    }
    assert_eq!(published(&p).len(), published_before);
}

/// The `field` of each `errors` entry of a problem document.
fn error_fields(doc: &Value) -> Vec<&str> {
    doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
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
    let fields = error_fields(&doc);
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

/// Log lines written while `f` runs on this thread (the JSON format Lambda uses).
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let out = {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await
    };
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[tokio::test]
async fn a_broker_that_is_down_or_hangs_gets_503_with_retry_after() {
    let good = r#"{"page_id": 1, "question": "Q", "answer": "A"}"#;
    let mut req = post(good, &[]);
    req.request_context.request_id = Some("req-7b4c1f58".into());
    let p = publisher(Mode::Down);
    let (r, log) = logged(send(&p, &req)).await;
    assert_eq!(r.status_code, 503);
    assert_eq!(r.headers["retry-after"], "2");
    let doc = r.body_json();
    assert_eq!(doc["code"], "broker_unavailable");
    // The body says what to do and which request it was, never why the broker failed...
    assert_eq!(doc["request_id"], "req-7b4c1f58");
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains("retry after 2 s"), "{detail}");
    assert!(detail.contains("req-7b4c1f58"), "{detail}");
    assert!(!r.body.contains("connection refused"), "{}", r.body);
    // ...which the log has, under the same request id.
    let line = log
        .lines()
        .find(|l| l.contains("gift not published"))
        .unwrap_or_else(|| panic!("no error line in {log}"));
    assert!(line.contains("req-7b4c1f58"), "{line}");
    assert!(line.contains("connection refused"), "{line}");

    // A broker that never answers: the function's deadline bounds the wait. Without an AWS
    // request id (a local run) the body still carries one, the log's.
    let p = publisher(Mode::Hang);
    let (r, log) =
        logged(p.respond(&post(good, &[]), Deadline::after(Duration::from_millis(50)))).await;
    assert_eq!(r.status_code, 503);
    let id = r.body_json()["request_id"].as_str().unwrap().to_owned();
    assert!(!r.body.contains("deadline"), "{}", r.body);
    assert!(log.contains(&id) && log.contains("deadline"), "{log}");

    let p = publisher(Mode::TooLarge);
    let r = send(&p, &post(good, &[])).await;
    assert_eq!(r.status_code, 413);
    assert!(!r.body.contains("MessageTooLarge"), "{}", r.body);
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
