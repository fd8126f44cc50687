//! The body reader: one datum read front to back along the [`Node`] tree straight into
//! `serde_json::Value`, every length and count checked against what the body holds and the
//! output budget; errors name the field path, never the content.

use apache_avro::types::Value as Avro;
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number, Value};

use super::tree::{Field, Node, Other, decimal_len};
use super::{MAX_DECIMAL_BYTES, MAX_DEPTH, MAX_ITEMS, MAX_VARIABLE_SCALE};
use crate::budget::{self, Budget, SLOT};

/// Why a body does not match, and where: the field names on the way there, innermost first
/// (collected as the error travels up, so a body that matches pays nothing for them).
pub(super) struct DecodeError {
    pub(super) message: String,
    pub(super) path: Vec<String>,
}

impl DecodeError {
    pub(super) fn message(self) -> String {
        if self.path.is_empty() {
            return self.message;
        }
        let mut at: Vec<String> = self.path;
        at.reverse();
        format!("{}: {}", at.join("."), self.message)
    }
}

pub(super) type Decoded<T> = Result<T, Box<DecodeError>>;

pub(super) fn fail<T>(message: impl Into<String>) -> Decoded<T> {
    Err(Box::new(DecodeError {
        message: message.into(),
        path: Vec::new(),
    }))
}

/// Reads one datum from `body`, front to back.
pub(super) struct Reader<'a> {
    pub(super) body: &'a [u8],
    pub(super) pos: usize,
    pub(super) named: &'a [Node],
    pub(super) depth: u32,
    pub(super) budget: Budget,
}

impl<'a> Reader<'a> {
    /// Takes `bytes` of output from the body's budget.
    pub(super) fn charge(&mut self, bytes: usize) -> Decoded<()> {
        self.budget.charge(bytes).or_else(fail)
    }

    pub(super) fn left(&self) -> usize {
        self.body.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize, what: &str) -> Decoded<&'a [u8]> {
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
    pub(super) fn long(&mut self) -> Decoded<i64> {
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

    pub(super) fn int(&mut self) -> Decoded<i32> {
        let n = self.long()?;
        i32::try_from(n).or_else(|_| fail(format!("{n} is out of range for an int")))
    }

    /// The length of a string or bytes, and those bytes.
    pub(super) fn sized(&mut self, what: &str) -> Decoded<&'a [u8]> {
        let n = self.long()?;
        let Ok(n) = usize::try_from(n) else {
            return fail(format!("a negative length ({n}) of {what}"));
        };
        self.take(n, what)
    }

    pub(super) fn str(&mut self) -> Decoded<&'a str> {
        let bytes = self.sized("a string")?;
        std::str::from_utf8(bytes).or_else(|e| fail(format!("a string that is not UTF-8: {e}")))
    }

    /// The unscaled integer of a decimal: `n` bytes (a fixed) or a length and that many.
    pub(super) fn unscaled(&mut self, fixed: Option<usize>) -> Decoded<BigInt> {
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
    pub(super) fn block(&mut self, so_far: usize) -> Decoded<usize> {
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

    pub(super) fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Decoded<T>) -> Decoded<T> {
        if self.depth >= MAX_DEPTH {
            return fail(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let out = read(self);
        self.depth -= 1;
        out
    }

    /// The next datum of the shape `node`, as JSON; composite and logical kinds each have a
    /// reader of their own below.
    pub(super) fn value(&mut self, node: &Node) -> Decoded<Value> {
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
                self.base64(bytes)?
            }
            Node::Fixed(n) => {
                let bytes = self.take(*n, "a fixed")?;
                self.base64(bytes)?
            }
            Node::String => {
                let s = self.str()?;
                self.charge(s.len())?;
                Value::String(s.to_owned())
            }
            Node::JsonString => self.json_string()?,
            Node::Decimal { scale, fixed } => {
                let unscaled = self.unscaled(*fixed)?;
                self.decimal_text(&unscaled, *scale)?
            }
            Node::Enum(symbols) => self.symbol(symbols)?,
            Node::Record(fields) => self.nested(|r| r.record(fields))?,
            Node::VariableScaleDecimal {
                fields,
                scale,
                value,
            } => self.variable_scale_decimal(fields, *scale, *value)?,
            Node::Array(item) => self.nested(|r| r.array(item))?,
            Node::Map(item) => self.nested(|r| r.map(item))?,
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
            Node::Other(Other(reader)) => self.read_other(reader)?,
        })
    }

    /// Bytes as base64 text, charged for its length.
    fn base64(&mut self, bytes: &[u8]) -> Decoded<Value> {
        self.charge(budget::base64(bytes.len()))?;
        Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ))
    }

    /// An `io.debezium.data.Json` string, as the JSON it holds.
    fn json_string(&mut self) -> Decoded<Value> {
        let v: Value = serde_json::from_str(self.str()?).or_else(|e| {
            fail(format!(
                "an io.debezium.data.Json string that is not JSON: {e}"
            ))
        })?;
        // Built before it is measured, but from text of the body: at most what the
        // same text takes as a JSON value of its own.
        self.charge(budget::json(&v) - SLOT)?;
        Ok(v)
    }

    /// `unscaled × 10^-scale` as exact decimal text, charged for its length.
    fn decimal_text(&mut self, unscaled: &BigInt, scale: u32) -> Decoded<Value> {
        self.charge(decimal_len(unscaled.bits().div_ceil(8) as usize, scale))?;
        Ok(Value::String(decimal(unscaled, scale)))
    }

    /// An enum's symbol, by the index the body holds.
    fn symbol(&mut self, symbols: &[String]) -> Decoded<Value> {
        let i = self.int()?;
        match usize::try_from(i).ok().and_then(|i| symbols.get(i)) {
            Some(s) => {
                self.charge(s.len())?;
                Ok(Value::String(s.clone()))
            }
            None => fail(format!("enum index {i} of {} symbols", symbols.len())),
        }
    }

    /// A record's fields in schema order, as an object; an error names the field.
    fn record(&mut self, fields: &[Field]) -> Decoded<Value> {
        let keys = fields.iter().map(|f| f.name.len()).sum();
        self.charge(budget::object(fields.len(), keys))?;
        let mut map = Map::new();
        for f in fields {
            let v = self.value(&f.node).map_err(|mut e| {
                e.path.push(f.name.clone());
                e
            })?;
            map.insert(f.name.clone(), v);
        }
        Ok(Value::Object(map))
    }

    /// Debezium's `VariableScaleDecimal` record (an int `scale` and bytes `value`, at the
    /// field positions given), as exact decimal text.
    fn variable_scale_decimal(
        &mut self,
        fields: &[Field],
        scale: Option<usize>,
        value: Option<usize>,
    ) -> Decoded<Value> {
        let mut s = None;
        let mut unscaled = None;
        for (i, f) in fields.iter().enumerate() {
            let read = if Some(i) == scale {
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
            } else if Some(i) == value {
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
            (Some(s), Some(u)) => self.decimal_text(&u, s),
            _ => fail("a VariableScaleDecimal without an int `scale` and bytes `value`"),
        }
    }

    /// An array's blocks of items.
    fn array(&mut self, item: &Node) -> Decoded<Value> {
        let mut items = Vec::new();
        loop {
            let n = self.block(items.len())?;
            if n == 0 {
                break;
            }
            // Each item takes at least a byte unless it is null: reserve no more than
            // the body could hold.
            items.reserve(n.min(self.left()));
            for _ in 0..n {
                items.push(self.value(item)?);
            }
        }
        Ok(Value::Array(items))
    }

    /// A map's blocks of entries, as an object with its keys in order.
    fn map(&mut self, item: &Node) -> Decoded<Value> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        loop {
            let n = self.block(entries.len())?;
            if n == 0 {
                break;
            }
            entries.reserve(n.min(self.left()));
            for _ in 0..n {
                let k = self.str()?;
                // The entry while it waits to be sorted, then its share of the map.
                self.charge(std::mem::size_of::<(String, Value)>() + budget::object(1, k.len()))?;
                let k = k.to_owned();
                let v = self.value(item).map_err(|mut e| {
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
    }

    /// A type `apache-avro` reads (uuid, big decimal, duration), from the rest of the body.
    fn read_other(&mut self, reader: &apache_avro::GenericSingleObjectReader) -> Decoded<Value> {
        let mut rest = &self.body[self.pos..];
        let v = reader
            .read_value(&mut rest)
            .or_else(|e| fail(bounded(e.to_string())))?;
        let read = self.body.len() - self.pos - rest.len();
        self.pos = self.body.len() - rest.len();
        // Text of what it read (a uuid, a big decimal), or three numbers.
        self.charge(read.saturating_mul(3).saturating_add(3 * SLOT))?;
        Ok(other(v))
    }
}

/// The JSON of the types `apache-avro` reads.
pub(super) fn other(v: Avro) -> Value {
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
pub(super) fn decimal(unscaled: &BigInt, scale: u32) -> String {
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
