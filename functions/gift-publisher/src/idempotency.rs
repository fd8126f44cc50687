//! Idempotency keys scoped to the caller.
//!
//! gift-persister upserts on `event_id`, so whoever picks an `event_id` picks which vault row a
//! gift lands in. Were a client's `Idempotency-Key` used as the `event_id` itself, a caller who
//! guessed (or saw) another caller's key could publish first and have the other caller's gift
//! ignored as a replay of its own. So a key a client chooses (the header, or the body's own
//! `event_id`) is never the `event_id`: the `event_id` is a digest of the caller's identity and
//! the key. The same caller sending the same key gets the same `event_id` (a replay stays one
//! row); another caller with the same key gets another `event_id`.
//!
//! The caller is who the front door authenticated:
//! - an IAM principal (function URL or HTTP API with `AWS_IAM`): the user's ARN; for a role
//!   session the role's ARN without the session name, so a client whose credentials were
//!   refreshed (new session) still replays its own keys;
//! - a JWT's holder (HTTP API JWT authorizer): issuer and subject (`client_id` when a
//!   client-credentials token has no `sub`);
//! - nobody (an endpoint without authorization: local runs only, the template never deploys
//!   one): all requests share one scope, as there is no one to tell apart.

use sha2::{Digest, Sha256};

use crate::http::HttpRequest;

/// The key a client chose, from the `Idempotency-Key` header or, without one, the body's own
/// `event_id`: one rule for both, so that a key is one key whichever way it came. Surrounding
/// whitespace is not part of it (`k` and `"k "` are the same key: a header value arrives
/// trimmed anyway, and a retry that adds a space must not become a second gift); what remains
/// must be non-empty, at most `max` characters and free of control characters. The error says
/// what is wrong, without the key.
///
/// ```
/// use gift_publisher::idempotency::client_key;
/// assert_eq!(client_key(" k\t", 200), Ok("k"));
/// assert!(client_key("  ", 200).is_err());
/// assert!(client_key("a\u{7}b", 200).is_err());
/// assert!(client_key("kkk", 2).is_err());
/// ```
pub fn client_key(raw: &str, max: usize) -> Result<&str, String> {
    let key = raw.trim();
    if key.is_empty() {
        Err("must not be empty".to_owned())
    } else if key.chars().count() > max {
        Err(format!("at most {max} characters"))
    } else if key.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(key)
    }
}

/// Who sent a request, as far as idempotency is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A SigV4 signer: its user or role ARN (role sessions folded into the role).
    Iam(String),
    /// A JWT holder: issuer and subject.
    Jwt {
        /// `iss`.
        issuer: String,
        /// `sub`, else `client_id`.
        subject: String,
    },
    /// No authorizer identified the caller.
    Anonymous,
}

impl Caller {
    /// The caller of `request` (from `requestContext.authorizer`).
    ///
    /// ```
    /// use gift_publisher::http::HttpRequest;
    /// use gift_publisher::idempotency::Caller;
    /// let r: HttpRequest = serde_json::from_value(serde_json::json!({"requestContext": {
    ///     "authorizer": {"iam": {"accountId": "111122223333",
    ///         "userArn": "arn:aws:sts::111122223333:assumed-role/writer/session-1"}}}})).unwrap();
    /// assert_eq!(Caller::of(&r), Caller::Iam("arn:aws:sts::111122223333:assumed-role/writer".into()));
    /// ```
    pub fn of(request: &HttpRequest) -> Self {
        let Some(authorizer) = &request.request_context.authorizer else {
            return Self::Anonymous;
        };
        if let Some(iam) = &authorizer.iam {
            fn non_empty(s: &Option<String>) -> Option<&str> {
                s.as_deref().filter(|s| !s.is_empty())
            }
            if let Some(arn) = non_empty(&iam.user_arn) {
                return Self::Iam(role_not_session(arn).to_owned());
            }
            if let (Some(account), Some(user)) =
                (non_empty(&iam.account_id), non_empty(&iam.user_id))
            {
                // `ROLE_ID:SESSION` for a role session: the role's unique id.
                let user = user.split(':').next().unwrap_or(user);
                return Self::Iam(format!("{account}:{user}"));
            }
        }
        if let Some(jwt) = &authorizer.jwt {
            let c = &jwt.claims;
            let subject = c.sub.as_deref().or(c.client_id.as_deref()).unwrap_or("");
            if !subject.is_empty() {
                return Self::Jwt {
                    issuer: c.iss.clone().unwrap_or_default(),
                    subject: subject.to_owned(),
                };
            }
        }
        Self::Anonymous
    }

    /// The `event_id` of a gift this caller sent with the client-chosen `key`: a version 8 UUID
    /// made of the SHA-256 of the scope and the key, each length-prefixed (so no pair of
    /// (caller, key) can be shifted into another).
    ///
    /// ```
    /// use gift_publisher::idempotency::Caller;
    /// let a = Caller::Iam("arn:aws:iam::111122223333:user/a".into());
    /// let b = Caller::Iam("arn:aws:iam::111122223333:user/b".into());
    /// assert_eq!(a.event_id("k1"), a.event_id("k1"));
    /// assert_ne!(a.event_id("k1"), b.event_id("k1"));
    /// ```
    pub fn event_id(&self, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"gift-publisher idempotency v1\0");
        let mut part = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        match self {
            Self::Iam(principal) => {
                part(b"iam");
                part(principal.as_bytes());
            }
            Self::Jwt { issuer, subject } => {
                part(b"jwt");
                part(issuer.as_bytes());
                part(subject.as_bytes());
            }
            Self::Anonymous => part(b"anonymous"),
        }
        part(key.as_bytes());
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` -> `...:assumed-role/ROLE`; any other
/// ARN as it is.
fn role_not_session(arn: &str) -> &str {
    let Some((head, resource)) = arn.rsplit_once(':') else {
        return arn;
    };
    if !head.contains(":sts:") {
        return arn;
    }
    match resource.strip_prefix("assumed-role/") {
        Some(rest) => match rest.find('/') {
            Some(slash) => &arn[..head.len() + 1 + "assumed-role/".len() + slash],
            None => arn,
        },
        None => arn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(authorizer: serde_json::Value) -> HttpRequest {
        serde_json::from_value(json!({"requestContext": {"authorizer": authorizer}})).unwrap()
    }

    #[test]
    fn callers_are_read_from_both_front_doors_sample_events() {
        let url: HttpRequest = serde_json::from_str(include_str!(
            "../../../events/gift-publisher-function-url.json"
        ))
        .unwrap();
        assert_eq!(
            Caller::of(&url),
            Caller::Iam("arn:aws:iam::111122223333:user/vault-client".into())
        );
        let api: HttpRequest =
            serde_json::from_str(include_str!("../../../events/gift-publisher-http-api.json"))
                .unwrap();
        assert_eq!(
            Caller::of(&api),
            Caller::Jwt {
                issuer: "https://auth.example.com/".into(),
                subject: "vault-client".into()
            }
        );
        assert_eq!(Caller::of(&HttpRequest::default()), Caller::Anonymous);
    }

    #[test]
    fn a_role_is_one_caller_whatever_its_session() {
        let session = |s: &str| {
            Caller::of(&request(json!({"iam": {
                "userArn": format!("arn:aws:sts::111122223333:assumed-role/vault-writer/{s}"),
                "userId": format!("AROAEXAMPLE:{s}")}})))
        };
        assert_eq!(session("i-0abc"), session("botocore-session-17"));
        assert_eq!(
            session("x"),
            Caller::Iam("arn:aws:sts::111122223333:assumed-role/vault-writer".into())
        );
        // Another role, or a user whose name looks like a role path, stays apart.
        assert_ne!(
            Caller::of(&request(
                json!({"iam": {"userArn": "arn:aws:sts::111122223333:assumed-role/other/x"}})
            )),
            session("x")
        );
        assert_eq!(
            Caller::of(&request(
                json!({"iam": {"userArn": "arn:aws:iam::111122223333:user/assumed-role/a/b"}})
            )),
            Caller::Iam("arn:aws:iam::111122223333:user/assumed-role/a/b".into())
        );
        // Without an ARN: the account and the role's unique id.
        assert_eq!(
            Caller::of(&request(
                json!({"iam": {"accountId": "111122223333", "userId": "AROAEXAMPLE:s1"}})
            )),
            Caller::Iam("111122223333:AROAEXAMPLE".into())
        );
    }

    #[test]
    fn a_token_without_sub_is_its_client() {
        let c = Caller::of(&request(json!({"jwt": {"claims": {
            "iss": "https://issuer/", "client_id": "machine-1"}, "scopes": null}})));
        assert_eq!(
            c,
            Caller::Jwt {
                issuer: "https://issuer/".into(),
                subject: "machine-1".into()
            }
        );
        assert_eq!(
            Caller::of(&request(
                json!({"jwt": {"claims": {"iss": "https://issuer/"}}})
            )),
            Caller::Anonymous
        );
    }

    #[test]
    fn event_ids_differ_per_caller_and_repeat_per_caller() {
        let a = Caller::Iam("arn:aws:iam::111122223333:user/a".into());
        let b = Caller::Iam("arn:aws:iam::111122223333:user/b".into());
        let jwt = |issuer: &str, subject: &str| Caller::Jwt {
            issuer: issuer.into(),
            subject: subject.into(),
        };
        let ids = [
            a.event_id("k"),
            b.event_id("k"),
            Caller::Anonymous.event_id("k"),
            jwt("https://i/", "a").event_id("k"),
            // Length prefixes: moving bytes between issuer and subject, or caller and key,
            // makes another id.
            jwt("https://i/a", "").event_id("k"),
            Caller::Iam("arn:aws:iam::111122223333:user/ak".into()).event_id(""),
        ];
        for (i, x) in ids.iter().enumerate() {
            assert_eq!(
                uuid::Uuid::parse_str(x).unwrap().get_version_num(),
                8,
                "{x}"
            );
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(a.event_id("k"), ids[0], "a replay is the same gift");
        assert_ne!(a.event_id("k"), "k", "the key itself is never the id");
    }
}
