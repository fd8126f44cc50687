//! Observability and configuration faults against the real local stack: the EMF line of a
//! page-embedder batch, and a vector dimension that does not match the table (`EMBED_DIM` 3
//! against `page_vectors.embedding vector(768)`): PostgREST answers pgvector's 400 and the
//! records must be reported failed, never dead-lettered. Tests print `SKIPPED` and return when
//! the stack's environment is absent (`scripts/test` sets it).

use std::time::Duration;

use integration_tests::fixtures::pages::{
    Setup, batch, dead_letters, handler, rows, stack, unique, upsert,
};
use integration_tests::servers::embedding::{Api, EmbeddingServer};
use lambda_kit::metrics::{Metrics, check_emf};
use lambda_kit::retry::Deadline;

#[tokio::test]
async fn wrong_embed_dim_fails_records_without_dead_letters() {
    let Some(client) = stack("wrong_embed_dim_fails_records_without_dead_letters") else {
        return;
    };
    // The provider and the function agree on 3 dimensions; the table holds vector(768).
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 3).await;
    let function_name = unique("dims");
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), function_name.clone());
    setup.dims = 3;
    let (metrics, lines) = Metrics::capture("KafkaLambdas", &function_name);
    let h = handler(&setup).await.with_metrics(metrics);
    let prefix = unique("dims");
    let ids = [format!("{prefix}-a"), format!("{prefix}-b")];
    let b = batch(vec![
        upsert(0, &ids[0], "First page."),
        upsert(1, &ids[1], "Second page."),
    ]);
    let handled = h
        .process(&b, &Deadline::after(Duration::from_secs(20)))
        .await;

    assert_eq!(handled.counts.failed, 2, "{:?}", handled.counts);
    assert_eq!(handled.counts.dead_lettered, 0);
    assert!(
        handled.response.is_err(),
        "every record failed: the whole batch is retried"
    );
    assert!(fake.request_count() >= 1, "the pages were embedded");
    assert!(rows(&client, &ids).await.is_empty());
    assert_eq!(dead_letters(&client, &function_name).await, vec![]);

    let doc = &lines.documents()[0];
    check_emf(doc).unwrap();
    assert_eq!(doc["FunctionName"], function_name.as_str());
    assert_eq!(doc["RecordsReceived"], 2);
    assert_eq!(doc["RecordsFailed"], 2);
    assert_eq!(doc["RecordsDeadLettered"], 0);
    assert_eq!(doc["EmbeddingCalls"], fake.request_count() as u64);
}

#[tokio::test]
async fn emf_line_of_a_stored_batch() {
    let Some(client) = stack("emf_line_of_a_stored_batch") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let function_name = unique("emf");
    let (metrics, lines) = Metrics::capture("KafkaLambdas", &function_name);
    let h = handler(&Setup::new(
        Api::Ollama,
        fake.base_url(),
        function_name.clone(),
    ))
    .await
    .with_metrics(metrics);
    let prefix = unique("emf");
    let ids = [format!("{prefix}-a"), format!("{prefix}-b")];
    let b = batch(vec![
        upsert(0, &ids[0], "First page."),
        upsert(1, &ids[1], "Second page."),
        upsert(2, &ids[0], "First page, edited."),
    ]);
    let deadline = Deadline::after(Duration::from_secs(20));
    h.process(&b, &deadline).await;
    h.process(&b, &deadline).await;

    let docs = lines.documents();
    assert_eq!(docs.len(), 2);
    for doc in &docs {
        check_emf(doc).unwrap();
        assert_eq!(doc["RecordsReceived"], 3);
        assert_eq!(doc["RecordsStored"], 3);
        assert_eq!(doc["RecordsFailed"], 0);
    }
    assert_eq!(
        docs[0]["ChunksEmbedded"], 2,
        "one chunk per page, last change wins"
    );
    assert_eq!(docs[0]["EmbeddingCalls"], fake.request_count() as u64);
    assert_eq!(docs[1]["EmbeddingCalls"], 0, "redelivery embeds nothing");
    assert_eq!(docs[1]["ChunksUnchanged"], 2);
    assert_eq!(rows(&client, &ids).await.len(), 2);
}
