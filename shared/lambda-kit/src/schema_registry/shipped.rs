//! Schemas shipped with the function instead of fetched: an Avro schema file
//! (`AVRO_SCHEMA_FILE`) or a Protobuf descriptor set and message (`PROTOBUF_DESCRIPTOR_SET` +
//! `PROTOBUF_MESSAGE`), and the keys' twins, read and checked at cold start; [`Shipped`] answers
//! for every schema id when no registry is configured.

use std::fmt;
use std::sync::Arc;

use event_decoding::{
    AvroSchema, DescriptorSetError, KeyFormat, ProtoSchema, SchemaLookup, SchemaUnavailable,
    ValueFormat, WriterSchema,
};

use crate::config::{ConfigError, Env};

/// The settings that ship a schema for one part of a record (values, or keys).
pub(super) struct ShippedNames {
    /// The part's format setting.
    format: &'static str,
    avro: &'static str,
    descriptor_set: &'static str,
    message: &'static str,
    /// `values'` or `keys'`.
    whose: &'static str,
}

pub(super) const VALUE_SCHEMAS: ShippedNames = ShippedNames {
    format: "VALUE_FORMAT",
    avro: "AVRO_SCHEMA_FILE",
    descriptor_set: "PROTOBUF_DESCRIPTOR_SET",
    message: "PROTOBUF_MESSAGE",
    whose: "values'",
};

pub(super) const KEY_SCHEMAS: ShippedNames = ShippedNames {
    format: "KEY_FORMAT",
    avro: "KEY_AVRO_SCHEMA_FILE",
    descriptor_set: "KEY_PROTOBUF_DESCRIPTOR_SET",
    message: "KEY_PROTOBUF_MESSAGE",
    whose: "keys'",
};

/// Which shipped schema a format reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shippable {
    Avro,
    Protobuf,
    Neither,
}

impl From<ValueFormat> for Shippable {
    fn from(f: ValueFormat) -> Self {
        match f {
            ValueFormat::Avro => Shippable::Avro,
            ValueFormat::Protobuf => Shippable::Protobuf,
            ValueFormat::Json | ValueFormat::Auto => Shippable::Neither,
        }
    }
}

impl From<KeyFormat> for Shippable {
    fn from(f: KeyFormat) -> Self {
        match f {
            KeyFormat::Avro => Shippable::Avro,
            KeyFormat::Protobuf => Shippable::Protobuf,
            KeyFormat::Auto | KeyFormat::String | KeyFormat::Json => Shippable::Neither,
        }
    }
}

/// The shipped schema of one part, read at cold start.
pub(super) fn shipped_schema(
    env: &Env,
    names: &ShippedNames,
    format: impl Into<Shippable> + fmt::Display + Copy,
) -> Result<Option<Arc<WriterSchema>>, ConfigError> {
    match plain_protobuf(env, names, format)? {
        Some(p) => Ok(Some(p)),
        None => plain_avro(env, names, format),
    }
}

/// A schema shipped with the function ([`ValueSettings::plain`](super::ValueSettings::plain)).
/// Without a registry it also answers for every schema id a record names (metadata, Confluent
/// prefix, Glue header): the producer's registry is not reachable from here, and the user said what
/// the values are, so such a record is decoded with it (dead-lettered `schema_mismatch` if it does
/// not fit) rather than redelivered forever for a schema nothing can fetch. The id is not checked;
/// a Protobuf framing's message index is read past and `PROTOBUF_MESSAGE` read
/// ([`ProtoSchema::is_pinned`]).
#[derive(Debug)]
pub(super) struct Shipped(pub(super) Arc<WriterSchema>);

impl SchemaLookup for Shipped {
    fn schema(&self, _id: &str) -> Result<Arc<WriterSchema>, SchemaUnavailable> {
        Ok(self.0.clone())
    }
}

/// The bytes of the shipped schema file `path`, read at cold start, when `format` (of the setting
/// `names.format`) is `wanted`, the one the file's setting `var` goes with; the errors name `var`.
fn shipped_file(
    names: &ShippedNames,
    var: &'static str,
    path: &str,
    format: impl Into<Shippable> + fmt::Display + Copy,
    wanted: Shippable,
) -> Result<Vec<u8>, ConfigError> {
    if format.into() != wanted {
        let wanted = if wanted == Shippable::Avro {
            "avro"
        } else {
            "protobuf"
        };
        return Err(ConfigError::new(
            var,
            format!("only read with {}={wanted} (it is {format})", names.format),
        ));
    }
    std::fs::read(path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))
}

/// `AVRO_SCHEMA_FILE` (or the keys' twin), read and parsed at cold start, only with the format
/// `avro`.
fn plain_avro(
    env: &Env,
    names: &ShippedNames,
    format: impl Into<Shippable> + fmt::Display + Copy,
) -> Result<Option<Arc<WriterSchema>>, ConfigError> {
    let var = names.avro;
    let Some(path) = env.get(var) else {
        return Ok(None);
    };
    let bytes = shipped_file(names, var, &path, format, Shippable::Avro)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::new(var, format!("{path} is not UTF-8 text")))?;
    let schema = AvroSchema::parse(&text)
        .map_err(|e| ConfigError::new(var, format!("{path} is not a valid Avro schema: {e}")))?;
    Ok(Some(Arc::new(WriterSchema::from(schema))))
}

/// `PROTOBUF_DESCRIPTOR_SET` and `PROTOBUF_MESSAGE` (or the keys' twins), read and compiled at
/// cold start: both or neither, and only with the format `protobuf`.
fn plain_protobuf(
    env: &Env,
    names: &ShippedNames,
    format: impl Into<Shippable> + fmt::Display + Copy,
) -> Result<Option<Arc<WriterSchema>>, ConfigError> {
    let (path, message) = match (env.get(names.descriptor_set), env.get(names.message)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ConfigError::new(
                names.message,
                format!(
                    "required with {}: the full name of the {} message (package.Message)",
                    names.descriptor_set, names.whose
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                names.descriptor_set,
                format!(
                    "required with {}: the path of a binary FileDescriptorSet",
                    names.message
                ),
            ));
        }
        (Some(p), Some(m)) => (p, m),
    };
    let bytes = shipped_file(
        names,
        names.descriptor_set,
        &path,
        format,
        Shippable::Protobuf,
    )?;
    let schema = ProtoSchema::from_descriptor_set(&bytes, &message).map_err(|e| {
        let var = match e {
            DescriptorSetError::NoMessage { .. } => names.message,
            _ => names.descriptor_set,
        };
        ConfigError::new(var, e.to_string())
    })?;
    Ok(Some(Arc::new(WriterSchema::from(schema))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_registry::test_support::deadline;
    use crate::schema_registry::{ValueSettings, Values};
    use event_decoding::{ErrorCode, KafkaRecord};

    #[tokio::test]
    async fn plain_protobuf_values_from_a_descriptor_set_file() {
        let set = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/schemas/gift.pb");
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "protobuf"),
            ("PROTOBUF_DESCRIPTOR_SET", set),
            ("PROTOBUF_MESSAGE", "vault.Gift"),
        ]);
        // No registry needed then.
        let s = ValueSettings::from_env(&env).await.unwrap();
        let values = s.build().unwrap();
        let record = KafkaRecord::new("t", 0, 0, 0).with_value([16, 9, 26, 1, b'q']);
        values
            .prepare(std::slice::from_ref(&record), &deadline())
            .await;
        let v: serde_json::Value = record.value_json_via(values.decoding()).unwrap();
        assert_eq!(v["page_id"], 9);
        // Each mistake names its variable.
        for (pairs, var) in [
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_DESCRIPTOR_SET", set),
                ],
                "PROTOBUF_MESSAGE",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "avro"),
                    ("PROTOBUF_DESCRIPTOR_SET", set),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_DESCRIPTOR_SET", set),
                    ("PROTOBUF_MESSAGE", "vault.Nope"),
                ],
                "PROTOBUF_MESSAGE",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("PROTOBUF_DESCRIPTOR_SET", "/nonexistent/set.pb"),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    (
                        "PROTOBUF_DESCRIPTOR_SET",
                        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
                    ),
                    ("PROTOBUF_MESSAGE", "vault.Gift"),
                ],
                "PROTOBUF_DESCRIPTOR_SET",
            ),
            // Basic auth means nothing to a Glue registry (read with the function's role).
            (
                vec![
                    ("VALUE_FORMAT", "avro"),
                    (
                        "SCHEMA_REGISTRY_URL",
                        "arn:aws:glue:eu-west-1:123456789012:registry/gifts",
                    ),
                    ("SCHEMA_REGISTRY_SECRET_ID", "registry-creds"),
                ],
                "SCHEMA_REGISTRY_SECRET_ID",
            ),
        ] {
            let e = ValueSettings::from_env(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err();
            assert!(e.to_string().contains(var), "{pairs:?}: {e}");
        }
    }

    /// `AVRO_SCHEMA_FILE` without a registry, on the fastavro sample `gift-avro-plain.json`: plain
    /// bodies (also one starting with byte 0), and bodies whose prefix or metadata names a schema
    /// id, all decode with the shipped schema; a body cut short is `schema_mismatch`.
    #[tokio::test]
    async fn plain_avro_values_from_a_schema_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let avsc = format!("{dir}schemas/1-gift.avsc");
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("AVRO_SCHEMA_FILE", avsc.as_str()),
        ]);
        let values = ValueSettings::from_env(&env)
            .await
            .unwrap()
            .build()
            .unwrap();
        let bytes = std::fs::read(format!("{dir}gift-avro-plain.json")).unwrap();
        let batch = event_decoding::KafkaBatch::from_slice(&bytes).unwrap();
        values.prepare(batch.as_slice(), &deadline()).await;
        let results: Vec<_> = batch
            .records()
            .map(|r| r.value_json_via::<serde_json::Value>(values.decoding()))
            .collect();
        for (i, r) in results[..4].iter().enumerate() {
            let gift = r.as_ref().unwrap();
            assert_eq!(gift["page_id"], 708 + i, "{gift}");
            assert_eq!(gift["answer"], format!("Avro answer {}", 8 + i), "{gift}");
        }
        assert_eq!(
            results[1].as_ref().unwrap()["event_id"],
            serde_json::Value::Null
        );
        let cut = results[4].as_ref().unwrap_err();
        assert_eq!(cut.code, ErrorCode::SchemaMismatch, "{cut}");
        assert!(cut.is_permanent());
        // A body behind a prefix that does not fit names the shipped schema, not only its id.
        let cut = KafkaRecord::new("t", 0, 0, 0)
            .with_value([0, 0, 0, 0, 1, 2, 2, b'e'])
            .value_json_via::<serde_json::Value>(values.decoding())
            .unwrap_err();
        assert_eq!(cut.code, ErrorCode::SchemaMismatch, "{cut}");
        assert!(cut.message.contains("AVRO_SCHEMA_FILE"), "{cut}");
    }

    #[tokio::test]
    async fn avro_schema_file_mistakes_name_the_variable() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let avsc = format!("{dir}schemas/1-gift.avsc");
        let tmp = std::env::temp_dir().join(format!("avro-schema-file-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let bad = tmp.join("bad.avsc");
        std::fs::write(
            &bad,
            r#"{"type": "record", "name": "G", "fields": [{"name": "x"}]}"#,
        )
        .unwrap();
        let binary = tmp.join("binary.avsc");
        std::fs::write(&binary, [0xff, 0xfe, 0]).unwrap();
        let (bad, binary) = (bad.to_str().unwrap(), binary.to_str().unwrap());
        for (pairs, says) in [
            (
                vec![
                    ("VALUE_FORMAT", "avro"),
                    ("AVRO_SCHEMA_FILE", "/nonexistent/gift.avsc"),
                ],
                "cannot read",
            ),
            (
                vec![("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", dir)],
                "cannot read",
            ),
            (
                vec![("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", bad)],
                "not a valid Avro schema",
            ),
            (
                vec![("VALUE_FORMAT", "avro"), ("AVRO_SCHEMA_FILE", binary)],
                "not UTF-8",
            ),
            (
                vec![
                    ("VALUE_FORMAT", "protobuf"),
                    ("AVRO_SCHEMA_FILE", avsc.as_str()),
                ],
                "only read with VALUE_FORMAT=avro",
            ),
            (
                vec![("AVRO_SCHEMA_FILE", avsc.as_str())],
                "only read with VALUE_FORMAT=avro",
            ),
        ] {
            let e = ValueSettings::from_env(&Env::from_pairs(pairs.clone()))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("AVRO_SCHEMA_FILE") && e.contains(says),
                "{pairs:?}: {e}"
            );
        }
        std::fs::remove_dir_all(&tmp).unwrap();
        // With a registry the shipped schema reads plain values only: ids go to the registry.
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("AVRO_SCHEMA_FILE", avsc.as_str()),
            ("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9"),
        ]);
        let values = ValueSettings::from_env(&env)
            .await
            .unwrap()
            .build()
            .unwrap();
        let plain =
            KafkaRecord::new("t", 0, 0, 0).with_value([2, 2, b'e', 14, 2, b'q', 2, b'a', 0]);
        let v: serde_json::Value = plain.value_json_via(values.decoding()).unwrap();
        assert_eq!(
            (v["event_id"].as_str(), v["page_id"].as_i64()),
            (Some("e"), Some(7))
        );
    }

    /// `Values` with the shipped descriptor set `events/schemas/gift.pb` (message `vault.Gift`)
    /// and no registry.
    async fn shipped_gift() -> Values {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let set = format!("{dir}schemas/gift.pb");
        let env = Env::from_pairs([
            ("VALUE_FORMAT", "protobuf"),
            ("PROTOBUF_DESCRIPTOR_SET", set.as_str()),
            ("PROTOBUF_MESSAGE", "vault.Gift"),
        ]);
        ValueSettings::from_env(&env)
            .await
            .unwrap()
            .build()
            .unwrap()
    }

    /// A shipped descriptor set without a registry reads every framing (the id is not checked,
    /// the message index is read past and `vault.Gift` read); a body that does not fit is a
    /// dead letter (`schema_mismatch`), never a redelivery.
    #[tokio::test]
    async fn shipped_descriptor_set_reads_every_framing() {
        let values = shipped_gift().await;
        let uuid = "2b9d0c6e-51a4-4f87-b3e2-9c0d1e2f3a4b";
        let glue_header: Vec<u8> = [3, 0]
            .into_iter()
            .chain(
                uuid.replace('-', "")
                    .as_bytes()
                    .chunks(2)
                    .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap()),
            )
            .collect();
        // Each framing before `body`, and the metadata naming an id, if any.
        let framings = |body: &[u8]| -> Vec<(Vec<u8>, Option<&str>)> {
            let with = |head: &[u8]| [head, body].concat();
            vec![
                (body.to_vec(), None),
                // Confluent prefix, id 11: message indexes [0] (`0`) and [1] (`2, 2`).
                (with(&[0, 0, 0, 0, 11, 0]), None),
                (with(&[0, 0, 0, 0, 11, 2, 2]), None),
                // SOURCE with a Confluent id: without and with the message indexes.
                (body.to_vec(), Some("11")),
                (with(&[2, 2]), Some("11")),
                // SOURCE with a Glue id: Glue's index 1 (an unsigned varint).
                (with(&[1]), Some(uuid)),
                // The whole Glue header, then Glue's index 1.
                (with(&[glue_header.as_slice(), &[1]].concat()), None),
            ]
        };
        // page_id 7 (field 2), question "q" (field 3); cut: question says 9 bytes, has 1.
        let (good, cut) = ([16, 7, 26, 1, b'q'], [16, 7, 26, 9, b'q']);
        let record = |(bytes, id): (Vec<u8>, Option<&str>)| {
            let r = KafkaRecord::new("t", 0, 0, 0).with_value(bytes);
            match id {
                Some(id) => r.with_value_schema_metadata(event_decoding::SchemaMetadata::new(
                    "PROTOBUF", id,
                )),
                None => r,
            }
        };
        let goods: Vec<KafkaRecord> = framings(&good).into_iter().map(record).collect();
        let cuts: Vec<KafkaRecord> = framings(&cut).into_iter().map(record).collect();
        values.prepare(&goods, &deadline()).await;
        for (i, r) in goods.iter().enumerate() {
            let v: serde_json::Value = r
                .value_json_via(values.decoding())
                .unwrap_or_else(|e| panic!("framing {i}: {e}"));
            assert_eq!(
                (v["page_id"].as_i64(), v["question"].as_str()),
                (Some(7), Some("q")),
                "framing {i}: {v}"
            );
        }
        for (i, r) in cuts.iter().enumerate() {
            let e = r
                .value_json_via::<serde_json::Value>(values.decoding())
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::SchemaMismatch, "framing {i}: {e}");
            assert!(e.is_permanent(), "framing {i}: {e}");
            assert!(
                e.message.contains("PROTOBUF_DESCRIPTOR_SET"),
                "framing {i}: {e}"
            );
        }
    }

    /// The Protobuf samples (Google's runtime behind the Confluent prefix and in SOURCE mode;
    /// AWS's Glue package behind the Glue header and in SOURCE mode) with the shipped descriptor
    /// set and no registry: every gift decodes as `vault.Gift` (a `TaggedGift` too: its extra
    /// fields are unknown to `vault.Gift`), an unregistered id 99 included; the cut body is
    /// `schema_mismatch`; nothing is left for redelivery.
    #[tokio::test]
    async fn protobuf_samples_with_a_shipped_descriptor_set() {
        let values = shipped_gift().await;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let mut pages = Vec::new();
        for name in [
            "gift-protobuf.json",
            "gift-protobuf-glue.json",
            "gift-protobuf-glue-source.json",
        ] {
            let bytes = std::fs::read(format!("{dir}{name}")).unwrap();
            let batch = event_decoding::KafkaBatch::from_slice(&bytes).unwrap();
            values.prepare(batch.as_slice(), &deadline()).await;
            for r in batch.records() {
                match r.value_json_via::<serde_json::Value>(values.decoding()) {
                    Ok(v) => pages.push((name, r.offset, v["page_id"].as_i64(), None)),
                    Err(e) => {
                        assert!(e.is_permanent(), "{name} {}: {e}", r.offset);
                        pages.push((name, r.offset, None, Some(e.code)));
                    }
                }
            }
        }
        let (c, g, s, mismatch) = (
            "gift-protobuf.json",
            "gift-protobuf-glue.json",
            "gift-protobuf-glue-source.json",
            Some(ErrorCode::SchemaMismatch),
        );
        let page = |n| (Some(n), None);
        #[rustfmt::skip]
        let want = [
            // Confluent prefix with indexes [0], [0], [1] (a TaggedGift); SOURCE without and
            // with indexes; id 99, which no registry holds; a body cut short.
            (c, 0, page(800)), (c, 1, page(801)), (c, 2, page(802)), (c, 3, page(803)),
            (c, 4, page(805)), (c, 5, page(804)), (c, 6, (None, mismatch)),
            // Glue header: index 0, index 1 zlib-compressed, a JSON Schema value (not
            // Protobuf), index 4 (no message of the file: read past all the same).
            (g, 0, page(800)), (g, 1, page(802)), (g, 2, (None, mismatch)), (g, 3, page(800)),
            // Glue SOURCE: Glue's index 0, 1, 3 (a TaggedGift.Note `{text: "a note"}`, which
            // fits vault.Gift's field 1: the index is not checked), 4.
            (s, 0, page(810)), (s, 1, page(811)), (s, 2, page(0)), (s, 3, page(810)),
        ];
        let got: Vec<_> = pages.into_iter().map(|p| (p.0, p.1, (p.2, p.3))).collect();
        assert_eq!(got, want);
    }

    /// A shipped key schema beside a shipped value schema, no registry: each part is read with its
    /// own schema, whatever framing it has.
    #[tokio::test]
    async fn shipped_key_and_value_schemas_are_each_parts_own() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/schemas/");
        let (key, value) = (format!("{dir}2-page-key.avsc"), format!("{dir}1-gift.avsc"));
        let values = ValueSettings::from_env(&Env::from_pairs([
            ("VALUE_FORMAT", "avro"),
            ("AVRO_SCHEMA_FILE", value.as_str()),
            ("KEY_FORMAT", "avro"),
            ("KEY_AVRO_SCHEMA_FILE", key.as_str()),
        ]))
        .await
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(values.key_format(), KeyFormat::Avro);
        // Key: page_id "42" behind a Confluent prefix; value: a plain gift (page_id 7).
        let gift = [2, 2, b'e', 14, 2, b'q', 2, b'a', 0];
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key([0, 0, 0, 0, 2, 4, b'4', b'2'])
            .with_value(gift);
        values.prepare(std::slice::from_ref(&r), &deadline()).await;
        let d = values.decoding();
        assert_eq!(
            r.key_via(d).unwrap(),
            Some(serde_json::json!({"page_id": "42"}))
        );
        assert_eq!(
            r.value_json_via::<serde_json::Value>(d).unwrap()["page_id"],
            7
        );
        // A key that is a gift, not a page key: dead letter naming the key's schema setting.
        let wrong = KafkaRecord::new("t", 0, 1, 0)
            .with_key([0, 0, 0, 0, 2, 1])
            .with_value(gift);
        let e = wrong.key_via(d).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaMismatch);
        assert!(e.message.contains("KEY_AVRO_SCHEMA_FILE"), "{e}");
    }

    /// A Debezium change stream in Avro without a registry (fastavro's sample
    /// `events/pages-debezium-avro.json`: keys behind the Confluent prefix of schema 2, values
    /// of schema 3), its key and envelope schemas shipped: every change carries its key decoded
    /// with the key schema, the tombstone included. Before `KEY_FORMAT` a key naming an id was
    /// read with the values' shipped schema (the envelope), which no key fits.
    #[tokio::test]
    async fn debezium_avro_keys_with_their_own_shipped_schema() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        let (key, envelope) = (
            format!("{dir}schemas/2-page-key.avsc"),
            format!("{dir}schemas/3-page-envelope.avsc"),
        );
        let settings = |keys: bool| {
            let mut pairs = vec![
                ("VALUE_FORMAT", "avro"),
                ("AVRO_SCHEMA_FILE", envelope.as_str()),
            ];
            if keys {
                pairs.extend([
                    ("KEY_FORMAT", "avro"),
                    ("KEY_AVRO_SCHEMA_FILE", key.as_str()),
                ]);
            }
            Env::from_pairs(pairs)
        };
        let bytes = std::fs::read(format!("{dir}pages-debezium-avro.json")).unwrap();
        let batch = event_decoding::KafkaBatch::from_slice(&bytes).unwrap();
        let values = ValueSettings::from_env(&settings(true))
            .await
            .unwrap()
            .build()
            .unwrap();
        let keys: Vec<_> = batch
            .records()
            .map(|r| r.change_via(values.decoding()).unwrap().key().cloned())
            .collect();
        assert_eq!(keys.len(), 4);
        assert!(
            keys.iter()
                .all(|k| k.as_ref().is_some_and(|k| k["page_id"].is_string())),
            "{keys:?}"
        );
        let tombstone = batch.records().last().unwrap();
        assert!(matches!(
            tombstone.change_via(values.decoding()).unwrap(),
            event_decoding::Change::Tombstone { .. }
        ));
        // The default: the tombstone's key is read with the envelope schema and does not fit.
        let values = ValueSettings::from_env(&settings(false))
            .await
            .unwrap()
            .build()
            .unwrap();
        let e = tombstone.change_via(values.decoding()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaMismatch, "{e}");
    }
}
