//! gift-publisher end to end: Function URL events POSTed through the real binary (over the
//! Runtime API, as Lambda runs it) -> the real broker -> `esm-local` -> the real gift-persister
//! -> `vault`. One row per POST, one row for a POST retried with the same `Idempotency-Key`, two
//! rows for two callers sending the same key (the key is scoped to the caller), 400
//! and 413 problem documents, a stopped broker answered with 503 and nothing stored, the broker
//! back and the retried POST accepted; and the partitioner agreeing with librdkafka's
//! `murmur2_random` (the Java client's default).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeOutcome};
use esm_local::kafka::KafkaConfig;
use gift_publisher::idempotency::Caller;
use gift_publisher::partition::partition_for;
use integration_tests::command::stdout_of;
use integration_tests::esm::{
    Runner, create_topic, function_binary, kafka_or_skip, runner_config, wait_until,
};
use integration_tests::stack::{StackEnv, lit, unique};
use serde_json::{Value, json};

/// The IAM user that signed the sample Function URL request.
const SAMPLE_CALLER: &str = "arn:aws:iam::111122223333:user/vault-client";

/// The sample Function URL request with `body` and, when given, an `Idempotency-Key`.
fn function_url_event(body: &str, idempotency_key: Option<&str>) -> Vec<u8> {
    function_url_event_as(SAMPLE_CALLER, body, idempotency_key)
}

/// The same request signed by the IAM principal `caller` (`requestContext.authorizer.iam`).
fn function_url_event_as(caller: &str, body: &str, idempotency_key: Option<&str>) -> Vec<u8> {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../events/gift-publisher-function-url.json"
    ))
    .unwrap();
    event["requestContext"]["authorizer"]["iam"]["userArn"] = Value::String(caller.to_owned());
    event["body"] = Value::String(body.to_owned());
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    if let Some(k) = idempotency_key {
        headers.insert("idempotency-key".into(), Value::String(k.to_owned()));
    }
    serde_json::to_vec(&event).unwrap()
}

/// The publisher binary, driven through an emulated Runtime API.
fn publisher(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> FunctionProcess {
    let mut env: Vec<(String, String)> = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_SECURITY", "plaintext"),
        ("GIFT_TOPIC", topic),
        ("PUBLISH_TIMEOUT_MS", "1500"),
        ("AWS_LAMBDA_LOG_LEVEL", "error"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    env.push(("METRICS_ENABLED".into(), "false".into()));
    FunctionProcess::new(FunctionSpec {
        path: function_binary("gift-publisher"),
        env,
        name: "gift-publisher".into(),
        timeout: Duration::from_secs(10),
        memory_mb: 128,
    })
}

/// POSTs `body` and returns (status, headers, body JSON).
async fn post(f: &mut FunctionProcess, body: &str, key: Option<&str>) -> (u16, Value, Value) {
    invoke(f, function_url_event(body, key)).await
}

/// Invokes the publisher with `event` and returns (status, headers, body JSON).
async fn invoke(f: &mut FunctionProcess, event: Vec<u8>) -> (u16, Value, Value) {
    let out = f.invoke(event).await.expect("invoke gift-publisher");
    let InvokeOutcome::Response(bytes) = out else {
        panic!("gift-publisher failed the invocation: {out:?}")
    };
    let r: Value = serde_json::from_slice(&bytes).unwrap();
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    (
        r["statusCode"].as_u64().unwrap() as u16,
        r["headers"].clone(),
        body,
    )
}

/// gift-persister reading `topic` through an in-process `esm-local` runner.
fn persister(kafka: &KafkaConfig, stack: &StackEnv, topic: &str, run: &str) -> Runner {
    let dir = std::env::temp_dir().join(run);
    std::fs::create_dir_all(&dir).unwrap();
    let env = vec![
        ("SUPABASE_REST_URL".to_owned(), stack.rest_url.clone()),
        (
            "SUPABASE_SERVICE_ROLE_KEY".to_owned(),
            stack.service_key.clone(),
        ),
    ];
    Runner::start(runner_config(
        kafka,
        topic,
        &format!("{run}-group"),
        &function_binary("gift-persister"),
        "gift-persister",
        env,
        dir.join("dlq"),
    ))
}

fn gift(page_id: i64, text: &str) -> String {
    json!({"page_id": page_id, "question": format!("Q {text}?"), "answer": format!("A {text}")})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_reach_the_vault_once_per_idempotency_key() {
    let test = "gift_publisher_e2e";
    let (Some(kafka), Some(stack)) = (kafka_or_skip(test), StackEnv::get_or_skip(test)) else {
        return;
    };
    let run = unique("pub").replace('_', "-");
    let topic = format!("{run}-gifts");
    const PARTITIONS: i32 = 3;
    create_topic(&kafka, &topic, PARTITIONS).await;
    let bootstrap = kafka.bootstrap_servers.join(",");
    let mut f = publisher(&bootstrap, &topic, &[("GIFT_MAX_BODY_BYTES", "2048")]);

    // Five gifts over five pages, each with its own key; then two client retries. The event_id
    // is the key scoped to the caller, the same for every retry of that caller.
    let mut ids = Vec::new();
    for i in 0..5i64 {
        let key = format!("{run}-k{i}");
        let (status, _, body) = post(&mut f, &gift(100 + i, &run), Some(&key)).await;
        assert_eq!(status, 202, "{body}");
        let id = Caller::Iam(SAMPLE_CALLER.into()).event_id(&key);
        assert_eq!(body, json!({"queued": true, "event_id": id}));
        ids.push(id);
    }
    for i in [0usize, 3] {
        let key = format!("{run}-k{i}");
        let (status, _, body) = post(&mut f, &gift(100 + i as i64, &run), Some(&key)).await;
        assert_eq!(status, 202, "a retried POST is accepted again");
        assert_eq!(body["event_id"], ids[i].as_str());
    }
    // Another caller sending the first key: its own gift, its own row (not a replay of ours).
    let other = "arn:aws:sts::111122223333:assumed-role/other-writer/session";
    let (status, _, body) = invoke(
        &mut f,
        function_url_event_as(other, &gift(105, &run), Some(&format!("{run}-k0"))),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_ne!(body["event_id"], ids[0].as_str());
    ids.push(body["event_id"].as_str().unwrap().to_owned());

    // Refused before the broker: each problem names its field.
    let (status, headers, doc) = post(
        &mut f,
        r#"{"page_id": -4, "question": "", "answer": "A", "ts": "soon"}"#,
        Some(&format!("{run}-bad")),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/problem+json");
    let fields: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["page_id", "question", "ts"], "{doc}");
    let (status, _, doc) = post(&mut f, &gift(1, &"x".repeat(3000)), None).await;
    assert_eq!(
        (status, doc["code"].as_str()),
        (413, Some("body_too_large"))
    );

    // The persister reads the topic through esm-local.
    let runner = persister(&kafka, &stack, &topic, &run);
    let t = lit(&topic);
    let stored = wait_until(Duration::from_secs(60), || {
        stack.count(&format!(
            "select count(*) from vault where kafka_topic = {t}"
        )) >= 6
    })
    .await;
    // Give the retried records (offsets after the first five) time to arrive too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    runner.assert_running();
    runner.stop().await.unwrap();
    assert!(stored, "the six gifts did not reach the vault");
    let rows = stack.sql(&format!(
        "select string_agg(event_id || ':' || page_id || ':' || kafka_partition, ',' order by event_id)
         from vault where kafka_topic = {t}"
    ));
    let rows: Vec<&str> = rows.split(',').collect();
    assert_eq!(
        rows.len(),
        6,
        "one row per (caller, idempotency key): {rows:?}"
    );
    let mut expected: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let page = 100 + i as i64;
            let partition = partition_for(page.to_string().as_bytes(), PARTITIONS);
            format!("{id}:{page}:{partition}")
        })
        .collect();
    expected.sort();
    assert_eq!(rows, expected, "keyed by page");
    assert_eq!(
        stack.count(&format!(
            "select count(*) from dead_letters where topic = {t}"
        )),
        0
    );
}

/// A private Tansu broker on its own port (in memory: a restart forgets every topic).
struct PrivateBroker {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    fn start(bin: PathBuf) -> Self {
        let port = integration_tests::unused_port();
        let mut b = Self {
            bin,
            port,
            child: None,
        };
        b.up();
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the tansu broker");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the private broker did not open {}", self.addr());
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_gets_503_and_the_retry_is_stored_once_it_is_back() {
    let test = "gift_publisher_outage";
    let Some(stack) = StackEnv::get_or_skip(test) else {
        return;
    };
    let Some(bin) = std::env::var_os("KAFKA_BROKER_BIN").map(PathBuf::from) else {
        eprintln!(
            "\n!!!! SKIPPED {test}: KAFKA_BROKER_BIN is not set \
             (eval \"$(scripts/kafka-broker env)\") !!!!\n"
        );
        return;
    };
    let mut broker = PrivateBroker::start(bin);
    let kafka = KafkaConfig::new(vec![broker.addr()]);
    let run = unique("pub-outage").replace('_', "-");
    let topic = format!("{run}-gifts");
    create_topic(&kafka, &topic, 2).await;
    let mut f = publisher(&broker.addr(), &topic, &[]);
    let key = format!("{run}-retried");

    let (status, _, _) = post(&mut f, &gift(7, "before"), Some(&format!("{run}-first"))).await;
    assert_eq!(status, 202);

    broker.down();
    let (status, headers, doc) = post(&mut f, &gift(8, "during"), Some(&key)).await;
    assert_eq!(status, 503, "{doc}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(doc["code"], "broker_unavailable");
    // An execution environment started while the broker is down still starts, and answers 503.
    let mut cold = publisher(&broker.addr(), &topic, &[]);
    let cold_key = format!("{run}-cold");
    let (status, _, _) = post(&mut cold, &gift(9, "cold"), Some(&cold_key)).await;
    assert_eq!(status, 503);

    // The broker comes back (empty: it keeps topics in memory); the client retries its POST.
    broker.up();
    create_topic(&kafka, &topic, 2).await;
    let mut accepted = false;
    for _ in 0..10 {
        let (status, _, _) = post(&mut f, &gift(8, "during"), Some(&key)).await;
        if status == 202 {
            accepted = true;
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        accepted,
        "the same function instance reconnects once the broker is back"
    );
    let (status, _, _) = post(&mut cold, &gift(9, "cold"), Some(&cold_key)).await;
    assert_eq!(
        status, 202,
        "the instance that started without a broker connects now"
    );

    let runner = persister(&kafka, &stack, &topic, &run);
    let t = lit(&topic);
    let stored = wait_until(Duration::from_secs(60), || {
        stack.count(&format!(
            "select count(*) from vault where kafka_topic = {t}"
        )) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    runner.stop().await.unwrap();
    assert!(stored, "the retried gifts were not stored");
    let ids = stack.sql(&format!(
        "select string_agg(event_id, ',' order by event_id) from vault where kafka_topic = {t}"
    ));
    let caller = Caller::Iam(SAMPLE_CALLER.into());
    let mut expected = [caller.event_id(&cold_key), caller.event_id(&key)];
    expected.sort();
    assert_eq!(
        ids,
        expected.join(","),
        "only the gifts accepted after the restart, once each: the 503s stored nothing"
    );
}

#[tokio::test]
async fn keys_land_where_librdkafka_murmur2_random_puts_them() {
    let test = "gift_publisher_partitioner";
    let Some(kafka) = kafka_or_skip(test) else {
        return;
    };
    let python = std::env::var("KAFKA_PRODUCER_PYTHON")
        .expect("KAFKA_PRODUCER_PYTHON (scripts/kafka-broker env): a Python with confluent-kafka");
    let topic = format!("{}-partitioner", unique("pub").replace('_', "-"));
    const PARTITIONS: i32 = 7;
    create_topic(&kafka, &topic, PARTITIONS).await;
    let keys: Vec<String> = (0..200)
        .map(|i| i.to_string())
        .chain(["page-ü", "a-little-bit-longer-string"].map(String::from))
        .collect();
    // librdkafka's `murmur2_random` is documented as Java-producer compatible.
    let script = r#"
import json, sys
from confluent_kafka import Producer
bootstrap, topic, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
out = {}
def done(err, msg):
    if err: raise SystemExit(str(err))
    out[msg.key().decode()] = msg.partition()
for k in keys:
    p.produce(topic, key=k.encode(), value=b"x", on_delivery=done)
p.flush(30)
print(json.dumps(out))
"#;
    let output = stdout_of(Command::new(python).args([
        "-c",
        script,
        &kafka.bootstrap_servers.join(","),
        &topic,
        &serde_json::to_string(&keys).unwrap(),
    ]));
    let theirs: std::collections::HashMap<String, i32> = serde_json::from_str(&output).unwrap();
    assert_eq!(theirs.len(), keys.len());
    for k in &keys {
        assert_eq!(
            partition_for(k.as_bytes(), PARTITIONS),
            theirs[k],
            "key {k:?}"
        );
    }
}

#[tokio::test]
async fn esm_local_serve_api_answers_with_the_functions_own_code() {
    let test = "gift_publisher_serve_api";
    let Some(kafka) = kafka_or_skip(test) else {
        return;
    };
    let topic = format!("{}-serve-api", unique("pub").replace('_', "-"));
    create_topic(&kafka, &topic, 1).await;
    let port = integration_tests::unused_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(function_binary("esm-local"))
        .args(["serve-api", "--topic", &topic, "--listen", &listen])
        .args(["--bootstrap-servers", &kafka.bootstrap_servers.join(",")])
        .env("GIFT_MAX_BODY_BYTES", "1024")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start esm-local serve-api");
    let http = reqwest::Client::new();
    let url = format!("http://{listen}/vault/save");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(&listen).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "serve-api did not listen on {listen}");
    let r = http
        .post(&url)
        .header("idempotency-key", "local-1")
        .body(gift(3, "local"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    // No authorizer in front of serve-api: every local caller shares one scope.
    let id = Caller::Anonymous.event_id("local-1");
    assert_eq!(body, json!({"queued": true, "event_id": id}));
    let r = http
        .post(&url)
        .body(r#"{"page_id": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http.post(&url).body("x".repeat(2000)).send().await.unwrap();
    assert_eq!(
        r.status(),
        413,
        "the function's own settings apply (GIFT_MAX_BODY_BYTES)"
    );
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_msk_iam_token_signature_matches_botocores() {
    // botocore is what AWS's own MSK IAM signer (aws-msk-iam-sasl-signer-python) presigns with;
    // it comes with the SAM CLI venv that `scripts/check-template` installs and caches.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = stdout_of(Command::new(root.join("scripts/check-template")).arg("--venv"));
    let python = PathBuf::from(venv.trim()).join("bin/python");
    let creds = aws_credential_types::Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLE/token+with=chars".into()),
        None,
        "test",
    );
    for (region, at) in [
        ("eu-west-1", 1_795_986_000u64),
        ("us-east-1", 1_700_000_123),
    ] {
        let when = std::time::UNIX_EPOCH + Duration::from_secs(at);
        let token = gift_publisher::msk_iam::token(region, &creds, when).unwrap();
        let out = stdout_of(
            Command::new(&python)
                .arg(root.join("tests/py/msk_iam_botocore.py"))
                .args([
                    &token,
                    "AKIDEXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                ])
                .arg("IQoJb3JpZ2luX2VjEXAMPLE/token+with=chars"),
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        for param in [
            "Action",
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Security-Token",
            "X-Amz-Signature",
        ] {
            assert_eq!(v["ours"][param], v["theirs"][param], "{region}: {param}");
        }
    }
}

#[tokio::test]
async fn scram_credentials_and_root_ca_come_from_secrets_manager() {
    let test = "gift_publisher_secrets";
    let Some(stack) = StackEnv::get_or_skip(test) else {
        return;
    };
    assert!(
        stack.secrets_endpoint.is_some(),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER (scripts/local-stack env) is needed by {test}"
    );
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    // MSK's SCRAM secrets are named AmazonMSK_* and hold {"username", "password"}; the ESM's
    // root-CA secret holds {"certificate": PEM}.
    let scram = unique("AmazonMSK_gift-publisher");
    let password = unique("pw");
    let ca = unique("kafka-root-ca");
    for (name, value) in [
        (
            &scram,
            json!({"username": "vault-writer", "password": password}),
        ),
        (
            &ca,
            json!({"certificate": include_str!("../../../functions/gift-publisher/testdata/ca.pem")}),
        ),
    ] {
        sm.create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("moto create_secret");
    }
    let env = lambda_kit::config::Env::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVERS", "b-1.kafka.internal:9096"),
        ("KAFKA_AUTH", "scram-sha-512"),
        ("KAFKA_SASL_SECRET_ID", scram.as_str()),
        ("KAFKA_ROOT_CA_SECRET_ID", ca.as_str()),
    ]);
    let config = gift_publisher::config::Config::load(&env).await.unwrap();
    let gift_publisher::kafka::Auth::Scram {
        sha512: true,
        username,
        password: secret,
    } = &config.kafka.auth
    else {
        panic!("SCRAM-SHA-512 expected: {:?}", config.kafka.auth)
    };
    assert_eq!(
        (
            username.current().await.expose(),
            secret.current().await.expose()
        ),
        ("vault-writer", password.as_str())
    );
    assert!(
        config.kafka.tls.is_some(),
        "TLS with the CA from the secret"
    );
    assert!(!format!("{config:?}").contains(&password));

    // A secret that does not exist fails the cold start, naming the variable, not the value.
    let env = lambda_kit::config::Env::from_pairs([
        ("KAFKA_BOOTSTRAP_SERVERS", "b-1.kafka.internal:9096"),
        ("KAFKA_AUTH", "scram-sha-512"),
        ("KAFKA_SASL_SECRET_ID", "AmazonMSK_does-not-exist"),
    ]);
    let e = gift_publisher::config::Config::load(&env)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("KAFKA_SASL_SECRET_ID"), "{e}");
}
