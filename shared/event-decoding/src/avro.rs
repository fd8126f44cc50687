//! Avro values to the JSON the functions already take: an Avro body read with its writer schema
//! (the `apache-avro` crate), then mapped onto `serde_json::Value` the way Debezium's
//! JsonConverter output looks, so a function decodes Avro and JSON records alike.

use std::collections::HashMap;

use apache_avro::types::Value as Avro;
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number, Value};

/// The most a single Avro string, bytes or collection may claim (see [`AvroSchema::parse`]).
const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

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
    /// The schema with its named types resolved once (a datum reader built per body resolved
    /// them for every record). A single-object reader expecting no header reads a bare datum.
    reader: apache_avro::GenericSingleObjectReader,
    shape: Shape,
}

impl std::fmt::Debug for AvroSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroSchema")
            .field("shape", &self.shape)
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

impl AvroSchema {
    /// Parses a schema in Avro's JSON form. The error is `apache-avro`'s message.
    pub fn parse(text: &str) -> Result<Self, String> {
        // A length prefix in a bad body can claim anything; apache-avro allocates what a length
        // claims up to this process-wide bound (512 MiB by default). An invocation payload is at
        // most 6 MB, so no honest body holds more than that.
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let schema = apache_avro::Schema::parse_str(text).map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let shape = Shapes::default().of(&json, "");
        let reader = apache_avro::GenericSingleObjectReader::builder()
            .schema(schema)
            .header(Vec::new())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { reader, shape })
    }

    /// Decodes one body (a whole datum, nothing after it) into JSON. The error says what does not
    /// match, never the body's content.
    pub fn decode(&self, body: &[u8]) -> Result<Value, String> {
        let mut reader = body;
        let value = self
            .reader
            .read_value(&mut reader)
            .map_err(|e| bounded(e.to_string()))?;
        if !reader.is_empty() {
            return Err(format!(
                "{} bytes left over after the datum ({} read)",
                reader.len(),
                body.len() - reader.len()
            ));
        }
        to_json(value, &self.shape, "")
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
                    ("value", Avro::Bytes(b)) => unscaled = Some(BigInt::from_signed_bytes_be(&b)),
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
        (Avro::Float(f), _) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
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
}
