//! "Nothing wrong is acknowledged": against the local stack (PostgREST with `db-max-rows` 1000,
//! as Supabase runs it), the situations where a record used to be acknowledged while the store
//! ended up wrong, or good records were dead-lettered for a fault that was not theirs. Each test
//! is named after the behaviour it proves.

use std::time::Duration;

use event_decoding::KafkaRecord;
use integration_tests::fixtures::gifts::{gifts, handler_with, invoke};
use integration_tests::fixtures::pages::{
    Setup, batch, dead_letters, handler, rows, run, stack, unique, upsert,
};
use integration_tests::servers::embedding::{Api, EmbeddingServer};
use integration_tests::servers::rag::RagServer;
use integration_tests::stack::{StackEnv, lit};
use page_embedder::chunk::ChunkLimits;

/// A Debezium PostgreSQL change of a page (`op` c or u) with `body` as the connector sent it.
fn debezium(offset: i64, op: &str, page_id: &str, body: &str) -> KafkaRecord {
    debezium_at(offset, 1000 + offset as u64, op, page_id, body)
}

/// [`debezium`] at WAL position `lsn`; a delete (`d`) carries the row in `before`.
fn debezium_at(offset: i64, lsn: u64, op: &str, page_id: &str, body: &str) -> KafkaRecord {
    let row = serde_json::json!({ "page_id": page_id, "title": "t", "body": body });
    let (before, after) = if op == "d" {
        (row, serde_json::Value::Null)
    } else {
        (serde_json::Value::Null, row)
    };
    let value = serde_json::json!({
        "before": before,
        "after": after,
        "source": { "connector": "postgresql", "lsn": lsn, "table": "pages" },
        "op": op,
        "ts_ms": 1_732_350_000_000i64 + offset,
    });
    KafkaRecord::new("cdc.pages", 0, offset, 0)
        .with_key(serde_json::json!({ "page_id": page_id }).to_string())
        .with_value(value.to_string())
}

/// A Debezium Cassandra update that did not write `body` (`"set": false`).
fn cassandra_title_only(offset: i64, page_id: &str) -> KafkaRecord {
    let cell = |v: serde_json::Value, set: bool| serde_json::json!({"value": v, "deletion_ts": null, "set": set});
    let value = serde_json::json!({
        "after": {
            "page_id": cell(page_id.into(), true),
            "title": cell("new title".into(), true),
            "body": cell(serde_json::Value::Null, false),
        },
        "source": { "connector": "cassandra", "keyspace": "ks", "table": "pages" },
        "op": "u",
        "ts_ms": 1_732_350_000_000i64 + offset,
    });
    KafkaRecord::new("cdc.pages", 0, offset, 0).with_value(value.to_string())
}

#[tokio::test]
async fn placeholder_update_keeps_the_stored_vectors_and_makes_no_embedding_call() {
    let Some(client) = stack("placeholder_update_keeps_the_stored_vectors") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("toast");
    let h = handler(&Setup::new(Api::Ollama, fake.base_url(), p.clone())).await;
    let id = format!("{p}-page");
    let body = "The real body of the page. ".repeat(300);
    let created = run(&h, &batch(vec![debezium(0, "c", &id, &body)])).await;
    assert_eq!(created.counts.stored, 1);
    let before = rows(&client, std::slice::from_ref(&id)).await;
    assert!(before.len() > 1, "a long body makes several chunks");
    let calls = fake.request_count();

    // REPLICA IDENTITY DEFAULT: an update of the title sends the unchanged TOASTed body as
    // Debezium's placeholder; a Cassandra update that did not write the body marks it unset.
    let updates = batch(vec![
        debezium(1, "u", &id, "__debezium_unavailable_value"),
        cassandra_title_only(2, &id),
    ]);
    let handled = run(&h, &updates).await;
    assert_eq!(handled.counts.skipped, 2, "{:?}", handled.counts);
    assert_eq!(handled.counts.dead_lettered + handled.counts.failed, 0);
    assert_eq!(handled.stats.bodies_unavailable, 2);
    assert_eq!(
        fake.request_count(),
        calls,
        "no embedding call for a placeholder"
    );
    let after = rows(&client, std::slice::from_ref(&id)).await;
    let hashes = |rows: &[integration_tests::fixtures::pages::Row]| -> Vec<String> {
        rows.iter().map(|r| r.content_hash.clone()).collect()
    };
    assert_eq!(
        hashes(&after),
        hashes(&before),
        "the stored vectors are kept"
    );
    assert!(dead_letters(&client, &p).await.is_empty());
}

#[tokio::test]
async fn forty_pages_of_thirty_chunks_shrunk_in_one_batch_leave_exactly_forty_rows() {
    let Some(client) = stack("forty_pages_of_thirty_chunks_shrunk") else {
        return;
    };
    let env = StackEnv::get_or_skip("forty_pages_of_thirty_chunks_shrunk").expect("stack env");
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("shrink");
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), p.clone());
    setup.limits = ChunkLimits::new(100, 0);
    let h = handler(&setup).await;
    let ids: Vec<String> = (0..40).map(|i| format!("{p}-{i:02}")).collect();
    // About 3,000 characters in 100-character chunks: 30 chunks a page, 1,200 rows, more than
    // the API answers in one read (db-max-rows 1000).
    let long: Vec<KafkaRecord> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            upsert(
                i as i64,
                id,
                &format!("Sentence {i} of a long page. ").repeat(110),
            )
        })
        .collect();
    let first = run(&h, &batch(long)).await;
    assert_eq!(first.counts.stored, 40, "{:?}", first.counts);
    let stored = |env: &StackEnv| {
        env.count(&format!(
            "select count(*) from page_vectors where page_id like {}",
            lit(&format!("{p}-%"))
        ))
    };
    let count = stored(&env);
    assert!(count > 1000, "{count} rows: more than one read returns");

    let short: Vec<KafkaRecord> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| upsert(100 + i as i64, id, &format!("Short page {i}.")))
        .collect();
    let second = run(&h, &batch(short)).await;
    assert_eq!(second.counts.stored, 40, "{:?}", second.counts);
    assert_eq!(
        stored(&env),
        40,
        "every stale chunk of every shrunk page is gone"
    );
    assert_eq!(rows(&client, &ids).await.len(), 40);
}

#[tokio::test]
async fn schema_drift_on_the_gifts_table_dead_letters_nothing_and_fails_every_record() {
    let Some(env) = StackEnv::get_or_skip("schema_drift_on_the_gifts_table") else {
        return;
    };
    // A table without the gift columns (PGRST204, "column not in the schema cache", on every
    // row) and a table that does not exist (PGRST205 / 42P01).
    for table in ["dead_letters", "vault_that_does_not_exist"] {
        let topic = unique("gift_drift");
        let batch = gifts(&topic, 6);
        let (h, _) = handler_with(
            &env.rest_url,
            &env.service_key,
            Duration::from_secs(20),
            &[("GIFTS_TABLE", table)],
        )
        .await;
        let r = invoke(&h, &batch).await;
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("all 6 records failed")),
            "{table}: every record is reported for redelivery: {r:?}"
        );
        assert_eq!(
            env.dead_letter_count(&topic),
            0,
            "{table}: no dead letter for a fault of the environment"
        );
    }
}

#[tokio::test]
async fn an_older_change_replayed_after_a_newer_one_and_after_a_delete_leaves_the_newer_state() {
    let Some(client) = stack("an_older_change_replayed_after_a_newer_one") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let p = unique("replay");
    let id = format!("{p}-page");
    let text = |rows: &[integration_tests::fixtures::pages::Row]| -> Vec<String> {
        rows.iter()
            .map(|r| r.chunk_text.clone().unwrap_or_default())
            .collect()
    };
    // Each batch through a freshly built handler: the ordering holds across invocations (cold
    // starts included), not only within one batch.
    let setup = Setup::new(Api::Ollama, fake.base_url(), p.clone());
    let deliver = |records: Vec<KafkaRecord>| {
        let setup = setup.clone();
        async move { run(&handler(&setup).await, &batch(records)).await }
    };

    let v2 = deliver(vec![debezium_at(0, 2000, "u", &id, "version two")]).await;
    assert_eq!(v2.counts.stored, 1);
    // The create at LSN 1000, re-driven after the update (from the on-failure destination, or a
    // replay), arrives later at a new offset.
    let replay = deliver(vec![debezium_at(1, 1000, "c", &id, "version one")]).await;
    assert_eq!(replay.counts.skipped, 1, "{:?}", replay.counts);
    assert_eq!(replay.stats.stale_changes_ignored, 1);
    assert_eq!(
        text(&rows(&client, std::slice::from_ref(&id)).await),
        ["version two"]
    );

    let deleted = deliver(vec![debezium_at(2, 3000, "d", &id, "")]).await;
    assert_eq!(deleted.counts.stored, 1);
    assert!(rows(&client, std::slice::from_ref(&id)).await.is_empty());
    // The update replayed after the delete does not bring the page back.
    let replay = deliver(vec![debezium_at(3, 2000, "u", &id, "version two")]).await;
    assert_eq!(replay.counts.skipped, 1);
    assert!(
        rows(&client, std::slice::from_ref(&id)).await.is_empty(),
        "still deleted"
    );
    assert!(dead_letters(&client, &p).await.is_empty());
}

#[tokio::test]
async fn rag_down_then_redelivery_the_refresh_arrives_once() {
    let Some(client) = stack("rag_down_then_redelivery_the_refresh_arrives") else {
        return;
    };
    let fake = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let rag = RagServer::start().await;
    let p = unique("ragdown");
    let mut setup = Setup::new(Api::Ollama, fake.base_url(), p.clone());
    setup.rag_url = Some(rag.url());
    let h = handler(&setup).await;
    let id = format!("{p}-page");
    let b = batch(vec![upsert(
        0,
        &id,
        "A page the RAG service must hear about.",
    )]);

    *rag.failing.lock().unwrap() = true;
    let down = run(&h, &b).await;
    assert_eq!(down.counts.stored, 1, "a refresh never fails the batch");
    assert_eq!((down.stats.rag.sent, down.stats.rag.failed), (0, 1));
    assert_eq!(rows(&client, std::slice::from_ref(&id)).await.len(), 1);

    // The ESM redelivers the batch (or the page is seen again): its vectors are unchanged, but the
    // refresh the service missed is sent now.
    *rag.failing.lock().unwrap() = false;
    let again = run(&h, &b).await;
    assert_eq!(
        again.stats.chunks_embedded, 1,
        "only chunk 0, for the notification's vector"
    );
    assert_eq!(again.stats.rag.sent, 1);
    let got = rag.for_page(&id);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["chunks"].as_array().map(Vec::len), Some(1));

    // Delivered and remembered: a third delivery sends nothing more.
    let third = run(&h, &b).await;
    assert_eq!((third.stats.rag.sent, third.stats.rag.failed), (0, 0));
    assert_eq!(rag.for_page(&id).len(), 1);
    assert_eq!(third.stats.embed_requests, 0);
}
