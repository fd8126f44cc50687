//! Keys never reach logs or errors. Its own test binary: it captures logs
//! ([`integration_tests::logs`] says why that must not share a process with other tests).

// The function handlers nest deep futures (runner, PostgREST client, credential refresh).
#![recursion_limit = "256"]

use std::time::Duration;

use integration_tests::fixtures::gifts::{gifts, handler, invoke};
use integration_tests::logs::LogCapture;
use integration_tests::servers::fault_proxy::{Fault, FaultProxy};
use integration_tests::stack::{StackEnv, unique};

#[tokio::test]
async fn gift_secrets_never_appear_in_logs_or_errors() {
    let Some(env) = StackEnv::get_or_skip("gift_secrets_output") else {
        return;
    };
    let capture = LogCapture::start(tracing::Level::TRACE);

    let topic = unique("gift_secret");
    let batch = gifts(&topic, 3);
    let mut outputs = Vec::new();
    // The right key through a failing proxy, and a wrong key (401) straight to the API.
    let proxy = FaultProxy::start(&env.rest_url).await;
    proxy.push([Fault::Status(503, vec![]), Fault::Status(401, vec![])]);
    let (h, _) = handler(&proxy.url(), &env.service_key, Duration::from_secs(10)).await;
    outputs.push(format!("{:?}", invoke(&h, &batch).await));
    let wrong_key = format!("wrong-{}", unique("key"));
    let (bad, _) = handler(&env.rest_url, &wrong_key, Duration::from_secs(10)).await;
    let r = invoke(&bad, &batch).await;
    assert!(r.is_err(), "a bad key fails every record: {r:?}");
    outputs.push(format!("{r:?}"));
    outputs.push(format!("{:?}", bad));
    let logs = capture.text();
    assert!(
        logs.contains("batch processed") && logs.contains("gift-persister"),
        "the summary line is logged"
    );
    assert!(logs.contains("db_unauthorized"), "{logs}");
    for text in outputs.iter().chain([&logs]) {
        assert!(!text.contains(&env.service_key), "service key leaked");
        assert!(!text.contains(&wrong_key), "key leaked");
    }
    // Nothing was dead-lettered for the bad key.
    assert_eq!(env.dead_letter_count(&topic), 0);
}
