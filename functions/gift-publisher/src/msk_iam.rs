//! The SASL/OAUTHBEARER token for Amazon MSK IAM access control.
//!
//! As AWS documents for its MSK IAM SASL signer libraries: the token is the URL
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`, presigned with
//! SigV4 in the query string (service `kafka-cluster`, `GET`, empty body, valid 900 s), with a
//! `User-Agent` parameter appended, then encoded base64url without padding. The broker checks the
//! signature, so the function's role needs `kafka-cluster:Connect` on the cluster (and
//! `WriteData`/`DescribeTopic` on the topic).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// How long a token is valid (the signers' default).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
const SIGNING_NAME: &str = "kafka-cluster";
const USER_AGENT: &str = concat!("kafka-lambdas-gift-publisher/", env!("CARGO_PKG_VERSION"));

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A token could not be made (no credentials, or signing failed). Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MSK IAM token: {0}")]
pub struct TokenError(String);

/// The token for `region` from `credentials`, signed at `now`.
///
/// ```
/// use aws_credential_types::Credentials;
/// use gift_publisher::msk_iam::token;
/// let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
/// let t = token("eu-west-1", &creds, std::time::SystemTime::now()).unwrap();
/// assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
/// ```
pub fn token(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<String, TokenError> {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;

    let host = format!("kafka.{region}.amazonaws.com");
    let base = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| TokenError(format!("signing parameters: {e}")))?
        .into();
    let request = SignableRequest::new("GET", &base, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| TokenError(format!("request to sign: {e}")))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| TokenError(format!("signing: {e}")))?
        .into_parts();
    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.extend(utf8_percent_encode(value, QUERY_VALUE));
    }
    url.push_str("&User-Agent=");
    url.extend(utf8_percent_encode(USER_AGENT, QUERY_VALUE));
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
}

/// Credentials of the execution environment (the function's role), through the SDK's default
/// chain.
pub async fn current_credentials(
    config: &aws_config::SdkConfig,
) -> Result<Credentials, TokenError> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| TokenError("no AWS credentials provider is configured".into()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| TokenError(format!("no AWS credentials: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(token: &str) -> String {
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .unwrap(),
        )
        .unwrap()
    }

    fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
        url.split_once('?')?
            .1
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    #[test]
    fn the_token_is_a_presigned_connect_url() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token".into()),
            None,
            "test",
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_986_000);
        let url = decode(&token("eu-west-1", &creds, at).unwrap());
        assert!(
            url.starts_with("https://kafka.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        assert_eq!(param(&url, "Action"), Some("kafka-cluster%3AConnect"));
        assert_eq!(param(&url, "X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            param(&url, "X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20261129%2Feu-west-1%2Fkafka-cluster%2Faws4_request")
        );
        assert_eq!(param(&url, "X-Amz-Date"), Some("20261129T210000Z"));
        assert_eq!(param(&url, "X-Amz-Expires"), Some("900"));
        assert_eq!(param(&url, "X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(param(&url, "X-Amz-Security-Token"), Some("session-token"));
        assert_eq!(param(&url, "X-Amz-Signature").map(str::len), Some(64));
        assert!(
            param(&url, "User-Agent")
                .unwrap()
                .starts_with("kafka-lambdas-gift-publisher")
        );
        // The secret never appears in the token.
        assert!(!url.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn the_signature_depends_on_time_region_and_key() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret-a", None, None, "test");
        let other = Credentials::new("AKIDEXAMPLE", "secret-b", None, None, "test");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_986_000);
        let sig = |region, c: &Credentials, t| {
            let url = decode(&token(region, c, t).unwrap());
            param(&url, "X-Amz-Signature").unwrap().to_owned()
        };
        let base = sig("eu-west-1", &creds, at);
        assert_eq!(base, sig("eu-west-1", &creds, at), "deterministic");
        assert_ne!(base, sig("us-east-1", &creds, at));
        assert_ne!(base, sig("eu-west-1", &other, at));
        assert_ne!(base, sig("eu-west-1", &creds, at + Duration::from_secs(1)));
    }
}
