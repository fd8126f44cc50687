use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::credential::Credential;
use super::error::SecretError;
use super::refresh::{MIN_FORCED_REFRESH_INTERVAL, RefreshPolicy, Refreshed};
use super::secret::Secret;
use super::secrets_manager::extract;
use super::spec::{SecretSpec, resolve};
use super::stored::{Reader, Stored};
use crate::config::Env;
use crate::error::Classify;

#[test]
fn extract_plain_and_json() {
    assert_eq!(extract(" abc \n", "key").unwrap(), "abc");
    assert_eq!(extract(r#"{"key":"v","other":1}"#, "key").unwrap(), "v");
    assert_eq!(extract(r#"{"api_key":"v"}"#, "api_key").unwrap(), "v");
    let e = extract(r#"{"nope":"topsecret"}"#, "key").unwrap_err();
    assert!(e.contains("\"key\"") && !e.contains("topsecret"), "{e}");
    assert!(extract(r#"{"key":5}"#, "key").is_err());
    assert!(extract(r#"{"key":"#, "key").is_err());
    assert!(extract("  ", "key").is_err());
}

/// A secret whose value the test sets, counting reads; read through `policy`.
struct Fake {
    value: Arc<Mutex<Result<String, ()>>>,
    reads: Arc<std::sync::atomic::AtomicUsize>,
    stored: Arc<Stored>,
}

impl Fake {
    fn new(value: &str, policy: RefreshPolicy) -> Self {
        let value = Arc::new(Mutex::new(Ok(value.to_owned())));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (v, r) = (value.clone(), reads.clone());
        let read: Reader = Arc::new(move || {
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let now = v.lock().unwrap().clone();
            Box::pin(async move {
                now.map(|s| Some(Secret::new(s)))
                    .map_err(|()| SecretError::Fetch {
                        secret_id: "app/key".into(),
                        secret_id_var: "KEY_SECRET_ID".into(),
                        message: "unreachable".into(),
                        transient: true,
                    })
            })
        });
        let stored = Arc::new(Stored::new(
            "app/key".into(),
            "KEY_SECRET_ID".into(),
            policy,
            read,
        ));
        Self {
            value,
            reads,
            stored,
        }
    }
    fn set(&self, value: Result<&str, ()>) {
        *self.value.lock().unwrap() = value.map(str::to_owned);
    }
    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
    async fn credential(&self, field: &str) -> Credential {
        Credential::of_stored(self.stored.clone(), field)
            .await
            .unwrap()
    }
}

fn policy(ttl: Option<u64>) -> RefreshPolicy {
    RefreshPolicy {
        ttl: ttl.map(Duration::from_secs),
        ..RefreshPolicy::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_is_re_read_on_its_first_use_after_the_ttl() {
    let fake = Fake::new("key-a", policy(Some(300)));
    let key = fake.credential("key").await;
    assert_eq!(fake.reads(), 1);
    fake.set(Ok("key-b"));
    tokio::time::advance(Duration::from_secs(299)).await;
    assert_eq!(key.current().await.expose(), "key-a", "within the TTL");
    assert_eq!(fake.reads(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(key.current().await.expose(), "key-b", "past the TTL");
    assert_eq!(fake.reads(), 2);
    assert_eq!(key.current().await.expose(), "key-b");
    assert_eq!(fake.reads(), 2, "the new value starts a new TTL");

    // A failed re-read keeps the value held, and is tried again one TTL later.
    fake.set(Err(()));
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(key.current().await.expose(), "key-b");
    assert_eq!(key.current().await.expose(), "key-b");
    assert_eq!(fake.reads(), 3);
    fake.set(Ok("key-c"));
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(key.current().await.expose(), "key-c");
}

#[tokio::test(start_paused = true)]
async fn ttl_zero_never_re_reads_on_a_timer() {
    let p = RefreshPolicy::from_env(&Env::from_pairs([("SECRETS_TTL_SECONDS", "0")])).unwrap();
    let fake = Fake::new("key-a", p);
    let key = fake.credential("key").await;
    fake.set(Ok("key-b"));
    tokio::time::advance(Duration::from_secs(86_400)).await;
    assert_eq!(key.current().await.expose(), "key-a");
    assert_eq!(fake.reads(), 1);
    // A refusal still re-reads it.
    let refreshed = key.refresh_after_auth_failure(&Secret::new("key-a")).await;
    assert_eq!(refreshed, Refreshed::Changed(Secret::new("key-b")));
    let e = RefreshPolicy::from_env(&Env::from_pairs([("SECRETS_TTL_SECONDS", "-1")])).unwrap_err();
    assert_eq!(e.var, "SECRETS_TTL_SECONDS");
}

#[tokio::test(start_paused = true)]
async fn forced_re_reads_are_rate_limited_per_secret() {
    let fake = Fake::new(r#"{"username":"u","password":"pw-a"}"#, policy(None));
    let password = fake.credential("password").await;
    let user = fake.credential("username").await;
    assert_eq!(fake.reads(), 1, "two fields of one secret: one read");
    let refused = password.current().await;

    // Refused, the secret unchanged: one read, then none for the next 30 s.
    assert_eq!(
        password.refresh_after_auth_failure(&refused).await,
        Refreshed::Unchanged
    );
    assert_eq!(fake.reads(), 2);
    for _ in 0..100 {
        assert_eq!(
            password.refresh_after_auth_failure(&refused).await,
            Refreshed::RateLimited
        );
    }
    // The limit is per secret, whichever field was refused.
    let u = user.current().await;
    assert_eq!(
        user.refresh_after_auth_failure(&u).await,
        Refreshed::RateLimited
    );
    assert_eq!(
        fake.reads(),
        2,
        "a wrong key does not hammer Secrets Manager"
    );

    fake.set(Ok(r#"{"username":"u","password":"pw-b"}"#));
    tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL - Duration::from_millis(1)).await;
    assert_eq!(
        password.refresh_after_auth_failure(&refused).await,
        Refreshed::RateLimited
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        password.refresh_after_auth_failure(&refused).await,
        Refreshed::Changed(Secret::new("pw-b"))
    );
    assert_eq!(fake.reads(), 3);
    // Another request refused with the old value meanwhile gets the new one without a read.
    assert_eq!(
        password.refresh_after_auth_failure(&refused).await,
        Refreshed::Changed(Secret::new("pw-b"))
    );
    assert_eq!(password.current().await.expose(), "pw-b");
    assert_eq!(user.current().await.expose(), "u");
    assert_eq!(fake.reads(), 3);

    // A re-read that fails is said so, naming the secret and its variable.
    fake.set(Err(()));
    tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL).await;
    let now = password.current().await;
    let refreshed = password.refresh_after_auth_failure(&now).await;
    assert!(matches!(refreshed, Refreshed::Failed(_)), "{refreshed:?}");
    let note = password.refusal_note(&refreshed, false);
    assert!(
        note.contains("app/key") && note.contains("KEY_SECRET_ID"),
        "{note}"
    );
    assert!(!note.contains("pw-"), "{note}");
}

#[tokio::test(start_paused = true)]
async fn call_retries_once_with_the_re_read_value() {
    let fake = Fake::new("key-a", policy(None));
    let key = fake.credential("key").await;
    fake.set(Ok("key-b"));
    let sent = Mutex::new(Vec::new());
    let accept_b = |k: Secret| {
        sent.lock().unwrap().push(k.expose().to_owned());
        async move {
            match k.expose() {
                "key-b" => Ok("stored"),
                _ => Err(401),
            }
        }
    };
    let r = key.call(|s| *s == 401, |s, _| s, accept_b).await;
    assert_eq!(r, Ok("stored"));
    assert_eq!(*sent.lock().unwrap(), ["key-a", "key-b"]);

    // Both refused: the error names the variable; no third attempt.
    sent.lock().unwrap().clear();
    fake.set(Ok("key-c"));
    tokio::time::advance(MIN_FORCED_REFRESH_INTERVAL).await;
    let refuse_all = |k: Secret| {
        sent.lock().unwrap().push(k.expose().to_owned());
        async move { Err::<(), String>("403".into()) }
    };
    let r = key.call(|s| s == "403", |_, note| note, refuse_all).await;
    let note = r.unwrap_err();
    assert!(
        note.contains("so was the new value") && note.contains("KEY_SECRET_ID"),
        "{note}"
    );
    assert_eq!(*sent.lock().unwrap(), ["key-b", "key-c"]);

    // Other errors are not retried.
    let calls = Mutex::new(0);
    let r: Result<(), u16> = key
        .call(
            |s| *s == 401,
            |s, _| s,
            |_| {
                *calls.lock().unwrap() += 1;
                async { Err(500) }
            },
        )
        .await;
    assert_eq!((r, *calls.lock().unwrap()), (Err(500), 1));
}

#[tokio::test]
async fn missing_names_both_variables() {
    let e = resolve(
        &Env::empty(),
        &SecretSpec::new("A_KEY", "A_KEY_SECRET_ID", "key"),
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("A_KEY") && text.contains("A_KEY_SECRET_ID"),
        "{text}"
    );
    assert_eq!(e.error_code(), "secret_not_configured");
}
