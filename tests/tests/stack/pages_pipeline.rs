//! page-embedder against the real local stack (PostgREST `page_vectors`, `dead_letters`) with
//! loopback servers speaking Ollama's and OpenAI's documented embedding APIs and a recording RAG
//! hook. Every test uses its own page ids, so tests run in parallel against one database. Tests
//! print `SKIPPED` and return when the stack's environment is absent (`scripts/test` sets it).

use std::collections::BTreeMap;

use event_decoding::Change;
use integration_tests::fixtures::pages::{
    Setup, TestHandler, batch, dead_letters, delete, fixture, handler, rows, run, stack, unique,
    upsert,
};
use integration_tests::servers::embedding::{Api, EmbeddingServer, Fault, expected_vector};
use integration_tests::servers::endless::EndlessServer;
use integration_tests::servers::rag::RagServer;
use lambda_kit::postgrest::PostgrestClient;
use page_embedder::chunk::ChunkLimits;
use page_embedder::handler::Handled;

const PREFIX: &str = "search_document: ";

/// The expected final state of a batch, computed from the decoded changes with "last change per
/// page wins": page id -> body (`None` = deleted).
fn expected_state(b: &event_decoding::KafkaBatch) -> BTreeMap<String, Option<String>> {
    let mut state = BTreeMap::new();
    for r in b.records() {
        let Ok(change) = r.change() else { continue };
        let id = change
            .field("page_id")
            .or_else(|| change.key().filter(|k| k.is_string()))
            .and_then(|v| v.as_str().map(str::to_owned));
        let Some(id) = id else { continue };
        match &change {
            Change::Upsert { row, .. } => {
                let body = row
                    .get("body")
                    .and_then(|b| b.as_str())
                    .unwrap_or("")
                    .to_owned();
                state.insert(id, Some(body));
            }
            Change::Delete { .. } | Change::Tombstone { .. } => {
                state.insert(id, None);
            }
            _ => {}
        }
    }
    state
}

/// Pages `{p}-a` ("first") and `{p}-b` ("second") upserted in one batch.
async fn run_two_pages(h: &TestHandler, p: &str) -> (Handled, [String; 2]) {
    let ids = [format!("{p}-a"), format!("{p}-b")];
    let handled = run(
        h,
        &batch(vec![
            upsert(0, &ids[0], "first"),
            upsert(1, &ids[1], "second"),
        ]),
    )
    .await;
    (handled, ids)
}

/// Upserts one ~1,600-character page through a provider that refuses inputs over `max_chars`
/// and checks the page was split further instead of failing: every record done, at least six
/// chunks each within the limit with the prefix, no dead letters.
async fn long_page_is_split_under(client: &PostgrestClient, mut setup: Setup, max_chars: usize) {
    let id = format!("{}-page", setup.function_name);
    setup.limits = ChunkLimits::new(1000, 50);
    let h = handler(&setup).await;
    let body: String = (0..30)
        .map(|i| format!("Part {i} of a page that the model cannot take whole. "))
        .collect();
    let handled = run(&h, &batch(vec![upsert(0, &id, &body)])).await;
    assert!(handled.response.unwrap().batch_item_failures.is_empty());
    let stored = rows(client, std::slice::from_ref(&id)).await;
    assert!(stored.len() >= 6, "{}", stored.len());
    for r in &stored {
        let embedded =
            setup.prefix.chars().count() + r.chunk_text.as_deref().unwrap().chars().count();
        assert!(embedded <= max_chars, "{embedded} > {max_chars}");
    }
    assert!(dead_letters(client, &setup.function_name).await.is_empty());
}

#[tokio::test]
async fn every_cdc_format_ends_in_the_expected_state() {
    let Some(client) = stack("every_cdc_format_ends_in_the_expected_state") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    for name in [
        "pages-debezium.json",
        "pages-debezium-plain.json",
        "pages-cassandra.json",
        "pages-unwrapped.json",
        "pages-plain.json",
    ] {
        let prefix = unique("fmt");
        let b = fixture(name, &format!("{prefix}-"));
        let expected = expected_state(&b);
        assert!(
            expected.values().any(Option::is_some),
            "{name}: fixture has upserts"
        );
        let h = handler(&Setup::new(Api::Ollama, fake.base_url(), prefix.clone())).await;
        let handled = run(&h, &b).await;
        let response = handled.response.expect("not all failed");
        assert!(
            response.batch_item_failures.is_empty(),
            "{name}: {response:?}"
        );

        let ids: Vec<String> = expected.keys().cloned().collect();
        let stored = rows(&client, &ids).await;
        for (id, body) in &expected {
            let page: Vec<_> = stored.iter().filter(|r| &r.page_id == id).collect();
            match body {
                Some(body) if !body.trim().is_empty() => {
                    assert_eq!(page.len(), 1, "{name}: page {id} has one chunk");
                    assert_eq!(page[0].chunk_text.as_deref(), Some(body.as_str()));
                    assert_eq!(page[0].model, "nomic-embed-text");
                    let want = expected_vector(&format!("{PREFIX}{body}"), 768);
                    let got = page[0].vector();
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
                        "{name}: vector of {id}"
                    );
                }
                _ => assert!(page.is_empty(), "{name}: page {id} must have no vectors"),
            }
        }
    }
}

#[tokio::test]
async fn bad_records_are_dead_lettered_with_clear_codes() {
    let Some(client) = stack("bad_records_are_dead_lettered_with_clear_codes") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let prefix = unique("bad");
    let b = fixture("pages-bad.json", &format!("{prefix}-"));
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), prefix.clone())).await;
    let handled = run(&h, &b).await;
    assert!(
        handled
            .response
            .expect("partial")
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(handled.counts.stored, 2, "offsets 0 and 13 are valid");
    let letters = dead_letters(&client, &prefix).await;
    let offsets: Vec<i64> = letters.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=12).collect::<Vec<_>>(), "{letters:?}");
    let code = |o: i64| {
        letters
            .iter()
            .find(|(x, _)| *x == o)
            .map(|(_, c)| c.as_str())
            .unwrap()
    };
    assert_eq!(code(1), "invalid_base64");
    assert_eq!(code(6), "unknown_op");
    assert_eq!(code(5), "missing_key");
    assert_eq!(code(9), "invalid_page_id");
    assert_eq!(code(10), "invalid_page_id");
    assert_eq!(code(11), "invalid_body");
}

/// Issue 20's case: two poison page ids (one with a NUL, which PostgreSQL text cannot hold, one
/// of 10,000 characters) in a batch of five pages. They used to break the batch's read of stored
/// hashes, so all five failed as `db_bad_request`, an environment fault redelivered forever. Now
/// they are dead-lettered at decode as `invalid_page_id` and the three others (one with a long
/// but valid id: 500 bytes of two-byte characters) are stored; the batch is not failed.
#[tokio::test]
async fn poison_page_ids_are_dead_lettered_and_the_other_pages_stored() {
    let Some(client) = stack("poison_page_ids_are_dead_lettered_and_the_other_pages_stored") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let prefix = unique("poison");
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), prefix.clone())).await;
    let long = format!("{prefix}-{}", "é".repeat((500 - prefix.len() - 1) / 2));
    assert!(long.len() <= 500);
    let good = [format!("{prefix}-a"), long, format!("{prefix}-c")];
    let records = vec![
        upsert(0, &good[0], "page a"),
        upsert(
            1,
            &format!("{prefix}-\u{0}-nul"),
            "page with a NUL in its id",
        ),
        upsert(2, &good[1], "page with a long id"),
        upsert(3, &"x".repeat(10_000), "page with a 10,000-character id"),
        upsert(4, &good[2], "page c"),
    ];
    let handled = run(&h, &batch(records)).await;
    let response = handled.response.expect("the batch is not failed");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        (handled.counts.stored, handled.counts.dead_lettered),
        (3, 2)
    );
    let letters = dead_letters(&client, &prefix).await;
    assert_eq!(
        letters,
        [
            (1, "invalid_page_id".to_string()),
            (3, "invalid_page_id".to_string())
        ]
    );
    let stored = rows(&client, &good).await;
    for id in &good {
        assert_eq!(
            stored.iter().filter(|r| &r.page_id == id).count(),
            1,
            "{id} stored"
        );
    }
}

#[tokio::test]
async fn last_change_per_page_wins() {
    let Some(client) = stack("last_change_per_page_wins") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("order");
    let (a, b, c) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-c"));
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    // c exists before the batch; the batch deletes it and recreates it with new text.
    run(&h, &batch(vec![upsert(0, &c, "old c")])).await;
    let handled = run(
        &h,
        &batch(vec![
            upsert(1, &a, "a v1"),
            upsert(2, &b, "b deleted later"),
            delete(3, &c),
            delete(4, &b),
            upsert(5, &a, "a v2"),
            upsert(6, &c, "c reborn"),
        ]),
    )
    .await;
    assert!(handled.response.unwrap().batch_item_failures.is_empty());
    let stored = rows(&client, &[a.clone(), b.clone(), c.clone()]).await;
    let texts: Vec<(&str, &str)> = stored
        .iter()
        .map(|r| (r.page_id.as_str(), r.chunk_text.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(texts, vec![(a.as_str(), "a v2"), (c.as_str(), "c reborn")]);
    // Superseded versions were never embedded.
    assert!(
        !fake
            .inputs()
            .iter()
            .any(|t| t.ends_with("a v1") || t.ends_with("b deleted later"))
    );
    // Repeating a delete is harmless.
    let again = run(&h, &batch(vec![delete(7, &b), delete(8, &b)])).await;
    assert!(again.response.unwrap().batch_item_failures.is_empty());
}

#[tokio::test]
async fn long_page_gives_several_chunks_and_shrinking_removes_the_tail() {
    let Some(client) = stack("long_page_gives_several_chunks_and_shrinking_removes_the_tail")
    else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("long");
    let id = format!("{p}-page");
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), p.clone());
    setup.limits = ChunkLimits::new(200, 40);
    let h = handler(&setup).await;
    let long: String = (0..40)
        .map(|i| format!("Sentence number {i} of the long page. "))
        .collect();
    run(&h, &batch(vec![upsert(0, &id, &long)]))
        .await
        .response
        .unwrap();
    let stored = rows(&client, std::slice::from_ref(&id)).await;
    assert!(stored.len() >= 8, "{} chunks", stored.len());
    let indexes: Vec<i64> = stored.iter().map(|r| r.chunk_index).collect();
    assert_eq!(indexes, (0..stored.len() as i64).collect::<Vec<_>>());
    for r in &stored {
        let text = r.chunk_text.as_deref().unwrap();
        assert!(text.chars().count() <= 200);
        assert!(long.contains(text));
    }
    // No text lost: every sentence is in some chunk.
    for i in 0..40 {
        let s = format!("Sentence number {i} of the long page.");
        assert!(
            stored
                .iter()
                .any(|r| r.chunk_text.as_deref().unwrap().contains(&s)),
            "{s}"
        );
    }
    let short = "Now the page is short.";
    run(&h, &batch(vec![upsert(1, &id, short)]))
        .await
        .response
        .unwrap();
    let stored = rows(&client, std::slice::from_ref(&id)).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].chunk_text.as_deref(), Some(short));
}

#[tokio::test]
async fn redelivery_makes_zero_embedding_calls_and_a_change_reembeds_only_that_page() {
    let Some(client) = stack("redelivery_makes_zero_embedding_calls") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("redeliver");
    let ids: Vec<String> = (0..5).map(|i| format!("{p}-{i}")).collect();
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let records = |changed: Option<usize>| {
        batch(
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    let body = if Some(i) == changed {
                        format!("changed body {i}")
                    } else {
                        format!("body {i}")
                    };
                    upsert(i as i64, id, &body)
                })
                .collect(),
        )
    };
    let first = run(&h, &records(None)).await;
    assert_eq!(
        first.stats.embed_requests, 1,
        "5 pages in one batch request"
    );
    let before = fake.request_count();
    // A fresh handler: nothing cached in memory, as after a cold start.
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let again = run(&h, &records(None)).await;
    assert!(again.response.unwrap().batch_item_failures.is_empty());
    assert_eq!(
        fake.request_count(),
        before,
        "redelivery made embedding calls"
    );
    assert_eq!(again.stats.chunks_unchanged, 5);

    let inputs_before = fake.inputs().len();
    let changed = run(&h, &records(Some(3))).await;
    assert!(changed.response.unwrap().batch_item_failures.is_empty());
    let new_inputs = fake.inputs()[inputs_before..].to_vec();
    assert_eq!(new_inputs, vec![format!("{PREFIX}changed body 3")]);
    let stored = rows(&client, &ids).await;
    assert_eq!(stored[3].chunk_text.as_deref(), Some("changed body 3"));
}

#[tokio::test]
async fn a_model_change_reembeds() {
    let Some(client) = stack("a_model_change_reembeds") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    fake.with_state(|s| s.models.push("nomic-embed-text:v1.5".into()));
    let p = unique("model");
    let id = format!("{p}-page");
    let b = batch(vec![upsert(0, &id, "same text")]);
    run(
        &handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await,
        &b,
    )
    .await
    .response
    .unwrap();
    let hash_a = rows(&client, std::slice::from_ref(&id)).await[0]
        .content_hash
        .clone();
    let before = fake.request_count();
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), p.clone());
    setup.model = "nomic-embed-text:v1.5".into();
    run(&handler(&setup).await, &b).await.response.unwrap();
    assert_eq!(fake.request_count(), before + 1);
    let stored = rows(&client, std::slice::from_ref(&id)).await;
    assert_eq!(stored[0].model, "nomic-embed-text:v1.5");
    assert_ne!(stored[0].content_hash, hash_a);
}

#[tokio::test]
async fn a_wrong_dimension_is_redelivered_not_dead_lettered_and_nothing_is_written() {
    let Some(client) = stack("a_wrong_dimension_is_redelivered") else {
        return;
    };
    // The provider answers 512 values where 768 are configured: the model and EMBED_DIM disagree,
    // which no page causes, so the pages are reported for redelivery, not dead-lettered.
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 512).await;
    let p = unique("dims");
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let handled = run(
        &h,
        &batch(vec![upsert(0, &a, "text"), upsert(1, &b, "more")]),
    )
    .await;
    assert!(
        fake.request_count() >= 1,
        "the provider was called and answered"
    );
    assert_eq!(handled.counts.dead_lettered, 0);
    assert_eq!(handled.counts.failed, 2);
    assert!(
        handled.response.is_err(),
        "every record failed: the batch is retried whole"
    );
    assert!(rows(&client, &[a.clone(), b.clone()]).await.is_empty());
    assert!(dead_letters(&client, &p).await.is_empty());

    // The redelivery, once the model answers 768 values, stores both pages: the dimension was
    // the only fault.
    let right = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let h = handler(&Setup::new(Api::Ollama, right.base_url(), p.clone())).await;
    let again = run(
        &h,
        &batch(vec![upsert(0, &a, "text"), upsert(1, &b, "more")]),
    )
    .await;
    assert_eq!(again.counts.stored, 2);
    assert_eq!(rows(&client, &[a, b]).await.len(), 2);
}

#[tokio::test]
async fn provider_down_gives_a_partial_response_then_recovery_completes() {
    let Some(client) = stack("provider_down_gives_a_partial_response") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("down");
    let (a, b, gone) = (format!("{p}-a"), format!("{p}-b"), format!("{p}-gone"));
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let records = || {
        batch(vec![
            upsert(0, &a, "alpha"),
            delete(1, &gone),
            upsert(2, &b, "beta"),
            upsert(3, &a, "alpha 2"),
        ])
    };
    fake.with_state(|s| s.down = true);
    let handled = run(&h, &records()).await;
    let failed: Vec<i64> = handled
        .response
        .unwrap()
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.offset)
        .collect();
    // Every record of a failing page is reported, so none is acknowledged ahead of it; the
    // delete, which needs no provider, is done.
    assert_eq!(failed, vec![0, 2, 3]);
    assert!(rows(&client, &[a.clone(), b.clone()]).await.is_empty());
    assert!(
        dead_letters(&client, &p).await.is_empty(),
        "provider faults are never dead-lettered"
    );

    fake.with_state(|s| s.down = false);
    let handled = run(&h, &records()).await;
    assert!(handled.response.unwrap().batch_item_failures.is_empty());
    let texts: Vec<String> = rows(&client, &[a.clone(), b.clone()])
        .await
        .iter()
        .map(|r| r.chunk_text.clone().unwrap())
        .collect();
    assert_eq!(texts, vec!["alpha 2", "beta"]);
}

/// Issue 20: an embedding API answering an endless 200 body (here Ollama's `/api/embed` shape,
/// `{"embeddings":[[0.125,...` never closed) killed the function at 512 MB. Now each answer is
/// read up to `answer_limit` and the call fails as the environment's fault: the batch fails whole
/// (redelivered), nothing is dead-lettered, and every connection is hung up by the client after
/// it read about its limit (the server's writes then fail).
#[tokio::test]
async fn an_endless_embedding_answer_fails_the_batch_with_bounded_reading() {
    let Some(client) = stack("an_endless_embedding_answer_fails_the_batch") else {
        return;
    };
    let server = EndlessServer::start(r#"{"model":"nomic-embed-text","embeddings":[["#).await;
    let p = unique("endless");
    let h = handler(&Setup::new(Api::Ollama, server.url(), p.clone())).await;
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let handled = run(
        &h,
        &batch(vec![upsert(0, &a, "alpha"), upsert(1, &b, "beta")]),
    )
    .await;
    assert!(
        handled.response.is_err(),
        "all records failed: the whole batch is redelivered"
    );
    assert!(rows(&client, &[a, b]).await.is_empty());
    assert!(
        dead_letters(&client, &p).await.is_empty(),
        "nothing blamed on the records"
    );
    assert!(server.requests() >= 1);
    assert!(
        server.all_hung_up(std::time::Duration::from_secs(10)).await,
        "the client stopped reading every answer: {} of {} hung up",
        server.hung_up(),
        server.requests()
    );
    // Each answer's limit plus what the sockets buffer, far below what reading on would reach.
    let limit = page_embedder::embed::answer_limit(2, 768) as u64;
    let per_answer = limit + (16 << 20);
    assert!(
        server.sent() < server.requests() * per_answer,
        "{} bytes sent for {} answers",
        server.sent(),
        server.requests()
    );
}

#[tokio::test]
async fn model_not_found_fails_the_batch_without_dead_letters() {
    let Some(client) = stack("model_not_found_fails_the_batch") else {
        return;
    };
    // Ollama answers 404 `model "x" not found, try pulling it first` for an unknown model.
    let fake = EmbeddingServer::start(Api::Ollama, "other-model", 768).await;
    let p = unique("404");
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let handled = run(&h, &batch(vec![upsert(0, &format!("{p}-x"), "text")])).await;
    assert!(
        handled.response.is_err(),
        "all records failed: the whole batch is retried"
    );
    assert_eq!(fake.request_count(), 1, "a 404 is not retried");
    assert!(dead_letters(&client, &p).await.is_empty());
}

#[tokio::test]
async fn ollama_refusing_a_long_input_makes_smaller_chunks() {
    let Some(client) = stack("ollama_refusing_a_long_input") else {
        return;
    };
    // With `truncate: false`, Ollama answers 400 "the input length exceeds the context length".
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    fake.with_state(|s| s.max_input_chars = Some(300));
    let setup = Setup::new(Api::Ollama, fake.base_url(), unique("toolong"));
    long_page_is_split_under(&client, setup, 300).await;
    assert!(fake.with_state(|s| s.requests.iter().all(|r| r["truncate"] == false)));
}

#[tokio::test]
async fn ollama_busy_and_server_errors_are_retried() {
    let Some(client) = stack("ollama_busy_and_server_errors_are_retried") else {
        return;
    };
    // Ollama answers 429 with `{"error": ...}` when its request queue is full (OLLAMA_MAX_QUEUE)
    // and 500 when the runner fails; both are transient, so the batch still completes.
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    fake.with_state(|s| s.faults = vec![Fault::Throttle { ms: 100 }, Fault::ServerError]);
    let p = unique("ollama-busy");
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let (handled, ids) = run_two_pages(&h, &p).await;
    assert!(handled.response.unwrap().batch_item_failures.is_empty());
    assert_eq!(fake.request_count(), 3, "429, 500, then success");
    let stored = rows(&client, &ids).await;
    assert_eq!(
        stored[0].vector(),
        expected_vector(&format!("{PREFIX}first"), 768)
    );
    assert_eq!(
        stored[1].vector(),
        expected_vector(&format!("{PREFIX}second"), 768)
    );
    assert!(dead_letters(&client, &p).await.is_empty());
}

#[tokio::test]
async fn openai_context_length_exceeded_makes_smaller_chunks() {
    let Some(client) = stack("openai_context_length_exceeded") else {
        return;
    };
    // OpenAI answers 400 `context_length_exceeded` for an input over the model's limit; the
    // page is split further instead of being dead-lettered.
    let fake = EmbeddingServer::start(Api::OpenAi, "text-embedding-3-small", 768).await;
    fake.with_state(|s| s.max_input_chars = Some(300));
    long_page_is_split_under(
        &client,
        Setup::openai(&fake.base_url(), unique("oa-toolong")),
        300,
    )
    .await;
}

#[tokio::test]
async fn openai_throttling_is_retried_honouring_retry_after_ms() {
    let Some(client) = stack("openai_throttling_is_retried") else {
        return;
    };
    // OpenAI: 429 with `retry-after-ms`, then 500, then success; `data[]` comes back by `index`.
    let fake = EmbeddingServer::start(Api::OpenAi, "text-embedding-3-small", 768).await;
    fake.with_state(|s| s.faults = vec![Fault::Throttle { ms: 150 }, Fault::ServerError]);
    let p = unique("openai");
    let setup = Setup::openai(&fake.base_url(), p.clone());
    let h = handler(&setup).await;
    let started = std::time::Instant::now();
    let (handled, ids) = run_two_pages(&h, &p).await;
    assert!(handled.response.unwrap().batch_item_failures.is_empty());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "retry-after-ms honoured"
    );
    assert_eq!(fake.request_count(), 3);
    fake.with_state(|s| {
        assert_eq!(s.requests[2]["dimensions"], 768);
        assert!(
            s.auth
                .iter()
                .all(|a| a.as_deref() == Some("Bearer sk-test-key"))
        );
    });
    let stored = rows(&client, &ids).await;
    assert_eq!(stored[0].vector(), expected_vector("first", 768));
    assert_eq!(stored[1].vector(), expected_vector("second", 768));
}

#[tokio::test]
async fn rag_is_notified_after_storage_and_its_failure_loses_nothing() {
    let Some(client) = stack("rag_is_notified_after_storage") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let rag = RagServer::start().await;
    let p = unique("rag");
    let (a, gone) = (format!("{p}-a"), format!("{p}-gone"));
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), p.clone());
    setup.rag_url = Some(rag.url());
    let h = handler(&setup).await;
    run(
        &h,
        &batch(vec![upsert(0, &a, "hello rag"), delete(1, &gone)]),
    )
    .await
    .response
    .unwrap();
    let notes = rag.for_page(&a);
    assert_eq!(notes.len(), 1);
    let stored = rows(&client, std::slice::from_ref(&a)).await;
    let vector: Vec<f32> = serde_json::from_value(notes[0]["vector"].clone()).unwrap();
    assert_eq!(
        vector,
        stored[0].vector(),
        "seed contract: vector is the first chunk's"
    );
    assert_eq!(notes[0]["model"], "nomic-embed-text");
    assert_eq!(
        notes[0]["chunks"][0]["content_hash"],
        stored[0].content_hash.as_str()
    );
    assert!(
        notes[0]["content_hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    assert_eq!(
        rag.for_page(&gone),
        vec![serde_json::json!({ "page_id": gone, "deleted": true })]
    );

    // RAG down: vectors are stored anyway and the batch succeeds.
    *rag.failing.lock().unwrap() = true;
    let handled = run(&h, &batch(vec![upsert(2, &a, "hello again")])).await;
    assert!(handled.response.unwrap().batch_item_failures.is_empty());
    assert_eq!(handled.stats.rag.failed, 1);
    assert_eq!(
        rows(&client, std::slice::from_ref(&a)).await[0]
            .chunk_text
            .as_deref(),
        Some("hello again")
    );
}
