//! `kl failures replay`: batches the mapping discarded to its on-failure destination, sent to the
//! function again once the cause is fixed.
//!
//! Input is the invocation records as AWS documents them ("Capturing discarded batches for
//! Amazon MSK and self-managed Apache Kafka event sources", "Using a Kafka topic as an on-failure
//! destination"): a JSON document with `requestContext`, `responseContext`, `KafkaBatchInfo` and,
//! for S3 and Kafka-topic destinations, `payload`, the invocation payload itself (an ESM event;
//! S3 objects carry it as a JSON string, Kafka-topic messages as an object). An SQS message has
//! no payload, only `KafkaBatchInfo.recordsInfo` (`"<topic>-<partition>": {firstRecordOffset,
//! lastRecordOffset}`): those records are read back from Kafka. A file holds one record, JSON
//! lines of them, or the output of `aws sqs receive-message` (`{"Messages": [{"Body": ...}]}`).

use std::collections::HashSet;

use esm_local::kafka::{KafkaClient, KafkaConfig, KafkaError, Record, TopicPartition};
use esm_local::payload::EventBuilder;
use event_decoding::KafkaBatch;
use serde_json::Value;

use crate::target::{Target, TargetError};

/// Bytes asked per partition and fetch.
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;

/// What one invocation record asks to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discarded {
    /// The invocation payload as recorded (S3 object, Kafka-topic message).
    Payload(Vec<u8>),
    /// Offset ranges (inclusive) to read back from Kafka (SQS message).
    Ranges(Vec<(TopicPartition, i64, i64)>),
}

/// An invocation record that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invocation record {index}: {problem}")]
pub struct RecordError {
    /// Position of the record in its input (from 0).
    pub index: usize,
    /// What is wrong.
    pub problem: String,
}

/// Reads every invocation record of one input.
pub fn parse_input(text: &str) -> Result<Vec<Discarded>, RecordError> {
    let err = |index, problem: String| RecordError { index, problem };
    let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) if o.contains_key("Messages") => o["Messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let body = m["Body"]
                    .as_str()
                    .ok_or_else(|| err(i, "an SQS message without a Body".into()))?;
                serde_json::from_str(body).map_err(|e| err(i, format!("Body is not JSON: {e}")))
            })
            .collect::<Result<_, _>>()?,
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        // JSON lines.
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| err(i, format!("not JSON: {e}"))))
            .collect::<Result<_, _>>()?,
    };
    docs.iter()
        .enumerate()
        .map(|(i, d)| discarded(d).map_err(|p| err(i, p)))
        .collect()
}

fn discarded(doc: &Value) -> Result<Discarded, String> {
    if let (Some(Value::String(body)), None, None) = (
        doc.get("Body"),
        doc.get("payload"),
        doc.get("KafkaBatchInfo"),
    ) {
        let inner: Value =
            serde_json::from_str(body).map_err(|e| format!("Body is not JSON: {e}"))?;
        return discarded(&inner);
    }
    match doc.get("payload") {
        Some(Value::String(s)) => return Ok(Discarded::Payload(s.clone().into_bytes())),
        Some(p @ Value::Object(_)) => {
            return Ok(Discarded::Payload(
                serde_json::to_vec(p).expect("JSON values serialize"),
            ));
        }
        _ => {}
    }
    let info = doc
        .get("KafkaBatchInfo")
        .ok_or("neither `payload` nor `KafkaBatchInfo`: not a Kafka invocation record")?;
    let offset = |v: Option<&Value>, what: &str| -> Result<i64, String> {
        match v {
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| format!("{what}: {s:?} is not an offset")),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{what}: not an offset")),
            _ => Err(format!("{what} is missing")),
        }
    };
    let ranges = info
        .get("recordsInfo")
        .and_then(Value::as_object)
        .ok_or("KafkaBatchInfo.recordsInfo is missing (and there is no payload)")?
        .iter()
        .map(|(key, r)| {
            let (topic, partition) = key
                .rsplit_once('-')
                .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?)))
                .ok_or_else(|| format!("recordsInfo key {key:?} is not <topic>-<partition>"))?;
            let first = offset(r.get("firstRecordOffset"), "firstRecordOffset")?;
            let last = offset(r.get("lastRecordOffset"), "lastRecordOffset")?;
            if last < first {
                return Err(format!(
                    "{key}: lastRecordOffset {last} < firstRecordOffset {first}"
                ));
            }
            Ok((
                TopicPartition::new(topic.to_owned(), partition),
                first,
                last,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Discarded::Ranges(ranges))
}

/// What a failures replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureSummary {
    /// Invocation records read.
    pub discarded_batches: usize,
    /// Records sent to the function.
    pub records_sent: usize,
    /// Records the function reported for redelivery again.
    pub records_failed: usize,
    /// Events sent.
    pub invocations: usize,
    /// Offsets named by SQS records that Kafka no longer has (retention) or never had, per
    /// range: `topic-partition first..=last: n missing`.
    pub missing: Vec<String>,
}

/// Faults that stop a failures replay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FailuresError {
    /// The function could not be invoked at all.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Kafka could not be read for an SQS record's offsets.
    #[error("reading the discarded offsets back from Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// An SQS record needs Kafka and no bootstrap servers were given.
    #[error(
        "an SQS invocation record holds offsets only: give --bootstrap-servers to read them back from Kafka"
    )]
    NoKafka,
    /// A recorded payload is not an ESM event.
    #[error("a recorded payload is not a Kafka ESM event: {0}")]
    Payload(String),
}

/// Replays `batches` through `target`, at most `batch_size` records per event for ranges read
/// back from Kafka (a recorded payload is sent as it was).
pub async fn replay_failures(
    batches: &[Discarded],
    kafka: Option<&KafkaConfig>,
    target: &mut Target,
    batch_size: usize,
) -> Result<FailureSummary, FailuresError> {
    let mut summary = FailureSummary {
        discarded_batches: batches.len(),
        ..FailureSummary::default()
    };
    let mut client: Option<KafkaClient> = None;
    for batch in batches {
        match batch {
            Discarded::Payload(payload) => {
                let event = KafkaBatch::from_slice(payload)
                    .map_err(|e| FailuresError::Payload(e.to_string()))?;
                let sent: Vec<(TopicPartition, i64)> = event
                    .records()
                    .map(|r| {
                        (
                            TopicPartition::new(r.topic.to_string(), r.partition),
                            r.offset,
                        )
                    })
                    .collect();
                summary.invocations += 1;
                summary.records_sent += sent.len();
                summary.records_failed += target.invoke(payload.clone()).await?.failed(&sent).len();
            }
            Discarded::Ranges(ranges) => {
                let kafka = kafka.ok_or(FailuresError::NoKafka)?;
                if client.is_none() {
                    client = Some(KafkaClient::connect(kafka.clone()).await?);
                }
                let c = client.as_mut().expect("connected above");
                for (tp, first, last) in ranges {
                    let records = fetch_range(c, tp, *first, *last).await?;
                    let wanted = (last - first + 1) as usize;
                    if records.len() < wanted {
                        summary.missing.push(format!(
                            "{tp} {first}..={last}: {} missing",
                            wanted - records.len()
                        ));
                    }
                    let bootstrap = c.bootstrap_servers();
                    let mut rest = records.as_slice();
                    while !rest.is_empty() {
                        let mut builder = EventBuilder::new(bootstrap.clone());
                        let mut n = 0;
                        while n < rest.len()
                            && n < batch_size.max(1)
                            && builder.try_push(tp, &rest[n])
                        {
                            n += 1;
                        }
                        let (event, tail) = rest.split_at(n);
                        rest = tail;
                        let sent: Vec<(TopicPartition, i64)> =
                            event.iter().map(|r| (tp.clone(), r.offset)).collect();
                        summary.invocations += 1;
                        summary.records_sent += sent.len();
                        summary.records_failed +=
                            target.invoke(builder.build()).await?.failed(&sent).len();
                    }
                }
            }
        }
    }
    Ok(summary)
}

/// The records of `tp` with offsets `first..=last` that the partition still has.
pub async fn fetch_range(
    client: &mut KafkaClient,
    tp: &TopicPartition,
    first: i64,
    last: i64,
) -> Result<Vec<Record>, KafkaError> {
    client
        .refresh_metadata(std::slice::from_ref(&tp.topic))
        .await?;
    let mut out: Vec<Record> = Vec::new();
    let mut next = first;
    let mut seen: HashSet<i64> = HashSet::new();
    while next <= last {
        let fetched = client
            .fetch(&[(tp.clone(), next)], 500, FETCH_MAX_BYTES)
            .await?;
        let Some(part) = fetched.into_iter().find(|p| &p.tp == tp) else {
            break;
        };
        if let Some(e) = part.error {
            // Below the log start (retention removed them) or past the end: nothing more here.
            tracing::warn!(partition = %tp, offset = next, error = %e, "offsets not readable");
            break;
        }
        let progress = part
            .records
            .iter()
            .map(|r| r.offset)
            .max()
            .filter(|m| *m >= next);
        out.extend(
            part.records
                .into_iter()
                .filter(|r| (first..=last).contains(&r.offset) && seen.insert(r.offset)),
        );
        match progress {
            Some(m) => next = m + 1,
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_s3_and_kafka_destination_records() {
        let sqs = r#"{"requestContext":{"condition":"RetryAttemptsExhausted","approximateInvokeCount":6},
            "responseContext":{"statusCode":200,"functionError":"Unhandled"},"version":"1.0",
            "timestamp":"2026-11-29T10:00:00.000Z","KafkaBatchInfo":{"batchSize":3,
            "recordsInfo":{"gift-events-2":{"firstRecordOffset":"40","lastRecordOffset":"42"}}}}"#;
        assert_eq!(
            parse_input(sqs).unwrap(),
            [Discarded::Ranges(vec![(
                TopicPartition::new("gift-events", 2),
                40,
                42
            )])]
        );
        let s3 = serde_json::json!({"KafkaBatchInfo": {"batchSize": 1},
            "payload": "{\"eventSource\":\"aws:kafka\",\"records\":{}}"});
        let kafka = serde_json::json!({"KafkaBatchInfo": {"batchSize": 1, "recordInfo": {"offset": "7"}},
            "payload": {"eventSource": "aws:kafka", "records": {}}});
        let lines = format!("{s3}\n\n{kafka}\n");
        let got = parse_input(&lines).unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Discarded::Payload(p) if p.starts_with(b"{\"eventSource\"")));
        assert!(matches!(&got[1], Discarded::Payload(p) if p.starts_with(b"{")));
        // `aws sqs receive-message` output.
        let received = serde_json::json!({"Messages": [{"MessageId": "m1", "Body": sqs}]});
        assert_eq!(parse_input(&received.to_string()).unwrap().len(), 1);
        // Lines of messages (esm-local's queue file).
        let message = serde_json::json!({"MessageId": "m1", "ReceiptHandle": "r", "Body": sqs});
        let lines = format!("{message}\n{message}\n");
        assert_eq!(
            parse_input(&lines).unwrap(),
            vec![Discarded::Ranges(vec![(TopicPartition::new("gift-events", 2), 40, 42)]); 2]
        );
    }

    #[test]
    fn unusable_records_say_why() {
        for (doc, problem) in [
            (r#"{"requestContext":{}}"#, "not a Kafka invocation record"),
            (r#"{"KafkaBatchInfo":{}}"#, "recordsInfo is missing"),
            (
                r#"{"KafkaBatchInfo":{"recordsInfo":{"nopartition":{"firstRecordOffset":"1","lastRecordOffset":"1"}}}}"#,
                "not <topic>-<partition>",
            ),
            (
                r#"{"KafkaBatchInfo":{"recordsInfo":{"t-0":{"firstRecordOffset":"5","lastRecordOffset":"4"}}}}"#,
                "< firstRecordOffset",
            ),
            (
                r#"{"KafkaBatchInfo":{"recordsInfo":{"t-0":{"firstRecordOffset":"x","lastRecordOffset":"4"}}}}"#,
                "is not an offset",
            ),
            (r#"{"Messages":[{"Body":"{oops"}]}"#, "Body is not JSON"),
        ] {
            let e = parse_input(doc).unwrap_err();
            assert!(e.problem.contains(problem), "{doc}: {e}");
        }
    }
}
