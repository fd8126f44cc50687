//! One record as a row of the sink table: the value's JSON object, its fields kept exactly as the
//! producer wrote them (a long decimal or a numeric(38) is never rounded through `f64`), cut down
//! to the allow-list, and keyed by the values of the conflict columns. With `KEY_FORMAT` set, the
//! record key's fields join the row where the value lacks them ([`Shape::row_via`]).

use std::collections::{BTreeMap, BTreeSet};

use event_decoding::{Decoding, KafkaRecord, KeyFormat, ValueFormat, json_kind};
use lambda_kit::error::{Classify, ErrorClass};
use lambda_kit::fate::Fate;
use serde_json::value::RawValue;

/// The fields of a row by column name. Sorted, so rows with the same columns serialize with the
/// same keys in the same order.
pub type Fields = BTreeMap<String, Box<RawValue>>;

pub use lambda_kit::config::is_identifier;

/// What a row must look like: its conflict columns (the key) and, optionally, the only columns
/// kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    conflict: Vec<String>,
    keep: Option<BTreeSet<String>>,
}

impl Shape {
    /// Rows keyed by `conflict` (valid identifiers, non-empty); when `columns` is given, other
    /// fields are dropped (the conflict columns are always kept).
    pub fn new(conflict: Vec<String>, columns: Option<Vec<String>>) -> Self {
        let keep = columns.map(|c| c.into_iter().chain(conflict.iter().cloned()).collect());
        Self { conflict, keep }
    }

    /// The conflict columns, in configured order.
    pub fn conflict_columns(&self) -> &[String] {
        &self.conflict
    }

    /// The row of `record` and its key, or why the record can never be a row.
    ///
    /// Rejections: the decoding codes of `event-decoding` (`missing_value`, `invalid_base64`,
    /// `invalid_utf8`, `invalid_json`), `not_an_object`, `missing_key_column` (a conflict column
    /// absent or null), `invalid_key_column` (an object or array), `invalid_column_name` (without
    /// an allow-list, a field that cannot be a column name).
    ///
    /// ```
    /// use event_decoding::KafkaRecord;
    /// use table_sink::row::Shape;
    ///
    /// let shape = Shape::new(vec!["user_id".into()], Some(vec!["email".into()]));
    /// let r = KafkaRecord::new("t", 0, 0, 0).with_value(r#"{"user_id": 7, "email": "a@b", "x": 1}"#);
    /// let (key, fields) = shape.row(&r).unwrap();
    /// assert_eq!(key, r#"["7"]"#);
    /// assert_eq!(fields.keys().collect::<Vec<_>>(), ["email", "user_id"]);
    /// ```
    pub fn row(&self, record: &KafkaRecord) -> Result<(String, Fields), Fate> {
        self.row_via(record, Decoding::JSON)
    }

    /// [`row`](Self::row), the value decoded the way `decoding` says (`VALUE_FORMAT`): an Avro,
    /// Protobuf or JSON Schema value becomes the JSON object `event-decoding` maps it to (its
    /// fields then written as that JSON); a JSON value is still forwarded exactly as written.
    ///
    /// With `KEY_FORMAT` set (not `auto`, [`Decoding::with_keys`]) the record key is decoded too,
    /// with its own schema, and its fields join the row where the value has none of that name
    /// (the value wins): a key object gives its fields, a scalar key fills the conflict column
    /// when there is exactly one; a null key adds nothing. They then pass the allow-list as the
    /// value's fields do. So a topic keyed by `{"user_id": ..}` whose values omit the id still
    /// makes rows keyed by it.
    ///
    /// Besides the rejections of [`row`](Self::row): `missing_schema_id` and `schema_mismatch`
    /// (dead-lettered; for the key too), and `unknown_schema_id`, `schema_fetch_failed`,
    /// `unsupported_format`, which are not the record's fault: the record fails and is
    /// redelivered.
    ///
    /// ```
    /// use event_decoding::{Decoding, KafkaRecord, KeyFormat};
    /// use table_sink::row::Shape;
    ///
    /// let shape = Shape::new(vec!["user_id".into()], Some(vec!["plan".into()]));
    /// let r = KafkaRecord::new("t", 0, 0, 0).with_key(r#"{"user_id": "u-1"}"#).with_value(r#"{"plan": "pro"}"#);
    /// let keys = Decoding::JSON.with_keys(KeyFormat::Json, None, None);
    /// let (key, fields) = shape.row_via(&r, keys).unwrap();
    /// assert_eq!(key, r#"["u-1"]"#);
    /// assert_eq!(fields.keys().collect::<Vec<_>>(), ["plan", "user_id"]);
    /// ```
    pub fn row_via(
        &self,
        record: &KafkaRecord,
        decoding: Decoding<'_>,
    ) -> Result<(String, Fields), Fate> {
        let mut fields = match decoding.format {
            ValueFormat::Json => parse(record)?,
            _ => parse_via(record, decoding)?,
        };
        if decoding.key_format != KeyFormat::Auto {
            self.add_key_fields(record, decoding, &mut fields)?;
        }
        match &self.keep {
            Some(keep) => fields.retain(|name, _| keep.contains(name)),
            None => {
                if let Some(name) = fields.keys().find(|n| !is_identifier(n)) {
                    return Err(Fate::rejected(
                        "invalid_column_name",
                        format!(
                            "field {:?} cannot be a column name (letters, digits and '_', at most 63 bytes); list the columns to keep in SINK_COLUMNS",
                            truncate(name, 64)
                        ),
                    ));
                }
            }
        }
        let key = self.key(&fields)?;
        Ok((key, fields))
    }

    /// The canonical key: the conflict columns' values as text, in configured order, as a JSON
    /// array. A string and a number with the same text are the same key (`"7"` and `7` reach the
    /// same row whether the column is text or a number); other values keep their JSON text.
    fn key(&self, fields: &Fields) -> Result<String, Fate> {
        let mut parts: Vec<String> = Vec::with_capacity(self.conflict.len());
        for column in &self.conflict {
            let part = match fields.get(column).map(|v| v.get()) {
                None => return Err(missing_key(column, "missing")),
                Some("null") => return Err(missing_key(column, "null")),
                Some(raw) if raw.starts_with(['{', '[']) => {
                    let kind = if raw.starts_with('{') {
                        "an object"
                    } else {
                        "an array"
                    };
                    return Err(Fate::rejected(
                        "invalid_key_column",
                        format!(
                            "conflict column {column:?} must be a string, number or boolean, found {kind}"
                        ),
                    ));
                }
                Some(raw) if raw.starts_with('"') => {
                    serde_json::from_str::<String>(raw).expect("a JSON string, parsed once already")
                }
                Some(number_or_boolean) => number_or_boolean.to_owned(),
            };
            parts.push(part);
        }
        Ok(serde_json::to_string(&parts).expect("strings serialize"))
    }
}

impl Shape {
    /// Adds the fields of `record`'s key that the value lacks ([`row_via`](Self::row_via)).
    fn add_key_fields(
        &self,
        record: &KafkaRecord,
        decoding: Decoding<'_>,
        fields: &mut Fields,
    ) -> Result<(), Fate> {
        let key = match decoding.key_format {
            // JSON keys are read straight into raw fields: numbers stay exactly as written.
            KeyFormat::Json => match json_key(record) {
                Some(key) => key,
                None => to_raw(record, decoding)?,
            },
            _ => to_raw(record, decoding)?,
        };
        match key {
            RawKey::Fields(key) => {
                for (name, v) in key {
                    fields.entry(name).or_insert(v);
                }
            }
            RawKey::Scalar(v) => {
                if let [column] = self.conflict.as_slice() {
                    fields.entry(column.clone()).or_insert(v);
                }
            }
            RawKey::None => {}
        }
        Ok(())
    }
}

/// A decoded key as row material.
enum RawKey {
    /// An object: its fields.
    Fields(Fields),
    /// A string, number or boolean.
    Scalar(Box<RawValue>),
    /// Null, absent or an array: nothing to add.
    None,
}

/// A JSON key read exactly, its JsonConverter `schema`/`payload` wrapper removed; `None` when it
/// is not readable so (the slow path names why).
fn json_key(record: &KafkaRecord) -> Option<RawKey> {
    let Ok(bytes) = record.key() else {
        return None;
    };
    let Some(bytes) = bytes else {
        return Some(RawKey::None);
    };
    let raw: Box<RawValue> = serde_json::from_slice(&bytes).ok()?;
    raw_key(raw)
}

fn raw_key(raw: Box<RawValue>) -> Option<RawKey> {
    match raw.get().as_bytes().first() {
        Some(b'{') => {
            let mut fields: Fields = serde_json::from_str(raw.get()).ok()?;
            if fields.len() == 2
                && fields.contains_key("schema")
                && let Some(payload) = fields.remove("payload")
            {
                return raw_key(payload);
            }
            Some(RawKey::Fields(fields))
        }
        Some(b'[') | Some(b'n') => Some(RawKey::None),
        _ => Some(RawKey::Scalar(raw)),
    }
}

/// The key decoded by `event-decoding` (its schema's JSON mapping), or why it cannot be.
fn to_raw(record: &KafkaRecord, decoding: Decoding<'_>) -> Result<RawKey, Fate> {
    let key = record
        .key_via(decoding)
        .map_err(|e| Fate::undecodable(&e))?;
    let raw = |v: &serde_json::Value| {
        serde_json::value::to_raw_value(v).expect("a JSON value serializes")
    };
    Ok(match key {
        Some(serde_json::Value::Object(o)) => {
            RawKey::Fields(o.iter().map(|(k, v)| (k.clone(), raw(v))).collect())
        }
        Some(
            v @ (serde_json::Value::String(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)),
        ) => RawKey::Scalar(raw(&v)),
        _ => RawKey::None,
    })
}

fn missing_key(column: &str, what: &str) -> Fate {
    Fate::rejected(
        "missing_key_column",
        format!("conflict column {column:?} is {what}"),
    )
}

/// The value as a JSON object, or the rejection (the shared crate names decoding failures).
fn parse(record: &KafkaRecord) -> Result<Fields, Fate> {
    if let Ok(Some(bytes)) = record.value()
        && let Ok(fields) = serde_json::from_slice::<Fields>(&bytes)
    {
        return Ok(fields);
    }
    // Slow path, bad records only: let the shared crate classify the failure.
    match record.value_json::<serde_json::Value>() {
        Err(e) => Err(Fate::rejected(e.error_code(), e.message)),
        Ok(v) if !v.is_object() => Err(Fate::rejected(
            "not_an_object",
            format!("the value must be a JSON object, found {}", json_kind(&v)),
        )),
        Ok(_) => Err(Fate::rejected(
            "invalid_json",
            "the value is a JSON object that could not be read",
        )),
    }
}

/// The value as a JSON object when it may be described by a registry schema. JSON text among
/// them (`VALUE_FORMAT=auto`, JSON Schema values) is read straight into [`Fields`], exact.
fn parse_via(record: &KafkaRecord, decoding: Decoding<'_>) -> Result<Fields, Fate> {
    let error = match record.value_json_via::<Fields>(decoding) {
        Ok(fields) => return Ok(fields),
        Err(e) => e,
    };
    // Slow path, bad records only: a value that decodes but is no object is named as such.
    if error.class() == ErrorClass::Data
        && let Ok(v) = record.value_json_via::<serde_json::Value>(decoding)
        && !v.is_object()
    {
        return Err(Fate::rejected(
            "not_an_object",
            format!("the value must be a JSON object, found {}", json_kind(&v)),
        ));
    }
    Err(Fate::undecodable(&error))
}

/// The names of a row's columns, comma separated (identifiers never contain a comma).
pub fn column_set(fields: &Fields) -> String {
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.join(",")
}

/// The row as a JSON object.
pub fn to_json(fields: &Fields) -> Vec<u8> {
    serde_json::to_vec(fields).expect("raw JSON values serialize")
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> KafkaRecord {
        KafkaRecord::new("t", 0, 0, 0).with_value(value)
    }

    fn shape(conflict: &[&str], columns: Option<&[&str]>) -> Shape {
        Shape::new(
            conflict.iter().map(|s| s.to_string()).collect(),
            columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        )
    }

    fn code(r: Result<(String, Fields), Fate>) -> &'static str {
        r.unwrap_err().code().unwrap()
    }

    fn key(s: &Shape, value: &str) -> String {
        s.row(&record(value)).unwrap().0
    }

    #[test]
    fn not_an_object_and_undecodable_values_are_rejected_with_their_code() {
        let s = shape(&["id"], None);
        for (value, expected) in [
            ("[1,2]", "not_an_object"),
            ("\"text\"", "not_an_object"),
            ("42", "not_an_object"),
            ("null", "not_an_object"),
            ("{\"id\": 1", "invalid_json"),
            ("", "invalid_json"),
        ] {
            assert_eq!(code(s.row(&record(value))), expected, "{value:?}");
        }
        let e = s.row(&record("[1]")).unwrap_err();
        assert!(format!("{e:?}").contains("found an array"), "{e:?}");
        assert_eq!(
            code(s.row(&KafkaRecord::new("t", 0, 0, 0))),
            "missing_value"
        );
        assert_eq!(
            code(s.row(&KafkaRecord::new("t", 0, 0, 0).with_value(b"{\"id\": \"\xff\"}"))),
            "invalid_utf8"
        );
        assert_eq!(
            code(s.row(&KafkaRecord::new("t", 0, 0, 0).with_raw_value("*not base64*"))),
            "invalid_base64"
        );
    }

    #[test]
    fn a_missing_null_or_structured_key_column_is_rejected() {
        let s = shape(&["tenant", "id"], None);
        assert_eq!(
            code(s.row(&record(r#"{"tenant": "a"}"#))),
            "missing_key_column"
        );
        assert_eq!(
            code(s.row(&record(r#"{"tenant": "a", "id": null}"#))),
            "missing_key_column"
        );
        assert_eq!(
            code(s.row(&record(r#"{"tenant": {"x": 1}, "id": 1}"#))),
            "invalid_key_column"
        );
        assert_eq!(
            code(s.row(&record(r#"{"tenant": [1], "id": 1}"#))),
            "invalid_key_column"
        );
        assert_eq!(code(s.row(&record("{}"))), "missing_key_column");
        let e = s
            .row(&record(r#"{"tenant": "a", "id": null}"#))
            .unwrap_err();
        assert!(format!("{e:?}").contains("\\\"id\\\" is null"), "{e:?}");
    }

    #[test]
    fn keys_are_canonical_strings_and_numbers_with_the_same_text_meet() {
        let s = shape(&["id"], None);
        assert_eq!(key(&s, r#"{"id": 7}"#), key(&s, r#"{"id": "7"}"#));
        assert_eq!(key(&s, r#"{"id":   7 }"#), r#"["7"]"#);
        assert_eq!(
            key(&s, r#"{"id": "\u0037"}"#),
            r#"["7"]"#,
            "escapes resolved"
        );
        assert_ne!(key(&s, r#"{"id": 7}"#), key(&s, r#"{"id": 7.0}"#));
        assert_ne!(key(&s, r#"{"id": "07"}"#), key(&s, r#"{"id": 7}"#));
        assert_eq!(key(&s, r#"{"id": true}"#), key(&s, r#"{"id": "true"}"#));
        assert_eq!(key(&s, r#"{"id": ""}"#), r#"[""]"#);
        // Beyond 64 bits: kept exactly, not rounded into another key.
        assert_ne!(
            key(&s, r#"{"id": 123456789012345678901234567890}"#),
            key(&s, r#"{"id": 123456789012345678901234567891}"#)
        );
        // Composite keys cannot run into each other.
        let s = shape(&["a", "b"], None);
        assert_ne!(
            key(&s, r#"{"a": "x,y", "b": "z"}"#),
            key(&s, r#"{"a": "x", "b": "y,z"}"#)
        );
        assert_eq!(key(&s, r#"{"b": 2, "a": "é"}"#), r#"["é","2"]"#);
    }

    #[test]
    fn the_allow_list_drops_other_fields_and_missing_ones_are_fine() {
        let s = shape(&["id"], Some(&["email", "name"]));
        let (_, f) = s
            .row(&record(
                r#"{"id": 1, "email": "a@b", "secret": "x", "bad name": 2}"#,
            ))
            .unwrap();
        assert_eq!(column_set(&f), "email,id");
        assert_eq!(to_json(&f), br#"{"email":"a@b","id":1}"#);
        let (_, f) = s.row(&record(r#"{"id": 1}"#)).unwrap();
        assert_eq!(column_set(&f), "id", "the key column is always kept");
    }

    #[test]
    fn without_an_allow_list_every_field_must_be_a_column_name() {
        let s = shape(&["id"], None);
        assert_eq!(
            code(s.row(&record(r#"{"id": 1, "e mail": "x"}"#))),
            "invalid_column_name"
        );
        let long = format!(r#"{{"id": 1, "{}": 0}}"#, "c".repeat(64));
        assert_eq!(code(s.row(&record(&long))), "invalid_column_name");
        let (_, f) = s.row(&record(r#"{"id": 1, "Name_2": null}"#)).unwrap();
        assert_eq!(column_set(&f), "Name_2,id");
    }

    #[test]
    fn values_are_forwarded_exactly_as_written() {
        let s = shape(&["id"], None);
        let value = r#"{"id": 1, "amount": 12345678901234567890.123456789, "n": 1.50, "big": 18446744073709551616, "obj": {"b": 1,  "a": [1e3]}, "text": "Zürich 🎁 \"q\""}"#;
        let (_, f) = s.row(&record(value)).unwrap();
        let json = String::from_utf8(to_json(&f)).unwrap();
        assert_eq!(
            json,
            r#"{"amount":12345678901234567890.123456789,"big":18446744073709551616,"id":1,"n":1.50,"obj":{"b": 1,  "a": [1e3]},"text":"Zürich 🎁 \"q\""}"#
        );
        // Duplicate fields: the last one counts, as in PostgreSQL's jsonb.
        let (_, f) = s.row(&record(r#"{"id": 1, "id": 2}"#)).unwrap();
        assert_eq!(to_json(&f), br#"{"id":2}"#);
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("_x9"));
        assert!(is_identifier(&"a".repeat(63)));
        assert!(!is_identifier(&"a".repeat(64)));
        assert!(!is_identifier("a.b") && !is_identifier("a,b") && !is_identifier("é"));
    }

    mod registry_values {
        use std::collections::HashMap;
        use std::sync::Arc;

        use event_decoding::{DataFormat, Decoding, KafkaRecord, ValueFormat, WriterSchema};

        use super::*;

        const SCHEMA: &str = r#"{"type":"record","name":"Profile","fields":[
          {"name":"user_id","type":"long"},
          {"name":"big","type":{"type":"bytes","logicalType":"decimal","precision":30,"scale":3}}]}"#;

        fn schemas() -> HashMap<String, Arc<WriterSchema>> {
            let avro = |s| Arc::new(WriterSchema::parse(DataFormat::Avro, s, &[]).unwrap());
            HashMap::from([
                ("1".to_string(), avro(SCHEMA)),
                ("2".to_string(), avro(r#""string""#)),
            ])
        }

        /// Confluent wire format: magic byte 0, the schema id (4 bytes, big-endian), the body.
        fn wire(id: u8, body: &[u8]) -> KafkaRecord {
            let mut v = vec![0, 0, 0, 0, id];
            v.extend_from_slice(body);
            KafkaRecord::new("t", 0, 0, 0).with_value(v)
        }

        #[test]
        fn an_avro_value_is_the_row_of_the_json_it_maps_to() {
            let s = shape(&["user_id"], None);
            let schemas = schemas();
            let d = Decoding::new(ValueFormat::Avro, &schemas);
            // user_id 7 (zigzag 14); big: unscaled -1 (one byte 0xff) at scale 3.
            let (key, f) = s.row_via(&wire(1, &[14, 2, 0xff]), d).unwrap();
            assert_eq!(key, r#"["7"]"#);
            assert_eq!(to_json(&f), br#"{"big":"-0.001","user_id":7}"#);
            // A string schema: decodes, but is no object.
            assert_eq!(code(s.row_via(&wire(2, &[2, b'x']), d)), "not_an_object");
            // The body ends inside `big`.
            assert_eq!(
                code(s.row_via(&wire(1, &[14, 4, 0xff]), d)),
                "schema_mismatch"
            );
            assert_eq!(
                code(s.row_via(&record(r#"{"user_id": 1}"#), d)),
                "missing_schema_id"
            );
            // An id the registry does not know: failed (redelivered), never rejected.
            let e = s.row_via(&wire(3, &[14]), d).unwrap_err();
            assert!(
                matches!(
                    e,
                    Fate::Failed {
                        code: "unknown_schema_id",
                        ..
                    }
                ),
                "{e:?}"
            );
        }

        #[test]
        fn under_auto_a_json_value_is_still_forwarded_exactly() {
            let s = shape(&["user_id"], None);
            let schemas = schemas();
            let d = Decoding::new(ValueFormat::Auto, &schemas);
            let (_, f) = s
                .row_via(
                    &record(r#"{"user_id": 1, "n": 18446744073709551616.50}"#),
                    d,
                )
                .unwrap();
            assert_eq!(to_json(&f), br#"{"n":18446744073709551616.50,"user_id":1}"#);
            assert_eq!(code(s.row_via(&record("[1]"), d)), "not_an_object");
            assert_eq!(code(s.row_via(&record("{"), d)), "invalid_json");
            let (_, f) = s.row_via(&wire(1, &[2, 0]), d).unwrap();
            assert_eq!(to_json(&f), br#"{"big":"0.000","user_id":1}"#);
        }
    }

    /// `KEY_FORMAT`: the key's fields join the row where the value lacks them.
    mod keys {
        use std::collections::HashMap;
        use std::sync::Arc;

        use event_decoding::{DataFormat, Decoding, KafkaRecord, KeyFormat, WriterSchema};

        use super::*;

        fn keyed(key: &[u8], value: &str) -> KafkaRecord {
            KafkaRecord::new("t", 0, 0, 0)
                .with_key(key)
                .with_value(value)
        }

        fn json_keys() -> Decoding<'static> {
            Decoding::JSON.with_keys(KeyFormat::Json, None, None)
        }

        #[test]
        fn by_default_the_key_is_not_read() {
            let s = shape(&["user_id"], None);
            let r = keyed(br#"{"user_id": "u-1"}"#, r#"{"plan": "pro"}"#);
            assert_eq!(code(s.row_via(&r, Decoding::JSON)), "missing_key_column");
            // Not even a key that is no JSON at all.
            let r = keyed(&[0xff], r#"{"user_id": 1}"#);
            assert!(s.row_via(&r, Decoding::JSON).is_ok());
        }

        #[test]
        fn json_key_fields_fill_what_the_value_lacks_exactly() {
            let s = shape(&["tenant", "user_id"], Some(&["plan"]));
            let r = keyed(
                br#"{"tenant": 123456789012345678901234567890, "user_id": "u-1", "plan": "key", "x": 1}"#,
                r#"{"plan": "pro", "user_id": "u-1"}"#,
            );
            let (key, f) = s.row_via(&r, json_keys()).unwrap();
            assert_eq!(key, r#"["123456789012345678901234567890","u-1"]"#);
            assert_eq!(
                to_json(&f),
                br#"{"plan":"pro","tenant":123456789012345678901234567890,"user_id":"u-1"}"#,
                "the value wins, the allow-list holds, numbers stay exact"
            );
            // A JsonConverter wrapper is removed, as for CDC keys.
            let r = keyed(
                br#"{"schema": {"type": "struct"}, "payload": {"tenant": 1, "user_id": 2}}"#,
                r#"{"plan": "pro"}"#,
            );
            assert_eq!(s.row_via(&r, json_keys()).unwrap().0, r#"["1","2"]"#);
            // Without an allow-list every key field must be a column name too.
            let s = shape(&["user_id"], None);
            let r = keyed(br#"{"user_id": 1, "bad name": 2}"#, "{}");
            assert_eq!(code(s.row_via(&r, json_keys())), "invalid_column_name");
        }

        #[test]
        fn a_scalar_key_fills_the_only_conflict_column() {
            let s = shape(&["user_id"], None);
            let (key, f) = s
                .row_via(&keyed(b"7", r#"{"plan": "pro"}"#), json_keys())
                .unwrap();
            assert_eq!(
                (key.as_str(), to_json(&f)),
                (r#"["7"]"#, br#"{"plan":"pro","user_id":7}"#.to_vec())
            );
            let two = shape(&["tenant", "user_id"], None);
            assert_eq!(
                code(two.row_via(&keyed(b"7", r#"{"tenant": 1}"#), json_keys())),
                "missing_key_column"
            );
            // A null key adds nothing; a key that is not JSON is the record's fault.
            let null = KafkaRecord::new("t", 0, 0, 0).with_value(r#"{"user_id": 3}"#);
            assert_eq!(s.row_via(&null, json_keys()).unwrap().0, r#"["3"]"#);
            assert_eq!(
                code(s.row_via(&keyed(b"u-1", "{}"), json_keys())),
                "invalid_json"
            );
            let bad = KafkaRecord::new("t", 0, 0, 0)
                .with_raw_key("%%")
                .with_value("{}");
            assert_eq!(code(s.row_via(&bad, json_keys())), "invalid_base64");
        }

        /// `string`, the commonest Kafka key (a user id as text): it fills the only conflict
        /// column, as text even when it looks like a number.
        #[test]
        fn a_string_key_fills_the_only_conflict_column() {
            let d = Decoding::JSON.with_keys(KeyFormat::String, None, None);
            let s = shape(&["user_id"], Some(&["plan"]));
            let (k, f) = s.row_via(&keyed(b"u-1", r#"{"plan": "pro"}"#), d).unwrap();
            assert_eq!(
                (k.as_str(), to_json(&f)),
                (r#"["u-1"]"#, br#"{"plan":"pro","user_id":"u-1"}"#.to_vec())
            );
            let (_, f) = s.row_via(&keyed(b"007", "{}"), d).unwrap();
            assert_eq!(to_json(&f), br#"{"user_id":"007"}"#);
            assert_eq!(code(s.row_via(&keyed(&[0xc3], "{}"), d)), "invalid_utf8");
        }

        #[test]
        fn avro_keys_from_the_registry() {
            let key = r#"{"type":"record","name":"K","fields":[{"name":"user_id","type":"long"}]}"#;
            let schemas = HashMap::from([(
                "4".to_string(),
                Arc::new(WriterSchema::parse(DataFormat::Avro, key, &[]).unwrap()),
            )]);
            let d = Decoding::JSON.with_keys(KeyFormat::Avro, Some(&schemas), None);
            let s = shape(&["user_id"], None);
            // user_id 7 (zigzag 14) behind the Confluent prefix of schema 4.
            let (k, f) = s
                .row_via(&keyed(&[0, 0, 0, 0, 4, 14], r#"{"plan": "pro"}"#), d)
                .unwrap();
            assert_eq!(
                (k.as_str(), to_json(&f)),
                (r#"["7"]"#, br#"{"plan":"pro","user_id":7}"#.to_vec())
            );
            // Cut short: dead letter; a schema the registry lacks: redelivered.
            assert_eq!(
                code(s.row_via(&keyed(&[0, 0, 0, 0, 4], "{}"), d)),
                "schema_mismatch"
            );
            assert_eq!(
                code(s.row_via(&keyed(b"plain", "{}"), d)),
                "missing_schema_id"
            );
            let e = s
                .row_via(&keyed(&[0, 0, 0, 0, 9, 14], "{}"), d)
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    Fate::Failed {
                        code: "unknown_schema_id",
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
}
