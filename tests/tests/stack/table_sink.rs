//! table-sink against the real local stack (`user_profiles`, migration
//! `20261130120000_user_profiles.sql`): the fixture stored once and a redelivery changing nothing,
//! a later change merged into the row, bad records dead-lettered with their code, and faults of
//! the environment (a missing table, an unknown column, a conflict target without an index)
//! reported for redelivery with no dead letter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_decoding::{EventSource, KafkaBatch, KafkaBatchResponse, KafkaRecord};
use integration_tests::stack::{StackEnv, lit, unique};
use lambda_kit::config::Env;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use table_sink::config::Config;
use table_sink::handler::PostgrestHandler;

const COLUMNS: (&str, &str) = ("SINK_COLUMNS", "email,display_name,plan");

/// The handler `Config::build` makes (as `main` does) for `user_profiles` keyed by `user_id`,
/// with test-sized retries and budget; `more` adds or overrides settings.
async fn handler(env: &StackEnv, more: &[(&str, &str)]) -> PostgrestHandler {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("SUPABASE_REST_URL", &env.rest_url),
        ("SUPABASE_SERVICE_ROLE_KEY", &env.service_key),
        ("SINK_TABLE", "user_profiles"),
        ("SINK_CONFLICT_COLUMNS", "user_id"),
        ("RETRY_INITIAL_BACKOFF_MS", "20"),
        ("HTTP_TIMEOUT_MS", "2000"),
        ("DEFAULT_BUDGET_MS", "30000"),
        ("METRICS_ENABLED", "false"),
    ];
    for (k, v) in more {
        pairs.retain(|(p, _)| p != k);
        pairs.push((k, v));
    }
    Config::load(&Env::from_pairs(pairs))
        .await
        .unwrap()
        .build()
        .unwrap()
}

async fn invoke(h: &PostgrestHandler, batch: &KafkaBatch) -> Result<KafkaBatchResponse, String> {
    h.handle(LambdaEvent::new(batch.clone(), Context::default()))
        .await
        .map_err(|e| e.to_string())
}

/// `(topic-partition, offset)` of the reported records, sorted.
fn failures(r: &KafkaBatchResponse) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = r
        .batch_item_failures
        .iter()
        .map(|f| {
            (
                f.item_identifier.partition.clone(),
                f.item_identifier.offset,
            )
        })
        .collect();
    v.sort_unstable();
    v
}

/// Ids of this run: `"u-1"` becomes `"<tag>-u-1"`; numeric ids (`3`, `"3"`) move by a base of
/// this run and keep their JSON type, so a number and a string of one id still meet.
struct Ids {
    tag: String,
    base: i64,
}

impl Ids {
    fn new(prefix: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let base =
            ((nanos % 1_000_000_000) * 1000 + N.fetch_add(1, Ordering::Relaxed) % 1000) * 1000;
        Self {
            tag: unique(prefix),
            base: base as i64,
        }
    }

    fn id(&self, id: &str) -> String {
        match id.parse::<i64>() {
            Ok(n) => (self.base + n).to_string(),
            Err(_) => format!("{}-{id}", self.tag),
        }
    }

    fn rewrite(&self, v: &mut Value) {
        let Some(id) = v.get_mut("user_id") else {
            return;
        };
        *id = match &*id {
            Value::String(s) => Value::String(self.id(s)),
            Value::Number(n) => Value::from(self.base + n.as_i64().unwrap()),
            _ => return,
        };
    }

    /// SQL filter on this run's rows.
    fn sql_filter(&self) -> String {
        format!(
            "(user_id like {} or user_id between '{}' and '{}')",
            lit(&format!("{}-%", self.tag)),
            self.base,
            self.base + 999
        )
    }
}

/// The fixture's records moved to `topic`, their ids made this run's.
fn fixture_on(name: &str, topic: &str, ids: &Ids) -> KafkaBatch {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let batch = KafkaBatch::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let records = batch.records().map(|r| {
        let mut out = KafkaRecord::new(topic, r.partition, r.offset, r.timestamp);
        if let Some(k) = r.raw_key() {
            out = out.with_raw_key(k);
        }
        match r.value_json::<Value>() {
            Ok(mut v) if v.is_object() => {
                ids.rewrite(&mut v);
                out.with_value(v.to_string())
            }
            _ => match r.raw_value() {
                Some(raw) => out.with_raw_value(raw),
                None => out,
            },
        }
    });
    KafkaBatch::builder(EventSource::Msk)
        .records(records)
        .build()
}

fn profiles(env: &StackEnv, ids: &Ids) -> String {
    env.sql(&format!(
        "select user_id || '|' || coalesce(email, '-') || '|' || coalesce(display_name, '-') || '|' || plan || '|' || created_at \
         from user_profiles where {} order by user_id",
        ids.sql_filter()
    ))
}

fn dead_letters(env: &StackEnv, topic: &str) -> Vec<String> {
    env.sql(&format!(
        "select kafka_offset || ':' || error_code from dead_letters \
         where topic = {} and function_name = 'table-sink' order by kafka_partition, kafka_offset",
        lit(topic)
    ))
    .lines()
    .map(str::to_owned)
    .collect()
}

#[tokio::test]
async fn table_sink_fixture_stored_once_redelivery_changes_nothing_later_change_merges() {
    let Some(env) = StackEnv::get_or_skip("table_sink_fixture") else {
        return;
    };
    let topic = unique("sink_fx");
    let ids = Ids::new("sink_fx");
    let batch = fixture_on("table-sink.json", &topic, &ids);
    let h = handler(&env, &[COLUMNS]).await;

    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let stored = profiles(&env, &ids);
    let without_created_at: Vec<String> = stored
        .lines()
        .map(|l| l.rsplit_once('|').unwrap().0.to_owned())
        .collect();
    let (u1, u2, u4, n3) = (ids.id("u-1"), ids.id("u-2"), ids.id("u-4"), ids.id("3"));
    let mut expected = vec![
        format!("{u1}|ada@example.com|Ada Lovelace|pro"),
        format!("{u2}|grace@example.com|Grace Hopper|free"),
        format!("{u4}|margaret@example.com|Margaret Hamilton 🚀|team"),
        format!("{n3}|linus@example.com|Linus|team"),
    ];
    expected.sort();
    assert_eq!(without_created_at, expected);
    // Two column sets (u-2 has no plan): two requests.
    assert_eq!(h.function().store().client().requests_sent(), 2);

    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(profiles(&env, &ids), stored, "a redelivery changes nothing");
    assert!(dead_letters(&env, &topic).is_empty());

    // Later: u-1 changes plan only; the other columns stay.
    let later = serde_json::json!({"user_id": u1, "plan": "team", "source": "billing"});
    let batch = KafkaBatch::builder(EventSource::SelfManaged)
        .record(KafkaRecord::new(topic.as_str(), 0, 5, 0).with_value(later.to_string()))
        .build();
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(
        env.sql(&format!(
            "select email || '|' || display_name || '|' || plan from user_profiles where user_id = {}",
            lit(&u1)
        )),
        "ada@example.com|Ada Lovelace|team"
    );
}

#[tokio::test]
async fn table_sink_bad_fixture_dead_letters_each_bad_record_with_its_code() {
    let Some(env) = StackEnv::get_or_skip("table_sink_bad") else {
        return;
    };
    let topic = unique("sink_bad");
    let ids = Ids::new("sink_bad");
    let batch = fixture_on("table-sink-bad.json", &topic, &ids);
    // No allow-list: field names are checked (offset 11).
    let h = handler(&env, &[]).await;
    for _ in 0..2 {
        let r = invoke(&h, &batch).await.unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
    assert_eq!(
        env.sql(&format!(
            "select string_agg(user_id, ',' order by user_id) from user_profiles where {}",
            ids.sql_filter()
        )),
        format!("{},{}", ids.id("ok-1"), ids.id("ok-2"))
    );
    assert_eq!(
        dead_letters(&env, &topic),
        table_sink::fixtures::BAD_FIXTURE_LETTERS,
        "one letter per bad record, although delivered twice"
    );
    let message = env.sql(&format!(
        "select error_message from dead_letters where topic = {} and kafka_offset = 10",
        lit(&topic)
    ));
    assert!(message.contains("user_profiles_plan_check"), "{message}");
}

#[tokio::test]
async fn table_sink_environment_faults_fail_records_without_dead_letters() {
    let Some(env) = StackEnv::get_or_skip("table_sink_environment") else {
        return;
    };
    let ids = Ids::new("sink_env");

    // A table that does not exist: every record fails, nothing is dead-lettered.
    let missing = unique("no_such_table");
    let topic = unique("sink_missing");
    let batch = fixture_on("table-sink.json", &topic, &ids);
    let h = handler(&env, &[COLUMNS, ("SINK_TABLE", missing.as_str())]).await;
    let err = invoke(&h, &batch).await.unwrap_err();
    assert!(err.contains("all 6 records failed"), "{err}");
    assert_eq!(
        h.function().store().client().requests_sent(),
        1,
        "not retried"
    );

    // A conflict target with no unique index behind it: the same (records that carry it).
    let h = handler(&env, &[COLUMNS, ("SINK_CONFLICT_COLUMNS", "email")]).await;
    let full = KafkaBatch::builder(EventSource::Msk)
        .records((0..2).map(|i| {
            let v = serde_json::json!({"user_id": ids.id(&format!("e{i}")), "email": format!("e{i}@example.com")});
            KafkaRecord::new(topic.as_str(), 0, 100 + i, 0).with_value(v.to_string())
        }))
        .build();
    let err = invoke(&h, &full).await.unwrap_err();
    assert!(err.contains("all 2 records failed"), "{err}");
    assert!(dead_letters(&env, &topic).is_empty());

    // Without SINK_COLUMNS, a field the table lacks (`source`, on u-1's first record) fails the
    // records of that row only; the rows of the other column sets are stored.
    let topic = unique("sink_unknown_col");
    let batch = fixture_on("table-sink.json", &topic, &ids);
    let h = handler(&env, &[]).await;
    let r = invoke(&h, &batch).await.unwrap();
    let p0 = format!("{topic}-0");
    assert_eq!(
        failures(&r),
        [(p0.clone(), 0), (p0, 2)],
        "u-1's two records"
    );
    assert!(dead_letters(&env, &topic).is_empty());
    assert_eq!(
        env.count(&format!(
            "select count(*) from user_profiles where {}",
            ids.sql_filter()
        )),
        3
    );
    // Once SINK_COLUMNS drops the field, the redelivered records are stored.
    let fixed = handler(&env, &[COLUMNS]).await;
    let r = invoke(&fixed, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(
        env.count(&format!(
            "select count(*) from user_profiles where {}",
            ids.sql_filter()
        )),
        4
    );
    assert!(dead_letters(&env, &topic).is_empty());
}

#[tokio::test]
async fn table_sink_budget_is_honoured_when_the_api_is_down() {
    let Some(env) = StackEnv::get_or_skip("table_sink_api_down") else {
        return;
    };
    let port = integration_tests::unused_port();
    let url = format!("http://127.0.0.1:{port}");
    let h = handler(
        &env,
        &[
            ("SUPABASE_REST_URL", url.as_str()),
            ("DEFAULT_BUDGET_MS", "1500"),
            ("DEADLINE_SAFETY_MARGIN_MS", "0"),
        ],
    )
    .await;
    let ids = Ids::new("sink_down");
    let batch = fixture_on("table-sink.json", &unique("sink_down"), &ids);
    let started = std::time::Instant::now();
    let err = invoke(&h, &batch).await.unwrap_err();
    assert!(err.contains("all 6 records failed"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// `KEY_FORMAT` (issue 22, Powertools' `key_schema`): records whose values carry no `user_id`,
/// keyed by a `profiles.UserKey` written by independent encoders (fastavro through
/// `scripts/avro-tool`, Google's protobuf runtime through `scripts/proto-tool`), decoded with the
/// key schema shipped beside the function, become rows keyed by the key's `user_id`. A plain Avro
/// key and one behind a Confluent prefix (no registry: the shipped schema reads it) both serve;
/// a key the schema does not read is dead-lettered `schema_mismatch` with its raw key kept.
#[tokio::test]
async fn table_sink_keys_decoded_with_their_own_shipped_schema_key_the_rows() {
    use integration_tests::fixtures::encoded::{encode, repo};
    use std::process::Command;

    let Some(env) = StackEnv::get_or_skip("table_sink_key_format") else {
        return;
    };
    let ids = Ids::new("sink_key");
    let users = [ids.id("u-1"), ids.id("u-2"), ids.id("u-3")];
    let keys: Vec<Value> = users
        .iter()
        .map(|u| serde_json::json!({"user_id": u}))
        .collect();

    // Avro keys: u-1 plain, u-2 behind the Confluent prefix of schema 12.
    let avsc = repo().join("events/schemas/user-key.avsc");
    let avsc = avsc.to_str().unwrap();
    let avro = |id: Option<&str>, keys: &[Value]| {
        let mut encoder = Command::new(repo().join("scripts/avro-tool"));
        encoder.args(["encode", avsc]).args(id);
        encode(encoder, keys)
    };
    let plain = avro(None, &keys[..1]).remove(0);
    let prefixed = avro(Some("12"), &keys[1..2]).remove(0);
    // Cut inside the user_id text: no UserKey.
    let cut = plain[..plain.len() - 2].to_vec();
    let topic = unique("sink_key");
    let record = |offset: i64, key: &[u8], value: Value| {
        KafkaRecord::new(topic.as_str(), 0, offset, 1_732_350_000_000)
            .with_key(key)
            .with_value(value.to_string())
    };
    let batch = KafkaBatch::builder(EventSource::Msk)
        .record(record(
            0,
            &plain,
            serde_json::json!({"email": "ada@example.com", "plan": "pro"}),
        ))
        .record(record(
            1,
            &prefixed,
            serde_json::json!({"email": "grace@example.com", "plan": "team"}),
        ))
        .record(record(
            2,
            &cut,
            serde_json::json!({"email": "nobody@example.com"}),
        ))
        .build();
    let h = handler(
        &env,
        &[
            COLUMNS,
            ("KEY_FORMAT", "avro"),
            ("KEY_AVRO_SCHEMA_FILE", avsc),
        ],
    )
    .await;
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(dead_letters(&env, &topic), ["2:schema_mismatch"]);
    let kept = env.sql(&format!(
        "select record_key || '|' || key_encoding || '|' || error_message from dead_letters \
         where topic = {} and function_name = 'table-sink'",
        lit(&topic)
    ));
    // The cut key is UTF-8 (a length byte, then ASCII): kept as its text.
    let text = String::from_utf8(cut).unwrap();
    let (raw_key, rest) = kept.trim().split_once('|').unwrap();
    assert_eq!(raw_key, text, "{kept}");
    assert!(rest.starts_with("utf8|key does not match"), "{kept}");

    // Protobuf keys: u-3 as profiles.UserKey, the descriptor set compiled by protoc.
    let proto = repo().join("events/schemas/user_key.proto");
    let proto = proto.to_str().unwrap();
    let dir = std::env::temp_dir().join(unique("sink_key_pb"));
    std::fs::create_dir_all(&dir).unwrap();
    let set = dir.join("user_key.pb");
    let status = Command::new(repo().join("scripts/proto-tool"))
        .args(["descriptor-set", proto, set.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut encoder = Command::new(repo().join("scripts/proto-tool"));
    encoder.args(["encode", proto, "profiles.UserKey"]);
    let pb = encode(encoder, &keys[2..]).remove(0);
    let h = handler(
        &env,
        &[
            COLUMNS,
            ("KEY_FORMAT", "protobuf"),
            ("KEY_PROTOBUF_DESCRIPTOR_SET", set.to_str().unwrap()),
            ("KEY_PROTOBUF_MESSAGE", "profiles.UserKey"),
        ],
    )
    .await;
    let batch = KafkaBatch::builder(EventSource::Msk)
        .record(record(
            3,
            &pb,
            serde_json::json!({"display_name": "Margaret", "plan": "free"}),
        ))
        .build();
    let r = invoke(&h, &batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();

    let stored: Vec<String> = profiles(&env, &ids)
        .lines()
        .map(|l| l.rsplit_once('|').unwrap().0.to_owned())
        .collect();
    let mut expected = vec![
        format!("{}|ada@example.com|-|pro", users[0]),
        format!("{}|grace@example.com|-|team", users[1]),
        format!("{}|-|Margaret|free", users[2]),
    ];
    expected.sort();
    assert_eq!(stored, expected);
}
