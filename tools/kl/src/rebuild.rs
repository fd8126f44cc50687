//! A dead letter back into the Kafka record it was: key, value, headers, topic, partition and
//! offset, as bytes for esm-local's ESM event builder and as the functions' own decoded record.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use esm_local::kafka::{Record, TopicPartition, plain_record};
use esm_local::payload::{EventBuilder, record_json};
use event_decoding::{KafkaRecord, SchemaMetadata};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use lambda_kit::dead_letter::ValueEncoding;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::letters::DeadLetterRow;

/// Why a dead letter cannot be turned back into its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// The row has no topic, partition or offset.
    #[error("the dead letter has no topic/partition/offset")]
    NoPosition,
    /// The value was not base64 as delivered (a hand-made event): there are no bytes to send.
    #[error("the stored value is not base64 (it was not when delivered either)")]
    ValueNotBase64,
    /// The key, stored as base64, does not decode.
    #[error("the stored key is not base64")]
    KeyNotBase64,
    /// A header stored as base64 does not decode.
    #[error("header {0:?}: the stored value is not base64")]
    HeaderNotBase64(String),
}

/// The record a dead letter came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The dead letter's id.
    pub id: i64,
    /// Topic and partition.
    pub tp: TopicPartition,
    /// Offset.
    pub offset: i64,
    /// Milliseconds since the epoch: the record's own timestamp, or for rows written before the
    /// table kept it, when it was first dead-lettered.
    pub timestamp: i64,
    /// Key bytes (for rows written before `key_encoding` was kept, a key stored as base64 is
    /// sent as its text).
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// `keySchemaMetadata` as the ESM delivered it.
    pub key_schema_metadata: Option<SchemaMetadata>,
    /// `valueSchemaMetadata` as the ESM delivered it: with `EventRecordFormat: SOURCE` the value
    /// decodes only with it.
    pub value_schema_metadata: Option<SchemaMetadata>,
}

impl Rebuilt {
    /// The record of `row`.
    pub fn of(row: &DeadLetterRow) -> Result<Self, RebuildError> {
        let (Some(topic), Some(partition), Some(offset)) =
            (&row.topic, row.kafka_partition, row.kafka_offset)
        else {
            return Err(RebuildError::NoPosition);
        };
        let value = match (&row.raw_value, row.value_encoding) {
            (None, _) => None,
            (Some(v), Some(ValueEncoding::Base64)) => Some(
                B64.decode(v.as_bytes())
                    .map_err(|_| RebuildError::ValueNotBase64)?,
            ),
            (Some(v), _) => Some(v.clone().into_bytes()),
        };
        let headers = row
            .record_headers
            .iter()
            .flatten()
            .map(|h| {
                let bytes = match (&h.value, &h.value_base64) {
                    (Some(text), _) => text.clone().into_bytes(),
                    (None, Some(b64)) => B64
                        .decode(b64.as_bytes())
                        .map_err(|_| RebuildError::HeaderNotBase64(h.name.clone()))?,
                    (None, None) => Vec::new(),
                };
                Ok((h.name.clone(), bytes))
            })
            .collect::<Result<Vec<_>, RebuildError>>()?;
        let timestamp = row.kafka_timestamp.unwrap_or_else(|| {
            OffsetDateTime::parse(&row.created_at, &Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .unwrap_or(0)
        });
        let key = match (&row.record_key, row.key_encoding) {
            (None, _) => None,
            (Some(k), Some(ValueEncoding::Base64)) => Some(
                B64.decode(k.as_bytes())
                    .map_err(|_| RebuildError::KeyNotBase64)?,
            ),
            (Some(k), _) => Some(k.clone().into_bytes()),
        };
        Ok(Self {
            id: row.id,
            tp: TopicPartition::new(topic.clone(), partition),
            offset,
            timestamp,
            key,
            value,
            headers,
            key_schema_metadata: row.key_schema_metadata.clone(),
            value_schema_metadata: row.value_schema_metadata.clone(),
        })
    }

    /// The record for esm-local's [`EventBuilder`](esm_local::payload::EventBuilder).
    pub fn to_kafka(&self) -> Record {
        let mut headers = IndexMap::new();
        for (name, value) in &self.headers {
            headers.insert(
                StrBytes::from_string(name.clone()),
                Some(Bytes::from(value.clone())),
            );
        }
        plain_record(
            self.offset,
            self.timestamp,
            self.key.clone().map(Bytes::from),
            self.value.clone().map(Bytes::from),
            headers,
        )
    }

    /// Adds the record to an ESM event as the ESM delivered it (schema metadata included);
    /// `false` when the event is full.
    pub fn push_to(&self, event: &mut EventBuilder) -> bool {
        let mut json = record_json(&self.tp, &self.to_kafka());
        for (field, meta) in [
            ("keySchemaMetadata", &self.key_schema_metadata),
            ("valueSchemaMetadata", &self.value_schema_metadata),
        ] {
            if let (Some(meta), Some(map)) = (meta, json.as_object_mut()) {
                map.insert(
                    field.into(),
                    serde_json::to_value(meta).expect("metadata serializes"),
                );
            }
        }
        event.try_push_json(&self.tp, json)
    }

    /// The record as the functions decode it.
    pub fn to_decoded(&self) -> KafkaRecord {
        let mut r = KafkaRecord::new(
            self.tp.topic.clone(),
            self.tp.partition,
            self.offset,
            self.timestamp,
        );
        if let Some(k) = &self.key {
            r = r.with_key(k);
        }
        if let Some(v) = &self.value {
            r = r.with_value(v);
        }
        for (name, value) in &self.headers {
            r = r.with_header(name.clone(), value.clone());
        }
        if let Some(meta) = &self.key_schema_metadata {
            r = r.with_key_schema_metadata(meta.clone());
        }
        if let Some(meta) = &self.value_schema_metadata {
            r = r.with_value_schema_metadata(meta.clone());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_decoding::KafkaBatch;
    use lambda_kit::dead_letter::DeadLetter;

    /// A dead letter as the functions write it, read back as the table returns it.
    fn stored(record: &KafkaRecord) -> DeadLetterRow {
        let mut v: serde_json::Value =
            serde_json::from_slice(&DeadLetter::new("f", record, "bad", "why").to_json()).unwrap();
        v["id"] = 7.into();
        v["created_at"] = "2026-11-29T08:00:00.5+00:00".into();
        serde_json::from_value(v).unwrap()
    }

    /// What a function receives when kl replays `row`.
    fn replayed(row: &DeadLetterRow) -> KafkaRecord {
        let r = Rebuilt::of(row).unwrap();
        let mut b = EventBuilder::new("kl");
        assert!(r.push_to(&mut b));
        let batch = KafkaBatch::from_slice(&b.build()).unwrap();
        let recs: Vec<KafkaRecord> = batch.records().cloned().collect();
        assert_eq!(recs.len(), 1);
        recs.into_iter().next().unwrap()
    }

    #[test]
    fn text_and_binary_values_and_headers_round_trip() {
        let original = KafkaRecord::new("gift_events", 3, 41, 1_732_350_000_123)
            .with_key(b"user-1")
            .with_value("{\"q\":\"ünï\"}")
            .with_header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .with_header("bin", [0xff, 0x00]);
        let got = replayed(&stored(&original));
        assert_eq!(&*got.topic, "gift_events");
        assert_eq!((got.partition, got.offset), (3, 41));
        assert_eq!(got.key().unwrap(), original.key().unwrap());
        assert_eq!(got.value().unwrap(), original.value().unwrap());
        assert_eq!(got.headers(), original.headers());
        assert_eq!(got.timestamp, 1_732_350_000_123);

        let binary = KafkaRecord::new("t", 0, 1, 0).with_value([0xff, 0x00, 0x10]);
        let got = replayed(&stored(&binary));
        assert_eq!(got.value().unwrap(), Some(vec![0xff, 0x00, 0x10]));
        assert!(got.headers().is_empty());
    }

    #[test]
    fn binary_keys_and_schema_metadata_round_trip() {
        // As an ESM schema registry with `EventRecordFormat: SOURCE` delivers Avro: bare bodies
        // and the schema ids beside them.
        let original = KafkaRecord::new("gift_events", 0, 9, 5)
            .with_key([0x02, 0xff, 0x00])
            .with_value([0x2a, 0x00])
            .with_key_schema_metadata(SchemaMetadata::new("AVRO", "3"))
            .with_value_schema_metadata(SchemaMetadata::new("AVRO", "12"));
        let row = stored(&original);
        let got = replayed(&row);
        assert_eq!(got.key().unwrap(), Some(vec![0x02, 0xff, 0x00]));
        assert_eq!(got.value().unwrap(), Some(vec![0x2a, 0x00]));
        assert_eq!(
            got.value_schema_metadata(),
            original.value_schema_metadata()
        );
        assert_eq!(got.key_schema_metadata(), original.key_schema_metadata());
        let decoded = Rebuilt::of(&row).unwrap().to_decoded();
        assert_eq!(
            decoded.value_schema_metadata(),
            original.value_schema_metadata()
        );
        assert_eq!(decoded.key().unwrap(), original.key().unwrap());
    }

    #[test]
    fn rows_written_before_the_record_columns_still_replay() {
        let mut v: serde_json::Value = serde_json::from_slice(
            &DeadLetter::new(
                "f",
                &KafkaRecord::new("t", 0, 1, 5).with_key(b"k"),
                "bad",
                "why",
            )
            .to_json(),
        )
        .unwrap();
        for column in [
            "kafka_timestamp",
            "key_encoding",
            "key_schema_metadata",
            "value_schema_metadata",
        ] {
            v.as_object_mut().unwrap().remove(column);
        }
        v["id"] = 7.into();
        v["created_at"] = "2026-11-29T08:00:00.5+00:00".into();
        let got = replayed(&serde_json::from_value(v).unwrap());
        assert_eq!(got.timestamp, 1_795_939_200_500);
        assert_eq!(got.key().unwrap(), Some(b"k".to_vec()));
    }

    #[test]
    fn null_value_stays_null() {
        let got = replayed(&stored(&KafkaRecord::new("t", 0, 1, 0)));
        assert_eq!(got.value().unwrap(), None);
        assert_eq!(got.key().unwrap(), None);
    }

    #[test]
    fn unrebuildable_rows_say_why() {
        let bad = stored(&KafkaRecord::new("t", 0, 0, 0).with_raw_value("!!not base64!!"));
        assert_eq!(Rebuilt::of(&bad), Err(RebuildError::ValueNotBase64));
        let mut nowhere = stored(&KafkaRecord::new("t", 0, 0, 0));
        nowhere.kafka_offset = None;
        assert_eq!(Rebuilt::of(&nowhere), Err(RebuildError::NoPosition));
    }

    #[test]
    fn decoded_record_matches_the_event() {
        let original = KafkaRecord::new("pages", 1, 9, 0)
            .with_key(b"42")
            .with_value("{}")
            .with_header("h", "v");
        let row = stored(&original);
        let r = Rebuilt::of(&row).unwrap();
        let decoded = r.to_decoded();
        let via_event = replayed(&row);
        assert_eq!(decoded.value().unwrap(), via_event.value().unwrap());
        assert_eq!(decoded.key().unwrap(), via_event.key().unwrap());
        assert_eq!(decoded.headers(), via_event.headers());
        assert_eq!(decoded.id(), via_event.id());
    }
}
