//! Avro values to the JSON the functions already take: an Avro body read with its writer schema
//! straight into `serde_json::Value` the way Debezium's JsonConverter output looks, so a function
//! decodes Avro and JSON records alike.
//!
//! `apache-avro` parses and validates the schema and names its logical types; the body is then
//! read by a reader of this module that walks a tree resolved from that schema once (named types
//! by index, Kafka Connect annotations folded in), building the JSON without `apache-avro`'s
//! generic value in between. Only the rare `uuid`, `big-decimal` and `duration` types are read
//! by `apache-avro` itself. A differential test holds the two readers to the same output.

use std::collections::HashMap;

use apache_avro::schema::ResolvedSchema;
use serde_json::Value;

use crate::budget::Budget;
use reader::Reader;
use shapes::Shapes;
#[cfg(test)]
use tree::Shape;
use tree::{Node, Shaped, Tree};

/// The most a single Avro string, bytes or collection may claim (see [`AvroSchema::parse`]).
const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

/// The most items an array or map may claim (each becomes at least one `serde_json::Value`).
/// The output budget ([`crate::budget`]) bounds them across all nesting; this bounds one claim.
const MAX_ITEMS: usize = MAX_ALLOCATION_BYTES / std::mem::size_of::<Value>();

/// The most bytes the unscaled integer of a decimal may hold: PostgreSQL's `numeric` keeps at
/// most 131,072 digits before the point and 16,383 after, 147,455 digits, which take 61,230
/// bytes of two's complement. Writing out a longer one as decimal text takes time quadratic
/// in its length (seconds at a few hundred kilobytes, hours at megabytes).
const MAX_DECIMAL_BYTES: usize = 61_230;

/// How deep records, arrays and maps may nest in one body: a recursive schema lets a body nest
/// as deep as its bytes allow, and each level costs stack.
const MAX_DEPTH: u32 = 200;

/// The largest scale a Debezium `VariableScaleDecimal` may claim (PostgreSQL's `numeric` keeps at
/// most 16,383 digits after the point).
const MAX_VARIABLE_SCALE: i32 = 16_383;

/// A parsed Avro writer schema, ready to decode bodies with: parse once per schema id and share.
///
/// The JSON a body becomes:
///
/// | Avro | JSON |
/// | --- | --- |
/// | null, boolean, int, long, float, double, string | the same (NaN and infinities: `null`) |
/// | record, map | object; array: array; enum: its symbol; union: the branch's value |
/// | bytes, fixed | base64 text (as Kafka Connect's JsonConverter writes them) |
/// | `decimal` logical type, Kafka Connect `Decimal`, Debezium `VariableScaleDecimal` | the exact decimal as text (`"12.30"`) |
/// | date, time and timestamp logical types (Debezium `Timestamp`, `MicroTimestamp`, ...) | the number, as in Debezium's JSON |
/// | `uuid` | text; `duration`: `{"months", "days", "millis"}` |
/// | a string of Debezium's `io.debezium.data.Json` | the JSON it holds |
///
/// Bounds on a body: a string or bytes length beyond what the body holds is an error before
/// anything is allocated for it; the JSON of a body may take at most 128 bytes per byte of
/// the body plus what the schema alone shapes, counted across all nesting (every value, a `null`
/// item of an array too, costs its slot: see `budget.rs`), else the body is refused (a
/// `schema_mismatch` dead letter) as soon as its output passes the budget; an array or map may
/// claim at most 16 MiB worth of values in one block, records, arrays and maps nest at most 200
/// levels deep, a decimal's unscaled integer holds at most 61,230 bytes and a
/// `VariableScaleDecimal` claims a scale of at most 16,383 (both as PostgreSQL's `numeric`). Of repeated map keys the last value wins (every value is read, so a
/// bad `io.debezium.data.Json` string fails the body even where a later value replaces it).
///
/// ```
/// use event_decoding::AvroSchema;
/// let schema = AvroSchema::parse(r#"{"type":"record","name":"Page","fields":[
///   {"name":"page_id","type":"long"},
///   {"name":"meta","type":{"type":"string","connect.name":"io.debezium.data.Json"}},
///   {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}}]}"#).unwrap();
/// // page_id 1, meta "{}" (2 bytes), price 12.34 (unscaled 1234 = 0x04d2)
/// let v = schema.decode(&[2, 4, b'{', b'}', 4, 0x04, 0xd2]).unwrap();
/// assert_eq!(v, serde_json::json!({"page_id": 1, "meta": {}, "price": "12.34"}));
/// ```
pub struct AvroSchema {
    root: Node,
    /// Named types, for [`Node::Named`] (the way a record can hold itself).
    named: Vec<Node>,
    /// The output the schema alone shapes (see [`Node::shaped`]): part of every body's budget.
    allowance: usize,
    #[cfg(test)]
    schema: apache_avro::Schema,
    #[cfg(test)]
    shape: Shape,
}

impl std::fmt::Debug for AvroSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroSchema")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl AvroSchema {
    /// Parses a schema in Avro's JSON form. The error is `apache-avro`'s message.
    pub fn parse(text: &str) -> Result<Self, String> {
        // A length prefix in a bad body can claim anything; apache-avro allocates what a length
        // claims up to this process-wide bound (512 MiB by default). An invocation payload is at
        // most 6 MB, so no honest body holds more than that. (This module's reader refuses any
        // length beyond what the body holds; apache-avro still reads the rare types.)
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let schema = apache_avro::Schema::parse_str(text).map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let shape = Shapes::default().of(&json, "");
        let resolved = ResolvedSchema::try_from(&schema).map_err(|e| e.to_string())?;
        let mut tree = Tree {
            names: resolved.get_names(),
            named: Vec::new(),
            index: HashMap::new(),
        };
        let root = tree.node(&schema, &shape, None)?;
        let named = tree
            .named
            .into_iter()
            .map(|n| n.unwrap_or(Node::Null))
            .collect::<Vec<_>>();
        let allowance = root.shaped(&named, &mut vec![Shaped::Unknown; named.len()]);
        Ok(Self {
            root,
            named,
            allowance,
            #[cfg(test)]
            schema: schema.clone(),
            #[cfg(test)]
            shape,
        })
    }

    /// Decodes one body (a whole datum, nothing after it) into JSON. The error says what does not
    /// match and where (the field path), never the body's content.
    pub fn decode(&self, body: &[u8]) -> Result<Value, String> {
        let mut reader = Reader {
            body,
            pos: 0,
            named: &self.named,
            depth: 0,
            budget: Budget::new(body.len(), self.allowance),
        };
        let value = reader.value(&self.root).map_err(|e| e.message())?;
        if reader.pos < body.len() {
            return Err(format!(
                "{} bytes left over after the datum ({} read)",
                body.len() - reader.pos,
                reader.pos
            ));
        }
        Ok(value)
    }
}

mod reader;
mod shapes;
mod tree;

#[cfg(test)]
mod tests;
