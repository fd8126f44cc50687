//! What the tests of the PostgREST client share: a client of a loopback server with fast
//! retries, JWTs with chosen claims, a plain insert and keys a test rotates.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::retry::{Deadline, RetryPolicy};
use crate::secrets::{Credential, Secret};

use super::{PostgrestClient, PostgrestConfig, PostgrestError, Upsert};

pub(super) fn client(url: &str) -> PostgrestClient {
    let mut c = PostgrestConfig::new(url, Secret::new("sekret-key"));
    c.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    PostgrestClient::new(c).unwrap()
}

/// A JWT with `claims` as payload (the signature is not checked by the client).
pub(super) fn jwt(claims: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"signature")
    )
}

/// A plain insert of `[]` into `table`, within 5 s.
pub(super) async fn insert_empty(c: &PostgrestClient, table: &str) -> Result<(), PostgrestError> {
    let deadline = Deadline::after(Duration::from_secs(5));
    let body = Bytes::from_static(b"[]");
    c.upsert(&deadline, table, body, &Upsert::insert()).await
}

/// A key in a secret whose value the test sets; re-read only after refusals.
pub(super) async fn rotating_key(value: &Arc<std::sync::Mutex<String>>) -> Credential {
    rotating_key_with_ttl(value, None).await
}

/// A key in a secret whose value the test sets; re-read after refusals and after `ttl`.
pub(super) async fn rotating_key_with_ttl(
    value: &Arc<std::sync::Mutex<String>>,
    ttl: Option<Duration>,
) -> Credential {
    let value = value.clone();
    let policy = crate::secrets::RefreshPolicy {
        ttl,
        ..Default::default()
    };
    Credential::from_reader(
        "app/supabase",
        "SUPABASE_KEY_SECRET_ID",
        "key",
        policy,
        move || {
            let now = value.lock().unwrap().clone();
            async move { Ok(Some(Secret::new(now))) }
        },
    )
    .await
    .unwrap()
}
