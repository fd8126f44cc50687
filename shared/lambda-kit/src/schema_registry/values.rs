//! [`Values`]: how a function decodes its records' values and keys, built once per process (the
//! format, the registry client, the shipped schemas), and the prefetch of the writer schemas a
//! batch names.

use std::sync::Arc;

use event_decoding::{
    Decoding, KafkaRecord, KeyFormat, NoSchemas, SchemaLookup, ValueFormat, WriterSchema,
    key_and_value_schema_ids,
};

use crate::retry::Deadline;

use super::shipped::Shipped;
use super::{GlueRegistry, SchemaRegistry};

/// `VALUE_FORMAT` and the registry client, built once per process: a function fetches a batch's
/// schemas with [`prepare`](Self::prepare) (its
/// [`BatchFunction::prepare`](crate::runner::BatchFunction::prepare)) and decodes each record with
/// [`decoding`](Self::decoding).
///
/// ```
/// use lambda_kit::schema_registry::Values;
/// let v = Values::default();
/// assert_eq!(v.decoding().format, event_decoding::ValueFormat::Json);
/// ```
#[derive(Debug, Default)]
pub struct Values {
    pub(super) format: ValueFormat,
    pub(super) registry: Option<SchemaRegistry>,
    pub(super) glue: Option<GlueRegistry>,
    pub(super) plain: Option<Shipped>,
    pub(super) key_format: KeyFormat,
    pub(super) key_plain: Option<Shipped>,
}

impl Values {
    /// `format` with `registry`.
    pub fn new(format: ValueFormat, registry: Option<SchemaRegistry>) -> Self {
        Self {
            format,
            registry,
            glue: None,
            plain: None,
            key_format: KeyFormat::Auto,
            key_plain: None,
        }
    }

    /// With `schema` for plain values (no metadata, no wire prefix) under `VALUE_FORMAT=protobuf`
    /// or `avro` ([`Decoding::with_plain`]).
    pub fn with_plain(mut self, schema: Arc<WriterSchema>) -> Self {
        self.plain = Some(Shipped(schema));
        self
    }

    /// `format` with the Glue registry `glue`.
    pub fn with_glue(format: ValueFormat, glue: GlueRegistry) -> Self {
        Self {
            format,
            registry: None,
            glue: Some(glue),
            plain: None,
            key_format: KeyFormat::Auto,
            key_plain: None,
        }
    }

    /// Keys decoded as `format` says (`KEY_FORMAT`), with `plain` for keys that name no schema
    /// ([`Decoding::with_keys`]).
    pub fn with_keys(mut self, format: KeyFormat, plain: Option<Arc<WriterSchema>>) -> Self {
        self.key_format = format;
        self.key_plain = plain.map(Shipped);
        self
    }

    /// How records are decoded.
    pub fn decoding(&self) -> Decoding<'_> {
        let d = match (&self.registry, &self.glue) {
            (Some(r), _) => Decoding::new(self.format, r),
            (None, Some(g)) => Decoding::new(self.format, g),
            (None, None) => match &self.plain {
                Some(s) => Decoding::new(self.format, s),
                None => Decoding::new(self.format, &NoSchemas),
            },
        };
        let d = match &self.plain {
            Some(p) => d.with_plain(&p.0),
            None => d,
        };
        // Keys name ids of the registry when there is one; without, the shipped key schema
        // answers for them as the values' does for values.
        let key_schemas = match (&self.registry, &self.glue, &self.key_plain) {
            (None, None, Some(k)) => Some(k as &dyn SchemaLookup),
            _ => None,
        };
        d.with_keys(
            self.key_format,
            key_schemas,
            self.key_plain.as_ref().map(|k| &*k.0),
        )
    }

    /// `KEY_FORMAT`.
    pub fn key_format(&self) -> KeyFormat {
        self.key_format
    }

    /// The Glue registry client, when `SCHEMA_REGISTRY_URL` is a Glue registry ARN.
    pub fn glue(&self) -> Option<&GlueRegistry> {
        self.glue.as_ref()
    }

    /// The registry client, when one is configured.
    pub fn registry(&self) -> Option<&SchemaRegistry> {
        self.registry.as_ref()
    }

    /// Fetches the writer schemas `records` need that are not cached yet (nothing for JSON).
    pub async fn prepare(&self, records: &[KafkaRecord], deadline: &Deadline) {
        if self.registry.is_none() && self.glue.is_none() {
            return;
        }
        let ids = key_and_value_schema_ids(records, self.format, self.key_format);
        if ids.is_empty() {
            return;
        }
        if let Some(registry) = &self.registry {
            registry.prefetch(&ids, deadline).await;
        } else if let Some(glue) = &self.glue {
            glue.prefetch(&ids, deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;
    use crate::schema_registry::ValueSettings;
    use crate::schema_registry::test_support::{GIFT, deadline, ok_body, registry};
    use crate::testing::MockServer;
    use event_decoding::ErrorCode;
    use std::collections::BTreeSet;

    #[test]
    fn schema_ids_of_a_batch_feed_prefetch() {
        let records = [KafkaRecord::new("t", 0, 0, 0).with_value([0, 0, 0, 0, 5, 2])];
        assert_eq!(
            event_decoding::schema_ids(&records, ValueFormat::Auto),
            BTreeSet::from(["5".to_string()])
        );
    }

    /// `KEY_FORMAT=avro` with JSON values and a registry: the key's id is fetched before the
    /// batch is decoded (values alone would fetch nothing), and a registry that keeps failing
    /// leaves the key `schema_fetch_failed` (redelivered), not a dead letter.
    #[tokio::test]
    async fn registry_keys_of_json_values_are_fetched() {
        let server = MockServer::start(vec![(200, vec![], ok_body())]).await;
        let values = Values::new(ValueFormat::Json, Some(registry(server.url())))
            .with_keys(KeyFormat::Avro, None);
        let r = KafkaRecord::new("t", 0, 0, 0)
            .with_key([0, 0, 0, 0, 5, 14])
            .with_value(r#"{"plan":"pro"}"#);
        values.prepare(std::slice::from_ref(&r), &deadline()).await;
        assert_eq!(server.requests().len(), 1);
        assert_eq!(
            r.key_via(values.decoding()).unwrap(),
            Some(serde_json::json!({"page_id": 7}))
        );

        let down = MockServer::start(vec![(503, vec![], "{}".into())]).await;
        let values = Values::new(ValueFormat::Json, Some(registry(down.url())))
            .with_keys(KeyFormat::Avro, None);
        values.prepare(std::slice::from_ref(&r), &deadline()).await;
        let e = r.key_via(values.decoding()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SchemaFetchFailed);
        assert!(!e.is_permanent());
        assert!(e.message.starts_with("key: writer schema 5"), "{e}");
    }

    #[tokio::test]
    async fn values_with_a_glue_arn_resolve_glue_framed_records() {
        use crate::schema_registry::glue::tests::{ARN, error, registry as glue_registry, version};
        use event_decoding::{ErrorCode, KafkaRecord, ValueFormat};
        let env = Env::from_pairs([("VALUE_FORMAT", "auto"), ("SCHEMA_REGISTRY_URL", ARN)]);
        let s = ValueSettings::from_env(&env).await.unwrap();
        assert!(s.registry.is_none());
        assert_eq!(s.glue.as_ref().unwrap().arn.name, "gifts");
        assert!(s.build().unwrap().glue().is_some());

        let server = MockServer::start(vec![
            (200, vec![], version("AVRO", GIFT)),
            (
                400,
                vec![],
                error("EntityNotFoundException", "Schema version is not found."),
            ),
        ])
        .await;
        let values = Values::with_glue(ValueFormat::Auto, glue_registry(server.url(), 3));
        let id = [
            0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x40, 0x71, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7,
            0xe8, 0xf9,
        ];
        let framed = |id: &[u8], body: &[u8]| {
            let mut v = vec![3, 0];
            v.extend_from_slice(id);
            v.extend_from_slice(body);
            v
        };
        let mut other = id;
        other[15] = 0xff; // sorts after `id`: fetched second, answered 404
        let records = [
            KafkaRecord::new("t", 0, 0, 0).with_value(framed(&id, &[84])),
            KafkaRecord::new("t", 0, 1, 0).with_value(framed(&other, &[84])),
            KafkaRecord::new("t", 0, 2, 0).with_value(r#"{"page_id": 5}"#),
        ];
        values.prepare(&records, &deadline()).await;
        assert_eq!(
            server.requests().len(),
            2,
            "one GetSchemaVersion per version id"
        );
        let d = values.decoding();
        let v: serde_json::Value = records[0].value_json_via(d).unwrap();
        assert_eq!(v, serde_json::json!({"page_id": 42}));
        let e = records[1]
            .value_json_via::<serde_json::Value>(d)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownSchemaId);
        assert!(!e.is_permanent());
        let v: serde_json::Value = records[2].value_json_via(d).unwrap();
        assert_eq!(v["page_id"], 5);
    }
}
