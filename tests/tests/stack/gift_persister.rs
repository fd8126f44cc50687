//! gift-persister against the real local stack: fixtures, redelivery, bad records, API down,
//! injected 5xx/429/slow responses, secrets kept out of output.

use std::time::{Duration, Instant};

use base64::Engine as _;
use event_decoding::{EventSource, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use integration_tests::fixtures::gifts::{gifts, handler, handler_with, invoke};
use integration_tests::servers::fault_proxy::{Fault, FaultProxy};
use integration_tests::stack::{StackEnv, lit, unique};

/// The fixture's records moved to `topic`, with valid gifts made unique to this run (question
/// and event_id suffixed) so parallel tests and reruns never share rows.
fn fixture_on(name: &str, topic: &str, source: EventSource) -> KafkaBatch {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let batch = KafkaBatch::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let records = batch.records().map(|r| {
        let mut out = KafkaRecord::new(topic, r.partition, r.offset, r.timestamp);
        if let Some(k) = r.raw_key() {
            out = out.with_raw_key(k);
        }
        let value = r.raw_value().map(str::to_owned);
        let rewritten = value
            .as_deref()
            .and_then(|v| b64.decode(v).ok())
            .and_then(|bytes| {
                let mut obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&bytes).ok()?;
                let q = obj.get("question")?.as_str()?.to_owned();
                if q.is_empty() || obj.get("answer")?.as_str()?.len() > 1000 {
                    return None;
                }
                obj.insert("question".into(), format!("{q} [{topic}]").into());
                if let Some(id) = obj
                    .get("event_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                {
                    obj.insert("event_id".into(), format!("{id}-{topic}").into());
                }
                Some(serde_json::to_vec(&obj).unwrap())
            });
        match (rewritten, value) {
            (Some(bytes), _) => out.with_value(bytes),
            (None, Some(raw)) => out.with_raw_value(raw),
            (None, None) => out,
        }
    });
    KafkaBatch::builder(source).records(records).build()
}

fn vault_count(env: &StackEnv, topic: &str) -> i64 {
    env.count(&format!(
        "select count(*) from vault where kafka_topic = {}",
        lit(topic)
    ))
}

fn failures(r: &KafkaBatchResponse) -> Vec<i64> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.offset)
        .collect()
}

#[tokio::test]
async fn gift_fixtures_msk_and_self_managed_stored_once_across_three_deliveries() {
    let Some(env) = StackEnv::get_or_skip("gift_fixtures") else {
        return;
    };
    for (name, source) in [
        ("gift-msk.json", EventSource::Msk),
        ("gift-self-managed.json", EventSource::SelfManaged),
    ] {
        let topic = unique("gift_fx");
        let batch = fixture_on(name, &topic, source);
        let (h, client) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
        for _ in 0..3 {
            let r = invoke(&h, &batch).await.unwrap();
            assert!(r.batch_item_failures.is_empty(), "{name}: {r:?}");
        }
        assert_eq!(vault_count(&env, &topic), 6, "{name}");
        // 6 rows in chunks of 4 = 2 requests per delivery.
        assert_eq!(client.requests_sent(), 6, "{name}");
        let row = env.sql(&format!(
            "select page_id, ts, kafka_partition, kafka_offset, answer from vault where kafka_topic = {} and kafka_offset = 100",
            lit(&topic)
        ));
        assert_eq!(row, "1|2024-11-23 08:20:00.123+00|0|100|TEST A", "{name}");
        let explicit = env.count(&format!(
            "select count(*) from vault where event_id = {}",
            lit(&format!("evt-8-{topic}"))
        ));
        assert_eq!(explicit, 1);
    }
}

/// Migration 20261207140000: a row's `raw` holds the event less what the columns hold verbatim,
/// and `public.vault_event` gives the event back as sent, in SQL and as the API's computed field
/// (PostgREST: a function taking the table's row type is selectable like a column).
#[tokio::test]
async fn raw_holds_the_rest_of_the_event_and_vault_event_rebuilds_it() {
    let Some(env) = StackEnv::get_or_skip("raw_rest") else {
        return;
    };
    let topic = unique("gift_rest");
    let event = serde_json::json!({
        "event_id": format!("{topic}-1"), "page_id": 5, "question": "Q ü?", "answer": "A 🎁",
        "ts": "2024-11-23T09:20:15+01:00", "sent_ms": 12, "note": null,
    });
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records([
            KafkaRecord::new(topic.as_str(), 0, 1, 1_732_350_000_000).with_value(event.to_string())
        ])
        .build();
    let (h, _) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let json = |q: &str| -> serde_json::Value { serde_json::from_str(&env.sql(q)).unwrap() };
    let raw = json(&format!(
        "select raw from vault where kafka_topic = {}",
        lit(&topic)
    ));
    assert_eq!(
        raw,
        serde_json::json!({"ts": "2024-11-23T09:20:15+01:00", "sent_ms": 12, "note": null})
    );
    let rebuilt = json(&format!(
        "select public.vault_event(v) from vault v where kafka_topic = {}",
        lit(&topic)
    ));
    assert_eq!(rebuilt, event);
    let api = env
        .api_get(&format!("/vault?select=vault_event&kafka_topic=eq.{topic}"))
        .await;
    assert_eq!(api, serde_json::json!([{"vault_event": event}]));
}

#[tokio::test]
async fn gift_bad_fixture_dead_letters_each_bad_record_and_stores_the_good() {
    let Some(env) = StackEnv::get_or_skip("gift_bad") else {
        return;
    };
    let topic = unique("gift_bad");
    let batch = fixture_on("gift-bad.json", &topic, EventSource::Msk);
    let (h, _) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
    for _ in 0..2 {
        let r = invoke(&h, &batch).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
    assert_eq!(
        env.sql(&format!("select string_agg(kafka_offset::text, ',' order by kafka_offset) from vault where kafka_topic = {}", lit(&topic))),
        "0,15"
    );
    let letters = env.sql(&format!(
        "select kafka_offset || ':' || error_code from dead_letters where topic = {} and function_name = 'gift-persister' order by kafka_offset",
        lit(&topic)
    ));
    let codes: Vec<&str> = letters.lines().collect();
    assert_eq!(codes.len(), 14, "{letters}");
    for expected in [
        "1:invalid_base64",
        "2:invalid_utf8",
        "3:invalid_json",
        "4:missing_value",
        "6:invalid_type",
        "8:page_id_out_of_range",
        "9:empty_field",
        "10:too_long",
        "11:missing_field",
        "12:invalid_timestamp",
        "14:not_an_object",
    ] {
        assert!(
            codes.contains(&expected),
            "{expected} missing from {letters}"
        );
    }
    // Raw bytes kept: text as is, invalid UTF-8 as the delivered base64.
    let raw3 = env.sql(&format!("select value_encoding || '|' || raw_value from dead_letters where topic = {} and kafka_offset = 3", lit(&topic)));
    assert_eq!(raw3, r#"utf8|{"page_id": 12, "question": "unterminated"#);
    let original = KafkaBatch::from_slice(
        &std::fs::read(format!(
            "{}/../events/gift-bad.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let delivered2 = original
        .records()
        .find(|r| r.offset == 2)
        .unwrap()
        .raw_value()
        .unwrap()
        .to_owned();
    let raw2 = env.sql(&format!("select value_encoding || '|' || raw_value from dead_letters where topic = {} and kafka_offset = 2", lit(&topic)));
    assert_eq!(raw2, format!("base64|{delivered2}"));
}

#[tokio::test]
async fn gift_row_rejected_by_the_database_is_isolated() {
    let Some(env) = StackEnv::get_or_skip("gift_db_reject") else {
        return;
    };
    let topic = unique("gift_rej");
    // A NUL character passes validation but PostgreSQL text refuses it (400 22P05).
    let mut records: Vec<KafkaRecord> = gifts(&topic, 9).records().cloned().collect();
    let bad = serde_json::json!({"page_id": 99, "question": "nul \u{0} inside", "answer": "A"});
    records.insert(
        5,
        KafkaRecord::new(topic.as_str(), 0, 100, 1_732_350_000_000).with_value(bad.to_string()),
    );
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build();
    let (h, _) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(vault_count(&env, &topic), 9);
    assert_eq!(
        env.sql(&format!(
            "select kafka_offset || ':' || error_code from dead_letters where topic = {}",
            lit(&topic)
        )),
        "100:db_bad_request"
    );
}

#[tokio::test]
async fn gift_api_down_reports_failure_then_redelivery_stores_everything_once() {
    let Some(env) = StackEnv::get_or_skip("gift_api_down") else {
        return;
    };
    let topic = unique("gift_down");
    let batch = gifts(&topic, 10);
    // A port with nothing listening.
    let port = integration_tests::unused_port();
    let (down, _) = handler(
        &format!("http://127.0.0.1:{port}"),
        &env.service_key,
        Duration::from_secs(2),
    )
    .await;
    let started = Instant::now();
    let err = invoke(&down, &batch).await.unwrap_err();
    assert!(err.contains("all 10 records failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stayed within the budget: {:?}",
        started.elapsed()
    );
    assert_eq!(vault_count(&env, &topic), 0);

    // Partially down: the first chunk meets only 503s (more than the retries), the second
    // passes: a partial batch response names exactly the first chunk's records. The proxy
    // answers requests in arrival order, so one chunk in flight at a time makes the first
    // chunk the one that meets them.
    let proxy = FaultProxy::start(&env.rest_url).await;
    proxy.push(std::iter::repeat_n(Fault::Status(503, vec![]), 5));
    let (partial, _) = handler_with(
        &proxy.url(),
        &env.service_key,
        Duration::from_secs(30),
        &[("WRITE_CONCURRENCY", "1")],
    )
    .await;
    let r = invoke(&partial, &batch).await.unwrap();
    assert_eq!(failures(&r).len(), 4, "{r:?}");
    assert_eq!(vault_count(&env, &topic), 6);

    // The same with the chunks side by side (the default): the 503s fall on whichever requests
    // arrive first, but every record is stored or reported, never both, never neither.
    let topic2 = unique("gift_down_concurrent");
    let batch2 = gifts(&topic2, 10);
    let proxy = FaultProxy::start(&env.rest_url).await;
    // 3 chunks of 5 attempts each: 14 503s exhaust the attempts of one chunk at least, of all
    // three never.
    proxy.push(std::iter::repeat_n(Fault::Status(503, vec![]), 14));
    let (concurrent, client) =
        handler(&proxy.url(), &env.service_key, Duration::from_secs(30)).await;
    let r = invoke(&concurrent, &batch2).await.unwrap();
    let failed = failures(&r);
    assert!(!failed.is_empty() && failed.len() < 10, "{r:?}");
    assert_eq!(
        failed.len() as i64 + vault_count(&env, &topic2),
        10,
        "{r:?}"
    );
    let stored: Vec<i64> = env
        .sql(&format!(
            "select kafka_offset from vault where kafka_topic = {} order by 1",
            lit(&topic2)
        ))
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(
        failed.iter().all(|o| !stored.contains(o)),
        "{failed:?} {stored:?}"
    );
    assert!(client.requests_sent() > 3, "retries of the refused chunks");
    let (up, _) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
    let r = invoke(&up, &batch2).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(vault_count(&env, &topic2), 10);

    let (up, _) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
    for _ in 0..2 {
        let r = invoke(&up, &batch).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
    assert_eq!(vault_count(&env, &topic), 10);
}

#[tokio::test]
async fn gift_5xx_429_and_slow_responses_are_retried_within_the_deadline() {
    let Some(env) = StackEnv::get_or_skip("gift_faults") else {
        return;
    };
    let topic = unique("gift_faults");
    let batch = gifts(&topic, 8);
    let proxy = FaultProxy::start(&env.rest_url).await;
    proxy.push([
        Fault::Status(503, vec![]),
        Fault::Status(429, vec![("retry-after", "1".into())]),
        Fault::Delay(Duration::from_millis(300)),
        Fault::Status(500, vec![]),
        Fault::Drop,
    ]);
    let (h, client) = handler(&proxy.url(), &env.service_key, Duration::from_secs(20)).await;
    let started = Instant::now();
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(vault_count(&env, &topic), 8);
    // 2 chunks + 4 injected failures (the delayed request succeeds once forwarded).
    assert_eq!(client.requests_sent(), 6);
    assert_eq!(proxy.requests(), 6);
    assert_eq!(proxy.forwarded(), 2);

    // A fault that outlasts the deadline: the invocation gives up in time, redelivery stores all.
    let topic = unique("gift_slow");
    let batch = gifts(&topic, 8);
    let proxy2 = FaultProxy::start(&env.rest_url).await;
    proxy2.push(std::iter::repeat_n(Fault::Status(503, vec![]), 100));
    let (h2, _) = handler(&proxy2.url(), &env.service_key, Duration::from_millis(1500)).await;
    let started = Instant::now();
    let err = invoke(&h2, &batch).await.unwrap_err();
    assert!(err.contains("all 8 records failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let (up, _) = handler(&env.rest_url, &env.service_key, Duration::from_secs(30)).await;
    assert!(
        invoke(&up, &batch)
            .await
            .unwrap()
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(vault_count(&env, &topic), 8);
}
