//! Change data capture: turns a record's decoded value and key into a [`Change`] whatever the
//! producer's format ([`KafkaRecord::change`] reads them from the record).
//!
//! Recognised shapes of the record value (after removing a Kafka Connect JsonConverter
//! `{"schema": .., "payload": ..}` wrapper, which `schemas.enable=true`, the default, adds):
//!
//! | shape | example | result |
//! | --- | --- | --- |
//! | Debezium envelope | `{"before":..,"after":{..},"source":{..},"op":"c"}` | `c`/`u`/`r` upsert `after`, `d` delete `before`, `t` truncate, `m` skip |
//! | Debezium Cassandra | `{"after":{"page_id":{"value":"42","deletion_ts":null,"set":true}},"op":"i"}` | cells unwrapped; `i`/`u` upsert, `d` delete (the primary key cells in `after`) |
//! | `ExtractNewRecordState` | `{"page_id":"42",..,"__op":"u","__deleted":"false"}` | upsert, or delete when `__deleted` is true / `__op` is `d`; `__`-prefixed fields removed |
//! | plain row | `{"page_id":"42","body":".."}` (optional `"op"`) | upsert, or delete for `"op":"d"` |
//! | tombstone | value null/absent | [`Change::Tombstone`] keyed by the record key |
//!
//! An `op` this module does not know is an `unknown_op` error, never a silent skip.
//!
//! [`KafkaRecord::change`]: crate::KafkaRecord::change

use serde_json::{Map, Value};

use crate::error::{ErrorCode, RecordError};
use crate::record_id::RecordId;
use crate::version::SourceVersion;

/// The kind of write an upsert came from.
///
/// ```
/// assert_eq!(event_decoding::Op::Read.as_str(), "r");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `c`: insert.
    Create,
    /// `u`: update.
    Update,
    /// `r`: snapshot read.
    Read,
    /// `i`: Cassandra insert.
    Insert,
    /// A plain row without an `op` field.
    Plain,
}

impl Op {
    /// The Debezium op letter (`""` for [`Op::Plain`]).
    pub fn as_str(&self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Read => "r",
            Op::Insert => "i",
            Op::Plain => "",
        }
    }
}

/// One decoded change.
///
/// ```
/// use event_decoding::{Change, KafkaRecord};
/// // A tombstone: null value, the key identifies the row.
/// let r = KafkaRecord::new("cdc.pages", 0, 9, 0).with_key(r#"{"page_id":"42"}"#);
/// let change = r.change().unwrap();
/// assert!(matches!(change, Change::Tombstone { .. }));
/// assert_eq!(change.field("page_id").and_then(|v| v.as_str()), Some("42"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Insert, update, snapshot read or plain row: the new row.
    Upsert {
        /// Where it came from.
        op: Op,
        /// The row after the change (Cassandra cells unwrapped, metadata fields removed).
        row: Map<String, Value>,
        /// The record key (JSON unwrapped, or a string), when present.
        key: Option<Value>,
        /// Columns this change carries no value for: Debezium Cassandra cells with
        /// `"set": false` (the mutation did not write them, so the stored value is unchanged).
        /// They are absent from `row`.
        unset: Vec<String>,
    },
    /// A delete: `before` (Debezium), the primary key cells (Cassandra) or the flattened row.
    Delete {
        /// What the producer says about the deleted row, if anything.
        row: Option<Map<String, Value>>,
        /// The record key, when present.
        key: Option<Value>,
    },
    /// A null value: the key identifies a deleted row (log compaction marker).
    Tombstone {
        /// The record key (JSON object unwrapped from a schema/payload wrapper, or a string).
        key: Value,
    },
    /// The table was truncated.
    Truncate {
        /// The truncated table as the Debezium `source` block names it, `schema.table`
        /// (`source.schema`, else `source.db` or `source.keyspace`, then `source.table`; the
        /// table alone when nothing qualifies it); `None` when the event names no table.
        table: Option<String>,
    },
    /// A record that carries no row change (e.g. a Debezium `m` logical decoding message).
    Skip {
        /// Why, as a static low-cardinality string.
        reason: &'static str,
    },
}

impl Change {
    /// Looks `name` up in the row, then in the key when it is an object.
    ///
    /// ```
    /// use event_decoding::KafkaRecord;
    /// let r = KafkaRecord::new("t", 0, 0, 0)
    ///     .with_key(r#"{"page_id": 42}"#)
    ///     .with_value(r#"{"before": null, "after": {"title": "T"}, "op": "c"}"#);
    /// let c = r.change().unwrap();
    /// assert_eq!(c.field("title").and_then(|v| v.as_str()), Some("T"));
    /// assert_eq!(c.field("page_id").and_then(|v| v.as_i64()), Some(42));
    /// assert_eq!(c.field("nope"), None);
    /// ```
    pub fn field(&self, name: &str) -> Option<&Value> {
        let (row, key) = match self {
            Change::Upsert { row, key, .. } => (Some(row), key.as_ref()),
            Change::Delete { row, key } => (row.as_ref(), key.as_ref()),
            Change::Tombstone { key } => (None, Some(key)),
            Change::Truncate { .. } | Change::Skip { .. } => (None, None),
        };
        row.and_then(|r| r.get(name))
            .filter(|v| !v.is_null())
            .or_else(|| key.and_then(|k| k.as_object()).and_then(|k| k.get(name)))
    }

    /// The record key, when the change has one.
    pub fn key(&self) -> Option<&Value> {
        match self {
            Change::Upsert { key, .. } | Change::Delete { key, .. } => key.as_ref(),
            Change::Tombstone { key } => Some(key),
            Change::Truncate { .. } | Change::Skip { .. } => None,
        }
    }

    /// A static name of the variant for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Upsert { .. } => "upsert",
            Change::Delete { .. } => "delete",
            Change::Tombstone { .. } => "tombstone",
            Change::Truncate { .. } => "truncate",
            Change::Skip { .. } => "skip",
        }
    }
}

/// Where the record being decoded lives, for the errors its change names: its topic, partition
/// and offset, borrowed (no allocation unless an error is made).
#[derive(Clone, Copy, Debug)]
pub(crate) struct At<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl At<'_> {
    /// A [`RecordError`] of this record.
    pub(crate) fn error(&self, code: ErrorCode, message: impl Into<String>) -> RecordError {
        RecordError::new(
            RecordId::new(self.topic, self.partition, self.offset),
            code,
            message,
        )
    }
}

/// The change a decoded value (`None`: a tombstone) and key make.
pub(crate) fn from_value(
    at: &At<'_>,
    value: Option<Value>,
    key: impl Fn() -> Result<Option<Value>, RecordError>,
) -> Result<(Change, Option<SourceVersion>), RecordError> {
    let Some(value) = value else {
        return tombstone(at, key()?).map(|c| (c, None));
    };
    let value = unwrap_schema(value);
    let obj = match value {
        Value::Object(o) => o,
        // `{"schema": .., "payload": null}`: the converter's rendering of a null value.
        Value::Null => return tombstone(at, key()?).map(|c| (c, None)),
        other => {
            return Err(at.error(
                ErrorCode::InvalidEnvelope,
                format!("value: expected a JSON object, found {}", json_kind(&other)),
            ));
        }
    };
    let offset = || SourceVersion::Offset {
        partition: at.partition,
        offset: at.offset,
    };

    if obj.contains_key("op")
        && ["before", "after", "source"]
            .iter()
            .any(|k| obj.contains_key(*k))
    {
        let version = obj
            .get("source")
            .and_then(Value::as_object)
            .and_then(SourceVersion::from_source)
            .unwrap_or_else(offset);
        return Ok((debezium(at, obj, key()?)?, Some(version)));
    }
    if obj.contains_key("__op") || obj.contains_key("__deleted") {
        // ExtractNewRecordState with `add.fields=lsn` or `source.ts_ms`.
        let num = |k: &str| match obj.get(k) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let version = match (num("__lsn"), num("__source_ts_ms")) {
            (Some(lsn), _) if lsn >= 0 => SourceVersion::Lsn(lsn as u64),
            (_, Some(ts)) => SourceVersion::TimestampMs(ts),
            _ => offset(),
        };
        return Ok((flattened(at, obj, key()?)?, Some(version)));
    }
    Ok((plain(at, obj, key()?)?, None))
}

fn tombstone(at: &At<'_>, key: Option<Value>) -> Result<Change, RecordError> {
    match key {
        Some(key) if !key.is_null() => Ok(Change::Tombstone { key }),
        _ => Err(at.error(
            ErrorCode::MissingKey,
            "value is null (a tombstone) but key is null or absent; cannot tell which row was deleted",
        )),
    }
}

/// A decoded key as changes carry it: wrapper removed, Cassandra cells unwrapped.
pub(crate) fn unwrap_key(v: Value) -> Value {
    match unwrap_schema(v) {
        Value::Object(o) => Value::Object(unwrap_cells(o, &mut Vec::new())),
        other => other,
    }
}

/// Removes a JsonConverter `{"schema": .., "payload": ..}` wrapper.
fn unwrap_schema(v: Value) -> Value {
    match v {
        Value::Object(mut o)
            if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") =>
        {
            o.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}

fn op_str<'a>(
    at: &At<'_>,
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, RecordError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(at.error(
            ErrorCode::InvalidField,
            format!("{field}: expected a string, found {}", json_kind(other)),
        )),
    }
}

fn debezium(
    at: &At<'_>,
    mut obj: Map<String, Value>,
    key: Option<Value>,
) -> Result<Change, RecordError> {
    let op = op_str(at, &obj, "op")?.unwrap_or_default().to_string();
    let truncated = (op == "t").then(|| source_table(&obj)).flatten();
    let cassandra = obj
        .get("source")
        .and_then(|s| s.get("connector"))
        .and_then(Value::as_str)
        .is_some_and(|c| c == "cassandra");
    let mut unset = Vec::new();
    let mut take_row =
        |name: &str, required: bool| -> Result<Option<Map<String, Value>>, RecordError> {
            match obj.remove(name) {
                Some(Value::Object(row)) => Ok(Some(if cassandra || looks_like_cells(&row) {
                    unwrap_cells(row, &mut unset)
                } else {
                    row
                })),
                None | Some(Value::Null) if !required => Ok(None),
                None | Some(Value::Null) => Err(at.error(
                    ErrorCode::InvalidEnvelope,
                    format!("{name}: required for op \"{op}\" but null or absent"),
                )),
                Some(other) => Err(at.error(
                    ErrorCode::InvalidEnvelope,
                    format!("{name}: expected an object, found {}", json_kind(&other)),
                )),
            }
        };
    let upsert = |op, row: Option<Map<String, Value>>, key, unset| Change::Upsert {
        op,
        row: row.unwrap_or_default(),
        key,
        unset,
    };
    if let Some(letter) = upsert_op(&op) {
        let row = take_row("after", true)?;
        return Ok(upsert(letter, row, key, unset));
    }
    Ok(match op.as_str() {
        "d" => {
            // Relational connectors put the old row in `before`; Cassandra has no `before` and
            // puts the primary key cells in `after`.
            let row = match take_row("before", false)? {
                Some(row) => Some(row),
                None => take_row("after", false)?,
            };
            Change::Delete { row, key }
        }
        "t" => Change::Truncate { table: truncated },
        "m" => Change::Skip { reason: "message" },
        other => return Err(unknown_op(at, "op", other)),
    })
}

fn flattened(
    at: &At<'_>,
    mut obj: Map<String, Value>,
    key: Option<Value>,
) -> Result<Change, RecordError> {
    let op = op_str(at, &obj, "__op")?.map(str::to_string);
    let deleted = match obj.get("__deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => {
            return Err(at.error(
                ErrorCode::InvalidField,
                format!(
                    "__deleted: expected \"true\" or \"false\", found {}",
                    json_kind(other)
                ),
            ));
        }
    };
    // ExtractNewRecordState's added metadata (`add.fields`) all carry the `__` prefix.
    obj.retain(|k, _| !k.starts_with("__"));
    if deleted {
        return Ok(Change::Delete {
            row: Some(obj),
            key,
        });
    }
    by_op(at, "__op", op.as_deref(), obj, key)
}

fn plain(
    at: &At<'_>,
    mut obj: Map<String, Value>,
    key: Option<Value>,
) -> Result<Change, RecordError> {
    let op = op_str(at, &obj, "op")?.map(str::to_string);
    obj.remove("op");
    by_op(at, "op", op.as_deref(), obj, key)
}

/// The upsert an operation letter names (`c`, `u`, `r`, `i`); `None` for any other letter.
fn upsert_op(letter: &str) -> Option<Op> {
    match letter {
        "c" => Some(Op::Create),
        "u" => Some(Op::Update),
        "r" => Some(Op::Read),
        "i" => Some(Op::Insert),
        _ => None,
    }
}

/// The change a flattened or plain row makes by the operation letter in its `field` (absent: a
/// plain upsert).
fn by_op(
    at: &At<'_>,
    field: &str,
    letter: Option<&str>,
    row: Map<String, Value>,
    key: Option<Value>,
) -> Result<Change, RecordError> {
    let op = match letter.map(|l| (l, upsert_op(l))) {
        None => Op::Plain,
        Some((_, Some(op))) => op,
        Some(("d", None)) => {
            return Ok(Change::Delete {
                row: Some(row),
                key,
            });
        }
        // A flattened or plain row carries no `source` block naming the table.
        Some(("t", None)) => return Ok(Change::Truncate { table: None }),
        Some(("m", None)) => return Ok(Change::Skip { reason: "message" }),
        Some((other, None)) => return Err(unknown_op(at, field, other)),
    };
    Ok(Change::Upsert {
        op,
        row,
        key,
        unset: Vec::new(),
    })
}

/// `schema.table` of a Debezium envelope's `source` block (see [`Change::Truncate`]).
fn source_table(obj: &Map<String, Value>) -> Option<String> {
    let source = obj.get("source")?.as_object()?;
    let text = |k: &str| {
        source
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let table = text("table")?;
    Some(
        match text("schema")
            .or_else(|| text("db"))
            .or_else(|| text("keyspace"))
        {
            Some(schema) => format!("{schema}.{table}"),
            None => table.to_owned(),
        },
    )
}

fn unknown_op(at: &At<'_>, field: &str, op: &str) -> RecordError {
    // Bound the echoed text: the op comes from the payload.
    let shown: String = op.chars().take(16).collect();
    at.error(
        ErrorCode::UnknownOp,
        format!("{field}: unknown operation {shown:?}; expected one of c, u, r, i, d, t, m"),
    )
}

const CELL_KEYS: [&str; 3] = ["value", "deletion_ts", "set"];

fn is_cell(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.contains_key("value") && o.keys().all(|k| CELL_KEYS.contains(&k.as_str()))
    })
}

/// A Cassandra row without `source.connector` (e.g. source stripped): every column is a cell.
fn looks_like_cells(row: &Map<String, Value>) -> bool {
    !row.is_empty() && row.values().all(|v| v.is_null() || is_cell(v))
}

/// Replaces each cell by its value. A cell with `"set": false` was not written by the mutation
/// (Debezium Cassandra connector: `set` tells whether the column was set in this change): its
/// `value` is not the column's value, so it is left out of the row and its name goes to `unset`.
fn unwrap_cells(row: Map<String, Value>, unset: &mut Vec<String>) -> Map<String, Value> {
    if !row.values().any(is_cell) {
        return row;
    }
    row.into_iter()
        .filter_map(|(k, v)| match v {
            Value::Object(mut cell)
                if cell.contains_key("value")
                    && cell.keys().all(|k| CELL_KEYS.contains(&k.as_str())) =>
            {
                if cell.get("set") == Some(&Value::Bool(false)) {
                    unset.push(k);
                    return None;
                }
                Some((k, cell.remove("value").unwrap_or(Value::Null)))
            }
            other => Some((k, other)),
        })
        .collect()
}

/// Names the JSON type of `v` with its article (`"a string"`, `"an object"`, `"null"`), for error
/// messages of the form "expected X, found Y". Every decoder in the workspace uses it so the
/// wording of type mismatches is the same everywhere.
///
/// ```
/// use event_decoding::json_kind;
/// use serde_json::json;
///
/// assert_eq!(json_kind(&json!({"a": 1})), "an object");
/// assert_eq!(json_kind(&json!(null)), "null");
/// assert_eq!(format!("expected a string, found {}", json_kind(&json!(7))),
///            "expected a string, found a number");
/// ```
#[must_use]
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_kind_names_every_json_type() {
        let cases = [
            (json!(null), "null"),
            (json!(true), "a boolean"),
            (json!(1.5), "a number"),
            (json!("x"), "a string"),
            (json!([1]), "an array"),
            (json!({}), "an object"),
        ];
        for (v, want) in cases {
            assert_eq!(json_kind(&v), want, "{v}");
        }
    }
}
