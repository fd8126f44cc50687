//! A mapping's on-failure destination (`DestinationConfig.OnFailure`), written in the formats
//! AWS documents, with local stand-ins for the AWS services:
//!
//! * invocation records: "Capturing discarded batches for Amazon MSK and self-managed Apache
//!   Kafka event sources" (<https://docs.aws.amazon.com/lambda/latest/dg/kafka-on-failure.html>):
//!   `requestContext` (`requestId`, `functionArn`, `condition`, `approximateInvokeCount`),
//!   `responseContext` (`statusCode`, `executedVersion`, `functionError`; null when the function
//!   was not invoked), `version` "1.0", `timestamp`, `KafkaBatchInfo` (`batchSize`,
//!   `eventSourceArn`, `bootstrapServers`, `payloadSize`, `recordsInfo` per `<topic>-<partition>`
//!   with first/last offsets as strings and first/last timestamps). SQS and SNS get that
//!   metadata only; S3 gets it with `payload`, the invocation payload as a JSON string.
//! * an S3 bucket (`arn:aws:s3:::B`) is the directory `<dir>/B`: one object (file) per discarded
//!   batch under `aws/lambda/<mapping UUID>/<topic>-<partition>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-
//!   <random UUID>`. The Kafka page documents no key layout; this is the one the stream pages
//!   document ("Retain discarded batch records for a Kinesis Data Streams event source"), with
//!   the topic-partition in place of the shard id. Written to a temporary name and renamed, so a
//!   reader never sees half an object.
//! * an SQS queue (`arn:aws:sqs:REGION:ACCOUNT:Q`) is the file `<dir>/Q.jsonl`: one message per
//!   line in the shape `aws sqs receive-message` lists them (`MessageId`, `ReceiptHandle`,
//!   `Body` = the invocation record as a JSON string).
//! * a Kafka topic (`kafka://T`) is that topic of the local broker: "Using a Kafka topic as an
//!   on-failure destination"
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/kafka-on-failure-destination.html>): one
//!   message per failed record, keyed like the original (partitioned by Kafka's default murmur2
//!   partitioner; round robin without a key), whose value is the metadata with `recordInfo`
//!   (offset, timestamp) for that record and `payload` as an object holding it. Lambda does not
//!   create the topic, and neither does esm-local.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::kafka::{KafkaClient, KafkaError, ProduceRecord, Record, TopicPartition};
use crate::payload::EventBuilder;
use crate::template::{LOCAL_ACCOUNT, LOCAL_REGION};

/// Why records were discarded (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `MaximumRetryAttempts` reached (the documented `RetryAttemptsExhausted`).
    RetryAttemptsExhausted,
    /// Older than `MaximumRecordAgeInSeconds`; never delivered (`RecordAgeExceeded`, the value
    /// the stream pages document: the Kafka page lists only the two others).
    RecordAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Self::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Self::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

/// Where discarded batches go, parsed from a `Destination` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// A bucket: its local directory.
    S3(PathBuf),
    /// A queue: its local JSON-lines file.
    Sqs(PathBuf),
    /// A topic of the source cluster.
    Kafka(String),
}

impl DestinationKind {
    /// Parses `arn:aws:s3:::B`, `arn:aws:sqs:R:A:Q` or `kafka://T`; buckets and queues become
    /// paths under `dir`.
    ///
    /// ```
    /// use esm_local::on_failure::DestinationKind;
    /// let d = DestinationKind::parse("arn:aws:s3:::failures", "out".as_ref()).unwrap();
    /// assert_eq!(d, DestinationKind::S3("out/failures".into()));
    /// ```
    pub fn parse(destination: &str, dir: &Path) -> Result<Self, String> {
        if let Some(topic) = destination.strip_prefix("kafka://") {
            if topic.is_empty() {
                return Err("on-failure destination `kafka://` names no topic".into());
            }
            return Ok(Self::Kafka(topic.to_owned()));
        }
        let parts: Vec<&str> = destination.split(':').collect();
        let safe = |name: &str| {
            !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match parts.as_slice() {
            ["arn", _, "s3", "", "", bucket] if safe(bucket) => Ok(Self::S3(dir.join(bucket))),
            ["arn", _, "sqs", _, _, queue] if safe(queue) => {
                Ok(Self::Sqs(dir.join(format!("{queue}.jsonl"))))
            }
            ["arn", _, "sns", ..] => Err(format!(
                "on-failure destination {destination}: SNS topics are not emulated (use S3, SQS or kafka://)"
            )),
            _ => Err(format!(
                "on-failure destination `{destination}`: expected arn:aws:s3:::BUCKET, \
                 arn:aws:sqs:REGION:ACCOUNT:QUEUE or kafka://TOPIC"
            )),
        }
    }
}

/// The identity the invocation records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContext {
    /// `requestContext.functionArn`.
    pub function_arn: String,
    /// `KafkaBatchInfo.eventSourceArn` (the cluster).
    pub event_source_arn: String,
    /// The mapping's UUID (S3 object keys).
    pub mapping_uuid: String,
}

impl RecordContext {
    /// The context of the mapping `mapping_id` (logical id or consumer group: a stable UUID is
    /// derived from it) invoking `function`.
    pub fn new(mapping_id: &str, function: &str) -> Self {
        Self {
            function_arn: format!(
                "arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{function}"
            ),
            event_source_arn: format!(
                "arn:aws:kafka:{LOCAL_REGION}:{LOCAL_ACCOUNT}:cluster/esm-local/{}",
                uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"esm-local")
            ),
            mapping_uuid: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, mapping_id.as_bytes())
                .to_string(),
        }
    }
}

/// Records being discarded together, with why.
#[derive(Debug)]
pub struct Discard<'a> {
    /// The records, per partition, in offset order.
    pub parts: &'a [(TopicPartition, Vec<Record>)],
    /// Why.
    pub condition: Condition,
    /// Invocations of these records so far (`approximateInvokeCount`).
    pub attempts: u32,
    /// Whether the last invocation failed as a whole (`functionError: "Unhandled"`), rather than
    /// reporting the records in `batchItemFailures`.
    pub function_error: bool,
}

/// Errors writing to the destination; the runner keeps the records and tries again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// The local file or directory could not be written.
    #[error("cannot write on-failure destination {path}: {source}")]
    File {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The topic could not be written (it must exist, as on AWS).
    #[error("cannot produce to on-failure topic {topic}: {source}")]
    Kafka {
        /// Topic.
        topic: String,
        /// Cause.
        source: KafkaError,
    },
}

/// An on-failure destination with the identity its records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnFailure {
    /// Where.
    pub kind: DestinationKind,
    /// Identity.
    pub context: RecordContext,
}

impl OnFailure {
    /// Writes `discard`; `bootstrap` is the cluster's address as the event carries it.
    pub async fn send(
        &self,
        client: &mut KafkaClient,
        discard: &Discard<'_>,
    ) -> Result<(), DestinationError> {
        let bootstrap = client.bootstrap_servers();
        match &self.kind {
            DestinationKind::S3(_) | DestinationKind::Sqs(_) => {
                let mut lines = Vec::new();
                for (part, payload) in chunks(discard.parts, &bootstrap) {
                    let s3 = matches!(self.kind, DestinationKind::S3(_));
                    let doc =
                        invocation_record(&self.context, discard, &part, &bootstrap, &payload, s3);
                    if let DestinationKind::S3(dir) = &self.kind {
                        let key = object_key(&self.context.mapping_uuid, &part[0].0);
                        write_object(dir, &key, &doc).await?;
                    } else {
                        let msg = json!({
                            "MessageId": random_uuid(),
                            "ReceiptHandle": format!("esm-local-{}", random_uuid()),
                            "Body": doc.to_string(),
                        });
                        serde_json::to_writer(&mut lines, &msg).expect("JSON values serialize");
                        lines.push(b'\n');
                    }
                }
                match &self.kind {
                    DestinationKind::Sqs(file) => {
                        append(file, &lines)
                            .await
                            .map_err(|source| DestinationError::File {
                                path: file.display().to_string(),
                                source,
                            })
                    }
                    _ => Ok(()),
                }
            }
            DestinationKind::Kafka(topic) => {
                produce_records(client, topic, &self.context, discard, &bootstrap)
                    .await
                    .map_err(|source| DestinationError::Kafka {
                        topic: topic.clone(),
                        source,
                    })
            }
        }
    }
}

type Parts = Vec<(TopicPartition, Vec<Record>)>;

/// The discarded records cut into invocation payloads of at most 6 MB each.
fn chunks(parts: &[(TopicPartition, Vec<Record>)], bootstrap: &str) -> Vec<(Parts, Vec<u8>)> {
    let mut out = Vec::new();
    let mut builder = EventBuilder::new(bootstrap);
    let mut current: Parts = Vec::new();
    for (tp, recs) in parts {
        for r in recs {
            if !builder.try_push(tp, r) {
                let full = std::mem::replace(&mut builder, EventBuilder::new(bootstrap));
                out.push((std::mem::take(&mut current), full.build()));
                assert!(builder.try_push(tp, r), "an empty event takes any record");
            }
            match current.last_mut() {
                Some((t, v)) if t == tp => v.push(r.clone()),
                _ => current.push((tp.clone(), vec![r.clone()])),
            }
        }
    }
    if !builder.is_empty() {
        out.push((current, builder.build()));
    }
    out
}

/// The invocation record of `parts` (whose event is `payload`); with `with_payload` the payload
/// is added as a JSON string (S3).
pub fn invocation_record(
    ctx: &RecordContext,
    discard: &Discard<'_>,
    parts: &[(TopicPartition, Vec<Record>)],
    bootstrap: &str,
    payload: &[u8],
    with_payload: bool,
) -> Value {
    let mut records_info = Map::new();
    let mut batch_size = 0;
    for (tp, recs) in parts {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
            continue;
        };
        batch_size += recs.len();
        records_info.insert(
            tp.to_string(),
            json!({
                "firstRecordOffset": first.offset.to_string(),
                "lastRecordOffset": last.offset.to_string(),
                "firstRecordTimestamp": iso_ms(first.timestamp),
                "lastRecordTimestamp": iso_ms(last.timestamp),
            }),
        );
    }
    let mut doc = metadata(ctx, discard, bootstrap, payload.len());
    doc["KafkaBatchInfo"]["batchSize"] = json!(batch_size);
    doc["KafkaBatchInfo"]["recordsInfo"] = Value::Object(records_info);
    if with_payload {
        doc["payload"] = Value::String(String::from_utf8_lossy(payload).into_owned());
    }
    doc
}

fn metadata(ctx: &RecordContext, discard: &Discard<'_>, bootstrap: &str, size: usize) -> Value {
    let response = match discard.condition {
        Condition::RecordAgeExceeded => Value::Null,
        Condition::RetryAttemptsExhausted => {
            let mut r = json!({"statusCode": 200, "executedVersion": "$LATEST"});
            if discard.function_error {
                r["functionError"] = json!("Unhandled");
            }
            r
        }
    };
    json!({
        "requestContext": {
            "requestId": random_uuid(),
            "functionArn": ctx.function_arn,
            "condition": discard.condition.as_str(),
            "approximateInvokeCount": discard.attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": iso_ms(now_ms()),
        "KafkaBatchInfo": {
            "batchSize": 0,
            "eventSourceArn": ctx.event_source_arn,
            "bootstrapServers": bootstrap,
            "payloadSize": size,
        },
    })
}

async fn produce_records(
    client: &mut KafkaClient,
    topic: &str,
    ctx: &RecordContext,
    discard: &Discard<'_>,
    bootstrap: &str,
) -> Result<(), KafkaError> {
    let partitions = client
        .refresh_metadata(&[topic.to_owned()])
        .await?
        .get(topic)
        .copied()
        .filter(|n| *n > 0)
        .ok_or_else(|| KafkaError::UnknownTopic(topic.to_owned()))?;
    for (tp, recs) in discard.parts {
        for r in recs {
            let mut event = EventBuilder::new(bootstrap);
            event.try_push(tp, r);
            let payload: Value =
                serde_json::from_slice(&event.build()).expect("the builder writes JSON");
            let mut doc = metadata(ctx, discard, bootstrap, payload.to_string().len());
            doc["KafkaBatchInfo"]["batchSize"] = json!(1);
            doc["KafkaBatchInfo"]["recordInfo"] = json!({
                "offset": r.offset.to_string(),
                "timestamp": iso_ms(r.timestamp),
            });
            doc["payload"] = payload;
            let partition = match &r.key {
                Some(k) => gift_publisher::partition::partition_for(k, partitions),
                None => fastrand::i32(0..partitions),
            };
            let rec = ProduceRecord {
                key: r.key.as_ref().map(|k| k.to_vec()),
                value: Some(doc.to_string().into_bytes()),
                headers: Vec::new(),
                timestamp_ms: now_ms(),
            };
            client
                .produce(&TopicPartition::new(topic.to_owned(), partition), &[rec])
                .await?;
        }
    }
    Ok(())
}

/// `aws/lambda/<mapping UUID>/<topic>-<partition>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<UUID>`.
fn object_key(mapping_uuid: &str, tp: &TopicPartition) -> String {
    let now = time::OffsetDateTime::now_utc();
    let (y, m, d) = (now.year(), u8::from(now.month()), now.day());
    format!(
        "aws/lambda/{mapping_uuid}/{tp}/{y:04}/{m:02}/{d:02}/{y:04}-{m:02}-{d:02}T{:02}.{:02}.{:02}-{}",
        now.hour(),
        now.minute(),
        now.second(),
        random_uuid()
    )
}

async fn write_object(dir: &Path, key: &str, doc: &Value) -> Result<(), DestinationError> {
    let path = dir.join(key);
    let err = |p: &Path| {
        let p = p.display().to_string();
        move |source| DestinationError::File { path: p, source }
    };
    let parent = path.parent().expect("a key has directories");
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(err(parent))?;
    let tmp = parent.join(format!(".{}.tmp", random_uuid()));
    let body = serde_json::to_vec(doc).expect("JSON values serialize");
    tokio::fs::write(&tmp, body).await.map_err(err(&tmp))?;
    tokio::fs::rename(&tmp, &path).await.map_err(err(&path))
}

/// Appends `bytes` to `file` (creating it and its directory) in one write.
pub(crate) async fn append(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .await?;
    f.write_all(bytes).await?;
    f.flush().await
}

/// The object files of a local bucket directory, in key order (temporary files left out).
pub fn bucket_objects(bucket: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !e.file_name().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(bucket, &mut out);
    out.sort();
    out
}

/// A random (version 4) UUID.
fn random_uuid() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Milliseconds since the epoch as `2019-11-14T00:38:06.021Z`.
fn iso_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(offset: i64, value: &str) -> Record {
        let mut r = crate::payload::test_record(offset, value.as_bytes());
        r.timestamp = 1_573_692_484_835;
        r.key = Some(Bytes::from_static(b"k"));
        r
    }

    #[test]
    fn destinations_parse_like_the_esm_property() {
        let d = Path::new("dir");
        assert_eq!(
            DestinationKind::parse("arn:aws:sqs:us-east-1:123456789012:q", d).unwrap(),
            DestinationKind::Sqs("dir/q.jsonl".into())
        );
        assert_eq!(
            DestinationKind::parse("kafka://gift_events.on-failure", d).unwrap(),
            DestinationKind::Kafka("gift_events.on-failure".into())
        );
        for bad in [
            "arn:aws:sns:us-east-1:1:t",
            "s3://x",
            "arn:aws:s3:::..",
            "kafka://",
        ] {
            assert!(DestinationKind::parse(bad, d).is_err(), "{bad}");
        }
    }

    /// The documented shape ("S3 destination example invocation record"), read back the way
    /// `kl failures replay` and event-decoding read it.
    #[test]
    fn s3_invocation_record_has_the_documented_fields_and_the_payload() {
        let ctx = RecordContext::new("GiftPersisterMskMapping", "gift-persister");
        let parts = vec![
            (
                TopicPartition::new("gift_events", 2),
                vec![rec(40, "{}"), rec(42, "{\"a\":1}")],
            ),
            (TopicPartition::new("gift_events", 0), vec![rec(7, "x")]),
        ];
        let discard = Discard {
            parts: &parts,
            condition: Condition::RetryAttemptsExhausted,
            attempts: 6,
            function_error: true,
        };
        let (chunk_parts, payload) = chunks(&parts, "127.0.0.1:9092").remove(0);
        let doc = invocation_record(
            &ctx,
            &discard,
            &chunk_parts,
            "127.0.0.1:9092",
            &payload,
            true,
        );
        assert_eq!(doc["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(doc["requestContext"]["approximateInvokeCount"], 6);
        assert_eq!(
            doc["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:123456789012:function:gift-persister"
        );
        assert_eq!(doc["responseContext"]["functionError"], "Unhandled");
        assert_eq!(doc["version"], "1.0");
        let info = &doc["KafkaBatchInfo"];
        assert_eq!(info["batchSize"], 3);
        assert_eq!(info["bootstrapServers"], "127.0.0.1:9092");
        assert_eq!(info["payloadSize"], payload.len());
        let p2 = &info["recordsInfo"]["gift_events-2"];
        assert_eq!(p2["firstRecordOffset"], "40");
        assert_eq!(p2["lastRecordOffset"], "42");
        assert_eq!(p2["firstRecordTimestamp"], "2019-11-14T00:48:04.835Z");
        let text = doc["payload"]
            .as_str()
            .expect("S3: payload is a JSON string");
        let batch = event_decoding::KafkaBatch::from_slice(text.as_bytes()).unwrap();
        let offsets: Vec<i64> = batch.records().map(|r| r.offset).collect();
        assert_eq!(offsets.len(), 3);
        assert!(offsets.contains(&42) && offsets.contains(&7));
        // SQS: metadata only.
        let sqs = invocation_record(&ctx, &discard, &chunk_parts, "b", &payload, false);
        assert!(sqs.get("payload").is_none());
        // Record age: never invoked.
        let aged = Discard {
            condition: Condition::RecordAgeExceeded,
            attempts: 0,
            function_error: false,
            ..discard
        };
        let doc = invocation_record(&ctx, &aged, &chunk_parts, "b", &payload, true);
        assert_eq!(doc["requestContext"]["condition"], "RecordAgeExceeded");
        assert!(doc["responseContext"].is_null());
    }

    #[test]
    fn object_keys_follow_the_documented_layout() {
        let k = object_key("u-1", &TopicPartition::new("gift_events", 3));
        let parts: Vec<&str> = k.split('/').collect();
        assert_eq!(&parts[..4], ["aws", "lambda", "u-1", "gift_events-3"]);
        assert_eq!(parts.len(), 8, "{k}");
        assert!(
            parts[7].starts_with(&format!("{}-{}-{}T", parts[4], parts[5], parts[6])),
            "{k}"
        );
    }

    #[test]
    fn big_discards_are_cut_into_payloads_under_the_cap() {
        let big = "v".repeat(2 * 1024 * 1024);
        let parts = vec![(
            TopicPartition::new("t", 0),
            (0..5).map(|o| rec(o, &big)).collect::<Vec<_>>(),
        )];
        let c = chunks(&parts, "b");
        assert!(c.len() >= 3, "{}", c.len());
        let n: usize = c.iter().map(|(p, _)| p[0].1.len()).sum();
        assert_eq!(n, 5);
        assert!(
            c.iter()
                .all(|(_, p)| p.len() <= crate::payload::MAX_PAYLOAD_BYTES)
        );
    }
}
