//! The real gift-persister binary through a Runtime API: its payload is decoded from the
//! invocation's bytes by lambda-kit's runtime layer, and a payload that is not a batch still
//! reaches `lambda_runtime`, which reports it as before.

use std::time::Duration;

use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeOutcome};
use event_decoding::{EventSource, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use integration_tests::esm::function_binary;
use integration_tests::stack::{StackEnv, lit, unique};

#[tokio::test]
async fn the_binary_decodes_batches_from_bytes_and_reports_payloads_that_are_not() {
    let Some(env) = StackEnv::get_or_skip("runtime_layer") else {
        return;
    };
    let topic = unique("rt_layer");
    let mut f = FunctionProcess::new(FunctionSpec {
        path: function_binary("gift-persister"),
        env: vec![
            ("AWS_LAMBDA_LOG_LEVEL".into(), "error".into()),
            ("METRICS_ENABLED".into(), "false".into()),
        ],
        name: "gift-persister".into(),
        timeout: Duration::from_secs(30),
        memory_mb: 256,
    });

    // A record without an offset: no batch. The invocation fails with the runtime's error,
    // which names the path, and the process stays up.
    let out = f
        .invoke(br#"{"records":{"t-0":[{"topic":"t","partition":0,"timestamp":1}]}}"#.to_vec())
        .await
        .unwrap();
    let InvokeOutcome::FunctionError(error) = out else {
        panic!("a payload without offsets was accepted: {out:?}")
    };
    assert!(
        error.contains("records.t-0[0]") && error.contains("offset"),
        "{error}"
    );

    // A batch as the ESM sends it: decoded from the bytes, stored.
    let gift = |i: i64| {
        serde_json::json!({"page_id": i, "question": format!("Q{i}"), "answer": "A", "ts": 1_732_350_000 + i, "event_id": format!("{topic}-{i}")})
            .to_string()
    };
    let batch =
        KafkaBatch::builder(EventSource::SelfManaged)
            .records((0..3).map(|i| {
                KafkaRecord::new(topic.as_str(), 0, i, 1_732_350_000_000).with_value(gift(i))
            }))
            .build();
    let out = f.invoke(serde_json::to_vec(&batch).unwrap()).await.unwrap();
    let InvokeOutcome::Response(bytes) = out else {
        panic!("the batch failed: {out:?}")
    };
    let response: KafkaBatchResponse = serde_json::from_slice(&bytes).unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        env.count(&format!(
            "select count(*) from vault where kafka_topic = {}",
            lit(&topic)
        )),
        3
    );
}
