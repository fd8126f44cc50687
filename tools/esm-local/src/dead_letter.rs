//! Where batches go when their retries are exhausted (or their records are too old): the
//! mapping's on-failure destination in AWS's formats ([`crate::on_failure`]), nowhere (a mapping
//! without one drops them, as Lambda does), or esm-local's own formats, kept for
//! `--dead-letter-file` / `--dead-letter-topic`.
//!
//! File lines: `{"reason","attempts","topic","partition","offset","timestamp","key"?,"value"?,
//! "headers"}` (key/value base64, headers as in the ESM event). Topic records keep the original
//! key, value and headers and add `esm-source` (`topic-partition@offset`), `esm-reason` headers.

use std::path::PathBuf;

use serde_json::json;

use crate::kafka::{KafkaClient, KafkaError, ProduceRecord, TopicPartition};
use crate::on_failure::{DestinationError, Discard, OnFailure};
use crate::payload::record_json;

/// Dead-letter destination.
#[derive(Debug, Clone)]
pub enum DeadLetterTarget {
    /// Append JSON lines to this file.
    File(PathBuf),
    /// Produce to partition 0 of this topic (created with one partition if missing).
    Topic(String),
    /// The mapping's `DestinationConfig.OnFailure`, in the documented formats.
    OnFailure(OnFailure),
    /// A mapping without a destination: Lambda drops the records (an error is logged).
    Drop,
}

/// Errors while dead-lettering; the runner keeps the records and retries the dead-lettering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// The file could not be written.
    #[error("cannot write dead-letter file {path}: {source}")]
    File {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The topic could not be written.
    #[error("cannot produce to dead-letter topic: {0}")]
    Kafka(#[from] KafkaError),
    /// The on-failure destination could not be written.
    #[error(transparent)]
    Destination(#[from] DestinationError),
}

impl DeadLetterTarget {
    /// Writes the records of `discard` with the `reason` they failed for.
    pub async fn send(
        &self,
        client: &mut KafkaClient,
        discard: &Discard<'_>,
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        match self {
            Self::OnFailure(d) => Ok(d.send(client, discard).await?),
            Self::Drop => {
                let n: usize = discard.parts.iter().map(|(_, r)| r.len()).sum();
                tracing::error!(records = n, condition = ?discard.condition, reason, error_code = "records_dropped",
                    "records dropped: the mapping has no on-failure destination (DestinationConfig.OnFailure)");
                Ok(())
            }
            Self::File(_) | Self::Topic(_) => {
                for (tp, records) in discard.parts {
                    self.send_legacy(client, tp, records, reason, discard.attempts)
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn send_legacy(
        &self,
        client: &mut KafkaClient,
        tp: &TopicPartition,
        records: &[crate::kafka::Record],
        reason: &str,
        attempts: u32,
    ) -> Result<(), DeadLetterError> {
        match self {
            Self::OnFailure(_) | Self::Drop => Ok(()),
            Self::File(path) => {
                let mut out = Vec::new();
                for r in records {
                    let mut v = record_json(tp, r);
                    v["reason"] = json!(reason);
                    v["attempts"] = json!(attempts);
                    serde_json::to_writer(&mut out, &v).expect("JSON values always serialize");
                    out.push(b'\n');
                }
                crate::on_failure::append(path, &out)
                    .await
                    .map_err(|source| DeadLetterError::File {
                        path: path.display().to_string(),
                        source,
                    })
            }
            Self::Topic(topic) => {
                let dlq = TopicPartition::new(topic.clone(), 0);
                let recs: Vec<ProduceRecord> = records
                    .iter()
                    .map(|r| {
                        let mut headers: Vec<(String, Vec<u8>)> = r
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_owned(),
                                    v.as_deref().unwrap_or_default().to_vec(),
                                )
                            })
                            .collect();
                        headers.push((
                            "esm-source".into(),
                            format!("{tp}@{}", r.offset).into_bytes(),
                        ));
                        headers.push(("esm-reason".into(), reason.as_bytes().to_vec()));
                        ProduceRecord {
                            key: r.key.as_ref().map(|k| k.to_vec()),
                            value: r.value.as_ref().map(|v| v.to_vec()),
                            headers,
                            timestamp_ms: r.timestamp,
                        }
                    })
                    .collect();
                match client.produce(&dlq, &recs).await {
                    Ok(_) => Ok(()),
                    Err(KafkaError::UnknownTopic(_)) => {
                        client.create_topic(topic, 1).await?;
                        client.produce(&dlq, &recs).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}
