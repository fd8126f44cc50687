//! The output budget of one decoded value: how much memory the JSON an Avro or Protobuf body
//! becomes may take, counted across all nesting, so that a few hundred bytes cannot expand into
//! gigabytes (an Avro `null` or empty record takes no byte of the body, a repeated empty
//! Protobuf message two).
//!
//! Costs are estimates of the bytes a `serde_json::Value` tree takes: every value its slot
//! ([`SLOT`]), whatever its size, so every item, field and map entry costs at least that; text its
//! bytes; an object entry its key and its share of a map node. A body may become at most
//! [`PER_BODY_BYTE`] bytes of JSON per byte it holds, plus what its schema alone shapes (every
//! field of every record the schema names, each array and map with one item: a schema of 300
//! optional fields decodes a 300-byte body whatever the ratio).
//!
//! Why 128 per byte (Avro; Protobuf: [`PROTOBUF_PER_BODY_BYTE`]): honest records stay well
//! below it (the Avro gifts and Debezium envelopes of `events/` take 16-24 bytes per body byte;
//! an array of small records, `[{"cents": 250}, ...]` in two bytes an item, 95), while a body of
//! nulls or empty records, which takes no byte for an item, stops after 128 times its length
//! plus its schema's allowance (the 259-byte `array<array<null>>` of 32 million nulls, over 1 GB
//! as JSON, stops at 33 KB). Whatever its length, no body may become more than [`MAX_OUTPUT`]:
//! 128 per byte alone would let one 4.5 MB body of nulls (the most a 6 MB batch carries) take
//! 576 MB before it is refused, past any function's memory.
//!
//! What a batch keeps is not this tree: the functions keep the fields they write (table-sink as
//! JSON text, 5 bytes a `null` where the tree takes 32), and the tree of one value is dropped
//! before the next record is decoded.

use serde_json::Value;

/// The bytes every value takes where it is held (an array's item, a map's value).
pub(crate) const SLOT: usize = std::mem::size_of::<Value>();

/// One node of a `serde_json::Map` (a B-tree of up to 11 keys and values), with its header.
const MAP_NODE: usize = 11 * (std::mem::size_of::<String>() + SLOT) + 16;

/// The most any one value may become, whatever its body's length and its schema: 64 MiB of
/// JSON tree. An honest Avro value (16-24 bytes per body byte) reaches it at 2.7 MB or more,
/// past what Kafka accepts by default (`message.max.bytes`, 1 MB); a hostile one is refused
/// before one value's tree can take a function of 128 MB down.
pub(crate) const MAX_OUTPUT: usize = 64 << 20;

/// Output bytes an Avro body may become per byte it holds, beyond its schema's allowance.
pub(crate) const PER_BODY_BYTE: usize = 128;

/// The same for a Protobuf body, whose JSON mapping writes every field without presence at its
/// default: an honest repeated message of a dozen fields with one of them set takes 4 bytes and
/// maps to ~2 KB. A repeated empty message takes 2 bytes; 512 per byte stops a body of them
/// once its type has more than 6 fields.
pub(crate) const PROTOBUF_PER_BODY_BYTE: usize = 512;

/// What the entries of an object whose keys hold `key_bytes` take beyond their values' slots:
/// each its share of a map node filled by half (a B-tree filled in key order splits them so)
/// and its key.
pub(crate) fn object(entries: usize, key_bytes: usize) -> usize {
    (MAP_NODE / 6 + 16)
        .saturating_mul(entries)
        .saturating_add(key_bytes)
}

/// What base64 text of `n` bytes takes.
pub(crate) fn base64(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// What a JSON value takes, its slot included (an estimate, as everything here).
pub(crate) fn json(v: &Value) -> usize {
    SLOT.saturating_add(match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json).fold(0, usize::saturating_add),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| json(v).saturating_add(k.len()))
            .fold(object(map.len(), 0), usize::saturating_add),
    })
}

/// What is left of one body's budget.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
    limit: usize,
    body: usize,
    per_byte: usize,
}

impl Budget {
    /// The budget of an Avro body of `body` bytes whose schema allows `allowance` bytes by
    /// itself.
    pub(crate) fn new(body: usize, allowance: usize) -> Self {
        Self::per_byte(body, allowance, PER_BODY_BYTE)
    }

    /// The budget of a body of `body` bytes that may become `per_byte` bytes per byte.
    pub(crate) fn per_byte(body: usize, allowance: usize, per_byte: usize) -> Self {
        let limit = body
            .saturating_mul(per_byte)
            .saturating_add(allowance)
            .min(MAX_OUTPUT);
        Self {
            left: limit,
            limit,
            body,
            per_byte,
        }
    }

    /// Takes `bytes` from the budget, or says the value is too large.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), String> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(self.exceeded()),
        }
    }

    /// The error of a value past its budget.
    pub(crate) fn exceeded(&self) -> String {
        if self.limit == MAX_OUTPUT {
            return format!(
                "the value expands past its output budget of {MAX_OUTPUT} bytes as JSON, the \
                 most any one value may take (its body has {} bytes)",
                self.body
            );
        }
        format!(
            "the value expands past its output budget of {} bytes as JSON ({} per byte of its \
             {}-byte body, plus what its schema shapes)",
            self.limit, self.per_byte, self.body
        )
    }

    /// The whole budget.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_value_costs_its_slot_and_objects_their_nodes() {
        assert_eq!(json(&Value::Null), SLOT);
        assert_eq!(json(&json!([null, null])), 3 * SLOT);
        assert_eq!(json(&json!("abc")), SLOT + 3);
        assert_eq!(json(&json!({"a": 1})), 2 * SLOT + MAP_NODE / 6 + 16 + 1);
        assert!(json(&json!({})) == SLOT);
    }

    #[test]
    fn no_body_may_become_more_than_the_ceiling() {
        // 128 per byte would allow a 4.5 MB body 576 MB.
        let b = Budget::new(4_500_000, 10);
        assert_eq!(b.limit(), MAX_OUTPUT);
        let mut b = Budget::per_byte(1 << 20, usize::MAX / 2, PROTOBUF_PER_BODY_BYTE);
        assert_eq!(b.limit(), MAX_OUTPUT);
        let err = b.charge(MAX_OUTPUT + 1).unwrap_err();
        assert!(
            err.contains(&format!("output budget of {MAX_OUTPUT} bytes")),
            "{err}"
        );
        assert!(err.contains("1048576 bytes"), "{err}");
        // Small bodies keep their own, smaller budget.
        assert_eq!(Budget::new(100, 0).limit(), 100 * PER_BODY_BYTE);
    }

    #[test]
    fn a_charge_past_the_limit_is_refused() {
        let mut b = Budget::new(2, 10);
        assert_eq!(b.limit(), 2 * PER_BODY_BYTE + 10);
        b.charge(b.limit()).unwrap();
        let err = b.charge(1).unwrap_err();
        assert!(err.contains("output budget of 266 bytes"), "{err}");
        assert!(err.contains("2-byte body"), "{err}");
    }
}
