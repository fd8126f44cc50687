//! Reading AWS Secrets Manager: the process's one client, `GetSecretValue`, and the field of a
//! value that is a JSON object.

use super::error::SecretError;
use super::secret::Secret;

/// The one Secrets Manager client of the process.
async fn client() -> &'static aws_sdk_secretsmanager::Client {
    static CLIENT: tokio::sync::OnceCell<aws_sdk_secretsmanager::Client> =
        tokio::sync::OnceCell::const_new();
    CLIENT
        .get_or_init(|| async {
            let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            aws_sdk_secretsmanager::Client::new(&config)
        })
        .await
}

/// The string value of Secrets Manager secret `secret_id` (`None`: it has none).
pub(super) async fn fetch(
    secret_id: &str,
    secret_id_var: &str,
) -> Result<Option<Secret>, SecretError> {
    let out = client()
        .await
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            let transient = matches!(
                e,
                aws_sdk_secretsmanager::error::SdkError::TimeoutError(_)
                    | aws_sdk_secretsmanager::error::SdkError::DispatchFailure(_)
            ) || e
                .raw_response()
                .is_some_and(|r| r.status().is_server_error());
            SecretError::Fetch {
                secret_id: secret_id.to_owned(),
                secret_id_var: secret_id_var.to_owned(),
                message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                transient,
            }
        })?;
    Ok(out.secret_string().map(Secret::new))
}

/// The secret out of a Secrets Manager string: a JSON object's `field`, or the plain string.
pub(super) fn extract(raw: &str, field: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.starts_with('{') {
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|_| "is not valid JSON (it starts with '{')".to_owned())?;
        return match obj.get(field) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(_) => Err(format!(
                "has a field {field:?} that is not a non-empty string"
            )),
            None => Err(format!("is a JSON object without a {field:?} field")),
        };
    }
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    Ok(trimmed.to_owned())
}
