//! [`KafkaRecord`]'s CDC methods: the record's JSON value and key read into a [`Change`]; the
//! envelope shapes themselves (Debezium, flattened rows, plain rows, tombstones) are
//! [`crate::cdc`]'s.

use serde_json::Value;

use crate::cdc::{self, At, Change};
use crate::error::{ErrorCode, RecordError};
use crate::version::SourceVersion;

use super::KafkaRecord;

impl KafkaRecord {
    /// Decodes the record as a CDC change (Debezium, Debezium Cassandra, flattened rows,
    /// tombstones, plain rows). See [`crate::cdc`].
    ///
    /// ```
    /// use event_decoding::{Change, KafkaRecord};
    /// let r = KafkaRecord::new("cdc.pages", 0, 0, 0).with_value(r#"{"page_id":"42","body":"hi"}"#);
    /// let change = r.change().unwrap();
    /// assert!(matches!(change, Change::Upsert { .. }));
    /// assert_eq!(change.field("page_id").and_then(|v| v.as_str()), Some("42"));
    /// ```
    pub fn change(&self) -> Result<Change, RecordError> {
        self.change_with_version().map(|(change, _)| change)
    }

    /// [`change`](Self::change) and, for a Debezium event, where it sits in its source: the
    /// `source` block's `lsn` (PostgreSQL), `file`/`pos`/`row` (MySQL) or `ts_ms`, else the
    /// record's partition/offset. Plain rows and tombstones carry none.
    ///
    /// ```
    /// use event_decoding::{KafkaRecord, SourceVersion};
    /// let r = KafkaRecord::new("cdc.pages", 0, 7, 0).with_value(
    ///     r#"{"before": null, "after": {"page_id": 1}, "op": "c", "source": {"connector": "postgresql", "lsn": 24023128}}"#,
    /// );
    /// let (_, version) = r.change_with_version().unwrap();
    /// assert_eq!(version, Some(SourceVersion::Lsn(24023128)));
    /// ```
    pub fn change_with_version(&self) -> Result<(Change, Option<SourceVersion>), RecordError> {
        self.change_with_key(|| self.key_value())
    }

    /// The record's coordinates, borrowed, for the errors [`crate::cdc`] makes.
    pub(crate) fn at(&self) -> At<'_> {
        At {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// [`change_with_version`](Self::change_with_version) of a JSON value, the key read by `key`.
    pub(crate) fn change_with_key(
        &self,
        key: impl Fn() -> Result<Option<Value>, RecordError>,
    ) -> Result<(Change, Option<SourceVersion>), RecordError> {
        let Some(bytes) = self.value()? else {
            return cdc::from_value(&self.at(), None, key);
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(self.error(
                ErrorCode::MissingValue,
                "value is empty; expected a JSON change event (a tombstone has a null value)",
            ));
        }
        let value: Value = self.parse_json(&bytes, "value")?;
        cdc::from_value(&self.at(), Some(value), key)
    }

    /// The key as JSON (schema/payload wrapper removed), or as a string when it is not JSON.
    pub(crate) fn key_value(&self) -> Result<Option<Value>, RecordError> {
        let Some(bytes) = self.key()? else {
            return Ok(None);
        };
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            return Ok(Some(cdc::unwrap_key(v)));
        }
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(Value::String(s))),
            Err(e) => Err(self.error(
                ErrorCode::InvalidUtf8,
                format!(
                    "key is neither JSON nor UTF-8 text: invalid byte sequence at byte {}",
                    e.utf8_error().valid_up_to()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::Op;
    use serde_json::Map;
    use serde_json::json;

    fn rec(value: Option<Value>, key: Option<Value>) -> KafkaRecord {
        let mut r = KafkaRecord::new("cdc.pages", 0, 1, 0);
        if let Some(v) = value {
            r = r.with_value(v.to_string());
        }
        if let Some(k) = key {
            r = r.with_key(match k {
                Value::String(s) => s,
                other => other.to_string(),
            });
        }
        r
    }

    fn change(value: Value) -> Result<Change, RecordError> {
        rec(Some(value), None).change()
    }

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn debezium_ops_with_and_without_schema_wrapper() {
        let after = json!({"page_id": "42", "title": "T", "body": "B"});
        for (letter, op) in [("c", Op::Create), ("u", Op::Update), ("r", Op::Read)] {
            let env = json!({"before": null, "after": after, "source": {"connector": "postgresql"}, "op": letter, "ts_ms": 1});
            let expected = Change::Upsert {
                op,
                row: row(after.clone()),
                key: None,
                unset: Vec::new(),
            };
            assert_eq!(change(env.clone()).unwrap(), expected);
            let wrapped = json!({"schema": {"type": "struct"}, "payload": env});
            assert_eq!(change(wrapped).unwrap(), expected);
        }
    }

    #[test]
    fn debezium_delete_truncate_message() {
        let before = json!({"page_id": 42});
        let c = change(json!({"before": before, "after": null, "op": "d"})).unwrap();
        assert_eq!(
            c,
            Change::Delete {
                row: Some(row(before)),
                key: None
            }
        );
        assert_eq!(c.field("page_id"), Some(&json!(42)));
        assert_eq!(
            change(json!({"before": null, "after": null, "op": "t", "source": {}})).unwrap(),
            Change::Truncate { table: None }
        );
        let truncate = |source| {
            change(json!({"before": null, "after": null, "op": "t", "source": source})).unwrap()
        };
        let table = |t: &str| Change::Truncate {
            table: Some(t.into()),
        };
        assert_eq!(
            truncate(json!({"db": "wiki", "schema": "public", "table": "pages"})),
            table("public.pages")
        );
        assert_eq!(
            truncate(json!({"db": "inventory", "table": "pages"})),
            table("inventory.pages")
        );
        assert_eq!(
            truncate(json!({"keyspace": "ks", "table": "pages"})),
            table("ks.pages")
        );
        assert_eq!(truncate(json!({"table": "pages"})), table("pages"));
        assert_eq!(
            change(json!({"op": "m", "source": {}, "message": {"prefix": "x"}})).unwrap(),
            Change::Skip { reason: "message" }
        );
    }

    #[test]
    fn debezium_delete_without_before_keeps_key() {
        let r = rec(
            Some(json!({"before": null, "after": null, "op": "d", "source": {}})),
            Some(json!({"page_id": "7"})),
        );
        let c = r.change().unwrap();
        assert_eq!(
            c,
            Change::Delete {
                row: None,
                key: Some(json!({"page_id": "7"}))
            }
        );
        assert_eq!(c.field("page_id"), Some(&json!("7")));
    }

    #[test]
    fn debezium_errors() {
        let err = change(json!({"before": null, "after": null, "op": "c"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvelope);
        assert!(
            err.message.starts_with("after: required"),
            "{}",
            err.message
        );
        let err = change(json!({"after": [1], "op": "u"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvelope);
        let err = change(json!({"after": {}, "op": "x"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownOp);
        assert!(err.message.contains("\"x\""));
        let err = change(json!({"after": {}, "op": 5})).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
    }

    #[test]
    fn cassandra_insert_update_delete() {
        let source = json!({"connector": "cassandra", "keyspace": "ks", "table": "pages"});
        let after = json!({
            "page_id": {"value": "42", "deletion_ts": null, "set": true},
            "title": {"value": "T", "deletion_ts": null, "set": true},
            "body": {"value": null, "deletion_ts": 1, "set": true}
        });
        let c = change(json!({"op": "i", "ts_ms": 1, "source": source, "after": after})).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                op: Op::Insert,
                row: row(json!({"page_id": "42", "title": "T", "body": null})),
                key: None,
                unset: Vec::new(),
            }
        );
        // Without source.connector the cell shape is recognised on its own.
        let c = change(json!({"op": "u", "after": after})).unwrap();
        assert_eq!(c.field("title"), Some(&json!("T")));
        // An update that did not write `body`: the cell says `"set": false`, its value is not the
        // column's value, so it is not in the row and is named in `unset`.
        let partial = json!({
            "page_id": {"value": "42", "deletion_ts": null, "set": true},
            "title": {"value": "T2", "deletion_ts": null, "set": true},
            "body": {"value": null, "deletion_ts": null, "set": false}
        });
        let c = change(json!({"op": "u", "source": source, "after": partial})).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                op: Op::Update,
                row: row(json!({"page_id": "42", "title": "T2"})),
                key: None,
                unset: vec!["body".to_owned()],
            }
        );
        let c = change(json!({"op": "d", "source": source, "after": {"page_id": {"value": "42", "deletion_ts": 5, "set": true}}})).unwrap();
        assert_eq!(
            c,
            Change::Delete {
                row: Some(row(json!({"page_id": "42"}))),
                key: None
            }
        );
    }

    #[test]
    fn flattened_rows() {
        let c = change(json!({"page_id": "1", "title": "T", "__op": "u", "__table": "pages", "__deleted": "false"})).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                op: Op::Update,
                row: row(json!({"page_id": "1", "title": "T"})),
                key: None,
                unset: Vec::new(),
            }
        );
        let c = change(json!({"page_id": "1", "__op": "d", "__deleted": "true"})).unwrap();
        assert_eq!(
            c,
            Change::Delete {
                row: Some(row(json!({"page_id": "1"}))),
                key: None
            }
        );
        let c = change(json!({"page_id": "1", "__deleted": true})).unwrap();
        assert!(matches!(c, Change::Delete { .. }));
        let c = change(json!({"page_id": "1", "__deleted": "false"})).unwrap();
        assert!(matches!(c, Change::Upsert { op: Op::Plain, .. }));
        assert_eq!(
            change(json!({"page_id": "1", "__op": "q"}))
                .unwrap_err()
                .code,
            ErrorCode::UnknownOp
        );
        assert_eq!(
            change(json!({"page_id": "1", "__deleted": "yes"}))
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn plain_rows() {
        let c = change(json!({"page_id": "42", "body": "x"})).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                op: Op::Plain,
                row: row(json!({"page_id": "42", "body": "x"})),
                key: None,
                unset: Vec::new(),
            }
        );
        let c = change(json!({"page_id": "42", "body": "x", "op": "c"})).unwrap();
        assert_eq!(
            c,
            Change::Upsert {
                op: Op::Create,
                row: row(json!({"page_id": "42", "body": "x"})),
                key: None,
                unset: Vec::new(),
            }
        );
        let c = change(json!({"page_id": 42, "op": "d"})).unwrap();
        assert_eq!(
            c,
            Change::Delete {
                row: Some(row(json!({"page_id": 42}))),
                key: None
            }
        );
        let err = change(json!({"page_id": 42, "op": "upsert"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownOp);
        let err = change(json!([1, 2])).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvelope);
    }

    #[test]
    fn tombstones() {
        let plain_key = rec(None, Some(json!("42"))).change().unwrap();
        assert_eq!(plain_key, Change::Tombstone { key: json!(42) });
        let text_key = rec(None, Some(json!("page-42"))).change().unwrap();
        assert_eq!(
            text_key,
            Change::Tombstone {
                key: json!("page-42")
            }
        );
        let wrapped = rec(
            None,
            Some(json!({"schema": {"type": "struct"}, "payload": {"page_id": "42"}})),
        )
        .change()
        .unwrap();
        assert_eq!(
            wrapped,
            Change::Tombstone {
                key: json!({"page_id": "42"})
            }
        );
        assert_eq!(wrapped.field("page_id"), Some(&json!("42")));
        let err = rec(None, None).change().unwrap_err();
        assert_eq!(err.code, ErrorCode::MissingKey);
        let null_payload = rec(
            Some(json!({"schema": null, "payload": null})),
            Some(json!("9")),
        )
        .change()
        .unwrap();
        assert_eq!(null_payload, Change::Tombstone { key: json!(9) });
        let bad_key = KafkaRecord::new("t", 0, 0, 0)
            .with_key([0xff, 0xfe])
            .change()
            .unwrap_err();
        assert_eq!(bad_key.code, ErrorCode::InvalidUtf8);
    }

    #[test]
    fn empty_and_malformed_values() {
        let r = KafkaRecord::new("t", 0, 0, 0).with_value("");
        assert_eq!(r.change().unwrap_err().code, ErrorCode::MissingValue);
        let r = KafkaRecord::new("t", 0, 0, 0).with_value("{not json");
        assert_eq!(r.change().unwrap_err().code, ErrorCode::InvalidJson);
        let r = KafkaRecord::new("t", 0, 0, 0).with_raw_value("!!");
        assert_eq!(r.change().unwrap_err().code, ErrorCode::InvalidBase64);
        let r = KafkaRecord::new("t", 0, 0, 0).with_value([b'{', 0xc3, b'}']);
        assert_eq!(r.change().unwrap_err().code, ErrorCode::InvalidUtf8);
    }

    #[test]
    fn upsert_carries_unwrapped_key() {
        let r = rec(
            Some(json!({"page_id": "1", "op": "c"})),
            Some(json!({"schema": {}, "payload": {"page_id": "1"}})),
        );
        assert_eq!(r.change().unwrap().key(), Some(&json!({"page_id": "1"})));
    }
}
