//! The AWS Glue Schema Registry end to end (issue 12): the gift schema is registered in moto's
//! Glue by AWS's `aws-glue-schema-registry` Python package (`scripts/glue-tool`), gifts are
//! encoded by it in the Glue wire format (header version 3, compression byte 0 or 5 = zlib, the
//! 16-byte schema version id), published to the real broker, and `esm-local` drives the real
//! `gift-persister` binary configured with `VALUE_FORMAT=avro` and the registry's ARN as
//! `SCHEMA_REGISTRY_URL`: it resolves the version id with `GetSchemaVersion` and rows land in
//! `vault`. A body cut short is dead-lettered (`schema_mismatch`); a record of a schema version
//! the registry does not have (`EntityNotFoundException`) is redelivered, never dead-lettered.

use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::esm::kafka_or_skip;
use integration_tests::fixtures::encoded::{
    assert_redelivered_not_dead_lettered, dead_letters, encode, gift_runner, repo, run_names,
    runner_dead_letters, start_with_an_unknown_schema, vault_count,
    wait_for_rows_and_a_dead_letter,
};
use integration_tests::fixtures::gifts::numbered_gifts;
use integration_tests::stack::{StackEnv, lit};
use serde_json::json;

fn glue_tool(endpoint: &str) -> Command {
    let mut c = Command::new(repo().join("scripts/glue-tool"));
    c.env("AWS_ENDPOINT_URL_GLUE", endpoint);
    c
}

/// The registry every run registers its schemas in (one name per run): moto, like Glue, allows
/// an account only a few registries, so a registry per run fails once a long-lived emulator has
/// served ten runs (`ResourceNumberLimitExceededException`).
const REGISTRY: &str = "kl-tests";

/// Registers `schema` as `name` in `registry` (moto): the registry ARN and the version id.
fn register(endpoint: &str, registry: &str, name: &str, schema: &str) -> (String, String) {
    let out = glue_tool(endpoint)
        .args(["register", registry, name, schema])
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/glue-tool");
    assert!(out.status.success(), "scripts/glue-tool register failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let arn = lines.next().expect("registry ARN").to_owned();
    let id = lines.next().expect("schema version id").to_owned();
    (arn, id)
}

/// Values encoded by `scripts/glue-tool encode`: the Avro body behind the Glue header of
/// `version`, zlib-compressed when `zlib`.
fn glue_encode(
    endpoint: &str,
    schema: &str,
    version: &str,
    zlib: bool,
    values: &[serde_json::Value],
) -> Vec<Vec<u8>> {
    let mut encoder = glue_tool(endpoint);
    encoder.args(["encode", schema, version]);
    if zlib {
        encoder.arg("zlib");
    }
    encode(encoder, values)
}

/// moto's endpoint: `AWS_ENDPOINT_URL_GLUE`, else the Secrets Manager one `scripts/local-stack
/// env` exports (moto serves every service on one port).
fn moto_or_skip(test: &str) -> Option<String> {
    let url = std::env::var("AWS_ENDPOINT_URL_GLUE")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER"))
        .ok();
    if url.is_none() {
        eprintln!(
            "\n!!!! SKIPPED {test}: AWS_ENDPOINT_URL_GLUE / AWS_ENDPOINT_URL_SECRETS_MANAGER (scripts/local-stack env) is not set !!!!\n"
        );
    }
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_framed_avro_gifts_through_the_broker() {
    let test = "glue_values";
    let (Some(kafka), Some(stack), Some(moto)) = (
        kafka_or_skip(test),
        StackEnv::get_or_skip(test),
        moto_or_skip(test),
    ) else {
        return;
    };
    let (run, topic, dir) = run_names("glue");

    let schema_path = repo().join("events/schemas/1-gift.avsc");
    let schema = schema_path.to_str().unwrap();
    let (arn, version) = register(&moto, REGISTRY, &format!("{run}-gift-value"), schema);
    assert!(
        arn.starts_with("arn:aws:glue:") && arn.ends_with(&format!(":registry/{REGISTRY}")),
        "{arn}"
    );

    let n = 20;
    let gifts = numbered_gifts(
        &run,
        n,
        900,
        |i| format!("glue question {i} ü"),
        |i| {
            format!(
                "glue answer {i}{}",
                "!".repeat(if i % 4 == 0 { 400 } else { 0 })
            )
        },
        |i| {
            Some(if i % 2 == 0 {
                json!(1_732_350_000.25)
            } else {
                json!(null)
            })
        },
    );
    // Half of them zlib-compressed, as a producer with compression enabled writes them.
    let (plain, zlib) = gifts.split_at(n / 2);
    let mut values = glue_encode(&moto, schema, &version, false, plain);
    let compressed = glue_encode(&moto, schema, &version, true, zlib);
    assert!(compressed.iter().all(|v| v[..2] == [3, 5]));
    assert!(values.iter().all(|v| v[..2] == [3, 0]));
    values.extend(compressed);
    // Cut short: the body does not match its schema.
    let cut = glue_encode(
        &moto,
        schema,
        &version,
        false,
        &[json!({"event_id": format!("{run}-cut"), "page_id": 1, "question": "q", "answer": "a", "ts": null})],
    )
    .remove(0);
    values.push(cut[..cut.len() - 3].to_vec());
    // Written with a schema version id the registry does not have.
    let late = glue_encode(
        &moto,
        schema,
        "7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8",
        true,
        &[
            json!({"event_id": format!("{run}-late"), "page_id": 1, "question": "late q", "answer": "late a", "ts": null}),
        ],
    );

    let cfg = gift_runner(
        &kafka,
        &stack,
        (&run, &topic, &dir),
        &[
            ("VALUE_FORMAT", "avro"),
            ("SCHEMA_REGISTRY_URL", &arn),
            ("AWS_ENDPOINT_URL_GLUE", &moto),
            ("RETRY_MAX_ATTEMPTS", "2"),
        ],
    );
    // The gifts and the cut body; beside them the unknown version's record.
    let runner = start_with_an_unknown_schema(&kafka, cfg, &topic, values, late).await;

    let count = |extra: &str| vault_count(&stack, &topic, extra);
    wait_for_rows_and_a_dead_letter(&stack, &topic, n as i64).await;
    assert_eq!(
        dead_letters(&stack, &topic),
        format!("schema_mismatch@0:{n}")
    );
    // What was stored is what the Python serializer wrote, compressed or not.
    let like = lit(&format!("{run}-g%"));
    assert_eq!(
        count(&format!(
            "and event_id like {like} and question = 'glue question ' || (page_id - 900) || ' ü'
             and answer = 'glue answer ' || (page_id - 900) || repeat('!', case when page_id % 4 = 0 then 400 else 0 end)
             and (ts = to_timestamp(1732350000.25)) = (page_id % 2 = 0)"
        )),
        n as i64
    );
    // The unknown version's record: reported for redelivery, not dead-lettered, not stored.
    let late_id = format!("{run}-late");
    let dead_so_far = format!("schema_mismatch@0:{n}");
    assert_redelivered_not_dead_lettered(
        &runner,
        &stack,
        (&topic, &late_id),
        2,
        &dead_so_far,
        "schema version",
    )
    .await;
    runner.assert_running();
    runner.stop().await.expect("runner");
    assert_eq!(
        runner_dead_letters(&dir),
        0,
        "esm-local gave up on no record"
    );
}

/// An event source mapping with a Glue registry and `EventRecordFormat: SOURCE`, Protobuf: the
/// Glue header is gone, `valueSchemaMetadata.schemaId` names the schema version, and the body
/// still starts with Glue's message index (an unsigned varint over the `.proto`'s message types in
/// the order of their full names, as `events/gift-protobuf-glue-source.json` has it from AWS's
/// package). `events/schemas/gift.proto` is registered in moto's Glue by AWS's package, the
/// bodies are written by Google's protobuf runtime (`scripts/proto-tool`), and the real
/// `gift-persister` binary (`VALUE_FORMAT=protobuf`, the registry's ARN) is invoked with the
/// batch through esm-local's Runtime API: index 0 (`vault.Gift`) and index 1 (`vault.TaggedGift`,
/// the byte Confluent's zigzag array reads as "-1 message indexes") are stored; index 4 names no
/// message and is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_source_protobuf_gifts_are_stored() {
    use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeOutcome};
    use event_decoding::{EventSource, KafkaBatch, KafkaRecord, SchemaMetadata};
    use integration_tests::esm::function_binary;

    let test = "glue_source_protobuf";
    let (Some(stack), Some(moto)) = (StackEnv::get_or_skip(test), moto_or_skip(test)) else {
        return;
    };
    let (run, topic, _dir) = run_names("gluesrc");
    let proto = repo().join("events/schemas/gift.proto");
    let (arn, version) = register(
        &moto,
        REGISTRY,
        &format!("{run}-gift-value"),
        proto.to_str().unwrap(),
    );

    let body = |message: &str, value: serde_json::Value| {
        let mut encoder = Command::new(repo().join("scripts/proto-tool"));
        encoder.arg("encode").arg(&proto).arg(message);
        encode(encoder, &[value]).remove(0)
    };
    let gift = json!({"event_id": format!("{run}-g0"), "page_id": 910,
                      "question": "glue source question 0", "answer": "glue source answer 0",
                      "ts": "2024-11-23T08:20:00.250Z"});
    let tagged = json!({"event_id": format!("{run}-g1"), "page_id": 911,
                        "question": "glue source question 1", "answer": "glue source answer 1",
                        "kind": "RIDDLE", "labels": {"lang": "fr"}});
    // Glue's message index, then the message: vault.Gift 0, vault.TaggedGift 1; 4 names none.
    let values = [
        [vec![0], body("vault.Gift", gift.clone())].concat(),
        [vec![1], body("vault.TaggedGift", tagged)].concat(),
        [vec![4], body("vault.Gift", gift)].concat(),
    ];
    let records = values.into_iter().enumerate().map(|(offset, v)| {
        KafkaRecord::new(topic.as_str(), 0, offset as i64, 1_732_350_000_000)
            .with_value(v)
            .with_value_schema_metadata(SchemaMetadata::new("PROTOBUF", version.as_str()))
    });
    let batch = KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build();

    let mut function = FunctionProcess::new(FunctionSpec {
        path: function_binary("gift-persister"),
        env: [
            ("SUPABASE_REST_URL", stack.rest_url.as_str()),
            ("SUPABASE_SERVICE_ROLE_KEY", stack.service_key.as_str()),
            ("VALUE_FORMAT", "protobuf"),
            ("SCHEMA_REGISTRY_URL", arn.as_str()),
            ("AWS_ENDPOINT_URL_GLUE", moto.as_str()),
            ("RETRY_MAX_ATTEMPTS", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        name: "gift-persister".into(),
        timeout: Duration::from_secs(30),
        memory_mb: 256,
    });
    let outcome = function
        .invoke(serde_json::to_vec(&batch).unwrap())
        .await
        .expect("gift-persister invocation");
    let InvokeOutcome::Response(response) = outcome else {
        panic!("gift-persister failed the batch: {outcome:?}");
    };
    let response: serde_json::Value = serde_json::from_slice(&response).unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([]),
        "nothing is redelivered"
    );
    assert_eq!(dead_letters(&stack, &topic), "schema_mismatch@0:2");
    let like = lit(&format!("{run}-g%"));
    assert_eq!(
        vault_count(
            &stack,
            &topic,
            &format!(
                "and event_id like {like} and question = 'glue source question ' || (page_id - 910)
                 and answer = 'glue source answer ' || (page_id - 910)"
            )
        ),
        2
    );
}
