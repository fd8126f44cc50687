//! Avro values end to end (issue 12): gifts encoded by fastavro (`scripts/avro-tool`, independent
//! of the decoder under test) with the Confluent wire prefix are published to the real broker,
//! `esm-local` drives the real `gift-persister` binary configured with `VALUE_FORMAT=avro` and a
//! Confluent-compatible registry (on loopback, with basic auth), and rows land in `vault`.
//! A body cut short is dead-lettered (`schema_mismatch`); a record whose writer schema the
//! registry does not have is redelivered, never dead-lettered, and stored once the schema is
//! registered. Without a registry, `AVRO_SCHEMA_FILE` reads plain Avro values.

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use integration_tests::esm::{
    Runner, create_topic, function_binary, kafka_or_skip, runner_config, wait_until,
};
use integration_tests::fixtures::encoded::{
    Scenario, assert_redelivered_not_dead_lettered, dead_letters, encode, gift_runner, repo,
    runner_dead_letter_file, runner_dead_letters, scenario, start_on_one_partition,
    start_with_an_unknown_schema, vault_count, wait_for_rows_and_a_dead_letter,
};
use integration_tests::fixtures::gifts::numbered_gifts;
use integration_tests::servers::schema_registry::SchemaRegistryServer;
use integration_tests::stack::{StackEnv, lit, unique};
use serde_json::json;

/// Values encoded by `scripts/avro-tool encode` (fastavro), behind the Confluent prefix of `id`.
fn fastavro(schema: &str, id: u32, values: &[serde_json::Value]) -> Vec<Vec<u8>> {
    let mut encoder = Command::new(repo().join("scripts/avro-tool"));
    encoder.args(["encode", schema, &id.to_string()]);
    encode(encoder, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_gifts_through_the_broker_with_a_schema_registry() {
    let Some(Scenario {
        kafka,
        stack,
        run,
        topic,
        dir,
    }) = scenario("avro_values", "avro")
    else {
        return;
    };

    let schema_path = repo().join("events/schemas/1-gift.avsc");
    let schema_text = std::fs::read_to_string(&schema_path).unwrap();
    let registry =
        SchemaRegistryServer::start([(1, schema_text.clone())], Some(("sr-key", "sr-s3cret")))
            .await;

    let n = 20;
    let gifts = numbered_gifts(
        &run,
        n,
        900,
        |i| format!("avro question {i} ü"),
        |i| format!("avro answer {i}"),
        |i| {
            Some(if i % 2 == 0 {
                json!(1_732_350_000.25)
            } else {
                json!(null)
            })
        },
    );
    let schema = schema_path.to_str().unwrap();
    let mut values = fastavro(schema, 1, &gifts);
    // Cut short: the body does not match its schema.
    let cut = fastavro(
        schema,
        1,
        &[json!({"event_id": format!("{run}-cut"), "page_id": 1,
                                            "question": "q", "answer": "a", "ts": null})],
    )
    .remove(0);
    values.push(cut[..cut.len() - 3].to_vec());
    // Written with schema 77, which the registry does not have yet.
    let late = fastavro(
        schema,
        77,
        &[json!({"event_id": format!("{run}-late"), "page_id": 1,
                                             "question": "late q", "answer": "late a", "ts": null})],
    );

    let cfg = gift_runner(
        &kafka,
        &stack,
        (&run, &topic, &dir),
        &[
            ("VALUE_FORMAT", "avro"),
            ("SCHEMA_REGISTRY_URL", &registry.url()),
            ("SCHEMA_REGISTRY_USERNAME", "sr-key"),
            ("SCHEMA_REGISTRY_PASSWORD", "sr-s3cret"),
            ("RETRY_MAX_ATTEMPTS", "2"),
        ],
    );
    // The gifts and the cut body; beside them the record of the unknown schema, redelivering
    // until it is registered.
    let runner = start_with_an_unknown_schema(&kafka, cfg, &topic, values, late).await;

    let count = |extra: &str| vault_count(&stack, &topic, extra);
    let dead = || dead_letters(&stack, &topic);
    wait_for_rows_and_a_dead_letter(&stack, &topic, n as i64).await;
    assert_eq!(dead(), format!("schema_mismatch@0:{n}"));
    // What was stored is what fastavro wrote.
    let like = lit(&format!("{run}-g%"));
    assert_eq!(
        count(&format!(
            "and event_id like {like} and question = 'avro question ' || (page_id - 900) || ' ü'
             and answer = 'avro answer ' || (page_id - 900)
             and (ts = to_timestamp(1732350000.25)) = (page_id % 2 = 0)"
        )),
        n as i64
    );
    // The record of schema 77: reported for redelivery, not dead-lettered.
    let late_id = format!("{run}-late");
    let dead_so_far = format!("schema_mismatch@0:{n}");
    assert_redelivered_not_dead_lettered(
        &runner,
        &stack,
        (&topic, &late_id),
        1,
        &dead_so_far,
        "schema",
    )
    .await;

    // Registered: the next delivery stores it.
    registry.add(77, schema_text);
    let late_stored = wait_until(Duration::from_secs(30), || {
        count(&format!("and event_id = {}", lit(&format!("{run}-late")))) == 1
    })
    .await;
    assert!(
        late_stored,
        "the record of schema 77 is stored once the registry has it"
    );
    runner.assert_running();
    runner.stop().await.expect("runner");
    assert_eq!(runner_dead_letters(&dir), 0);
    assert!(registry.requests() >= 2, "schemas 1 and 77 fetched");
}

/// Plain Avro gifts (fastavro, no prefix, no metadata) and no registry at all: gift-persister with
/// `AVRO_SCHEMA_FILE=events/schemas/1-gift.avsc` stores them, and one framed with the Confluent
/// prefix of schema 1 too (no registry to ask: the shipped schema reads it); a body cut short is
/// dead-lettered `schema_mismatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_avro_gifts_with_a_shipped_schema_file() {
    let Some(Scenario {
        kafka,
        stack,
        run,
        topic,
        dir,
    }) = scenario("avro_schema_file", "avrof")
    else {
        return;
    };

    let n = 6;
    let gifts = numbered_gifts(
        &run,
        n,
        800,
        |i| format!("shipped question {i}"),
        |i| format!("shipped answer {i}"),
        |i| {
            Some(if i % 2 == 0 {
                json!(1_732_350_000.25)
            } else {
                json!(null)
            })
        },
    );
    let schema_path = repo().join("events/schemas/1-gift.avsc");
    let schema = schema_path.to_str().unwrap();
    let mut encoder = Command::new(repo().join("scripts/avro-tool"));
    encoder.args(["encode", schema]);
    let mut values = encode(encoder, &gifts[..n - 1]);
    let cut = values[0].clone();
    values.extend(fastavro(schema, 1, &gifts[n - 1..]));
    values.push(cut[..cut.len() - 3].to_vec());

    let cfg = gift_runner(
        &kafka,
        &stack,
        (&run, &topic, &dir),
        &[("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", schema)],
    );
    let runner = start_on_one_partition(&kafka, cfg, &topic, values).await;

    let count = |extra: &str| vault_count(&stack, &topic, extra);
    wait_for_rows_and_a_dead_letter(&stack, &topic, n as i64).await;
    assert_eq!(
        dead_letters(&stack, &topic),
        format!("schema_mismatch@0:{n}")
    );
    let like = lit(&format!("{run}-g%"));
    assert_eq!(
        count(&format!(
            "and event_id like {like} and question = 'shipped question ' || (page_id - 800)
             and answer = 'shipped answer ' || (page_id - 800)
             and (ts = to_timestamp(1732350000.25)) = (page_id % 2 = 0)"
        )),
        n as i64
    );
    runner.assert_running();
    runner.stop().await.expect("runner");
    assert_eq!(runner_dead_letters(&dir), 0);
}

/// Debezium Avro page changes (key schema 2, envelope schema 3 of `events/schemas/`, written by
/// fastavro with the Confluent prefix) through the broker, `esm-local` and the real
/// `page-embedder` binary with `VALUE_FORMAT=avro`: the created-then-updated page is embedded with
/// its last body, the created-then-deleted page has no vectors, and the Json column does not
/// trouble anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_avro_pages_through_the_broker_are_embedded() {
    use integration_tests::servers::embedding::{Api, EmbeddingServer};
    const MODEL: &str = "avro-embed";
    const DIMS: usize = 768;

    let test = "avro_pages";
    let (Some(kafka), Some(stack)) = (kafka_or_skip(test), StackEnv::get_or_skip(test)) else {
        return;
    };
    let page_bin = function_binary("page-embedder");
    let run = unique("avrop").replace('_', "-");
    let topic = format!("{run}-pages");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();

    let schemas = repo().join("events/schemas");
    let key_schema = schemas.join("2-page-key.avsc");
    let env_schema = schemas.join("3-page-envelope.avsc");
    let registry = SchemaRegistryServer::start(
        [
            (2, std::fs::read_to_string(&key_schema).unwrap()),
            (3, std::fs::read_to_string(&env_schema).unwrap()),
        ],
        None,
    )
    .await;
    let embedder = EmbeddingServer::start(Api::Ollama, MODEL, DIMS).await;

    let (p1, p2) = (format!("{run}-p1"), format!("{run}-p2"));
    let source = |lsn: i64| {
        json!({"version": "2.7.3.Final", "connector": "postgresql", "name": "cdc",
               "ts_ms": 1_732_350_000_000i64, "db": "app", "schema": "public", "table": "pages",
               "lsn": lsn})
    };
    let row = |id: &str, body: &str| {
        json!({"page_id": id, "title": "t", "body": body, "meta": "{\"tags\":[\"a\"]}",
               "price": null, "updated_at": 1_732_350_000_123_456i64})
    };
    let envelopes = [
        json!({"before": null, "after": row(&p1, "first body of p1"), "source": source(100), "op": "c", "ts_ms": null}),
        json!({"before": null, "after": row(&p2, "body of p2"), "source": source(108), "op": "c", "ts_ms": null}),
        json!({"before": row(&p1, "first body of p1"), "after": row(&p1, "second body of p1"), "source": source(116), "op": "u", "ts_ms": null}),
        json!({"before": row(&p2, "body of p2"), "after": null, "source": source(124), "op": "d", "ts_ms": null}),
    ];
    let keys = [&p1, &p2, &p1, &p2].map(|id| json!({ "page_id": id }));
    let keys = fastavro(key_schema.to_str().unwrap(), 2, &keys);
    let values = fastavro(env_schema.to_str().unwrap(), 3, &envelopes);

    let env = vec![
        ("SUPABASE_REST_URL".to_owned(), stack.rest_url.clone()),
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            stack.service_key.clone(),
        ),
        ("EMBED_PROVIDER".to_owned(), "ollama".to_owned()),
        ("EMBED_BASE_URL".to_owned(), embedder.base_url()),
        ("EMBED_MODEL".to_owned(), MODEL.to_owned()),
        ("EMBED_DIM".to_owned(), DIMS.to_string()),
        ("VALUE_FORMAT".to_owned(), "avro".to_owned()),
        ("SCHEMA_REGISTRY_URL".to_owned(), registry.url()),
    ];
    let cfg = runner_config(
        &kafka,
        &topic,
        &format!("{run}-esm"),
        &page_bin,
        &format!("{run}-page-embedder"),
        env,
        runner_dead_letter_file(&dir),
    );
    let mut client = create_topic(&kafka, &topic, 1).await;
    // The records are binary: esm-local hands them to the function base64-encoded, as the ESM does.
    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> = keys.into_iter().map(Some).zip(values).collect();
    let produce: Vec<_> = records
        .into_iter()
        .map(|(k, v)| esm_local::kafka::ProduceRecord {
            key: k,
            value: Some(v),
            headers: vec![],
            timestamp_ms: integration_tests::esm::now_ms() as i64,
        })
        .collect();
    client
        .produce(
            &esm_local::kafka::TopicPartition::new(topic.clone(), 0),
            &produce,
        )
        .await
        .expect("produce");
    let runner = Runner::start(cfg);

    let vectors = |id: &str| -> String {
        stack.sql(&format!(
            "select count(*) || ':' || coalesce(string_agg(chunk_text, '|'), '')
               from page_vectors where page_id = {} and model = {}",
            lit(id),
            lit(MODEL)
        ))
    };
    let done = wait_until(Duration::from_secs(40), || {
        vectors(&p1) == "1:second body of p1" && runner.stats.records_processed.load(Relaxed) >= 4
    })
    .await;
    assert!(
        done,
        "p1: {} after {} records",
        vectors(&p1),
        runner.stats.records_processed.load(Relaxed)
    );
    assert_eq!(vectors(&p2), "0:", "p2 was deleted");
    assert_eq!(stack.dead_letter_count(&topic), 0);
    runner.assert_running();
    runner.stop().await.expect("runner");
    assert_eq!(runner_dead_letters(&dir), 0);
}
