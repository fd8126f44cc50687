//! The service key from Secrets Manager (moto): plain string, JSON with a `key` field, missing
//! secret; the key never appears in errors.

use gift_persister::config::Config;
use integration_tests::stack::{StackEnv, unique};
use lambda_kit::config::Env;
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
    let cfg = Config::from(&Env::from_pairs([
        ("SUPABASE_REST_URL", env.rest_url.as_str()),
        ("SUPABASE_KEY_SECRET_ID", json.as_str()),
    ]))
    .await
    .unwrap();
    assert_eq!(cfg.runner.postgrest.key.expose(), secret_value);
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
    let e = Config::from(&Env::from_pairs([
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
