use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, NamespaceRef, RecordSchema,
};
use apache_avro::types::Value as Avro;
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number};

use super::reader::decimal;
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
    let s =
        AvroSchema::parse(r#"{"type":"string","connect.name":"io.debezium.data.Json"}"#).unwrap();
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
