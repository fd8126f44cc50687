//! Real Kafka end to end: gifts and page changes are published to the local broker, `esm-local`
//! drives the real `gift-persister` and `page-embedder` binaries, and rows land in the local
//! stack (`vault`, `page_vectors`, `dead_letters`). The API goes down midway (a private TCP gate
//! in front of the shared API, so parallel tests are not disturbed) and nothing is lost; replaying
//! the topics from the start duplicates nothing.
//!
//! Needs `scripts/kafka-broker up` and `scripts/local-stack up` with both `env`s evaluated, and
//! the binaries built in the test profile (`cargo test --workspace` builds them first); skips
//! loudly otherwise.

use std::time::Duration;

use integration_tests::esm::{
    Runner, create_topic, function_binary, kafka_or_skip, now_ms, publish, runner_config,
    wait_until,
};
use integration_tests::servers::embedding::{Api, EmbeddingServer};
use integration_tests::servers::tcp_gate::TcpGate;
use integration_tests::stack::{StackEnv, lit, unique};
use serde_json::json;

const PARTITIONS: i32 = 3;
const MODEL: &str = "e2e-embed";
const DIMS: usize = 768;

fn gift(run: &str, i: usize) -> Vec<u8> {
    json!({
        "event_id": format!("{run}-g{i}"),
        "page_id": i,
        "question": format!("question {i} ü"),
        "answer": format!("answer {i}"),
        "ts": 1_732_350_000.125,
        "sent_ms": now_ms(),
    })
    .to_string()
    .into_bytes()
}

fn page(run: &str, i: usize) -> (Option<String>, Vec<u8>) {
    let id = format!("{run}-p{i}");
    (
        Some(json!({ "page_id": id }).to_string()),
        json!({ "page_id": id, "title": "t", "body": format!("body of page {i} in {run}") })
            .to_string()
            .into_bytes(),
    )
}

/// Publishes gifts `range` and pages `range` round-robin over the partitions, one request per
/// partition and topic.
async fn publish_range(
    client: &mut esm_local::kafka::KafkaClient,
    run: &str,
    topics: (&str, &str),
    range: std::ops::Range<usize>,
) {
    for p in 0..PARTITIONS {
        let mine = range.clone().filter(|i| *i as i32 % PARTITIONS == p);
        let gifts: Vec<_> = mine.clone().map(|i| (None, gift(run, i))).collect();
        let pages: Vec<_> = mine.map(|i| page(run, i)).collect();
        publish(client, topics.0, p, &gifts).await;
        publish(client, topics.1, p, &pages).await;
    }
}

struct Counts {
    gifts: i64,
    vectors: i64,
    dead: i64,
}

fn counts(stack: &StackEnv, run: &str, topics: (&str, &str)) -> Counts {
    let like = lit(&format!("{run}-%"));
    let row = stack.sql(&format!(
        "select (select count(*) from vault where kafka_topic = {g} and event_id like {like}),
                (select count(*) from page_vectors where page_id like {like}),
                (select count(*) from dead_letters where topic in ({g}, {p}))",
        g = lit(topics.0),
        p = lit(topics.1),
    ));
    let n: Vec<i64> = row.split('|').map(|v| v.parse().unwrap()).collect();
    Counts {
        gifts: n[0],
        vectors: n[1],
        dead: n[2],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_and_pages_flow_through_kafka_survive_an_api_outage_and_replay_idempotently() {
    let test = "esm_e2e";
    let (Some(kafka), Some(stack)) = (kafka_or_skip(test), StackEnv::get_or_skip(test)) else {
        return;
    };
    let gift_bin = function_binary("gift-persister");
    let page_bin = function_binary("page-embedder");
    let run = unique("e2e").replace('_', "-");
    let gift_topic = format!("{run}-gifts");
    let page_topic = format!("{run}-pages");
    let topics = (gift_topic.as_str(), page_topic.as_str());
    let page_fn = format!("{run}-page-embedder");
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();

    let mut gate = TcpGate::start(&stack.rest_url).await;
    let rest = gate.url_for(&stack.rest_url);
    let embedder = EmbeddingServer::start(Api::Ollama, MODEL, DIMS).await;
    let key = || {
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            stack.service_key.clone(),
        )
    };
    let gift_env = vec![("SUPABASE_REST_URL".to_owned(), rest.clone()), key()];
    let page_env = vec![
        ("SUPABASE_REST_URL".to_owned(), rest.clone()),
        key(),
        ("EMBED_PROVIDER".to_owned(), "ollama".to_owned()),
        ("EMBED_BASE_URL".to_owned(), embedder.base_url()),
        ("EMBED_MODEL".to_owned(), MODEL.to_owned()),
        ("EMBED_DIM".to_owned(), DIMS.to_string()),
    ];
    let gift_cfg = |group: &str| {
        runner_config(
            &kafka,
            &gift_topic,
            group,
            &gift_bin,
            "gift-persister",
            gift_env.clone(),
            dir.join(format!("{group}.dlq")),
        )
    };
    let page_cfg = |group: &str| {
        runner_config(
            &kafka,
            &page_topic,
            group,
            &page_bin,
            &page_fn,
            page_env.clone(),
            dir.join(format!("{group}.dlq")),
        )
    };

    let mut client = create_topic(&kafka, &gift_topic, PARTITIONS).await;
    client.create_topic(&page_topic, PARTITIONS).await.unwrap();
    let group = format!("{run}-esm");
    let gifts_runner = Runner::start(gift_cfg(&group));
    let pages_runner = Runner::start(page_cfg(&group));

    // Phase 1: half the records and one poison record per topic, in the middle of partition 1.
    let n = 60;
    publish_range(&mut client, &run, topics, 0..n / 2).await;
    publish(
        &mut client,
        &gift_topic,
        1,
        &[(
            None,
            json!({"event_id": format!("{run}-poison"), "page_id": -1, "question": "q", "answer": "a", "ts": 1})
                .to_string()
                .into_bytes(),
        )],
    )
    .await;
    publish(
        &mut client,
        &page_topic,
        1,
        &[(None, b"{not json".to_vec())],
    )
    .await;
    publish_range(&mut client, &run, topics, n / 2..n / 2 + 3).await;
    let first = n / 2 + 3;
    let reached = wait_until(Duration::from_secs(30), || {
        let c = counts(&stack, &run, topics);
        c.gifts == first as i64 && c.vectors == first as i64 && c.dead == 2
    })
    .await;
    let c = counts(&stack, &run, topics);
    assert!(
        reached,
        "phase 1: expected {first} gifts, {first} vectors, 2 dead letters; got {} / {} / {}",
        c.gifts, c.vectors, c.dead
    );
    gifts_runner.assert_running();
    pages_runner.assert_running();

    // Phase 2: the API goes away while the rest is published, then comes back.
    gate.down().await;
    publish_range(&mut client, &run, topics, first..n).await;
    let failed = |r: &Runner| {
        use std::sync::atomic::Ordering::Relaxed;
        r.stats.failed_invocations.load(Relaxed) + r.stats.records_redelivered.load(Relaxed) > 0
    };
    let hit = wait_until(Duration::from_secs(15), || {
        failed(&gifts_runner) && failed(&pages_runner)
    })
    .await;
    assert!(
        hit,
        "both functions should have failed against the closed API"
    );
    assert_eq!(
        counts(&stack, &run, topics).gifts,
        first as i64,
        "nothing is stored while the API is down"
    );
    gate.up();
    let reached = wait_until(Duration::from_secs(40), || {
        let c = counts(&stack, &run, topics);
        c.gifts == n as i64 && c.vectors == n as i64
    })
    .await;
    let c = counts(&stack, &run, topics);
    assert!(
        reached,
        "after the outage: expected {n} gifts and {n} vectors, got {} / {}",
        c.gifts, c.vectors
    );
    assert_eq!(c.dead, 2, "only the poison records are dead letters");
    for r in [&gifts_runner, &pages_runner] {
        assert_eq!(
            r.stats
                .records_dead_lettered
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the outage must delay records, not exhaust their retries"
        );
    }
    gifts_runner.stop().await.expect("gift runner");
    pages_runner.stop().await.expect("page runner");

    // What was stored is what was sent.
    let like = lit(&format!("{run}-%"));
    assert_eq!(
        stack.sql(&format!(
            "select count(*) from vault where event_id like {like}
               and question = 'question ' || page_id || ' ü' and answer = 'answer ' || page_id
               and ts = to_timestamp(1732350000.125) and (raw->>'sent_ms') is not null
               and kafka_partition = page_id % {PARTITIONS}"
        )),
        n.to_string()
    );
    assert_eq!(
        stack.sql(&format!(
            "select count(*) from page_vectors where page_id like {like}
               and model = {model} and chunk_index = 0 and chunk_text like 'body of page %'
               and vector_dims(embedding) = {DIMS}",
            model = lit(MODEL)
        )),
        n.to_string()
    );
    let mut dead: Vec<String> = stack
        .sql(&format!(
            "select function_name || ':' || error_code || ':' || kafka_partition
               from dead_letters where topic in ({}, {})",
            lit(&gift_topic),
            lit(&page_topic)
        ))
        .lines()
        .map(str::to_owned)
        .collect();
    dead.sort();
    // Both functions name their dead letters by package, not by the deployed function name
    // (`{page_fn}` here), so a redeploy under another name still dedupes redelivered records.
    let mut want = vec![
        "gift-persister:page_id_out_of_range:1".to_owned(),
        "page-embedder:invalid_json:1".to_owned(),
    ];
    want.sort();
    assert_eq!(
        dead, want,
        "the dead letters name the function, reason and partition"
    );
    let stored_at = stack.sql(&format!(
        "select max(created_at) from vault where event_id like {like}"
    ));
    let vectors_at = stack.sql(&format!(
        "select max(updated_at) from page_vectors where page_id like {like}"
    ));

    // Phase 3: the same group resumes after its commits (nothing to do); a new group replays both
    // topics from the start and duplicates nothing.
    let same = [
        Runner::start(gift_cfg(&group)),
        Runner::start(page_cfg(&group)),
    ];
    let fresh_group = format!("{run}-replay");
    let replay = [
        Runner::start(gift_cfg(&fresh_group)),
        Runner::start(page_cfg(&fresh_group)),
    ];
    let total = (n + 1) as u64;
    let replayed = wait_until(Duration::from_secs(30), || {
        replay.iter().all(|r| {
            r.stats
                .records_processed
                .load(std::sync::atomic::Ordering::Relaxed)
                >= total
        })
    })
    .await;
    assert!(
        replayed,
        "the replay should process all {total} records of each topic"
    );
    for r in same {
        assert_eq!(
            r.stats
                .invocations
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the original group resumes after its committed offsets"
        );
        r.stop().await.unwrap();
    }
    for r in replay {
        r.stop().await.unwrap();
    }
    let c = counts(&stack, &run, topics);
    assert_eq!(
        (c.gifts, c.vectors, c.dead),
        (n as i64, n as i64, 2),
        "a replay must not duplicate gifts, vectors or dead letters"
    );
    assert_eq!(
        stack.sql(&format!(
            "select max(created_at) from vault where event_id like {like}"
        )),
        stored_at,
        "replayed gifts are ignored, not rewritten"
    );
    assert_eq!(
        stack.sql(&format!(
            "select max(updated_at) from page_vectors where page_id like {like}"
        )),
        vectors_at,
        "unchanged pages are not re-embedded or rewritten"
    );
    std::fs::remove_dir_all(&dir).ok();
}
