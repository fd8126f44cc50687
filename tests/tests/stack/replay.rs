//! `kl dead-letters`: listing past the API's row limit, and replays against the real stack: a
//! gift dead-lettered under a wrong setting is stored once after the fix and its row marked; a
//! record still bad stays dead-lettered once; an environment fault marks rows failed; page dead
//! letters with a newer page version are superseded, never sent.

use std::time::Duration;

use esm_local::invoke::FunctionSpec;
use event_decoding::KafkaRecord;
use integration_tests::command::stdout_of;
use integration_tests::esm::function_binary;
use integration_tests::fixtures::gifts::{handler_with, invoke};
use integration_tests::stack::{StackEnv, lit, unique};
use kl::letters::{DeadLetters, ReplayOutcome, Selection};
use kl::replay::{PageCheck, ReplaySettings, replay};
use kl::target::Target;
use lambda_kit::bulk::WriteLimits;
use lambda_kit::dead_letter::{DeadLetter, DeadLetterSink, PostgrestDeadLetters, ValueEncoding};
use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, Secret};
use lambda_kit::retry::Deadline;

fn client(env: &StackEnv) -> PostgrestClient {
    PostgrestClient::new(PostgrestConfig::new(
        env.rest_url.clone(),
        Secret::new(env.service_key.clone()),
    ))
    .unwrap()
}

fn settings() -> ReplaySettings {
    ReplaySettings {
        batch_size: 100,
        include_resolved: false,
        dry_run: false,
        pages: None,
    }
}

/// The gift-persister binary with `env` on top of the test's own environment (the stack's).
fn gift_binary(env: &[(&str, &str)]) -> Target {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.push(("AWS_LAMBDA_LOG_LEVEL".into(), "error".into()));
    env.push(("METRICS_ENABLED".into(), "false".into()));
    Target::local(FunctionSpec {
        path: function_binary("gift-persister"),
        env,
        name: "gift-persister".into(),
        timeout: Duration::from_secs(30),
        memory_mb: 256,
    })
}

/// `offset|error_code|replay_outcome|last_error_code|replayed (0/1)` of the topic's gift dead letters.
fn letter_rows(env: &StackEnv, topic: &str) -> String {
    env.sql(&format!(
        "select string_agg(concat_ws('|', kafka_offset, error_code, coalesce(replay_outcome, '-'), \
         coalesce(last_error_code, '-'), (replayed_at is not null)::int), ',' order by kafka_offset) \
         from dead_letters where function_name = 'gift-persister' and topic = {}",
        lit(topic)
    ))
}

#[tokio::test]
async fn replay_after_the_fix_stores_once_and_marks_each_dead_letter() {
    let Some(env) = StackEnv::get_or_skip("replay_gifts") else {
        return;
    };
    let topic = unique("kl_replay");
    let gift = |i: i64, answer: &str| {
        // A gift's id is its content hash unless it names one: unique per run.
        serde_json::json!({"page_id": i, "question": format!("Q{i}"), "answer": answer, "ts": 1_732_350_000 + i, "event_id": format!("{topic}-{i}")})
            .to_string()
    };
    // Offset 0 fits the wrong limit; 1 does not (too_long); 2 is not JSON whatever the limit.
    let batch = event_decoding::KafkaBatch::builder(event_decoding::EventSource::SelfManaged)
        .records([
            KafkaRecord::new(topic.as_str(), 0, 0, 0).with_value(gift(0, "short")),
            KafkaRecord::new(topic.as_str(), 0, 1, 1_732_350_000_321)
                .with_key(b"user-1")
                .with_value(gift(1, "an answer longer than the limit"))
                .with_header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            KafkaRecord::new(topic.as_str(), 0, 2, 0).with_value("{not json"),
        ])
        .build();
    let (h, _) = handler_with(
        &env.rest_url,
        &env.service_key,
        Duration::from_secs(30),
        &[("GIFT_MAX_TEXT_CHARS", "12")],
    )
    .await;
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let vault = || {
        env.count(&format!(
            "select count(*) from vault where kafka_topic = {}",
            lit(&topic)
        ))
    };
    assert_eq!(vault(), 1);
    assert_eq!(
        letter_rows(&env, &topic),
        "1|too_long|-|-|0,2|invalid_json|-|-|0"
    );

    let letters = DeadLetters::new(client(&env), "dead_letters");
    let selection = Selection {
        function: Some("gift-persister".into()),
        topic: Some(topic.clone()),
        ..Selection::default()
    };
    let listed = letters.list(&selection).await.unwrap();
    assert_eq!(listed.len(), 2);
    let headers = listed[0].record_headers.as_ref().unwrap();
    assert_eq!(headers[0].name, "traceparent");
    // The record's own timestamp and the key's encoding are stored with it.
    assert_eq!(listed[0].kafka_timestamp, Some(1_732_350_000_321));
    assert_eq!(listed[0].key_encoding, Some(ValueEncoding::Utf8));
    assert_eq!(listed[1].key_encoding, None);

    // The environment broken (API unreachable): rows are failed, nothing is stored or doubled.
    let mut broken = gift_binary(&[
        ("SUPABASE_REST_URL", "http://127.0.0.1:9/rest/v1"),
        ("RETRY_MAX_ATTEMPTS", "1"),
        ("HTTP_CONNECT_TIMEOUT_MS", "200"),
    ]);
    let s = replay(
        &letters,
        &client(&env),
        &selection,
        &mut broken,
        &settings(),
    )
    .await
    .unwrap();
    assert_eq!((s.selected, s.invocations), (2, 1));
    assert_eq!(s.count(ReplayOutcome::Failed), 2, "{s:?}");
    assert_eq!(
        letter_rows(&env, &topic),
        "1|too_long|failed|-|1,2|invalid_json|failed|-|1"
    );
    assert_eq!(vault(), 1);

    // The fix: the default limit. The long answer is stored, the broken JSON is refused again.
    let mut fixed = gift_binary(&[]);
    let s = replay(&letters, &client(&env), &selection, &mut fixed, &settings())
        .await
        .unwrap();
    assert_eq!(s.count(ReplayOutcome::Stored), 1, "{s:?}");
    assert_eq!(s.count(ReplayOutcome::DeadLettered), 1, "{s:?}");
    assert_eq!(vault(), 2);
    assert_eq!(
        env.count(&format!(
            "select count(*) from vault where kafka_topic = {} and kafka_offset = 1 and answer = 'an answer longer than the limit'",
            lit(&topic)
        )),
        1
    );
    assert_eq!(
        letter_rows(&env, &topic),
        "1|too_long|stored|-|1,2|invalid_json|dead_lettered|invalid_json|1"
    );

    // Again: the stored row is settled and left alone; the bad one is refused once more and
    // still has one row; nothing is stored twice.
    let s = replay(&letters, &client(&env), &selection, &mut fixed, &settings())
        .await
        .unwrap();
    assert_eq!((s.selected, s.already_resolved), (2, 1));
    assert_eq!(s.count(ReplayOutcome::DeadLettered), 1, "{s:?}");
    assert_eq!(vault(), 2);
    assert_eq!(env.dead_letter_count(&topic), 2);
}

#[tokio::test]
async fn list_reads_past_the_api_row_limit_and_counts_by_code() {
    let Some(env) = StackEnv::get_or_skip("replay_list") else {
        return;
    };
    let function = unique("kl_list");
    env.sql(&format!(
        "insert into dead_letters (function_name, topic, kafka_partition, kafka_offset, raw_value, \
         value_encoding, error_code, error_message) \
         select {f}, 't', 0, g, 'x', 'utf8', case when g % 3 = 0 then 'invalid_json' else 'too_long' end, 'm' \
         from generate_series(1, 1005) g",
        f = lit(&function)
    ));
    let letters = DeadLetters::new(client(&env), "dead_letters");
    let mut selection = Selection {
        function: Some(function.clone()),
        ..Selection::default()
    };
    let rows = letters.list(&selection).await.unwrap();
    assert_eq!(rows.len(), 1005);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        kl::letters::counts_by_code(&rows),
        [
            ("too_long".to_owned(), 670),
            ("invalid_json".to_owned(), 335)
        ]
    );
    // The command line, with the stack's settings from the environment.
    let out = stdout_of(
        std::process::Command::new(function_binary("kl"))
            .args(["dead-letters", "list", "--counts", "--function", &function])
            .env("KL_LOG", "error"),
    );
    assert_eq!(
        out,
        "1005 dead letter(s)\n       670  too_long\n       335  invalid_json\n"
    );
    selection.error_code = Some("invalid_json".into());
    assert_eq!(letters.list(&selection).await.unwrap().len(), 335);
    selection.since = Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    assert!(letters.list(&selection).await.unwrap().is_empty());
    env.sql(&format!(
        "delete from dead_letters where function_name = {}",
        lit(&function)
    ));
}

#[tokio::test]
async fn page_dead_letters_with_a_newer_page_version_are_superseded_not_sent() {
    let Some(env) = StackEnv::get_or_skip("replay_pages") else {
        return;
    };
    let topic = unique("kl_pages");
    let page = |n: &str| format!("{topic}-{n}");
    let debezium = |id: &str, lsn: u64| {
        serde_json::json!({"op": "u", "before": null, "after": {"page_id": id, "body": 5},
            "source": {"connector": "postgresql", "lsn": lsn, "ts_ms": 1}, "ts_ms": 2})
        .to_string()
    };
    let records = [
        // Stored version lsn 200: older -> superseded; newer -> sent.
        KafkaRecord::new(topic.as_str(), 0, 1, 0).with_value(debezium(&page("a"), 100)),
        KafkaRecord::new(topic.as_str(), 0, 2, 0).with_value(debezium(&page("b"), 300)),
        // A plain row: no version; the page's state was written after it was dead-lettered.
        KafkaRecord::new(topic.as_str(), 0, 3, 0)
            .with_value(serde_json::json!({"page_id": page("c"), "body": 5}).to_string()),
        // A page with no state at all: sent.
        KafkaRecord::new(topic.as_str(), 0, 4, 0)
            .with_value(serde_json::json!({"page_id": page("d"), "body": 5}).to_string()),
    ];
    let function = unique("kl_pe");
    let letters: Vec<DeadLetter> = records
        .iter()
        .map(|r| DeadLetter::new(&function, r, "invalid_body", "body: expected a string"))
        .collect();
    let sink = PostgrestDeadLetters::new(client(&env), "dead_letters", WriteLimits::default());
    let fates = sink
        .write(&Deadline::after(Duration::from_secs(10)), &letters)
        .await;
    assert_eq!(fates.len(), 4);
    env.sql(&format!(
        "insert into page_state (page_id, version, deleted) values ({a}, 'lsn:00000000000000000200', false), \
         ({b}, 'lsn:00000000000000000200', false), ({c}, null, false)",
        a = lit(&page("a")),
        b = lit(&page("b")),
        c = lit(&page("c"))
    ));
    let dl = DeadLetters::new(client(&env), "dead_letters");
    let selection = Selection {
        function: Some(function.clone()),
        ..Selection::default()
    };
    let pages = ReplaySettings {
        pages: Some(PageCheck {
            page_id_field: "page_id".into(),
            state_table: "page_state".into(),
        }),
        ..settings()
    };
    // Never started: only superseded rows are in the real run below.
    let mut nowhere = Target::local(FunctionSpec {
        path: "/nonexistent/page-embedder".into(),
        env: vec![],
        name: function.clone(),
        timeout: Duration::from_secs(5),
        memory_mb: 128,
    });
    let dry = ReplaySettings {
        dry_run: true,
        ..pages.clone()
    };
    let s = replay(&dl, &client(&env), &selection, &mut nowhere, &dry)
        .await
        .unwrap();
    assert_eq!(s.count(ReplayOutcome::Superseded), 2, "{s:?}");
    assert_eq!(s.count(ReplayOutcome::Stored), 2, "would be sent: {s:?}");
    assert_eq!(s.invocations, 0);
    let marked = || {
        env.sql(&format!(
            "select string_agg(kafka_offset || ':' || coalesce(replay_outcome, '-'), ',' order by kafka_offset) \
             from dead_letters where function_name = {}",
            lit(&function)
        ))
    };
    assert_eq!(marked(), "1:-,2:-,3:-,4:-", "a dry run marks nothing");

    let only_superseded = Selection {
        ids: dl
            .list(&selection)
            .await
            .unwrap()
            .iter()
            .filter(|r| matches!(r.kafka_offset, Some(1 | 3)))
            .map(|r| r.id)
            .collect(),
        ..selection.clone()
    };
    let s = replay(&dl, &client(&env), &only_superseded, &mut nowhere, &pages)
        .await
        .unwrap();
    assert_eq!((s.count(ReplayOutcome::Superseded), s.invocations), (2, 0));
    assert_eq!(marked(), "1:superseded,2:-,3:superseded,4:-");

    // Sending the rest needs the function: a binary that cannot start stops the replay with an
    // error naming it, and leaves those rows unmarked.
    let err = replay(&dl, &client(&env), &selection, &mut nowhere, &pages)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/page-embedder"),
        "{err}"
    );
    assert_eq!(marked(), "1:superseded,2:-,3:superseded,4:-");
    env.sql(&format!(
        "delete from dead_letters where function_name = {f}; delete from page_state where page_id like {p}",
        f = lit(&function),
        p = lit(&format!("{topic}-%"))
    ));
}

/// A Lambda client for the local Invoke API (static test credentials: requests are still signed).
fn lambda_client(endpoint: &str) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::Config::builder()
        .endpoint_url(endpoint)
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "AKIDKLTEST",
            "kl-test-secret",
            None,
            None,
            "kl-test",
        ))
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

#[tokio::test]
async fn replay_through_the_lambda_invoke_api() {
    let Some(env) = StackEnv::get_or_skip("replay_aws") else {
        return;
    };
    let topic = unique("kl_aws");
    let long = serde_json::json!({"page_id": 1, "question": format!("Q {topic}"), "answer": "longer than twelve", "ts": 1_732_350_000});
    let batch = event_decoding::KafkaBatch::builder(event_decoding::EventSource::Msk)
        .records([KafkaRecord::new(topic.as_str(), 2, 7, 0).with_value(long.to_string())])
        .build();
    let (h, _) = handler_with(
        &env.rest_url,
        &env.service_key,
        Duration::from_secs(30),
        &[("GIFT_MAX_TEXT_CHARS", "12")],
    )
    .await;
    assert!(
        invoke(&h, &batch)
            .await
            .unwrap()
            .batch_item_failures
            .is_empty()
    );
    let letters = DeadLetters::new(client(&env), "dead_letters");
    let selection = Selection {
        function: Some("gift-persister".into()),
        topic: Some(topic.clone()),
        ..Selection::default()
    };

    // A deployed function that cannot start (no Supabase URL): a function error fails the event.
    // The function behind a local Lambda Invoke API, with `function_env`; one replay through it,
    // and the server (its recorded calls).
    let replay_via_invoke = |function_env: Vec<(String, String)>| {
        let (letters, env, selection) = (&letters, &env, &selection);
        async move {
            let lambda = integration_tests::servers::lambda_invoke::LambdaInvokeServer::start(
                FunctionSpec {
                    path: function_binary("gift-persister"),
                    env: function_env,
                    name: "gift-persister".into(),
                    timeout: Duration::from_secs(30),
                    memory_mb: 256,
                },
            )
            .await;
            let mut target =
                Target::aws_with(lambda_client(&lambda.server.url()), "gift-persister");
            let s = replay(letters, &client(env), selection, &mut target, &settings())
                .await
                .unwrap();
            (s, lambda)
        }
    };
    let (s, _) = replay_via_invoke(vec![
        ("SUPABASE_REST_URL".into(), "not a url".into()),
        ("AWS_LAMBDA_LOG_LEVEL".into(), "off".into()),
    ])
    .await;
    assert_eq!(s.count(ReplayOutcome::Failed), 1, "{s:?}");

    let (s, fixed) = replay_via_invoke(vec![
        ("AWS_LAMBDA_LOG_LEVEL".into(), "error".into()),
        ("METRICS_ENABLED".into(), "false".into()),
    ])
    .await;
    assert_eq!(
        (s.count(ReplayOutcome::Stored), s.invocations),
        (1, 1),
        "{s:?}"
    );
    let calls = fixed.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].0,
        "/2015-03-31/functions/gift-persister/invocations"
    );
    assert!(
        calls[0]
            .1
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDKLTEST/"),
        "{}",
        calls[0].1
    );
    assert_eq!(
        env.count(&format!(
            "select count(*) from vault where kafka_topic = {} and kafka_partition = 2 and kafka_offset = 7",
            lit(&topic)
        )),
        1
    );
    assert_eq!(letter_rows(&env, &topic), "7|too_long|stored|-|1");
}

#[tokio::test]
async fn failures_replay_reads_sqs_offsets_back_from_kafka_and_sends_s3_payloads() {
    let Some(env) = StackEnv::get_or_skip("failures_replay") else {
        return;
    };
    let Some(kafka) = integration_tests::esm::kafka_or_skip("failures_replay") else {
        return;
    };
    use esm_local::kafka::TopicPartition;
    use kl::failures::{fetch_range, parse_input, replay_failures};

    let topic = unique("kl_fail");
    let mut client = integration_tests::esm::create_topic(&kafka, &topic, 2).await;
    let gifts: Vec<(Option<String>, Vec<u8>)> = (0..4)
        .map(|i| {
            let v = serde_json::json!({"page_id": i, "question": format!("Q{i}"), "answer": "A", "ts": 1_732_350_000 + i, "event_id": format!("{topic}-{i}")});
            (Some(format!("user-{i}")), v.to_string().into_bytes())
        })
        .collect();
    integration_tests::esm::publish(&mut client, &topic, 1, &gifts).await;

    // SQS: metadata only, offsets 1..=2 of partition 1 (the AWS-documented shape, offsets as text).
    let sqs = serde_json::json!({
        "requestContext": {"requestId": "r1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:gift",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2026-11-29T10:00:00.000Z",
        "KafkaBatchInfo": {"batchSize": 2, "bootstrapServers": "b:9092", "payloadSize": 600,
            "recordsInfo": {format!("{topic}-1"): {"firstRecordOffset": "1", "lastRecordOffset": "2",
                "firstRecordTimestamp": "2026-11-29T09:59:00.000Z", "lastRecordTimestamp": "2026-11-29T09:59:01.000Z"}}}
    });
    // S3: the same metadata plus the invocation payload as a JSON string (offset 3).
    let tp = TopicPartition::new(topic.clone(), 1);
    let record3 = fetch_range(&mut client, &tp, 3, 3).await.unwrap();
    assert_eq!(record3.len(), 1);
    let mut event = esm_local::payload::EventBuilder::new("b:9092");
    assert!(event.try_push(&tp, &record3[0]));
    let mut s3 = sqs.clone();
    s3["KafkaBatchInfo"]["batchSize"] = 1.into();
    s3["payload"] = String::from_utf8(event.build()).unwrap().into();
    // As `aws sqs receive-message` prints it, then an S3 object's text.
    let received = serde_json::json!({"Messages": [{"MessageId": "m1", "Body": sqs.to_string()}]});
    let mut batches = parse_input(&received.to_string()).unwrap();
    batches.extend(parse_input(&s3.to_string()).unwrap());

    let vault = |offsets: &str| {
        env.sql(&format!(
            "select coalesce(string_agg(kafka_offset::text, ',' order by kafka_offset), '') from vault \
             where kafka_topic = {} and kafka_partition = 1 and kafka_offset in ({offsets})",
            lit(&topic)
        ))
    };
    let mut target = gift_binary(&[]);
    let s = replay_failures(&batches, Some(&kafka), &mut target, 100)
        .await
        .unwrap();
    assert_eq!(
        (s.discarded_batches, s.records_sent, s.records_failed),
        (2, 3, 0),
        "{s:?}"
    );
    assert!(s.missing.is_empty(), "{s:?}");
    assert_eq!(vault("0,1,2,3"), "1,2,3", "offset 0 was never discarded");

    // Offsets Kafka does not have (retention): reported, nothing sent.
    let mut gone = sqs.clone();
    gone["KafkaBatchInfo"]["recordsInfo"] = serde_json::json!({format!("{topic}-0"): {"firstRecordOffset": "100", "lastRecordOffset": "101"}});
    let s = replay_failures(
        &parse_input(&gone.to_string()).unwrap(),
        Some(&kafka),
        &mut target,
        100,
    )
    .await
    .unwrap();
    assert_eq!(s.records_sent, 0);
    assert_eq!(s.missing, [format!("{topic}-0 100..=101: 2 missing")]);
}

/// The repeat trigger matches a dead letter without topic, partition or offset as the unique key
/// does (`nulls not distinct`): the second letter of such a record stamps the one row.
#[tokio::test]
async fn a_repeated_dead_letter_without_a_kafka_position_stamps_its_row() {
    let Some(env) = StackEnv::get_or_skip("dead_letter_repeat_nulls") else {
        return;
    };
    let function = lit(&unique("repeat-nulls"));
    let insert = |code: &str, message: &str| {
        env.sql(&format!(
            "insert into dead_letters (function_name, error_code, error_message) \
             values ({function}, {}, {}) on conflict do nothing",
            lit(code),
            lit(message)
        ))
    };
    insert("first", "refused");
    insert("again", "refused again");
    let row = env.sql(&format!(
        "select concat_ws('|', count(*), max(error_code), max(last_error_code), \
         max(last_error_message), bool_and(last_dead_lettered_at is not null)) \
         from dead_letters where function_name = {function}"
    ));
    assert_eq!(row, "1|first|again|refused again|t");
}
