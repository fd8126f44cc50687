//! Which writer schemas a batch of records needs ([`schema_ids`]), read from the heads of the
//! key and value texts before anything is decoded.

use std::collections::BTreeSet;

use crate::schema::{Decoding, Encoded, KeyFormat, NoSchemas, ValueFormat, encoding};

use super::{KafkaRecord, decode_base64};

/// Which schema ids decoding `records` with `format` needs, keys and values: what a resolver
/// fetches before the batch is decoded. Empty for [`ValueFormat::Json`]; records whose bytes are
/// not base64 are left to decoding to reject.
///
/// ```
/// use event_decoding::{KafkaRecord, SchemaMetadata, ValueFormat, schema_ids};
/// let records = [
///     KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 5, 2]),
///     KafkaRecord::new("t", 0, 1, 0).with_value("AgQ=").with_value_schema_metadata(SchemaMetadata::new("AVRO", "9")),
///     KafkaRecord::new("t", 0, 2, 0).with_value("{}"),
/// ];
/// let ids: Vec<String> = schema_ids(&records, ValueFormat::Auto).into_iter().collect();
/// assert_eq!(ids, ["5", "9"]);
/// assert!(schema_ids(&records, ValueFormat::Json).is_empty());
/// ```
pub fn schema_ids(records: &[KafkaRecord], format: ValueFormat) -> BTreeSet<String> {
    key_and_value_schema_ids(records, format, KeyFormat::Auto)
}

/// [`schema_ids`] with keys decoded as `key_format` says ([`Decoding::with_keys`]): what a
/// resolver fetches when `KEY_FORMAT` is set.
///
/// ```
/// use event_decoding::{KafkaRecord, KeyFormat, ValueFormat, key_and_value_schema_ids};
/// let records = [KafkaRecord::new("t", 0, 0, 0).with_key([0, 0, 0, 0, 3, 2]).with_value("{}")];
/// let ids: Vec<String> = key_and_value_schema_ids(&records, ValueFormat::Json, KeyFormat::Avro).into_iter().collect();
/// assert_eq!(ids, ["3"]);
/// assert!(key_and_value_schema_ids(&records, ValueFormat::Json, KeyFormat::Auto).is_empty());
/// ```
pub fn key_and_value_schema_ids(
    records: &[KafkaRecord],
    format: ValueFormat,
    key_format: KeyFormat,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let decoding = Decoding::new(format, &NoSchemas).with_keys(key_format, None, None);
    let (value, key) = (decoding.value_part(), decoding.key_part());
    if format == ValueFormat::Json && key.is_none_or(|k| k.format == ValueFormat::Json) {
        return ids;
    }
    for r in records {
        let value = (
            Some(value),
            r.value_schema_metadata.as_deref(),
            r.raw_value(),
        );
        let key = (key, r.key_schema_metadata.as_deref(), r.raw_key());
        for (part, meta, text) in [key, value] {
            if let Some(part) = part
                && let Some(bytes) = head(text)
                && let Ok(Encoded::Registry { schema_id, .. }) = encoding(meta, &bytes, part)
            {
                ids.insert(schema_id);
            }
        }
    }
    ids
}

/// Base64 characters of a text's head that [`head`] decodes: 18 bytes, the longest wire prefix
/// (a Glue header: version, compression, 16-byte schema version id).
const HEAD_CHARS: usize = 24;

/// The first bytes of a key or value text: all [`encoding`] reads to find a schema id, so a
/// batch's ids are collected without decoding every body twice. `None` when absent or not base64.
fn head(text: Option<&str>) -> Option<Vec<u8>> {
    let text = text?;
    decode_base64(text.get(..HEAD_CHARS).unwrap_or(text)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::via::tests::{GIFT_BODY, wire};
    use crate::schema::SchemaMetadata;

    /// `schema_ids` reads only the head of each text; on every sample event it finds exactly the
    /// ids that deciding on the whole decoded key and value finds.
    #[test]
    fn schema_ids_from_text_heads_are_those_of_whole_bodies() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        for name in [
            "gift-avro.json",
            "gift-avro-plain.json",
            "gift-avro-glue.json",
            "gift-avro-glue-source.json",
            "gift-protobuf.json",
            "gift-protobuf-glue.json",
            "gift-protobuf-glue-source.json",
            "gift-jsonschema.json",
            "pages-debezium-avro.json",
        ] {
            let bytes = std::fs::read(format!("{dir}{name}")).unwrap();
            let batch = crate::KafkaBatch::from_slice(&bytes).unwrap();
            for format in [ValueFormat::Avro, ValueFormat::Protobuf, ValueFormat::Auto] {
                let mut whole = BTreeSet::new();
                for r in batch.records() {
                    for (meta, bytes) in [
                        (r.key_schema_metadata(), r.key().ok().flatten()),
                        (r.value_schema_metadata(), r.value().ok().flatten()),
                    ] {
                        if let Some(bytes) = bytes
                            && let Ok(Encoded::Registry { schema_id, .. }) = encoding(
                                meta,
                                &bytes,
                                Decoding::new(format, &NoSchemas).value_part(),
                            )
                        {
                            whole.insert(schema_id);
                        }
                    }
                }
                assert!(!whole.is_empty(), "{name}: no schema ids");
                assert_eq!(
                    schema_ids(batch.as_slice(), format),
                    whole,
                    "{name} {format}"
                );
            }
        }
    }

    #[test]
    fn schema_ids_cover_keys_and_values() {
        let records = [
            KafkaRecord::new("t", 0, 0, 0)
                .with_key(wire(3, &[2]))
                .with_value(wire(4, &GIFT_BODY)),
            KafkaRecord::new("t", 0, 1, 0)
                .with_key("plain")
                .with_value(GIFT_BODY)
                .with_value_schema_metadata(SchemaMetadata::new("AVRO", "4")),
            KafkaRecord::new("t", 0, 2, 0).with_raw_value("not base64!"),
        ];
        let ids: Vec<String> = schema_ids(&records, ValueFormat::Avro)
            .into_iter()
            .collect();
        assert_eq!(ids, ["3", "4"]);
    }
}
