//! What the tests of the registry client and of `Values` share: a registry client of a loopback
//! server with fast retries, a deadline, an Avro schema.

use std::time::Duration;

use crate::retry::{Deadline, RetryPolicy};
use crate::secrets::Secret;

use super::{RegistryConfig, SchemaRegistry};

pub(super) const GIFT: &str =
    r#"{"type":"record","name":"Gift","fields":[{"name":"page_id","type":"long"}]}"#;

pub(super) fn registry(url: String) -> SchemaRegistry {
    let mut c = RegistryConfig::new(url);
    c.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    c.auth = Some((Secret::new("key-1").into(), Secret::new("pw-s3cr3t").into()));
    SchemaRegistry::new(c).unwrap()
}

pub(super) fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(10))
}

pub(super) fn ok_body() -> String {
    serde_json::json!({ "schema": GIFT }).to_string()
}
