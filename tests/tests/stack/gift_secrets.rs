//! The service key from Secrets Manager (moto): plain string, JSON with a `key` field, missing
//! secret; the key never appears in errors; a key rotated while the function is warm.

use gift_persister::config::Config;
use std::time::Duration;

use bytes::Bytes;
use integration_tests::fixtures::gifts::{gifts, invoke};
use integration_tests::stack::{StackEnv, lit, unique};
use lambda_kit::config::Env;
use lambda_kit::error::Classify;
use lambda_kit::postgrest::{PostgrestError, Upsert};
use lambda_kit::retry::Deadline;
use lambda_kit::secrets::{SecretSpec, resolve};

async fn create_secret(name: &str, value: &str) {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&conf);
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto create_secret");
}

#[tokio::test]
async fn gift_key_from_secrets_manager_plain_json_and_missing() {
    let Some(env) = StackEnv::get_or_skip("gift_secrets_manager") else {
        return;
    };
    if env.secrets_endpoint.is_none() {
        eprintln!(
            "\n!!!! SKIPPED gift_secrets_manager: AWS_ENDPOINT_URL_SECRETS_MANAGER is not set !!!!\n"
        );
        return;
    }
    let plain = unique("gift/plain");
    let json = unique("gift/json");
    let secret_value = unique("svc-key");
    create_secret(&plain, &secret_value).await;
    create_secret(
        &json,
        &serde_json::json!({"key": secret_value, "other": "x"}).to_string(),
    )
    .await;
    let spec = SecretSpec::new("UNSET_KEY_VAR", "KEY_SECRET_ID", "key");

    for id in [&plain, &json] {
        let got = resolve(&Env::from_pairs([("KEY_SECRET_ID", id.as_str())]), &spec)
            .await
            .unwrap();
        assert_eq!(got.expose(), secret_value, "{id}");
        assert!(!format!("{got} {got:?}").contains(&secret_value));
    }

    // The whole cold start through the function's config, key from the JSON secret.
    let cfg = Config::load(&Env::from_pairs([
        ("SUPABASE_REST_URL", env.rest_url.as_str()),
        ("SUPABASE_KEY_SECRET_ID", json.as_str()),
    ]))
    .await
    .unwrap();
    assert_eq!(
        cfg.runner.postgrest.key.current().await.expose(),
        secret_value
    );
    assert!(
        !format!("{cfg:?}").contains(&secret_value),
        "Debug of the config redacts the key"
    );

    // A JSON secret without the field, and a missing secret: errors name the id, never a value.
    let nofield = unique("gift/nofield");
    create_secret(
        &nofield,
        &serde_json::json!({"api_key": secret_value}).to_string(),
    )
    .await;
    let e = resolve(
        &Env::from_pairs([("KEY_SECRET_ID", nofield.as_str())]),
        &spec,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(&nofield) && e.contains("\"key\""), "{e}");
    assert!(!e.contains(&secret_value), "{e}");
    let missing = unique("gift/missing");
    let e = Config::load(&Env::from_pairs([
        ("SUPABASE_REST_URL", env.rest_url.as_str()),
        ("SUPABASE_KEY_SECRET_ID", missing.as_str()),
    ]))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&missing) && e.contains("SUPABASE_KEY_SECRET_ID"),
        "{e}"
    );
}

async fn put_secret(name: &str, value: &str) {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_secretsmanager::Client::new(&conf)
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto put_secret_value");
}

/// gift-persister built (as `main` builds it) with its key from Secrets Manager secret `id`.
async fn persister_with_key_secret(
    env: &StackEnv,
    id: &str,
) -> gift_persister::handler::PostgrestHandler {
    Config::load(&Env::from_pairs([
        ("SUPABASE_REST_URL", env.rest_url.as_str()),
        ("SUPABASE_KEY_SECRET_ID", id),
        ("RETRY_INITIAL_BACKOFF_MS", "20"),
        ("HTTP_TIMEOUT_MS", "2000"),
        ("DEFAULT_BUDGET_MS", "20000"),
        ("METRICS_ENABLED", "false"),
    ]))
    .await
    .unwrap()
    .build()
    .unwrap()
}

/// A key rotated in Secrets Manager while gift-persister is warm. The warm function holds key A,
/// which the API now refuses: the stack's service-role JWT with a broken signature, answered 401
/// `PGRST301` as PostgREST answers a JWT signed with a retired secret. The secret then holds key
/// B (the valid service-role key). The next batch is stored by the same handler (same process,
/// no rebuild): the 401 re-read the secret and the write was sent again with B. A secret that
/// still holds the refused key leaves the batch reported for redelivery, nothing stored.
#[tokio::test]
async fn rotated_key_reaches_a_warm_gift_persister() {
    let Some((env, revoked)) = secrets_stack("gift_rotated_key") else {
        return;
    };

    let rotated = unique("gift/rotated");
    create_secret(&rotated, &key_json(&revoked)).await;
    let warm = persister_with_key_secret(&env, &rotated).await;
    put_secret(&rotated, &key_json(&env.service_key)).await;
    let topic = unique("gift_rot");
    let r = invoke(&warm, &gifts(&topic, 3)).await.unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    assert_eq!(vault_rows(&env, &topic), 3);

    let stale = unique("gift/stale");
    create_secret(&stale, &key_json(&revoked)).await;
    let warm = persister_with_key_secret(&env, &stale).await;
    let e = refused_batch(&env, &warm, "gift_stale").await;
    assert_eq!(e.error_code(), "db_unauthorized");
    let text = e.to_string();
    assert!(
        text.contains("SUPABASE_KEY_SECRET_ID") && text.contains(&stale),
        "{text}"
    );
    assert!(
        !text.contains(&revoked) && !text.contains(&env.service_key),
        "{text}"
    );
}

/// A rotation that stores a key that cannot write: Supabase's publishable key (row-level
/// security applies to it, so the persister's writes would be refused or, worse, land only
/// where a policy lets anyone write). The cold start refuses such a key; a warm gift-persister
/// re-reading the secret after a 401 refuses it the same way: no request carries it, the batch
/// is reported for redelivery (nothing dead-lettered) and the error names the secret.
#[tokio::test]
async fn a_key_rotated_to_a_publishable_key_is_refused_by_a_warm_gift_persister() {
    let Some((env, revoked)) = secrets_stack("gift_publishable_rotation") else {
        return;
    };
    let publishable = "sb_publishable_6bT2cR0tAt3dPubl1shabl3Key";

    let id = unique("gift/publishable");
    create_secret(&id, &key_json(&revoked)).await;
    let warm = persister_with_key_secret(&env, &id).await;
    put_secret(&id, &key_json(publishable)).await;
    let e = refused_batch(&env, &warm, "gift_pub").await;
    assert_eq!(e.error_code(), "db_key_unusable");
    assert_eq!(e.class(), lambda_kit::error::ErrorClass::Environment);
    let text = e.to_string();
    assert!(
        text.contains("SUPABASE_KEY_SECRET_ID")
            && text.contains(&id)
            && text.contains("publishable"),
        "{text}"
    );
    assert!(
        !text.contains(publishable) && !text.contains(&revoked),
        "{text}"
    );
}

/// The stack, when it has a Secrets Manager emulator, and a key the API refuses: the stack's
/// service-role JWT with a broken signature, answered 401 `PGRST301` as PostgREST answers a
/// JWT signed with a retired secret.
fn secrets_stack(test: &str) -> Option<(StackEnv, String)> {
    let env = StackEnv::get_or_skip(test)?;
    if env.secrets_endpoint.is_none() {
        eprintln!("\n!!!! SKIPPED {test}: AWS_ENDPOINT_URL_SECRETS_MANAGER is not set !!!!\n");
        return None;
    }
    let (head, _) = env.service_key.rsplit_once('.').expect("a JWT");
    let revoked = format!("{head}.{}", "A".repeat(43));
    Some((env, revoked))
}

/// A Supabase key secret's value.
fn key_json(key: &str) -> String {
    serde_json::json!({ "key": key }).to_string()
}

/// A batch of three gifts on a new topic named after `prefix`, sent to `warm` whose key is
/// refused: every record fails for the environment (the whole batch handed back for
/// redelivery), nothing is stored or dead-lettered. Returns the error of one more write, the one
/// the runner logs: it names the setting to fix.
async fn refused_batch(
    env: &StackEnv,
    warm: &gift_persister::handler::PostgrestHandler,
    prefix: &str,
) -> PostgrestError {
    let topic = unique(prefix);
    let e = invoke(warm, &gifts(&topic, 3)).await.unwrap_err();
    assert!(e.contains("all 3 records failed"), "{e}");
    assert_eq!(vault_rows(env, &topic), 0);
    let dead = env.dead_letter_count(&topic);
    assert_eq!(dead, 0, "a refused key is not the records' fault");
    let client = warm.function().store().client();
    let deadline = Deadline::after(Duration::from_secs(5));
    client
        .upsert(
            &deadline,
            "vault",
            Bytes::from_static(b"[]"),
            &Upsert::insert(),
        )
        .await
        .unwrap_err()
}

fn vault_rows(env: &StackEnv, topic: &str) -> i64 {
    env.count(&format!(
        "select count(*) from vault where kafka_topic = {}",
        lit(topic)
    ))
}
