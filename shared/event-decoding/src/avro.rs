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
use std::sync::Arc;

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, NamespaceRef, RecordSchema,
    ResolvedSchema,
};
use apache_avro::types::Value as Avro;
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number, Value};

use crate::budget::{self, Budget, SLOT};

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

/// What the JSON mapping needs of the schema beyond what `apache-avro` keeps: Kafka Connect
/// and Debezium annotations (`connect.name`, `connect.parameters`) on any type.
#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Plain,
    /// `io.debezium.data.Json`: a string holding JSON.
    Json,
    /// A decimal with this scale.
    Decimal(u32),
    /// `io.debezium.data.VariableScaleDecimal`: `{scale: int, value: bytes}`.
    VariableScaleDecimal,
    Record(Vec<Shape>),
    Array(Box<Shape>),
    Map(Box<Shape>),
    Union(Vec<Shape>),
}

/// How to read one datum and what JSON it becomes: the schema and its [`Shape`] resolved into one
/// tree.
#[derive(Clone, Debug)]
enum Node {
    Null,
    Boolean,
    /// int, date, time-millis.
    Int,
    /// long, time-micros, the timestamps.
    Long,
    Float,
    Double,
    Bytes,
    String,
    /// A string holding JSON (`io.debezium.data.Json`).
    JsonString,
    Fixed(usize),
    /// Bytes (`fixed: None`) or a fixed of that size, as a decimal of `scale`.
    Decimal {
        scale: u32,
        fixed: Option<usize>,
    },
    Enum(Box<[String]>),
    Record(Box<[Field]>),
    /// A record read as Debezium's `VariableScaleDecimal`: the fields at `scale` (an int) and
    /// `value` (bytes) make the decimal, the others are read and dropped.
    VariableScaleDecimal {
        fields: Box<[Field]>,
        scale: Option<usize>,
        value: Option<usize>,
    },
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Box<[Node]>),
    /// A reference to a named type: `AvroSchema::named[i]`.
    Named(usize),
    /// A type `apache-avro` reads (uuid, big-decimal, duration).
    Other(Other),
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    node: Node,
}

/// `apache-avro`'s reader for a type this module does not read itself.
#[derive(Clone)]
struct Other(Arc<apache_avro::GenericSingleObjectReader>);

impl std::fmt::Debug for Other {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Other")
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

/// What [`Node::shaped`] knows of a named type.
#[derive(Clone, Copy)]
enum Shaped {
    Unknown,
    /// Being measured: a type that holds itself adds nothing more (its next level takes bytes).
    Measuring,
    Known(usize),
}

impl Node {
    /// The output this node shapes with little help from the body: every field of every record
    /// (each union at its largest branch, each array and map with one item), what the budget
    /// allows any body beyond its bytes. A record that holds itself counts once.
    fn shaped(&self, named: &[Node], seen: &mut [Shaped]) -> usize {
        SLOT.saturating_add(match self {
            Node::Fixed(n) => budget::base64(*n),
            Node::Decimal { scale, fixed } => decimal_len(fixed.unwrap_or(0), *scale),
            Node::Enum(symbols) => symbols.iter().map(String::len).max().unwrap_or(0),
            Node::Record(fields) | Node::VariableScaleDecimal { fields, .. } => fields
                .iter()
                .map(|f| f.node.shaped(named, seen).saturating_add(f.name.len()))
                .fold(budget::object(fields.len(), 0), usize::saturating_add),
            Node::Array(item) => item.shaped(named, seen),
            Node::Map(item) => item
                .shaped(named, seen)
                .saturating_add(std::mem::size_of::<(String, Value)>() + budget::object(1, 0)),
            Node::Union(branches) => {
                let widest = branches
                    .iter()
                    .map(|b| b.shaped(named, seen))
                    .max()
                    .unwrap_or(SLOT);
                // A union is its branch: no slot of its own.
                return widest;
            }
            Node::Named(i) => {
                return match seen[*i] {
                    Shaped::Known(n) => n,
                    Shaped::Measuring => 0,
                    Shaped::Unknown => {
                        seen[*i] = Shaped::Measuring;
                        let n = named[*i].shaped(named, seen);
                        seen[*i] = Shaped::Known(n);
                        n
                    }
                };
            }
            _ => 0,
        })
    }
}

/// The most text a decimal of `bytes` bytes at `scale` is written as: 2.41 digits per byte, the
/// leading zeros the scale asks for, a sign and a point.
fn decimal_len(bytes: usize, scale: u32) -> usize {
    bytes
        .saturating_mul(5)
        .div_ceil(2)
        .saturating_add(scale as usize)
        .saturating_add(3)
}

/// Builds the [`Node`] tree of a schema.
struct Tree<'s> {
    names: &'s apache_avro::schema::NamesRef<'s>,
    /// Named types by index; `None` while one is being built (a record that holds itself).
    named: Vec<Option<Node>>,
    index: HashMap<Name, usize>,
}

impl Tree<'_> {
    fn node(
        &mut self,
        schema: &apache_avro::Schema,
        shape: &Shape,
        namespace: NamespaceRef<'_>,
    ) -> Result<Node, String> {
        use apache_avro::Schema as S;
        Ok(match schema {
            S::Null => Node::Null,
            S::Boolean => Node::Boolean,
            S::Int | S::Date | S::TimeMillis => Node::Int,
            S::Long
            | S::TimeMicros
            | S::TimestampMillis
            | S::TimestampMicros
            | S::TimestampNanos
            | S::LocalTimestampMillis
            | S::LocalTimestampMicros
            | S::LocalTimestampNanos => Node::Long,
            S::Float => Node::Float,
            S::Double => Node::Double,
            S::String => match shape {
                Shape::Json => Node::JsonString,
                _ => Node::String,
            },
            S::Bytes => match shape {
                Shape::Decimal(scale) => Node::Decimal {
                    scale: *scale,
                    fixed: None,
                },
                _ => Node::Bytes,
            },
            S::Fixed(FixedSchema { size, .. }) => match shape {
                Shape::Decimal(scale) => Node::Decimal {
                    scale: *scale,
                    fixed: Some(*size),
                },
                _ => Node::Fixed(*size),
            },
            // Without a decimal shape (a schema annotated both as Json and as decimal) the
            // unscaled integer, as the generic mapping gives it.
            S::Decimal(DecimalSchema { inner, .. }) => Node::Decimal {
                scale: match shape {
                    Shape::Decimal(scale) => *scale,
                    _ => 0,
                },
                fixed: match inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(f) => Some(f.size),
                },
            },
            S::Enum(EnumSchema { symbols, .. }) => Node::Enum(symbols.clone().into_boxed_slice()),
            S::Record(RecordSchema { name, fields, .. }) => {
                let full = name.fully_qualified_name(namespace).into_owned();
                // Registered before its fields, so a field can refer to the record itself.
                let slot = self.named.len();
                self.named.push(None);
                self.index.entry(full.clone()).or_insert(slot);
                let inner = full.namespace();
                let node = if *shape == Shape::VariableScaleDecimal {
                    // Its fields are read as they are, without the JSON mapping's annotations.
                    let fields = fields
                        .iter()
                        .map(|f| {
                            Ok(Field {
                                name: f.name.clone(),
                                node: self.node(&f.schema, &Shape::Plain, inner)?,
                            })
                        })
                        .collect::<Result<Box<[Field]>, String>>()?;
                    let at = |name: &str, kind: fn(&apache_avro::Schema) -> bool| {
                        fields
                            .iter()
                            .zip(fields_of(schema))
                            .position(|(f, s)| f.name == name && kind(s))
                    };
                    let scale = at("scale", |s| matches!(s, S::Int));
                    let value = at("value", |s| matches!(s, S::Bytes));
                    Node::VariableScaleDecimal {
                        fields,
                        scale,
                        value,
                    }
                } else {
                    let shapes = match shape {
                        Shape::Record(s) => s.as_slice(),
                        _ => &[],
                    };
                    let fields = fields
                        .iter()
                        .enumerate()
                        .map(|(i, f)| {
                            Ok(Field {
                                name: f.name.clone(),
                                node: self.node(
                                    &f.schema,
                                    shapes.get(i).unwrap_or(&Shape::Plain),
                                    inner,
                                )?,
                            })
                        })
                        .collect::<Result<Box<[Field]>, String>>()?;
                    Node::Record(fields)
                };
                self.named[slot] = Some(node.clone());
                node
            }
            S::Array(a) => Node::Array(Box::new(self.node(
                &a.items,
                match shape {
                    Shape::Array(s) => s,
                    _ => &Shape::Plain,
                },
                namespace,
            )?)),
            S::Map(m) => Node::Map(Box::new(self.node(
                &m.types,
                match shape {
                    Shape::Map(s) => s,
                    _ => &Shape::Plain,
                },
                namespace,
            )?)),
            S::Union(u) => Node::Union(
                u.variants()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let branch = match shape {
                            Shape::Union(branches) => branches.get(i).unwrap_or(&Shape::Plain),
                            // A union whose annotations were not found: each branch as the whole.
                            other => other,
                        };
                        self.node(v, branch, namespace)
                    })
                    .collect::<Result<_, String>>()?,
            ),
            S::Ref { name } => {
                let full = name.fully_qualified_name(namespace).into_owned();
                if let Some(&i) = self.index.get(&full) {
                    return Ok(Node::Named(i));
                }
                let target = *self
                    .names
                    .get(&full)
                    .ok_or_else(|| format!("the named type {full} is not defined"))?;
                match target {
                    // A record registers itself (at the next slot) while it is built.
                    S::Record(_) => {
                        let slot = self.named.len();
                        self.node(target, shape, full.namespace())?;
                        Node::Named(slot)
                    }
                    _ => {
                        let node = self.node(target, shape, full.namespace())?;
                        let slot = self.named.len();
                        self.named.push(Some(node));
                        self.index.insert(full, slot);
                        Node::Named(slot)
                    }
                }
            }
            S::Uuid(_) | S::BigDecimal | S::Duration(_) => Node::Other(Other(Arc::new(
                apache_avro::GenericSingleObjectReader::builder()
                    .schema(schema.clone())
                    .header(Vec::new())
                    .build()
                    .map_err(|e| e.to_string())?,
            ))),
        })
    }
}

/// The field schemas of a record schema.
fn fields_of(schema: &apache_avro::Schema) -> impl Iterator<Item = &apache_avro::Schema> {
    let fields = match schema {
        apache_avro::Schema::Record(r) => r.fields.as_slice(),
        _ => &[],
    };
    fields.iter().map(|f| &f.schema)
}

/// Why a body does not match, and where: the field names on the way there, innermost first
/// (collected as the error travels up, so a body that matches pays nothing for them).
struct DecodeError {
    message: String,
    path: Vec<String>,
}

impl DecodeError {
    fn message(self) -> String {
        if self.path.is_empty() {
            return self.message;
        }
        let mut at: Vec<String> = self.path;
        at.reverse();
        format!("{}: {}", at.join("."), self.message)
    }
}

type Decoded<T> = Result<T, Box<DecodeError>>;

fn fail<T>(message: impl Into<String>) -> Decoded<T> {
    Err(Box::new(DecodeError {
        message: message.into(),
        path: Vec::new(),
    }))
}

/// Reads one datum from `body`, front to back.
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
    named: &'a [Node],
    depth: u32,
    budget: Budget,
}

impl<'a> Reader<'a> {
    /// Takes `bytes` of output from the body's budget.
    fn charge(&mut self, bytes: usize) -> Decoded<()> {
        self.budget.charge(bytes).or_else(fail)
    }

    fn left(&self) -> usize {
        self.body.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Decoded<&'a [u8]> {
        if n > self.left() {
            return fail(format!(
                "the body ends inside {what} ({n} bytes needed, {} left)",
                self.left()
            ));
        }
        let bytes = &self.body[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// A variable-length zigzag long (at most 10 bytes, as Avro writes them).
    fn long(&mut self) -> Decoded<i64> {
        let mut z = 0u64;
        for i in 0..10 {
            let Some(&b) = self.body.get(self.pos) else {
                return fail("the body ends inside a number");
            };
            self.pos += 1;
            z |= u64::from(b & 0x7f) << (i * 7);
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        fail("a number longer than 10 bytes")
    }

    fn int(&mut self) -> Decoded<i32> {
        let n = self.long()?;
        i32::try_from(n).or_else(|_| fail(format!("{n} is out of range for an int")))
    }

    /// The length of a string or bytes, and those bytes.
    fn sized(&mut self, what: &str) -> Decoded<&'a [u8]> {
        let n = self.long()?;
        let Ok(n) = usize::try_from(n) else {
            return fail(format!("a negative length ({n}) of {what}"));
        };
        self.take(n, what)
    }

    fn str(&mut self) -> Decoded<&'a str> {
        let bytes = self.sized("a string")?;
        std::str::from_utf8(bytes).or_else(|e| fail(format!("a string that is not UTF-8: {e}")))
    }

    /// The unscaled integer of a decimal: `n` bytes (a fixed) or a length and that many.
    fn unscaled(&mut self, fixed: Option<usize>) -> Decoded<BigInt> {
        let bytes = match fixed {
            Some(n) => self.take(n, "a decimal")?,
            None => self.sized("a decimal")?,
        };
        if bytes.len() > MAX_DECIMAL_BYTES {
            return fail(format!(
                "a decimal of {} bytes (at most {MAX_DECIMAL_BYTES}, as PostgreSQL's numeric)",
                bytes.len()
            ));
        }
        Ok(BigInt::from_signed_bytes_be(bytes))
    }

    /// The item count of the next array or map block; 0 ends the array or map.
    fn block(&mut self, so_far: usize) -> Decoded<usize> {
        let n = self.long()?;
        if n == 0 {
            return Ok(0);
        }
        // A negative count is followed by the block's size in bytes.
        if n < 0 {
            self.long()?;
        }
        let count = n.unsigned_abs();
        match usize::try_from(count) {
            Ok(c) if c <= MAX_ITEMS.saturating_sub(so_far) => Ok(c),
            _ => fail(format!(
                "a block of {count} items (at most {MAX_ITEMS} per array or map)"
            )),
        }
    }

    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Decoded<T>) -> Decoded<T> {
        if self.depth >= MAX_DEPTH {
            return fail(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let out = read(self);
        self.depth -= 1;
        out
    }

    fn value(&mut self, node: &Node) -> Decoded<Value> {
        // Every value costs its slot, whatever it takes of the body: an array of nulls too.
        if !matches!(node, Node::Union(_) | Node::Named(_)) {
            self.charge(SLOT)?;
        }
        Ok(match node {
            Node::Null => Value::Null,
            Node::Boolean => match self.take(1, "a boolean")?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return fail(format!("a boolean byte of {b}")),
            },
            Node::Int => Value::from(self.int()?),
            Node::Long => Value::from(self.long()?),
            Node::Float => {
                let b = self.take(4, "a float")?;
                let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number)
            }
            Node::Double => {
                let b = self.take(8, "a double")?;
                let f = f64::from_le_bytes(b.try_into().expect("8 bytes"));
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            Node::Bytes => {
                let bytes = self.sized("bytes")?;
                self.charge(budget::base64(bytes.len()))?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Node::Fixed(n) => {
                let bytes = self.take(*n, "a fixed")?;
                self.charge(budget::base64(bytes.len()))?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Node::String => {
                let s = self.str()?;
                self.charge(s.len())?;
                Value::String(s.to_owned())
            }
            Node::JsonString => {
                let v: Value = serde_json::from_str(self.str()?).or_else(|e| {
                    fail(format!(
                        "an io.debezium.data.Json string that is not JSON: {e}"
                    ))
                })?;
                // Built before it is measured, but from text of the body: at most what the
                // same text takes as a JSON value of its own.
                self.charge(budget::json(&v) - SLOT)?;
                v
            }
            Node::Decimal { scale, fixed } => {
                let unscaled = self.unscaled(*fixed)?;
                self.charge(decimal_len(unscaled.bits().div_ceil(8) as usize, *scale))?;
                Value::String(decimal(&unscaled, *scale))
            }
            Node::Enum(symbols) => {
                let i = self.int()?;
                match usize::try_from(i).ok().and_then(|i| symbols.get(i)) {
                    Some(s) => {
                        self.charge(s.len())?;
                        Value::String(s.clone())
                    }
                    None => {
                        return fail(format!("enum index {i} of {} symbols", symbols.len()));
                    }
                }
            }
            Node::Record(fields) => self.nested(|r| {
                let keys = fields.iter().map(|f| f.name.len()).sum();
                r.charge(budget::object(fields.len(), keys))?;
                let mut map = Map::new();
                for f in fields.iter() {
                    let v = r.value(&f.node).map_err(|mut e| {
                        e.path.push(f.name.clone());
                        e
                    })?;
                    map.insert(f.name.clone(), v);
                }
                Ok(Value::Object(map))
            })?,
            Node::VariableScaleDecimal {
                fields,
                scale,
                value,
            } => {
                let mut s = None;
                let mut unscaled = None;
                for (i, f) in fields.iter().enumerate() {
                    let read = if Some(i) == *scale {
                        self.int().and_then(|n| {
                            // The scale comes from the body: it is written out as that many
                            // digits, so a bad body could ask for gigabytes.
                            if n > MAX_VARIABLE_SCALE {
                                return fail(format!(
                                    "a VariableScaleDecimal scale of {n} (at most {MAX_VARIABLE_SCALE})"
                                ));
                            }
                            s = u32::try_from(n).ok();
                            Ok(())
                        })
                    } else if Some(i) == *value {
                        self.unscaled(None).map(|u| unscaled = Some(u))
                    } else {
                        self.nested(|r| r.value(&f.node)).map(drop)
                    };
                    read.map_err(|mut e| {
                        e.path.push(f.name.clone());
                        e
                    })?;
                }
                match (s, unscaled) {
                    (Some(s), Some(u)) => {
                        self.charge(decimal_len(u.bits().div_ceil(8) as usize, s))?;
                        Value::String(decimal(&u, s))
                    }
                    _ => {
                        return fail(
                            "a VariableScaleDecimal without an int `scale` and bytes `value`",
                        );
                    }
                }
            }
            Node::Array(item) => self.nested(|r| {
                let mut items = Vec::new();
                loop {
                    let n = r.block(items.len())?;
                    if n == 0 {
                        break;
                    }
                    // Each item takes at least a byte unless it is null: reserve no more than
                    // the body could hold.
                    items.reserve(n.min(r.left()));
                    for _ in 0..n {
                        items.push(r.value(item)?);
                    }
                }
                Ok(Value::Array(items))
            })?,
            Node::Map(item) => self.nested(|r| {
                let mut entries: Vec<(String, Value)> = Vec::new();
                loop {
                    let n = r.block(entries.len())?;
                    if n == 0 {
                        break;
                    }
                    entries.reserve(n.min(r.left()));
                    for _ in 0..n {
                        let k = r.str()?;
                        // The entry while it waits to be sorted, then its share of the map.
                        r.charge(
                            std::mem::size_of::<(String, Value)>() + budget::object(1, k.len()),
                        )?;
                        let k = k.to_owned();
                        let v = r.value(item).map_err(|mut e| {
                            e.path.push("*".into());
                            e
                        })?;
                        entries.push((k, v));
                    }
                }
                // The last of equal keys wins; keys in order whatever the Map type keeps.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k, v);
                }
                Ok(Value::Object(map))
            })?,
            Node::Union(branches) => {
                let i = self.long()?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(b) => self.value(b)?,
                    None => {
                        return fail(format!("union branch {i} of {}", branches.len()));
                    }
                }
            }
            Node::Named(i) => {
                let named = self.named;
                self.value(&named[*i])?
            }
            Node::Other(Other(reader)) => {
                let mut rest = &self.body[self.pos..];
                let v = reader
                    .read_value(&mut rest)
                    .or_else(|e| fail(bounded(e.to_string())))?;
                let read = self.body.len() - self.pos - rest.len();
                self.pos = self.body.len() - rest.len();
                // Text of what it read (a uuid, a big decimal), or three numbers.
                self.charge(read.saturating_mul(3).saturating_add(3 * SLOT))?;
                other(v)
            }
        })
    }
}

/// The JSON of the types `apache-avro` reads.
fn other(v: Avro) -> Value {
    match v {
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::BigDecimal(d) => Value::String(d.to_string()),
        Avro::Duration(d) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        // Nothing else comes of those schemas.
        _ => Value::Null,
    }
}

/// Named types seen so far, for references by name.
#[derive(Default)]
struct Shapes {
    named: HashMap<String, Shape>,
}

impl Shapes {
    fn of(&mut self, schema: &Value, namespace: &str) -> Shape {
        match schema {
            Value::String(name) => self.named(name, namespace),
            Value::Array(branches) => {
                Shape::Union(branches.iter().map(|b| self.of(b, namespace)).collect())
            }
            Value::Object(o) => self.of_object(o, namespace),
            _ => Shape::Plain,
        }
    }

    fn named(&self, name: &str, namespace: &str) -> Shape {
        let full = if name.contains('.') || namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}.{name}")
        };
        self.named
            .get(&full)
            .or_else(|| self.named.get(name))
            .cloned()
            .unwrap_or(Shape::Plain)
    }

    fn of_object(&mut self, o: &Map<String, Value>, namespace: &str) -> Shape {
        let connect_name = o.get("connect.name").and_then(Value::as_str);
        let logical = o.get("logicalType").and_then(Value::as_str);
        let ty = o.get("type");
        let ns = o
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        let shape = match (ty, connect_name, logical) {
            (_, Some("io.debezium.data.Json"), _) => Shape::Json,
            (_, Some("io.debezium.data.VariableScaleDecimal"), _) => Shape::VariableScaleDecimal,
            (_, Some("org.apache.kafka.connect.data.Decimal"), _) | (_, _, Some("decimal")) => {
                Shape::Decimal(scale(o))
            }
            (Some(Value::String(t)), ..) if t == "record" || t == "error" => {
                let fields = o.get("fields").and_then(Value::as_array);
                let full = o
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| qualified(n, ns));
                let inner_ns = full
                    .as_deref()
                    .and_then(|f| f.rsplit_once('.').map(|(n, _)| n))
                    .unwrap_or(ns)
                    .to_string();
                let fields = fields
                    .map(|fs| {
                        fs.iter()
                            .map(|f| {
                                f.get("type")
                                    .map_or(Shape::Plain, |t| self.of(t, &inner_ns))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Shape::Record(fields)
            }
            (Some(Value::String(t)), ..) if t == "array" => Shape::Array(Box::new(
                o.get("items").map_or(Shape::Plain, |i| self.of(i, ns)),
            )),
            (Some(Value::String(t)), ..) if t == "map" => Shape::Map(Box::new(
                o.get("values").map_or(Shape::Plain, |v| self.of(v, ns)),
            )),
            // `{"type": {...}}` or `{"type": "SomeName"}`: the type itself.
            (Some(inner @ (Value::Object(_) | Value::Array(_))), ..) => self.of(inner, ns),
            (Some(Value::String(t)), ..) if !is_primitive(t) && t != "enum" && t != "fixed" => {
                self.named(t, ns)
            }
            _ => Shape::Plain,
        };
        if let Some(Value::String(t)) = ty
            && matches!(t.as_str(), "record" | "error" | "enum" | "fixed")
            && let Some(name) = o.get("name").and_then(Value::as_str)
        {
            let full = qualified(name, ns);
            let simple = full.rsplit('.').next().unwrap_or(&full).to_string();
            self.named.insert(full, shape.clone());
            self.named.entry(simple).or_insert_with(|| shape.clone());
        }
        shape
    }
}

fn qualified(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn is_primitive(t: &str) -> bool {
    matches!(
        t,
        "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string"
    )
}

/// The decimal scale: Avro's `scale`, else Kafka Connect's `connect.parameters.scale` (a string).
fn scale(o: &Map<String, Value>) -> u32 {
    let n = |v: &Value| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    o.get("scale")
        .and_then(n)
        .or_else(|| {
            o.get("connect.parameters")
                .and_then(|p| p.get("scale"))
                .and_then(n)
        })
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(0)
}

/// Avro error messages can run long (they print schemas); keep the first part.
fn bounded(mut message: String) -> String {
    const MAX: usize = 300;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// `unscaled × 10^-scale` written out exactly: `decimal(-5, 2)` is `"-0.05"`.
fn decimal(unscaled: &BigInt, scale: u32) -> String {
    let digits = unscaled.magnitude().to_string();
    let sign = if unscaled.sign() == num_bigint::Sign::Minus {
        "-"
    } else {
        ""
    };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = digits.split_at(digits.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON of an `apache-avro` value: the mapping before this module read bodies itself, kept
    /// as the reference the reader is held to.
    fn to_json(value: Avro, shape: &Shape, path: &str) -> Result<Value, String> {
        Ok(match (value, shape) {
            (Avro::Union(i, inner), Shape::Union(branches)) => {
                let branch = branches.get(i as usize).unwrap_or(&Shape::Plain);
                to_json(*inner, branch, path)?
            }
            (Avro::Union(_, inner), shape) => to_json(*inner, shape, path)?,
            (Avro::String(s), Shape::Json) => serde_json::from_str(&s).map_err(|e| {
                format!(
                    "{}: an io.debezium.data.Json string that is not JSON: {e}",
                    name(path)
                )
            })?,
            (Avro::Decimal(d), Shape::Decimal(scale)) => {
                Value::String(decimal(&BigInt::from(d), *scale))
            }
            (Avro::Bytes(b) | Avro::Fixed(_, b), Shape::Decimal(scale)) => {
                Value::String(decimal(&BigInt::from_signed_bytes_be(&b), *scale))
            }
            (Avro::Record(fields), Shape::VariableScaleDecimal) => {
                let mut scale = None;
                let mut unscaled = None;
                for (name, v) in fields {
                    match (name.as_str(), v) {
                        ("scale", Avro::Int(s)) => scale = u32::try_from(s).ok(),
                        ("value", Avro::Bytes(b)) => {
                            unscaled = Some(BigInt::from_signed_bytes_be(&b))
                        }
                        _ => {}
                    }
                }
                match (scale, unscaled) {
                    (Some(s), Some(u)) => Value::String(decimal(&u, s)),
                    _ => {
                        return Err(format!(
                            "{}: a VariableScaleDecimal without an int `scale` and bytes `value`",
                            name(path)
                        ));
                    }
                }
            }
            (Avro::Record(fields), shape) => {
                let shapes = match shape {
                    Shape::Record(s) => s.as_slice(),
                    _ => &[],
                };
                let mut map = Map::with_capacity(fields.len());
                for (i, (field, v)) in fields.into_iter().enumerate() {
                    let v = to_json(
                        v,
                        shapes.get(i).unwrap_or(&Shape::Plain),
                        &join(path, &field),
                    )?;
                    map.insert(field, v);
                }
                Value::Object(map)
            }
            (Avro::Array(items), shape) => {
                let item = match shape {
                    Shape::Array(s) => s,
                    _ => &Shape::Plain,
                };
                Value::Array(
                    items
                        .into_iter()
                        .map(|v| to_json(v, item, path))
                        .collect::<Result<_, _>>()?,
                )
            }
            (Avro::Map(entries), shape) => {
                let item = match shape {
                    Shape::Map(s) => s,
                    _ => &Shape::Plain,
                };
                let mut keys: Vec<_> = entries.into_iter().collect();
                keys.sort_by(|a, b| a.0.cmp(&b.0));
                let mut map = Map::with_capacity(keys.len());
                for (k, v) in keys {
                    let v = to_json(v, item, &join(path, &k))?;
                    map.insert(k, v);
                }
                Value::Object(map)
            }
            (Avro::Null, _) => Value::Null,
            (Avro::Boolean(b), _) => Value::Bool(b),
            (Avro::Int(n) | Avro::Date(n) | Avro::TimeMillis(n), _) => Value::from(n),
            (
                Avro::Long(n)
                | Avro::TimeMicros(n)
                | Avro::TimestampMillis(n)
                | Avro::TimestampMicros(n)
                | Avro::TimestampNanos(n)
                | Avro::LocalTimestampMillis(n)
                | Avro::LocalTimestampMicros(n)
                | Avro::LocalTimestampNanos(n),
                _,
            ) => Value::from(n),
            (Avro::Float(f), _) => {
                Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number)
            }
            (Avro::Double(f), _) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            (Avro::String(s), _) => Value::String(s),
            (Avro::Enum(_, symbol), _) => Value::String(symbol),
            (Avro::Bytes(b) | Avro::Fixed(_, b), _) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Avro::Decimal(d), _) => Value::String(BigInt::from(d).to_string()),
            (Avro::BigDecimal(d), _) => Value::String(d.to_string()),
            (Avro::Uuid(u), _) => Value::String(u.to_string()),
            (Avro::Duration(d), _) => serde_json::json!({
                "months": u32::from(d.months()),
                "days": u32::from(d.days()),
                "millis": u32::from(d.millis()),
            }),
        })
    }

    fn join(path: &str, field: &str) -> String {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    }

    fn name(path: &str) -> &str {
        if path.is_empty() { "value" } else { path }
    }

    #[test]
    fn decimals_are_exact_text() {
        for (unscaled, scale, text) in [
            (1234i64, 2, "12.34"),
            (-5, 2, "-0.05"),
            (0, 3, "0.000"),
            (7, 0, "7"),
            (-120, 1, "-12.0"),
        ] {
            assert_eq!(decimal(&BigInt::from(unscaled), scale), text);
        }
        let big = "123456789012345678901234567890".parse::<BigInt>().unwrap();
        assert_eq!(decimal(&big, 10), "12345678901234567890.1234567890");
    }

    /// Debezium's Avro schema for a PostgreSQL row, as its AvroConverter registers it: Connect
    /// annotations on primitive types, a named `Value` record referenced twice.
    const ENVELOPE: &str = r#"{
      "type": "record", "name": "Envelope", "namespace": "cdc.public.pages",
      "fields": [
        {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
          {"name": "page_id", "type": "long"},
          {"name": "doc", "type": ["null", {"type": "string", "connect.version": 1, "connect.name": "io.debezium.data.Json"}], "default": null},
          {"name": "price", "type": ["null", {"type": "bytes", "scale": 2, "precision": 8, "connect.version": 1,
             "connect.parameters": {"scale": "2", "connect.decimal.precision": "8"},
             "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"}], "default": null},
          {"name": "weight", "type": ["null", {"type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
             "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
             "connect.name": "io.debezium.data.VariableScaleDecimal"}], "default": null},
          {"name": "updated_at", "type": {"type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTimestamp"}}
        ], "connect.name": "cdc.public.pages.Value"}], "default": null},
        {"name": "after", "type": ["null", "Value"], "default": null},
        {"name": "op", "type": "string"},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "blob", "type": "bytes"}
      ]}"#;

    fn zigzag(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes(b: &[u8], out: &mut Vec<u8>) {
        zigzag(b.len() as i64, out);
        out.extend_from_slice(b);
    }

    #[test]
    fn debezium_envelope_maps_like_its_json() {
        let schema = AvroSchema::parse(ENVELOPE).unwrap();
        let mut b = Vec::new();
        zigzag(0, &mut b); // before: null
        zigzag(1, &mut b); // after: Value
        zigzag(42, &mut b); // page_id
        zigzag(1, &mut b);
        bytes(br#"{"a":[1,2]}"#, &mut b); // doc
        zigzag(1, &mut b);
        bytes(&[0xfb, 0x2e], &mut b); // price: -1234 -> "-12.34"
        zigzag(1, &mut b);
        zigzag(3, &mut b);
        bytes(&[0x01, 0xe2, 0x40], &mut b); // weight: 123456 scale 3 -> "123.456"
        zigzag(1_732_350_000_123_456, &mut b); // updated_at
        bytes(b"u", &mut b); // op
        zigzag(1, &mut b); // tags: one block of 1
        bytes(b"k", &mut b);
        bytes(b"v", &mut b);
        zigzag(0, &mut b);
        bytes(&[0xff, 0x00], &mut b); // blob
        let v = schema.decode(&b).unwrap();
        assert_eq!(
            v,
            json!({
                "before": null,
                "after": {"page_id": 42, "doc": {"a": [1, 2]}, "price": "-12.34",
                          "weight": "123.456", "updated_at": 1_732_350_000_123_456i64},
                "op": "u",
                "tags": {"k": "v"},
                "blob": "/wA="
            })
        );
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let schema = AvroSchema::parse(ENVELOPE).unwrap();
        for body in [
            &[][..],
            &[4][..],
            &[2, 0x80][..],
            &[0, 0, 2, 0xff, 0xff][..],
        ] {
            assert!(schema.decode(body).is_err(), "{body:?}");
        }
        let s = AvroSchema::parse(r#"{"type":"string","connect.name":"io.debezium.data.Json"}"#)
            .unwrap();
        let err = s.decode(&[6, b'{', b'x', b'}']).unwrap_err();
        assert!(err.contains("io.debezium.data.Json"), "{err}");
    }

    #[test]
    fn schema_errors_are_reported() {
        assert!(AvroSchema::parse("{").is_err());
        assert!(AvroSchema::parse(r#"{"type":"nope"}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let schema = AvroSchema::parse(ENVELOPE).unwrap();
            let _ = schema.decode(&body);
        }
    }

    /// Every type and annotation the reader handles: named types referenced from other places
    /// (a record inside maps and unions, an enum, fixeds), Connect and Avro decimals, Debezium's
    /// Json and VariableScaleDecimal, the logical types, the rare types apache-avro reads, and a
    /// record that holds itself.
    const EVERYTHING: &str = r#"{"type":"record","name":"All","namespace":"t","fields":[
      {"name":"n","type":"null"},
      {"name":"b","type":"boolean"},
      {"name":"i","type":"int"},
      {"name":"l","type":"long"},
      {"name":"f","type":"float"},
      {"name":"d","type":"double"},
      {"name":"by","type":"bytes"},
      {"name":"s","type":"string"},
      {"name":"fx","type":{"type":"fixed","name":"F4","size":4}},
      {"name":"fx2","type":"F4"},
      {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},
      {"name":"e2","type":["null","Color"]},
      {"name":"arr","type":{"type":"array","items":["null","long","string"]}},
      {"name":"m","type":{"type":"map","values":{"type":"record","name":"Inner","fields":[
        {"name":"x","type":"int"},
        {"name":"j","type":{"type":"string","connect.name":"io.debezium.data.Json"}}]}}},
      {"name":"m2","type":{"type":"map","values":"Inner"}},
      {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":4}},
      {"name":"decf","type":{"type":"fixed","name":"D8","size":8,"logicalType":"decimal","precision":18,"scale":3}},
      {"name":"cdec","type":["null",{"type":"bytes","connect.name":"org.apache.kafka.connect.data.Decimal","connect.parameters":{"scale":"2"}}]},
      {"name":"vsd","type":{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data",
        "fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],
        "connect.name":"io.debezium.data.VariableScaleDecimal"}},
      {"name":"vsd2","type":["null","io.debezium.data.VariableScaleDecimal"]},
      {"name":"date","type":{"type":"int","logicalType":"date"}},
      {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
      {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
      {"name":"tsm","type":{"type":"long","logicalType":"timestamp-millis"}},
      {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
      {"name":"tsn","type":{"type":"long","logicalType":"timestamp-nanos"}},
      {"name":"ltsm","type":{"type":"long","logicalType":"local-timestamp-millis"}},
      {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
      {"name":"dur","type":{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}},
      {"name":"list","type":["null",{"type":"record","name":"Link","fields":[
        {"name":"v","type":"long"},{"name":"next","type":["null","Link"]}]}]},
      {"name":"nested","type":{"type":"array","items":{"type":"map","values":["null","double","Inner"]}}}
    ]}"#;

    /// The old path, kept as the reference: apache-avro's generic reader, then [`to_json`].
    fn reference(schema: &AvroSchema, body: &[u8]) -> Result<Value, String> {
        let reader = apache_avro::GenericSingleObjectReader::builder()
            .schema(schema.schema.clone())
            .header(Vec::new())
            .build()
            .unwrap();
        let mut rest = body;
        let v = reader.read_value(&mut rest).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("bytes left over".into());
        }
        to_json(v, &schema.shape, "")
    }

    /// Writes random bodies that match a schema (an Avro writer of the test's own, so both
    /// readers are compared on data neither wrote).
    struct Body<'s> {
        rng: u64,
        out: Vec<u8>,
        names: &'s apache_avro::schema::NamesRef<'s>,
        depth: u32,
    }

    impl Body<'_> {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn long(&mut self, n: i64) {
            zigzag(n, &mut self.out);
        }

        fn some_long(&mut self) -> i64 {
            match self.below(4) {
                0 => self.below(100) as i64 - 50,
                1 => [i64::MIN, i64::MAX, 0, -1][self.below(4) as usize],
                _ => self.next() as i64,
            }
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        fn text(&mut self) -> String {
            const JSONISH: [&str; 8] = [
                r#"{"a":[1,2.5,"x"]}"#,
                "[]",
                "12.5",
                r#""s""#,
                "null",
                "not json",
                r#"{"k":"#,
                "",
            ];
            if self.below(2) == 0 {
                return JSONISH[self.below(JSONISH.len() as u64) as usize].to_string();
            }
            const CHARS: [char; 8] = ['a', 'Z', '0', 'é', '€', '😀', '"', '\\'];
            let n = self.below(6);
            (0..n)
                .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
                .collect()
        }

        fn datum(&mut self, schema: &apache_avro::Schema, ns: NamespaceRef<'_>) {
            use apache_avro::Schema as S;
            match schema {
                S::Null => {}
                S::Boolean => {
                    let b = self.below(2) as u8;
                    self.out.push(b);
                }
                S::Int | S::Date | S::TimeMillis => {
                    let n = self.some_long() as i32;
                    self.long(i64::from(n));
                }
                S::Long
                | S::TimeMicros
                | S::TimestampMillis
                | S::TimestampMicros
                | S::TimestampNanos
                | S::LocalTimestampMillis
                | S::LocalTimestampMicros
                | S::LocalTimestampNanos => {
                    let n = self.some_long();
                    self.long(n);
                }
                S::Float => {
                    let b = (self.next() as u32).to_le_bytes();
                    self.out.extend(b);
                }
                S::Double => {
                    let b = self.next().to_le_bytes();
                    self.out.extend(b);
                }
                S::Bytes
                | S::Decimal(DecimalSchema {
                    inner: InnerDecimalSchema::Bytes,
                    ..
                }) => {
                    let n = self.below(10) as usize;
                    let b = self.bytes(n);
                    bytes(&b, &mut self.out);
                }
                S::String => {
                    let t = self.text();
                    bytes(t.as_bytes(), &mut self.out);
                }
                S::Uuid(_) => {
                    let b = self.bytes(16);
                    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    let text = format!(
                        "{}-{}-{}-{}-{}",
                        &hex[..8],
                        &hex[8..12],
                        &hex[12..16],
                        &hex[16..20],
                        &hex[20..]
                    );
                    bytes(text.as_bytes(), &mut self.out);
                }
                S::Fixed(FixedSchema { size, .. })
                | S::Duration(FixedSchema { size, .. })
                | S::Decimal(DecimalSchema {
                    inner: InnerDecimalSchema::Fixed(FixedSchema { size, .. }),
                    ..
                }) => {
                    let b = self.bytes(*size);
                    self.out.extend(b);
                }
                S::Enum(EnumSchema { symbols, .. }) => {
                    let i = self.below(symbols.len() as u64);
                    self.long(i as i64);
                }
                S::Record(RecordSchema { name, fields, .. }) => {
                    let full = name.fully_qualified_name(ns).into_owned();
                    for f in fields {
                        if f.name == "scale" && matches!(f.schema, S::Int) {
                            // A VariableScaleDecimal's scale, within the reader's bound.
                            let scale = self.below(40) as i64;
                            self.long(scale);
                            continue;
                        }
                        self.datum(&f.schema, full.namespace());
                    }
                }
                S::Array(a) => self.blocks(|b| b.datum(&a.items, ns)),
                S::Map(m) => {
                    // Distinct keys: of repeated keys the last value wins, and the reader
                    // maps every value (a bad Json string in one that a later one replaces
                    // fails the body; the old mapping never looked at it).
                    let mut count = 0;
                    self.blocks(|b| {
                        const KEYS: [&str; 4] = ["a", "b", "ü", "a.b"];
                        let k = format!("{}{}", KEYS[count % 4], count / 4);
                        count += 1;
                        bytes(k.as_bytes(), &mut b.out);
                        b.datum(&m.types, ns);
                    });
                }
                S::Union(u) => {
                    // Deep down, the first branch (null in the recursive schema) ends it.
                    let i = if self.depth > 4 {
                        0
                    } else {
                        self.below(u.variants().len() as u64) as usize
                    };
                    self.long(i as i64);
                    self.depth += 1;
                    self.datum(&u.variants()[i], ns);
                    self.depth -= 1;
                }
                S::Ref { name } => {
                    let full = name.fully_qualified_name(ns).into_owned();
                    let target = self.names[&full];
                    self.datum(target, full.namespace());
                }
                S::BigDecimal => unreachable!("not in the test schemas"),
            }
        }

        /// 0-2 blocks of 0-3 items, some with a negative count and their size in bytes.
        fn blocks(&mut self, mut item: impl FnMut(&mut Self)) {
            for _ in 0..self.below(3) {
                let n = 1 + self.below(3) as i64;
                let sized = self.below(2) == 0;
                let start = self.out.len();
                for _ in 0..n {
                    item(self);
                }
                let items = self.out.split_off(start);
                if sized {
                    self.long(-n);
                    self.long(items.len() as i64);
                } else {
                    self.long(n);
                }
                self.out.extend(items);
            }
            self.long(0);
        }
    }

    fn random_body(schema: &AvroSchema, seed: u64) -> Vec<u8> {
        let resolved = ResolvedSchema::try_from(&schema.schema).unwrap();
        let mut body = Body {
            rng: seed,
            out: Vec::new(),
            names: resolved.get_names(),
            depth: 0,
        };
        body.datum(&schema.schema, None);
        body.out
    }

    #[test]
    fn everything_schema_decodes_a_known_body() {
        let schema = AvroSchema::parse(EVERYTHING).unwrap();
        let body = random_body(&schema, 7);
        let ours = schema.decode(&body);
        assert_eq!(
            ours,
            reference(&schema, &body).map_err(|_| ours.clone().unwrap_err())
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// On bodies that match the schema, the reader and apache-avro + the old mapping give the
        /// same JSON, or both refuse (a Json string that is not JSON).
        #[test]
        fn reader_matches_apache_avro(seed in proptest::prelude::any::<u64>(), which in 0..2usize) {
            let schema = AvroSchema::parse([EVERYTHING, ENVELOPE][which]).unwrap();
            let body = random_body(&schema, seed);
            let ours = schema.decode(&body);
            let theirs = reference(&schema, &body);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "ours {ours:?}, apache-avro {theirs:?}"),
            }
        }

        /// On damaged bodies (cut short, a byte changed, a byte added) the reader never
        /// accepts what apache-avro refuses, and what it accepts reads the same. (apache-avro
        /// accepts some bodies cut short, reading a missing string or boolean as null; the
        /// reader refuses them.)
        #[test]
        fn damaged_bodies_never_read_differently(
            seed in proptest::prelude::any::<u64>(),
            which in 0..2usize,
            damage in 0..3u8,
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let schema = AvroSchema::parse([EVERYTHING, ENVELOPE][which]).unwrap();
            let mut body = random_body(&schema, seed);
            let at = at % (body.len() + 1);
            match damage {
                0 => body.truncate(at),
                1 if at < body.len() => body[at] = byte,
                _ => body.insert(at, byte),
            }
            if let Ok(ours) = schema.decode(&body) {
                let theirs = reference(&schema, &body);
                proptest::prop_assert_eq!(Ok(ours), theirs);
            }
        }
    }

    #[test]
    fn of_repeated_map_keys_the_last_wins() {
        let schema = AvroSchema::parse(r#"{"type":"map","values":"long"}"#).unwrap();
        let mut b = Vec::new();
        zigzag(3, &mut b);
        for (k, v) in [("b", 1), ("a", 2), ("b", 3)] {
            bytes(k.as_bytes(), &mut b);
            zigzag(v, &mut b);
        }
        zigzag(0, &mut b);
        assert_eq!(schema.decode(&b).unwrap(), json!({"a": 2, "b": 3}));
        assert_eq!(reference(&schema, &b).unwrap(), json!({"a": 2, "b": 3}));
    }

    #[test]
    fn lengths_beyond_the_body_are_refused_before_allocating() {
        let schema = AvroSchema::parse(r#"{"type":"array","items":"null"}"#).unwrap();
        // 2^62 nulls claimed in one block.
        let mut b = Vec::new();
        zigzag(1 << 62, &mut b);
        let err = schema.decode(&b).unwrap_err();
        assert!(err.contains("items"), "{err}");
        let schema = AvroSchema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#,
        )
        .unwrap();
        let mut b = Vec::new();
        zigzag(1 << 40, &mut b);
        let err = schema.decode(&b).unwrap_err();
        assert!(err.starts_with("s: the body ends inside a string"), "{err}");
    }

    #[test]
    fn a_variable_scale_beyond_postgresql_is_refused() {
        let schema = AvroSchema::parse(ENVELOPE).unwrap();
        let body = |scale: i64| {
            let mut b = Vec::new();
            zigzag(1, &mut b); // before: Value
            zigzag(42, &mut b); // page_id
            zigzag(0, &mut b); // doc: null
            zigzag(0, &mut b); // price: null
            zigzag(1, &mut b);
            zigzag(scale, &mut b);
            bytes(&[0x01], &mut b); // weight: 1 at that scale
            zigzag(7, &mut b); // updated_at
            zigzag(0, &mut b); // after: null
            bytes(b"u", &mut b);
            zigzag(0, &mut b); // tags: none
            bytes(b"", &mut b); // blob
            b
        };
        let v = schema.decode(&body(2_000)).unwrap();
        assert_eq!(v["before"]["weight"].as_str().unwrap().len(), 2_002);
        // PostgreSQL's largest scale is 16,385 characters of text from 16 bytes of body: more
        // than the body's output budget.
        let err = schema.decode(&body(16_383)).unwrap_err();
        assert!(
            err.starts_with("before.weight: the value expands past its output budget"),
            "{err}"
        );
        let err = schema.decode(&body(i64::from(i32::MAX))).unwrap_err();
        assert!(
            err.starts_with("before.weight.scale: a VariableScaleDecimal scale of 2147483647"),
            "{err}"
        );
    }

    #[test]
    fn a_recursive_schema_nests_only_so_deep() {
        let schema = AvroSchema::parse(
            r#"{"type":"record","name":"Link","fields":[{"name":"next","type":["null","Link"]}]}"#,
        )
        .unwrap();
        let ok = [2, 2, 0];
        assert_eq!(
            schema.decode(&ok).unwrap(),
            json!({"next": {"next": {"next": null}}})
        );
        let deep = vec![2; 10_000];
        let err = schema.decode(&deep).unwrap_err();
        assert!(err.contains("nested deeper than"), "{err}");
    }

    #[test]
    fn errors_name_the_field_not_the_content() {
        let schema = AvroSchema::parse(ENVELOPE).unwrap();
        let mut b = Vec::new();
        zigzag(1, &mut b); // before: Value
        zigzag(42, &mut b); // page_id
        zigzag(1, &mut b);
        bytes(b"{secret", &mut b); // doc: not JSON
        let err = schema.decode(&b).unwrap_err();
        assert!(
            err.starts_with("before.doc: an io.debezium.data.Json string that is not JSON"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }

    /// The output budget: hostile bodies of every shape stop, honest ones are not touched.
    mod bounds {
        use super::*;
        use crate::budget::{self, Budget};
        use proptest::prelude::*;

        /// `count` arrays of `each` nulls: a few hundred bytes that were tens of millions of values.
        pub(crate) fn nulls_of_nulls(count: i64, each: i64) -> Vec<u8> {
            let mut b = Vec::new();
            zigzag(count, &mut b);
            for _ in 0..count {
                zigzag(each, &mut b);
                zigzag(0, &mut b);
            }
            zigzag(0, &mut b);
            b
        }

        #[test]
        fn nested_null_arrays_stop_at_the_budget() {
            let schema =
                AvroSchema::parse(r#"{"type":"array","items":{"type":"array","items":"null"}}"#)
                    .unwrap();
            // Each inner array is under the per-array cap; together 32 million nulls.
            let body = nulls_of_nulls(64, 500_000);
            assert!(body.len() < 300, "{}", body.len());
            let err = schema.decode(&body).unwrap_err();
            assert!(
                err.starts_with("the value expands past its output budget"),
                "{err}"
            );
            // Empty records in a map cost their slot too.
            let schema = AvroSchema::parse(
                r#"{"type":"map","values":{"type":"array","items":{"type":"record","name":"E","fields":[]}}}"#,
            )
            .unwrap();
            let mut b = Vec::new();
            zigzag(1, &mut b);
            bytes(b"k", &mut b);
            zigzag(500_000, &mut b);
            zigzag(0, &mut b);
            zigzag(0, &mut b);
            let err = schema.decode(&b).unwrap_err();
            assert!(err.starts_with("*: the value expands past"), "{err}");
        }

        #[test]
        fn honest_arrays_of_small_records_fit() {
            // 1,000 prices of two bytes each: as JSON about 95 bytes a byte of body.
            let schema = AvroSchema::parse(
                r#"{"type":"array","items":{"type":"record","name":"Money","fields":[{"name":"cents","type":"long"}]}}"#,
            )
            .unwrap();
            let mut b = Vec::new();
            zigzag(1_000, &mut b);
            for _ in 0..1_000 {
                zigzag(125, &mut b);
            }
            zigzag(0, &mut b);
            assert_eq!(schema.decode(&b).unwrap().as_array().unwrap().len(), 1_000);
        }

        #[test]
        fn decimals_longer_than_postgresql_keeps_are_refused() {
            let schema = AvroSchema::parse(
                r#"{"type":"bytes","logicalType":"decimal","precision":200000,"scale":2}"#,
            )
            .unwrap();
            let mut b = Vec::new();
            bytes(&vec![0x7f; MAX_DECIMAL_BYTES + 1], &mut b);
            let err = schema.decode(&b).unwrap_err();
            assert!(err.starts_with("a decimal of 61231 bytes"), "{err}");
            let mut b = Vec::new();
            bytes(&vec![0x7f; 1_000], &mut b);
            assert!(schema.decode(&b).unwrap().as_str().unwrap().len() > 2_000);
        }

        /// Every shape the reader takes, hostile ones first: nested null arrays, empty records in
        /// arrays and maps, unions of those, a record that holds itself, the Debezium envelope and
        /// the everything schema.
        const SHAPES: [&str; 8] = [
            r#"{"type":"array","items":{"type":"array","items":"null"}}"#,
            r#"{"type":"array","items":{"type":"record","name":"E","fields":[]}}"#,
            r#"{"type":"map","values":{"type":"array","items":["null",{"type":"record","name":"N","fields":[{"name":"a","type":"null"},{"name":"b","type":"null"}]}]}}"#,
            r#"{"type":"record","name":"Tree","fields":[{"name":"kids","type":{"type":"array","items":"Tree"}},{"name":"tag","type":["null","string"]}]}"#,
            r#"{"type":"record","name":"Link","fields":[{"name":"next","type":["null","Link"]},{"name":"m","type":{"type":"map","values":"null"}}]}"#,
            r#"{"type":"array","items":{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data","fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],"connect.name":"io.debezium.data.VariableScaleDecimal"}}"#,
            ENVELOPE,
            EVERYTHING,
        ];

        /// Bodies made of varints (counts, lengths, union branches, scales) reach far more shapes
        /// than random bytes, whose counts are mostly small.
        fn varints() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop_oneof![0i64..4, 0i64..1_000_000_000, any::<i64>()],
                0..64,
            )
            .prop_map(|ns| {
                let mut b = Vec::new();
                for n in ns {
                    zigzag(n, &mut b);
                }
                b
            })
        }

        fn holds_to_its_budget(schema: &AvroSchema, body: &[u8]) -> Result<(), TestCaseError> {
            if let Ok(v) = schema.decode(body) {
                let limit = Budget::new(body.len(), schema.allowance).limit();
                prop_assert!(
                    budget::json(&v) <= limit,
                    "{} bytes as JSON over a budget of {limit}",
                    budget::json(&v)
                );
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Arbitrary bytes against every shape end in an answer, and a value the body decodes
            /// to takes no more than the body's budget.
            #[test]
            fn arbitrary_bodies_decode_within_the_budget(
                which in 0..SHAPES.len(),
                body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), varints()],
            ) {
                let schema = AvroSchema::parse(SHAPES[which]).unwrap();
                holds_to_its_budget(&schema, &body)?;
            }

            /// The same on valid bodies of the everything schema and the envelope.
            #[test]
            fn valid_bodies_decode_within_the_budget(seed in any::<u64>(), which in 6..8usize) {
                let schema = AvroSchema::parse(SHAPES[which]).unwrap();
                holds_to_its_budget(&schema, &random_body(&schema, seed))?;
            }
        }
    }
}
