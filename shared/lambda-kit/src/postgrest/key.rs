//! Supabase API keys: their kinds ([`KeyKind`]: secret, publishable, legacy JWT), the key a
//! writer reads at cold start ([`resolve_key`], from `SUPABASE_SECRET_KEY` and its legacy and
//! Secrets Manager variants) and the headers each kind is sent in, refused before any request
//! when the key cannot write.

use reqwest::header::HeaderValue;

use crate::config::{ConfigError, Env};
use crate::init::InitError;
use crate::secrets::{Credential, Secret, SecretSpec};

use super::PostgrestError;

// Supabase API keys, as Supabase's documentation describes them (supabase.com/docs: guides
// "API keys" and "Migrating to publishable and secret API keys"; the troubleshooting article on
// `UNAUTHORIZED_MISSING_API_KEY`):
// - there are four kinds: publishable `sb_publishable_...` and secret `sb_secret_...` keys, and
//   the legacy JWT `anon` and `service_role` keys, which are deprecated (end of 2026) but keep
//   working next to the new ones during the migration;
// - a publishable key (like `anon`) only reaches what row-level security allows; a secret key
//   (like `service_role`) bypasses it and belongs on servers only;
// - a secret key is not a JWT: it goes in the `apikey` header, and Supabase's API gateway
//   authenticates it; `Authorization: Bearer` is not required, and a secret key sent only there
//   is answered 401 `UNAUTHORIZED_MISSING_API_KEY`; requests with a secret key from a browser
//   are refused.
// A legacy JWT key keeps both headers, as Supabase's clients send it (PostgREST verifies the JWT
// itself: the local stack relies on that); a key of no known form is sent as before, in both.

/// The documented variables of the Supabase key (the key, or a Secrets Manager id), and the legacy
/// ones still read.
pub const KEY_VARS: [(&str, &str); 2] = [
    ("SUPABASE_SECRET_KEY", "SUPABASE_SECRET_KEY_SECRET_ID"),
    ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY_SECRET_ID"),
];

/// What kind of Supabase API key a string is, judged by its form alone (a JWT's signature is not
/// verified: PostgREST does that).
///
/// ```
/// use lambda_kit::postgrest::KeyKind;
/// assert_eq!(KeyKind::of("sb_secret_abc"), KeyKind::Secret);
/// assert!(!KeyKind::Secret.sends_bearer());
/// // The payload {"role":"service_role"}.
/// let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2ln";
/// assert_eq!(KeyKind::of(jwt), KeyKind::Jwt { role: Some("service_role".into()) });
/// assert!(KeyKind::of(jwt).sends_bearer());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// `sb_secret_...`: sent as `apikey` only.
    Secret,
    /// `sb_publishable_...`: row-level security applies, so it cannot write; refused.
    Publishable,
    /// A legacy key: a JWT (`eyJ...`, three base64url segments) with the `role` claim of its
    /// payload, when readable. `anon` is refused; others are sent in both headers.
    Jwt {
        /// The payload's `role` claim.
        role: Option<String>,
    },
    /// Any other form (a self-hosted token, a test key): sent in both headers.
    Other,
}

impl KeyKind {
    /// The kind of `key`.
    pub fn of(key: &str) -> Self {
        if key.starts_with("sb_secret_") {
            Self::Secret
        } else if key.starts_with("sb_publishable_") {
            Self::Publishable
        } else if is_jwt(key) {
            Self::Jwt {
                role: jwt_role(key),
            }
        } else {
            Self::Other
        }
    }

    /// Whether the key also goes in `Authorization: Bearer`: not for Supabase's API keys, which
    /// are not JWTs.
    pub fn sends_bearer(&self) -> bool {
        !matches!(self, Self::Secret | Self::Publishable)
    }

    /// Why a writer cannot use this key, if it cannot: publishable and `anon` keys only reach
    /// what row-level security allows.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Self::Publishable => Some(
                "is a publishable key (sb_publishable_...): row-level security keeps it from \
                 writing; use a secret key (sb_secret_...)",
            ),
            Self::Jwt { role: Some(role) } if role == "anon" => Some(
                "is the legacy anon key (JWT role \"anon\"): row-level security keeps it from \
                 writing; use a secret key (sb_secret_...) or the legacy service_role key",
            ),
            _ => None,
        }
    }
}

fn is_jwt(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    key.starts_with("eyJ")
        && parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
        })
}

/// The `role` claim of a JWT's payload, decoded without verifying anything.
fn jwt_role(key: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = key.split('.').nth(1)?.trim_end_matches('=');
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("role")?.as_str().map(str::to_owned)
}

/// The Supabase key of a writer, read at cold start: `SUPABASE_SECRET_KEY`, or the legacy
/// `SUPABASE_SERVICE_ROLE_KEY`, or a Secrets Manager id in `SUPABASE_SECRET_KEY_SECRET_ID` /
/// `SUPABASE_KEY_SECRET_ID` (plain value or JSON `{"key": ...}`); the key wins over an id, as
/// with [`resolve`](crate::secrets::resolve). Setting both names of one pair is an error naming
/// both, and so is a key that cannot write ([`KeyKind::refusal`]): the error names the variable
/// it came from. A key from Secrets Manager is re-read after `SECRETS_TTL_SECONDS` and after a
/// 401/403 ([`Credential`]).
///
/// ```
/// use lambda_kit::{config::Env, postgrest::resolve_key};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = Env::from_pairs([("SUPABASE_SECRET_KEY", "sb_secret_abc")]);
/// assert_eq!(resolve_key(&env).await.unwrap().current().await.expose(), "sb_secret_abc");
/// let env = Env::from_pairs([("SUPABASE_SECRET_KEY", "sb_publishable_abc")]);
/// assert!(resolve_key(&env).await.unwrap_err().to_string().contains("SUPABASE_SECRET_KEY"));
/// # }
/// ```
pub async fn resolve_key(env: &Env) -> Result<Credential, InitError> {
    let [(key, key_id), (legacy_key, legacy_id)] = KEY_VARS;
    let plain = one_of(env, key, legacy_key)?;
    let id = one_of(env, key_id, legacy_id)?;
    if plain.is_none() && id.is_none() {
        return Err(ConfigError::new(
            key,
            format!("set {key} or {key_id} (or the legacy {legacy_key} or {legacy_id})"),
        )
        .into());
    }
    let spec = SecretSpec::new(plain.unwrap_or(key), id.unwrap_or(key_id), "key");
    let credential = Credential::from_env(env, &spec).await?;
    let var = if plain.is_some() {
        spec.env_var
    } else {
        spec.secret_id_var
    };
    match KeyKind::of(credential.current().await.expose()).refusal() {
        Some(problem) => Err(ConfigError::new(var, format!("the key {problem}")).into()),
        None => Ok(credential),
    }
}

/// Which of two names of one setting is set; both is an error naming both.
fn one_of<'a>(env: &Env, name: &'a str, legacy: &'a str) -> Result<Option<&'a str>, ConfigError> {
    match (env.get(name).is_some(), env.get(legacy).is_some()) {
        (true, true) => Err(ConfigError::new(
            name,
            format!("set either {name} or the legacy {legacy}, not both"),
        )),
        (true, false) => Ok(Some(name)),
        (false, true) => Ok(Some(legacy)),
        (false, false) => Ok(None),
    }
}

/// `apikey`, and `Authorization: Bearer` for a JWT.
pub(super) type AuthHeaders = (HeaderValue, Option<HeaderValue>);

/// The `apikey` header of `key`, a value of `credential`, and `Authorization: Bearer` for a JWT
/// ([`KeyKind::sends_bearer`]), both marked sensitive. A key that cannot write
/// ([`KeyKind::refusal`]: a rotation put a publishable or anon key in the secret) or cannot be
/// sent is refused here, before any request, naming where it came from.
pub(super) fn auth_headers(
    key: &Secret,
    credential: &Credential,
) -> Result<AuthHeaders, PostgrestError> {
    let key = key.expose();
    let kind = KeyKind::of(key);
    if let Some(problem) = kind.refusal() {
        return Err(PostgrestError::Key(format!(
            "{} {problem}",
            credential.source()
        )));
    }
    let header = |value: &str| {
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            PostgrestError::Key(format!(
                "{} contains characters not allowed in an HTTP header",
                credential.source()
            ))
        })?;
        v.set_sensitive(true);
        Ok::<_, PostgrestError>(v)
    };
    let auth = match kind.sends_bearer() {
        true => Some(header(&format!("Bearer {key}"))?),
        false => None,
    };
    Ok((header(key)?, auth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
    use crate::postgrest::test_support::{insert_empty, jwt, rotating_key, rotating_key_with_ttl};
    use crate::postgrest::{PostgrestClient, PostgrestConfig};
    use crate::testing::MockServer;
    use std::sync::Arc;
    use std::time::Duration;

    /// The `apikey` and `authorization` headers of one insert sent with `key`.
    async fn auth_headers_sent(key: &str) -> (Option<String>, Option<String>) {
        let server = MockServer::start(vec![(201, vec![], String::new())]).await;
        let c = PostgrestClient::new(PostgrestConfig::new(server.url(), Secret::new(key))).unwrap();
        insert_empty(&c, "vault").await.unwrap();
        let head = server.requests()[0].head.clone();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        (header("apikey"), header("authorization"))
    }

    #[tokio::test]
    async fn headers_follow_the_key_kind() {
        // Legacy service_role JWT (the local stack's key): both headers, as before.
        let legacy = jwt(serde_json::json!({"iss": "supabase", "role": "service_role"}));
        assert_eq!(
            auth_headers_sent(&legacy).await,
            (Some(legacy.clone()), Some(format!("Bearer {legacy}")))
        );
        // A secret key is not a JWT: `apikey` only.
        assert_eq!(
            auth_headers_sent("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz").await,
            (
                Some("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz".into()),
                None
            )
        );
        // A key of no known form is sent as before.
        assert_eq!(
            auth_headers_sent("opaque-token").await,
            (
                Some("opaque-token".into()),
                Some("Bearer opaque-token".into())
            )
        );
    }

    #[test]
    fn key_kinds() {
        let anon = jwt(serde_json::json!({"role": "anon"}));
        assert_eq!(
            KeyKind::of(&anon),
            KeyKind::Jwt {
                role: Some("anon".into())
            }
        );
        assert!(KeyKind::of(&anon).refusal().is_some());
        assert!(KeyKind::of("sb_publishable_x").refusal().is_some());
        assert!(!KeyKind::of("sb_publishable_x").sends_bearer());
        let service = jwt(serde_json::json!({"role": "service_role"}));
        assert!(KeyKind::of(&service).refusal().is_none());
        // A JWT whose payload is not JSON: still a JWT, nothing to refuse.
        assert_eq!(
            KeyKind::of("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"),
            KeyKind::Jwt { role: None }
        );
        for other in [
            "",
            "k",
            "eyJ.only-two",
            "eyJa.b.c.d",
            "eyJa.b c.d",
            "sb_secretive",
        ] {
            assert_eq!(KeyKind::of(other), KeyKind::Other, "{other}");
        }
    }

    #[tokio::test]
    async fn resolve_key_reads_both_names_and_refuses_keys_that_cannot_write() {
        let legacy = jwt(serde_json::json!({"role": "service_role"}));
        for (var, key) in [
            ("SUPABASE_SECRET_KEY", "sb_secret_abc"),
            ("SUPABASE_SERVICE_ROLE_KEY", legacy.as_str()),
            ("SUPABASE_SECRET_KEY", legacy.as_str()),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_abc"),
        ] {
            let got = resolve_key(&Env::from_pairs([(var, key)])).await.unwrap();
            assert_eq!(got.current().await.expose(), key, "{var}");
        }
        // A key wins over a secret id, as with `secrets::resolve` (no AWS call here).
        let env = Env::from_pairs([
            ("SUPABASE_SECRET_KEY", "sb_secret_abc"),
            ("SUPABASE_KEY_SECRET_ID", "arn:x"),
        ]);
        let got = resolve_key(&env).await.unwrap().current().await;
        assert_eq!(got.expose(), "sb_secret_abc");

        let anon = jwt(serde_json::json!({"role": "anon"}));
        let refused = [
            (
                vec![("SUPABASE_SECRET_KEY", "sb_publishable_abc")],
                &["SUPABASE_SECRET_KEY", "publishable"][..],
            ),
            (
                vec![("SUPABASE_SERVICE_ROLE_KEY", anon.as_str())],
                &["SUPABASE_SERVICE_ROLE_KEY", "anon"],
            ),
            (
                vec![
                    ("SUPABASE_SECRET_KEY", "sb_secret_a"),
                    ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_b"),
                ],
                &["SUPABASE_SECRET_KEY", "SUPABASE_SERVICE_ROLE_KEY"],
            ),
            (
                vec![
                    ("SUPABASE_SECRET_KEY_SECRET_ID", "arn:1"),
                    ("SUPABASE_KEY_SECRET_ID", "arn:2"),
                ],
                &["SUPABASE_SECRET_KEY_SECRET_ID", "SUPABASE_KEY_SECRET_ID"],
            ),
            (
                vec![],
                &[
                    "SUPABASE_SECRET_KEY",
                    "SUPABASE_SECRET_KEY_SECRET_ID",
                    "SUPABASE_SERVICE_ROLE_KEY",
                    "SUPABASE_KEY_SECRET_ID",
                ],
            ),
        ];
        for (pairs, names) in refused {
            let e = resolve_key(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, InitError::Config(_)), "{pairs:?}: {text}");
            for name in names {
                assert!(text.contains(name), "{pairs:?}: {text}");
            }
            for (_, value) in &pairs {
                assert!(!text.contains(value), "the key leaked: {text}");
            }
        }
    }

    /// A rotation that puts a key that cannot write in the secret (Supabase's publishable key,
    /// or the legacy anon JWT: row-level security keeps them from writing) is refused as the
    /// cold start refuses it, whether the key is re-read after a 401 or after its TTL: an
    /// environment fault naming the secret and its variable, and no request carries that key.
    #[tokio::test]
    async fn a_key_rotated_to_one_that_cannot_write_is_refused_after_a_re_read() {
        let anon = jwt(serde_json::json!({"role": "anon"}));
        for bad in ["sb_publishable_Zx9Qk2_rotated", anon.as_str()] {
            // Re-read after PostgREST refused the old key.
            let server = MockServer::start(vec![(401, vec![], "{}".into())]).await;
            let value = Arc::new(std::sync::Mutex::new("sb_secret_old".to_owned()));
            let key = rotating_key(&value).await;
            let c = PostgrestClient::new(PostgrestConfig::new(server.url(), key)).unwrap();
            *value.lock().unwrap() = bad.to_owned();
            let e = insert_empty(&c, "vault").await.unwrap_err();
            assert_eq!(server.requests().len(), 1, "no request with the new key");
            assert_key_refused(&e, bad);

            // Re-read after the TTL (0: every use re-reads): refused before any request.
            let server = MockServer::start(vec![(201, vec![], String::new())]).await;
            let value = Arc::new(std::sync::Mutex::new("sb_secret_old".to_owned()));
            let key = rotating_key_with_ttl(&value, Some(Duration::ZERO)).await;
            let c = PostgrestClient::new(PostgrestConfig::new(server.url(), key)).unwrap();
            insert_empty(&c, "vault").await.unwrap();
            *value.lock().unwrap() = bad.to_owned();
            let e = insert_empty(&c, "vault").await.unwrap_err();
            assert_eq!(server.requests().len(), 1, "no request with the new key");
            assert_key_refused(&e, bad);
            // Rotated back to a secret key: used again at once.
            *value.lock().unwrap() = "sb_secret_new".into();
            insert_empty(&c, "vault").await.unwrap();
            assert_eq!(server.requests().len(), 2);
        }
    }

    fn assert_key_refused(e: &PostgrestError, key: &str) {
        assert_eq!(e.error_code(), "db_key_unusable");
        assert_eq!(e.class(), ErrorClass::Environment, "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("app/supabase") && text.contains("SUPABASE_KEY_SECRET_ID"),
            "{text}"
        );
        assert!(text.contains("secret key (sb_secret_...)"), "{text}");
        assert!(!text.contains(key), "the key leaked: {text}");
    }
}
