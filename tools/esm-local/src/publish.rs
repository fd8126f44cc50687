//! The producer side of the old gift API: gift JSON in, Kafka records out.
//!
//! Like the old `POST /vault/save`, every gift gets a `ts` (epoch seconds, float) when it has
//! none, and is published as-is otherwise. Partition: hash of the key field when one is given
//! (so one user's gifts stay ordered), else round-robin.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::kafka::{KafkaClient, KafkaError, ProduceRecord, TopicPartition};

/// A gift line that is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Malformed input (permanent: fix the input).
    #[error("line {line}: {message}")]
    BadGift {
        /// 1-based line number (0 for a single HTTP body).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

impl PublishError {
    /// Low-cardinality code.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::BadGift { .. } => "bad_gift",
            Self::Kafka(e) => e.error_code(),
        }
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Parses one gift and stamps `ts` when absent; returns the record bytes and its key.
pub fn prepare_gift(
    text: &str,
    line: usize,
    key_field: Option<&str>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), PublishError> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| PublishError::BadGift {
        line,
        message: format!("not JSON: {e}"),
    })?;
    let obj = v.as_object_mut().ok_or_else(|| PublishError::BadGift {
        line,
        message: "a gift must be a JSON object".into(),
    })?;
    if obj.get("ts").is_none_or(Value::is_null) {
        obj.insert("ts".into(), Value::from(now_secs()));
    }
    let key = key_field.and_then(|f| obj.get(f)).map(|k| match k {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    });
    Ok((
        serde_json::to_vec(&v).expect("JSON values always serialize"),
        key,
    ))
}

/// FNV-1a: stable across runs and platforms (Kafka's own murmur2 is not needed locally).
fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::try_from(h % partitions.max(1) as u32).unwrap_or(0)
}

/// Publishes prepared gifts to `topic`; returns how many were written.
#[derive(Debug)]
pub struct Publisher {
    client: KafkaClient,
    topic: String,
    partitions: i32,
    next: i32,
}

impl Publisher {
    /// Looks up `topic`'s partitions.
    pub async fn new(mut client: KafkaClient, topic: &str) -> Result<Self, PublishError> {
        let counts = client.refresh_metadata(&[topic.to_owned()]).await?;
        let partitions = counts.get(topic).copied().unwrap_or(1).max(1);
        Ok(Self {
            client,
            topic: topic.to_owned(),
            partitions,
            next: 0,
        })
    }

    /// Sends records; each partition's share goes in one produce request, in input order.
    pub async fn send(
        &mut self,
        gifts: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<usize, PublishError> {
        let n = gifts.len();
        let ts_ms = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(0);
        let mut by_part: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
        for (value, key) in gifts {
            let p = match &key {
                Some(k) => partition_for(k, self.partitions),
                None => {
                    self.next = (self.next + 1) % self.partitions;
                    self.next
                }
            };
            by_part.entry(p).or_default().push(ProduceRecord {
                key,
                value: Some(value),
                headers: Vec::new(),
                timestamp_ms: ts_ms,
            });
        }
        for (p, recs) in by_part {
            self.client
                .produce(&TopicPartition::new(self.topic.clone(), p), &recs)
                .await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_is_stamped_only_when_absent() {
        let before = now_secs();
        let (v, key) = prepare_gift(r#"{"user_id":"u1","amount":3}"#, 1, Some("user_id")).unwrap();
        let v: Value = serde_json::from_slice(&v).unwrap();
        let ts = v["ts"].as_f64().unwrap();
        assert!(ts >= before && ts <= now_secs() + 1.0);
        assert_eq!(key.unwrap(), b"u1");

        let (v, _) = prepare_gift(r#"{"ts": 12.5}"#, 1, None).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&v).unwrap()["ts"], 12.5);
        let (v, _) = prepare_gift(r#"{"ts": null}"#, 1, None).unwrap();
        assert!(serde_json::from_slice::<Value>(&v).unwrap()["ts"].is_f64());
    }

    #[test]
    fn bad_gifts_name_the_line() {
        let e = prepare_gift("{oops", 7, None).unwrap_err();
        assert!(e.to_string().starts_with("line 7: not JSON"), "{e}");
        let e = prepare_gift("[1,2]", 3, None).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }

    #[test]
    fn partitioning_is_stable_and_in_range() {
        for k in ["a", "user-42", "ünïcode", ""] {
            let p = partition_for(k.as_bytes(), 3);
            assert!((0..3).contains(&p));
            assert_eq!(p, partition_for(k.as_bytes(), 3));
        }
        assert_eq!(partition_for(b"x", 1), 0);
    }
}
