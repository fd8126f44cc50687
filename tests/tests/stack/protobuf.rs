//! Protobuf and JSON Schema values end to end (issue 12): gifts encoded by Google's Python
//! protobuf runtime (`scripts/proto-tool`, independent of the decoder under test) behind the
//! Confluent wire prefix with their message indexes (`[0]` for `vault.Gift`, `[1]` for
//! `vault.TaggedGift` of `events/schemas/gift.proto`), and gifts written as Confluent's JSON
//! Schema serializer writes them (prefix + JSON text), are published to the real broker;
//! `esm-local` drives the real `gift-persister` binary configured with `VALUE_FORMAT=protobuf`
//! and a loopback Confluent-compatible registry that answers each schema id with its
//! `schemaType`. Rows land in `vault`; a Protobuf body cut short is dead-lettered as
//! `schema_mismatch`. Without any registry, plain Protobuf bodies are decoded with a
//! `FileDescriptorSet` given in configuration.

use std::process::Command;

use integration_tests::fixtures::encoded::{
    Scenario, dead_letters, encode, gift_runner, repo, runner_dead_letters, scenario,
    start_on_one_partition, vault_count, wait_for_rows_and_a_dead_letter,
};
use integration_tests::fixtures::gifts::numbered_gifts;
use integration_tests::servers::schema_registry::{Registered, SchemaRegistryServer};
use integration_tests::stack::lit;
use serde_json::json;

/// Values of `message` encoded by `scripts/proto-tool encode`, behind the Confluent prefix of
/// `id` and the message's indexes; plain bodies without `id`.
fn protobuf(message: &str, id: Option<u32>, values: &[serde_json::Value]) -> Vec<Vec<u8>> {
    let mut encoder = Command::new(repo().join("scripts/proto-tool"));
    encoder.arg("encode");
    encoder.arg(repo().join("events/schemas/gift.proto"));
    encoder.arg(message);
    encoder.args(id.map(|i| i.to_string()));
    encode(encoder, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_and_json_schema_gifts_through_the_broker() {
    let Some(Scenario {
        kafka,
        stack,
        run,
        topic,
        dir,
    }) = scenario("protobuf_values", "proto")
    else {
        return;
    };

    let proto = std::fs::read_to_string(repo().join("events/schemas/gift.proto")).unwrap();
    let json_schema =
        std::fs::read_to_string(repo().join("events/schemas/gift.schema.json")).unwrap();
    let registry = SchemaRegistryServer::start([], Some(("sr-key", "sr-s3cret"))).await;
    registry.add_registered(11, Registered::new("PROTOBUF", proto));
    registry.add_registered(21, Registered::new("JSON", json_schema));

    let n = 12;
    let gifts = numbered_gifts(
        &run,
        n,
        900,
        |i| format!("proto question {i} ü"),
        |i| format!("proto answer {i}"),
        |i| (i % 2 == 0).then(|| json!("2024-11-23T08:20:00.250Z")),
    );
    let mut values = protobuf("vault.Gift", Some(11), &gifts);
    // Message indexes [1]: a TaggedGift, its extra fields kept in the row's raw JSON.
    values.extend(protobuf(
        "vault.TaggedGift",
        Some(11),
        &[json!({"event_id": format!("{run}-tagged"), "page_id": 950, "question": "tagged q",
                 "answer": "tagged a", "kind": "RIDDLE", "tags": ["x"], "views": 9_007_199_254_740_993_u64})],
    ));
    // JSON Schema: the prefix of schema 21, then the JSON text.
    let mut js = vec![0, 0, 0, 0, 21];
    js.extend_from_slice(
        json!({"event_id": format!("{run}-json"), "page_id": 960, "question": "json q",
               "answer": "json a", "ts": 1_732_350_000.25})
        .to_string()
        .as_bytes(),
    );
    values.push(js);
    // Cut short inside its last field (the tag of `answer` left without its length): the body
    // does not match its schema. (Cut at a field boundary, a Protobuf body is still a valid
    // message, only without the fields cut off; gift-persister would then refuse the gift.)
    let cut = protobuf(
        "vault.Gift",
        Some(11),
        &[json!({"event_id": format!("{run}-cut"), "page_id": 1, "question": "q", "answer": "a"})],
    )
    .remove(0);
    values.push(cut[..cut.len() - 2].to_vec());
    let total = values.len();

    let cfg = gift_runner(
        &kafka,
        &stack,
        (&run, &topic, &dir),
        &[
            ("VALUE_FORMAT", "protobuf"),
            ("SCHEMA_REGISTRY_URL", &registry.url()),
            ("SCHEMA_REGISTRY_USERNAME", "sr-key"),
            ("SCHEMA_REGISTRY_PASSWORD", "sr-s3cret"),
            ("RETRY_MAX_ATTEMPTS", "2"),
        ],
    );
    let runner = start_on_one_partition(&kafka, cfg, &topic, values).await;

    let count = |extra: &str| vault_count(&stack, &topic, extra);
    wait_for_rows_and_a_dead_letter(&stack, &topic, n as i64 + 2).await;
    assert_eq!(
        dead_letters(&stack, &topic),
        format!("schema_mismatch@0:{}", total - 1)
    );
    // What was stored is what Google's protobuf runtime wrote: text, the int64 page id, the
    // Timestamp where one was set (and none where not).
    let like = lit(&format!("{run}-g%"));
    assert_eq!(
        count(&format!(
            "and event_id like {like} and question = 'proto question ' || (page_id - 900) || ' ü'
             and answer = 'proto answer ' || (page_id - 900)
             and (ts = to_timestamp(1732350000.25)) = (page_id % 2 = 0)"
        )),
        n as i64
    );
    let raw = |id: &str, field: &str| -> String {
        stack.sql(&format!(
            // The event as stored: the columns and `raw` (migration 20261207140000).
            "select coalesce(public.vault_event(v)->>{}, '') from vault v where kafka_topic = {} and event_id = {}",
            lit(field),
            lit(&topic),
            lit(id)
        ))
    };
    let tagged = format!("{run}-tagged");
    assert_eq!(raw(&tagged, "kind"), "RIDDLE");
    assert_eq!(raw(&tagged, "views"), "9007199254740993");
    assert_eq!(raw(&format!("{run}-json"), "page_id"), "960");
    runner.assert_running();
    runner.stop().await.expect("runner");
    assert_eq!(runner_dead_letters(&dir), 0);
    assert_eq!(
        registry.requests(),
        2,
        "schemas 11 and 21 fetched once each"
    );
}

/// No registry at all: plain Protobuf gifts (no prefix, no metadata) decoded with the
/// `FileDescriptorSet` protoc wrote for `events/schemas/gift.proto` (`PROTOBUF_DESCRIPTOR_SET`,
/// `PROTOBUF_MESSAGE=vault.Gift`), the last one behind a Confluent prefix (schema 11, which no
/// registry serves: read with the descriptor set, not redelivered forever); a body cut inside a
/// field is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_protobuf_gifts_with_a_configured_descriptor_set() {
    let Some(Scenario {
        kafka,
        stack,
        run,
        topic,
        dir,
    }) = scenario("protobuf_plain", "protop")
    else {
        return;
    };

    let n = 6;
    let gifts = numbered_gifts(
        &run,
        n,
        700,
        |i| format!("plain question {i}"),
        |i| format!("plain answer {i}"),
        |_| Some(json!("2024-11-23T08:20:00.250Z")),
    );
    let mut values = protobuf("vault.Gift", None, &gifts[..n - 1]);
    values.extend(protobuf("vault.Gift", Some(11), &gifts[n - 1..]));
    let cut = values[0].clone();
    values.push(cut[..cut.len() - 2].to_vec());

    let descriptor = repo().join("events/schemas/gift.pb");
    let cfg = gift_runner(
        &kafka,
        &stack,
        (&run, &topic, &dir),
        &[
            ("VALUE_FORMAT", "protobuf"),
            ("PROTOBUF_DESCRIPTOR_SET", descriptor.to_str().unwrap()),
            ("PROTOBUF_MESSAGE", "vault.Gift"),
        ],
    );
    let runner = start_on_one_partition(&kafka, cfg, &topic, values).await;

    let count = |extra: &str| vault_count(&stack, &topic, extra);
    wait_for_rows_and_a_dead_letter(&stack, &topic, n as i64).await;
    assert_eq!(
        dead_letters(&stack, &topic),
        format!("schema_mismatch@0:{n}")
    );
    assert_eq!(
        count(
            "and question = 'plain question ' || (page_id - 700)
             and answer = 'plain answer ' || (page_id - 700) and ts = to_timestamp(1732350000.25)"
        ),
        n as i64
    );
    runner.assert_running();
    runner.stop().await.expect("runner");
}
