//! Protobuf values to the JSON the functions already take: the `.proto` text a schema registry
//! returns is compiled in memory (`protox`, no `protoc`), bodies are read as dynamic messages
//! (`prost-reflect`) and mapped onto `serde_json::Value`, so a function decodes Protobuf, Avro
//! and JSON records alike.

use std::collections::HashMap;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value;

use crate::budget::{self, Budget, SLOT};

/// Why a configured descriptor set gives no schema ([`ProtoSchema::from_descriptor_set`]): which
/// of its two settings (the set, or the message named in it) to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorSetError {
    /// The bytes are not a usable serialized `FileDescriptorSet`.
    #[error("not a usable FileDescriptorSet: {0}")]
    Unusable(String),
    /// The set holds no message of that full name.
    #[error("the descriptor set has no message `{message}` (it has: {known})")]
    NoMessage {
        /// The name asked for.
        message: String,
        /// Up to 20 of the messages it holds, comma separated.
        known: String,
    },
}

/// The file name the registry's schema text is compiled under. References are compiled under
/// the names the registry gives them, which are the names the schema's `import`s use.
const MAIN_FILE: &str = "schema-registry-writer-schema.proto";

/// The deepest message-index path accepted (protobuf itself stops parsing at 100 levels of
/// nesting; no honest path comes near).
const MAX_INDEXES: usize = 100;

/// A compiled Protobuf writer schema, ready to decode bodies with: compile once per schema id and
/// share.
///
/// Which message a body is comes from its Confluent message indexes (`[0]`, the first message
/// of the file, unless the producer says otherwise); [`ProtoSchema::from_descriptor_set`] names
/// one message instead, which every body is, whatever message index its framing carries
/// ([`ProtoSchema::is_pinned`]).
///
/// The JSON a body becomes is protobuf's JSON mapping with these choices, made so the JSON looks
/// like the JSON and Avro values of the same record:
///
/// | Protobuf | JSON |
/// | --- | --- |
/// | field names | the names in the `.proto` file (`page_id`, not `pageId`) |
/// | `int64`, `uint64`, `sint64`, `fixed64`, `sfixed64` | numbers, not strings |
/// | enum | the value's name (a number the schema does not name: the number) |
/// | a field without presence left at its default | present, with the default (`0`, `""`, `false`, `[]`, `{}`) |
/// | an unset message, `optional` or `oneof` field | absent |
/// | `bytes` | base64 text; `repeated`: array; `map`: object |
/// | `google.protobuf.Timestamp`, `Duration`, wrappers, `Struct`, ... | their JSON forms (`"2024-05-01T12:00:00Z"`, ...) |
/// | `double`; `float` | the number; a `float` widened to `f64` as it is (`0.1` reads `0.10000000149011612`) |
/// | NaN and infinities | `"NaN"`, `"Infinity"`, `"-Infinity"` (protobuf's JSON mapping) |
///
/// Bounds on a body: messages nest at most 100 deep (prost's limit); the JSON a body maps to may
/// take at most 512 bytes per byte of the body, plus the fields of one message of each type its
/// message holds at their defaults (see `budget.rs`): a repeated empty message takes two bytes
/// of the body and maps to every field of its type, so a body of them is measured before it is
/// mapped and refused (`schema_mismatch`) past that budget.
///
/// ```
/// use event_decoding::ProtoSchema;
/// let schema = ProtoSchema::parse(r#"syntax = "proto3";
///   message Gift { int64 page_id = 1; string question = 2; }"#, &[]).unwrap();
/// // page_id 21 (field 1, varint), question "hi" (field 2, length 2)
/// let v = schema.decode(&[0], &[8, 21, 18, 2, b'h', b'i']).unwrap();
/// assert_eq!(v, serde_json::json!({"page_id": 21, "question": "hi"}));
/// ```
pub struct ProtoSchema {
    /// The top-level messages of the writer schema's file, in declaration order: what message
    /// index `i` names.
    top: Vec<MessageDescriptor>,
    /// One message named in configuration: framings' message indexes are read past, not used.
    pinned: bool,
}

impl std::fmt::Debug for ProtoSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtoSchema")
            .field(
                "messages",
                &self.top.iter().map(|m| m.full_name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `.proto` sources by file name, then google's well-known types.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl ProtoSchema {
    /// Compiles `definition`, the `.proto` text of the writer schema, with `references`: the
    /// `(import name, .proto text)` of each file it imports, directly or not. Google's well-known
    /// types (`google/protobuf/timestamp.proto`, ...) need no reference. The error is the
    /// compiler's message.
    ///
    /// ```
    /// use event_decoding::ProtoSchema;
    /// let money = ("money.proto".to_string(), "syntax = \"proto3\"; package shop; message Money { int64 cents = 1; }".to_string());
    /// let s = ProtoSchema::parse(r#"syntax = "proto3"; import "money.proto";
    ///   message Gift { shop.Money price = 1; }"#, &[money]).unwrap();
    /// assert_eq!(s.decode(&[0], &[10, 2, 8, 5]).unwrap(), serde_json::json!({"price": {"cents": 5}}));
    /// assert!(ProtoSchema::parse("message {", &[]).is_err());
    /// ```
    pub fn parse(definition: &str, references: &[(String, String)]) -> Result<Self, String> {
        let mut sources: HashMap<String, String> = references.iter().cloned().collect();
        sources.insert(MAIN_FILE.to_string(), definition.to_string());
        let mut resolver = ChainFileResolver::new();
        resolver.add(Sources(sources));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_file(MAIN_FILE)
            .map_err(|e| compile_error(&e))?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(MAIN_FILE)
            .ok_or_else(|| "the compiled schema has no file".to_string())?;
        let top: Vec<MessageDescriptor> = file.messages().collect();
        if top.is_empty() {
            return Err("the schema declares no message".into());
        }
        Ok(Self { top, pinned: false })
    }

    /// A schema from configuration: `descriptor_set` is a serialized `FileDescriptorSet`
    /// (`protoc --include_imports --descriptor_set_out`, or `buf build -o`) and `message` the full
    /// name of the message every value is (`shop.Gift`), whatever message index a body carries
    /// ([`is_pinned`](Self::is_pinned)).
    ///
    /// ```
    /// use event_decoding::{DescriptorSetError, ProtoSchema};
    /// let e = ProtoSchema::from_descriptor_set(b"not a descriptor set", "shop.Gift").unwrap_err();
    /// assert!(matches!(e, DescriptorSetError::Unusable(_)));
    /// ```
    pub fn from_descriptor_set(
        descriptor_set: &[u8],
        message: &str,
    ) -> Result<Self, DescriptorSetError> {
        let pool = DescriptorPool::decode(descriptor_set)
            .map_err(|e| DescriptorSetError::Unusable(e.to_string()))?;
        let message = message.trim().trim_start_matches('.');
        let desc = pool.get_message_by_name(message).ok_or_else(|| {
            let mut known: Vec<String> = pool
                .all_messages()
                .map(|m| m.full_name().to_string())
                .filter(|n| !n.starts_with("google.protobuf."))
                .collect();
            known.sort();
            known.truncate(20);
            DescriptorSetError::NoMessage {
                message: message.to_owned(),
                known: known.join(", "),
            }
        })?;
        Ok(Self {
            top: vec![desc],
            pinned: true,
        })
    }

    /// Whether every body is the one message named in configuration
    /// ([`from_descriptor_set`](Self::from_descriptor_set)): the message index a framing carries
    /// (Confluent's array, Glue's index) numbers the messages of the producer's `.proto` file,
    /// which the descriptor set need not hold in the same order, so it is skipped and the named
    /// message read.
    ///
    /// ```
    /// use event_decoding::ProtoSchema;
    /// let s = ProtoSchema::parse("syntax = \"proto3\"; message G { int64 id = 1; }", &[]).unwrap();
    /// assert!(!s.is_pinned());
    /// ```
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The message that `indexes` name: the first is a top-level message of the file, each next
    /// one a message nested in the one before.
    pub fn message(&self, indexes: &[i32]) -> Result<MessageDescriptor, String> {
        let out_of_range = |i: i32, within: &str| {
            format!("message index {i} names no message of {within} (message indexes {indexes:?})")
        };
        let (first, rest) = indexes.split_first().unwrap_or((&0, &[]));
        let mut message = usize::try_from(*first)
            .ok()
            .and_then(|i| self.top.get(i))
            .cloned()
            .ok_or_else(|| out_of_range(*first, "the schema"))?;
        for &i in rest {
            let child = usize::try_from(i)
                .ok()
                .and_then(|i| message.child_messages().nth(i))
                .ok_or_else(|| out_of_range(i, message.full_name()))?;
            message = child;
        }
        Ok(message)
    }

    /// Decodes one body of the message `indexes` name into JSON. The error says what does not
    /// match, never the body's content.
    pub fn decode(&self, indexes: &[i32], body: &[u8]) -> Result<Value, String> {
        let desc = self.message(indexes)?;
        let allowance = shaped(&desc, &mut Vec::new());
        let budget = || Budget::per_byte(body.len(), allowance, budget::PROTOBUF_PER_BODY_BYTE);
        // The dynamic message is a tree too: a sub-message of one set field takes a B-tree node
        // of its own (~0.7 KB) for 4 bytes of body. Its cost is charged from the wire format
        // before the tree is built.
        charge_tree(&desc, body, 0, &mut budget())
            .map_err(|e| format!("{}: {e}", desc.full_name()))?;
        // The name only for an error: no allocation per body that decodes.
        let message = DynamicMessage::decode(desc.clone(), body)
            .map_err(|e| format!("{}: {e}", desc.full_name()))?;
        // Its JSON, with every field at its default written out, can hold far more.
        budget()
            .charge(message_cost(&message))
            .map_err(|e| format!("{}: {e}", desc.full_name()))?;
        let options = SerializeOptions::new()
            .stringify_64_bit_integers(false)
            .use_proto_field_name(true)
            .skip_default_fields(false);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| format!("{}: {e}", desc.full_name()))
    }
}

/// What one value of a dynamic message takes where it is held.
const DYNAMIC_VALUE: usize = std::mem::size_of::<prost_reflect::Value>();

/// One message of a dynamic message: a B-tree leaf of field numbers and values, with its header.
const DYNAMIC_NODE: usize = 11 * (8 + DYNAMIC_VALUE) + 16;

/// Deeper than prost's recursion limit the decoder refuses the body anyway.
const MAX_TREE_DEPTH: u32 = 100;

/// Reads a varint of the wire format, `None` when the body ends inside it or it is too long.
fn wire_varint(at: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = at.split_first()?;
        *at = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Charges what the dynamic message of `body` (a `desc`) takes, from its wire format alone:
/// every message its node, every field its value, a packed run of scalars a value per element
/// it may hold, text and bytes their length. A body that is not well formed stops the walk: the
/// decoder then says what is wrong.
fn charge_tree(
    desc: &MessageDescriptor,
    body: &[u8],
    depth: u32,
    budget: &mut Budget,
) -> Result<(), String> {
    budget.charge(DYNAMIC_NODE)?;
    let mut at = body;
    while !at.is_empty() {
        let Some(tag) = wire_varint(&mut at) else {
            return Ok(());
        };
        budget.charge(DYNAMIC_VALUE)?;
        match tag & 7 {
            0 => {
                if wire_varint(&mut at).is_none() {
                    return Ok(());
                }
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                let Some(rest) = at.get(n..) else {
                    return Ok(());
                };
                at = rest;
            }
            2 => {
                let Some(len) = wire_varint(&mut at)
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l <= at.len())
                else {
                    return Ok(());
                };
                let (inner, rest) = at.split_at(len);
                at = rest;
                let field = u32::try_from(tag >> 3).ok().and_then(|n| desc.get_field(n));
                match field.map(|f| f.kind()) {
                    Some(Kind::Message(m)) if depth < MAX_TREE_DEPTH => {
                        charge_tree(&m, inner, depth + 1, budget)?;
                    }
                    // Past prost's recursion limit: refused by the decoder.
                    Some(Kind::Message(_)) => {}
                    Some(Kind::String | Kind::Bytes) | None => budget.charge(len)?,
                    Some(Kind::Fixed64 | Kind::Sfixed64 | Kind::Double) => {
                        budget.charge(len / 8 * DYNAMIC_VALUE)?;
                    }
                    Some(Kind::Fixed32 | Kind::Sfixed32 | Kind::Float) => {
                        budget.charge(len / 4 * DYNAMIC_VALUE)?;
                    }
                    // A packed run of varints: at most one element a byte.
                    Some(_) => budget.charge(len.saturating_mul(DYNAMIC_VALUE))?,
                }
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// What the JSON of `message` takes (an estimate, as everything in `budget.rs`): its present
/// fields and those without presence at their defaults.
fn message_cost(message: &DynamicMessage) -> usize {
    let mut cost = SLOT;
    for field in message.descriptor().fields() {
        let value = if message.has_field(&field) {
            value_cost(&message.get_field(&field))
        } else if field.supports_presence() {
            continue;
        } else {
            default_cost(&field)
        };
        cost = cost
            .saturating_add(budget::object(1, field.name().len()))
            .saturating_add(value);
    }
    cost
}

fn default_cost(field: &FieldDescriptor) -> usize {
    SLOT + match field.kind() {
        Kind::Enum(e) if !field.is_list() && !field.is_map() => e.default_value().name().len(),
        _ => 0,
    }
}

fn value_cost(value: &prost_reflect::Value) -> usize {
    use prost_reflect::Value as V;
    match value {
        V::String(s) => SLOT + s.len(),
        V::Bytes(b) => SLOT + budget::base64(b.len()),
        // A name, or the number.
        V::EnumNumber(_) => SLOT + 32,
        V::List(items) => items
            .iter()
            .map(value_cost)
            .fold(SLOT, usize::saturating_add),
        // Keys are written as text: at most 20 digits, or the key string.
        V::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    prost_reflect::MapKey::String(s) => s.len(),
                    _ => 20,
                };
                value_cost(v).saturating_add(budget::object(1, key))
            })
            .fold(SLOT, usize::saturating_add),
        V::Message(m) => message_cost(m),
        // "NaN", "-Infinity".
        V::F32(_) | V::F64(_) => SLOT + 9,
        _ => SLOT,
    }
}

/// What a message of this type maps to with no field set (every field without presence at its
/// default), and one of each message type its fields hold, once per type: what the budget
/// allows any body beyond its bytes.
fn shaped(desc: &MessageDescriptor, seen: &mut Vec<String>) -> usize {
    if seen.iter().any(|s| s == desc.full_name()) {
        return 0;
    }
    seen.push(desc.full_name().to_string());
    let mut cost = SLOT;
    for field in desc.fields() {
        let inner = match field.kind() {
            Kind::Message(m) => shaped(&m, seen),
            _ => default_cost(&field),
        };
        cost = cost
            .saturating_add(budget::object(1, field.name().len()))
            .saturating_add(inner);
    }
    cost
}

fn compile_error(e: &protox::Error) -> String {
    let mut message = e.to_string();
    if let Some(file) = e.file()
        && file != MAIN_FILE
    {
        message = format!("{file}: {message}");
    }
    message.replace(MAIN_FILE, "the schema")
}

/// Reads the Confluent message-index array at the start of a body behind the Confluent prefix:
/// a zigzag varint count, then that many zigzag varint indexes; a count of 0 (the single byte
/// `0`) is short for `[0]`, the first message of the file. Returns the indexes and the body.
pub(crate) fn message_indexes(bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), String> {
    let mut rest = bytes;
    let count = zigzag(&mut rest).ok_or("no message indexes before the Protobuf body")?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_INDEXES.min(rest.len()))
        .ok_or_else(|| format!("{count} message indexes before the Protobuf body"))?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let i = zigzag(&mut rest).ok_or("the message indexes are cut short")?;
        indexes.push(i32::try_from(i).map_err(|_| format!("message index {i} is out of range"))?);
    }
    Ok((indexes, rest))
}

/// A body the event source mapping delivered with `EventRecordFormat: SOURCE`: with or without
/// its Confluent message indexes.
///
/// Lambda's documentation says only that in SOURCE format Lambda "removes all schema metadata,
/// such as the schema ID" (`KafkaSchemaRegistryConfig.EventRecordFormat`, Lambda API reference);
/// it does not say whether the Protobuf message indexes go too, and Powertools for AWS Lambda
/// (Java, since its PR #1902; Python likewise) accepts both. So do we, without guessing: a
/// Protobuf body never starts with a byte below 8 (that would be field number 0, which does not
/// exist), while a message-index array of up to 3 indexes always does (`0` for `[0]`, then the
/// zigzag counts 2, 4, 6). A body starting with 8 or more is read whole as message `[0]`.
pub(crate) fn source_message_indexes(bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), String> {
    match bytes.first() {
        Some(b) if *b < 8 => message_indexes(bytes),
        _ => Ok((vec![0], bytes)),
    }
}

/// One zigzag varint (at most 10 bytes), advancing `bytes`.
fn zigzag(bytes: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for (n, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * n);
        if b & 0x80 == 0 {
            *bytes = &bytes[n + 1..];
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    mod bounds {
        use super::super::*;
        use super::{bytes_field, field, varint};
        use proptest::prelude::*;
        use serde_json::json;

        const SHAPES: &str = r#"
            syntax = "proto3";
            package b;
            message Wide { int64 a = 1; int64 b = 2; string c = 3; bool d = 4; double e = 5;
                           repeated int32 f = 6; Kind k = 7; uint64 g = 8; }
            enum Kind { KIND_UNSPECIFIED = 0; ONE = 1; }
            message Box {
                repeated Wide items = 1;
                repeated Box kids = 2;
                Box next = 3;
                repeated int32 packed = 4;
                map<string, Wide> m = 5;
                repeated Empty empties = 6;
            }
            message Empty {}
        "#;

        fn shapes() -> ProtoSchema {
            ProtoSchema::parse(SHAPES, &[]).unwrap()
        }

        #[test]
        fn repeated_empty_messages_stop_at_the_budget() {
            // 100,000 empty `Wide` items: two bytes each, eight fields each as JSON.
            let body: Vec<u8> = [10u8, 0].repeat(100_000);
            let err = shapes().decode(&[1], &body).unwrap_err();
            assert!(
                err.starts_with("b.Box: the value expands past its output budget"),
                "{err}"
            );
            // A body that sets one field of each fits its budget.
            let mut honest = Vec::new();
            for i in 0..1_000u64 {
                let mut item = Vec::new();
                field(1, 0, &mut item);
                varint(i % 100 + 1, &mut item);
                bytes_field(1, &item, &mut honest);
            }
            let v = shapes().decode(&[1], &honest).unwrap();
            assert_eq!(v["items"].as_array().unwrap().len(), 1_000);
            assert_eq!(
                v["items"][0],
                json!({"a": 1, "b": 0, "c": "", "d": false, "e": 0.0, "f": [],
                       "k": "KIND_UNSPECIFIED", "g": 0})
            );
        }

        #[test]
        fn deep_nesting_is_an_error_not_a_crash() {
            // `next` 10,000 levels deep: each level a tag and a length around the rest.
            let mut body = Vec::new();
            for _ in 0..10_000 {
                let mut outer = Vec::new();
                bytes_field(3, &body, &mut outer);
                body = outer;
            }
            let err = shapes().decode(&[1], &body).unwrap_err();
            assert!(err.contains("recursion limit"), "{err}");
        }

        /// Bodies of tags and lengths that nest: far more shapes than random bytes reach.
        fn nested() -> impl Strategy<Value = Vec<u8>> {
            let leaf = proptest::collection::vec(any::<u8>(), 0..16);
            leaf.prop_recursive(6, 256, 8, |inner| {
                proptest::collection::vec((1u32..8, inner), 0..8).prop_map(|fields| {
                    let mut out = Vec::new();
                    for (n, body) in fields {
                        bytes_field(n, &body, &mut out);
                    }
                    out
                })
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Arbitrary bytes against repeated, nested, empty and map messages end in an
            /// answer, and a value takes no more than the body's budget.
            #[test]
            fn arbitrary_bodies_decode_within_the_budget(
                which in 0..3i32,
                body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), nested()],
            ) {
                let s = shapes();
                if let Ok(v) = s.decode(&[which], &body) {
                    let desc = s.message(&[which]).unwrap();
                    let limit = Budget::per_byte(
                        body.len(),
                        shaped(&desc, &mut Vec::new()),
                        budget::PROTOBUF_PER_BODY_BYTE,
                    )
                    .limit();
                    prop_assert!(budget::json(&v) <= limit, "{} over {limit}", budget::json(&v));
                }
            }
        }
    }

    const SHOP: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";

        enum Kind { KIND_UNSPECIFIED = 0; BOOK = 1; TOY = 2; }

        message Gift {
            int64 page_id = 1;
            string question = 2;
            uint64 big = 3;
            sint64 neg = 4;
            Kind kind = 5;
            repeated string tags = 6;
            map<string, int32> counts = 7;
            oneof source { string url = 8; int32 shelf = 9; }
            google.protobuf.Timestamp at = 10;
            bytes blob = 11;
            optional string note = 12;
            Inner inner = 13;
            message Inner {
                double score = 1;
                message Deep { bool ok = 1; }
            }
        }

        message Other { string name = 1; }
    "#;

    fn schema() -> ProtoSchema {
        ProtoSchema::parse(SHOP, &[]).unwrap()
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(number: u32, wire: u8, out: &mut Vec<u8>) {
        varint(u64::from(number << 3 | u32::from(wire)), out);
    }

    fn bytes_field(number: u32, data: &[u8], out: &mut Vec<u8>) {
        field(number, 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    #[test]
    fn scalars_enums_repeated_maps_oneof_and_timestamp() {
        let mut b = Vec::new();
        field(1, 0, &mut b);
        varint(9_007_199_254_740_993, &mut b); // 2^53 + 1: exact only as an integer
        bytes_field(2, "żółw".as_bytes(), &mut b);
        field(3, 0, &mut b);
        varint(u64::MAX, &mut b);
        field(4, 0, &mut b);
        varint(5, &mut b); // sint64 -3
        field(5, 0, &mut b);
        varint(2, &mut b);
        bytes_field(6, b"a", &mut b);
        bytes_field(6, b"b", &mut b);
        let mut entry = Vec::new();
        bytes_field(1, b"x", &mut entry);
        field(2, 0, &mut entry);
        varint(7, &mut entry);
        bytes_field(7, &entry, &mut b);
        field(9, 0, &mut b);
        varint(4, &mut b);
        let mut ts = Vec::new();
        field(1, 0, &mut ts);
        varint(1_714_564_800, &mut ts);
        bytes_field(10, &ts, &mut b);
        bytes_field(11, &[0xff, 0], &mut b);
        let v = schema().decode(&[0], &b).unwrap();
        assert_eq!(
            v,
            json!({
                "page_id": 9_007_199_254_740_993_i64,
                "question": "żółw",
                "big": u64::MAX,
                "neg": -3,
                "kind": "TOY",
                "tags": ["a", "b"],
                "counts": {"x": 7},
                "shelf": 4,
                "at": "2024-05-01T12:00:00Z",
                "blob": "/wA=",
            })
        );
    }

    #[test]
    fn defaults_are_present_and_unset_presence_fields_absent() {
        let v = schema().decode(&[0], &[]).unwrap();
        assert_eq!(
            v,
            json!({"page_id": 0, "question": "", "big": 0, "neg": 0, "kind": "KIND_UNSPECIFIED",
                   "tags": [], "counts": {}, "blob": ""})
        );
        // An enum number the schema does not name stays a number.
        let v = schema().decode(&[0], &[40, 9]).unwrap();
        assert_eq!(v["kind"], 9);
    }

    #[test]
    fn floats_and_their_special_values() {
        let s = ProtoSchema::parse(
            r#"syntax = "proto3"; message F { double d = 1; float f = 2; repeated double r = 3; }"#,
            &[],
        )
        .unwrap();
        let mut b = Vec::new();
        field(1, 1, &mut b);
        b.extend_from_slice(&f64::NAN.to_le_bytes());
        field(2, 5, &mut b);
        b.extend_from_slice(&0.5f32.to_le_bytes());
        // packed: -inf, +inf, 1.25
        let mut packed = Vec::new();
        for x in [f64::NEG_INFINITY, f64::INFINITY, 1.25] {
            packed.extend_from_slice(&x.to_le_bytes());
        }
        bytes_field(3, &packed, &mut b);
        assert_eq!(
            s.decode(&[0], &b).unwrap(),
            json!({"d": "NaN", "f": 0.5, "r": ["-Infinity", "Infinity", 1.25]})
        );
    }

    #[test]
    fn message_indexes_walk_nested_types() {
        let s = schema();
        assert_eq!(s.message(&[0]).unwrap().full_name(), "shop.Gift");
        assert_eq!(s.message(&[]).unwrap().full_name(), "shop.Gift");
        assert_eq!(s.message(&[1]).unwrap().full_name(), "shop.Other");
        // Gift's nested types: the map entry of `counts` comes first in the descriptor, then Inner.
        let nested: Vec<String> = s
            .message(&[0])
            .unwrap()
            .child_messages()
            .map(|m| m.name().to_string())
            .collect();
        let inner = nested.iter().position(|n| n == "Inner").unwrap() as i32;
        assert_eq!(
            s.message(&[0, inner, 0]).unwrap().full_name(),
            "shop.Gift.Inner.Deep"
        );
        assert_eq!(
            s.decode(&[0, inner, 0], &[8, 1]).unwrap(),
            json!({"ok": true})
        );
        assert_eq!(
            s.decode(&[1], &[10, 1, b'n']).unwrap(),
            json!({"name": "n"})
        );
        for bad in [&[2][..], &[-1], &[0, 9], &[0, inner, 0, 0]] {
            let e = s.message(bad).unwrap_err();
            assert!(e.contains("names no message"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn confluent_message_index_arrays() {
        assert_eq!(message_indexes(&[0]).unwrap(), (vec![0], &[][..]));
        assert_eq!(message_indexes(&[2, 2, 7]).unwrap(), (vec![1], &[7u8][..]));
        // 3 indexes: 0, 150 (zigzag 300 = 0xac 0x02), 1
        assert_eq!(
            message_indexes(&[6, 0, 0xac, 0x02, 2]).unwrap(),
            (vec![0, 150, 1], &[][..])
        );
        for bad in [&[][..], &[0x80], &[4, 2], &[1, 0], &[2, 0xff]] {
            assert!(message_indexes(bad).is_err(), "{bad:?}");
        }
        // Source bodies: with or without the indexes.
        assert_eq!(
            source_message_indexes(&[8, 1]).unwrap(),
            (vec![0], &[8u8, 1][..])
        );
        assert_eq!(
            source_message_indexes(&[0, 8, 1]).unwrap(),
            (vec![0], &[8u8, 1][..])
        );
        assert_eq!(
            source_message_indexes(&[2, 2, 8, 1]).unwrap(),
            (vec![1], &[8u8, 1][..])
        );
        assert_eq!(source_message_indexes(&[]).unwrap(), (vec![0], &[][..]));
    }

    #[test]
    fn bodies_that_do_not_match_are_errors() {
        let s = schema();
        for body in [
            &[8][..],             // varint cut short
            &[18, 5, b'h'],       // length past the end
            &[10, 1, 1],          // field 1 (int64) sent as length-delimited
            &[0, 1],              // field number 0
            &[18, 2, 0xff, 0xfe], // a string that is not UTF-8
            &[0x0f],              // wire type 7 does not exist
        ] {
            let e = s.decode(&[0], body).unwrap_err();
            assert!(e.starts_with("shop.Gift"), "{body:?}: {e}");
        }
    }

    #[test]
    fn schemas_that_do_not_compile_say_why() {
        for (text, refs, expect) in [
            ("message {", vec![], ""),
            (
                r#"syntax = "proto3"; import "missing.proto"; message A { int32 a = 1; }"#,
                vec![],
                "missing.proto",
            ),
            (
                r#"syntax = "proto3"; message A { Nope a = 1; }"#,
                vec![],
                "Nope",
            ),
            (
                r#"syntax = "proto3"; enum E { X = 0; }"#,
                vec![],
                "no message",
            ),
            (
                r#"syntax = "proto3"; import "b.proto"; message A { int32 a = 1; }"#,
                vec![("b.proto".to_string(), "message {".to_string())],
                "b.proto",
            ),
        ] {
            let e = ProtoSchema::parse(text, &refs).unwrap_err();
            assert!(e.contains(expect), "{text}: {e}");
            assert!(!e.contains(MAIN_FILE), "{e}");
        }
    }

    #[test]
    fn descriptor_sets_from_configuration() {
        let mut compiler = protox::Compiler::with_file_resolver({
            let mut r = ChainFileResolver::new();
            r.add(Sources(HashMap::from([(
                "shop.proto".to_string(),
                SHOP.to_string(),
            )])));
            r.add(GoogleFileResolver::new());
            r
        });
        compiler.include_imports(true);
        compiler.open_file("shop.proto").unwrap();
        let set = compiler.encode_file_descriptor_set();
        let s = ProtoSchema::from_descriptor_set(&set, "shop.Other").unwrap();
        assert_eq!(
            s.decode(&[0], &[10, 1, b'n']).unwrap(),
            json!({"name": "n"})
        );
        let e = ProtoSchema::from_descriptor_set(&set, "shop.Nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shop.Gift") && e.contains("shop.Other"), "{e}");
        assert!(!e.contains("google.protobuf"), "{e}");
    }

    #[test]
    fn huge_claims_do_not_allocate() {
        // A length prefix claiming 2^40 bytes in a 12-byte body.
        let mut b = Vec::new();
        field(2, 2, &mut b);
        varint(1 << 40, &mut b);
        assert!(schema().decode(&[0], &b).is_err());
        assert!(message_indexes(&[0xfe, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use prost_reflect::prost::Message as _;

        proptest! {
            /// Whatever the bytes, reading them is an answer, never a panic.
            #[test]
            fn any_bytes_are_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let s = schema();
                let _ = s.decode(&[0], &bytes);
                let _ = s.decode(&[1], &bytes);
                let _ = message_indexes(&bytes);
                let _ = source_message_indexes(&bytes);
            }

            /// A message written by prost-reflect's encoder reads back as the JSON of its fields,
            /// behind any Confluent message-index array that names it.
            #[test]
            fn encoded_messages_read_back(
                page_id in any::<i64>(),
                question in "\\PC{0,12}",
                big in any::<u64>(),
                tags in proptest::collection::vec("[a-z]{0,4}", 0..4),
                shelf in proptest::option::of(any::<i32>()),
            ) {
                let s = schema();
                let desc = s.message(&[0]).unwrap();
                let mut m = DynamicMessage::new(desc);
                m.set_field_by_name("page_id", prost_reflect::Value::I64(page_id));
                m.set_field_by_name("question", prost_reflect::Value::String(question.clone()));
                m.set_field_by_name("big", prost_reflect::Value::U64(big));
                m.set_field_by_name(
                    "tags",
                    prost_reflect::Value::List(
                        tags.iter().cloned().map(prost_reflect::Value::String).collect(),
                    ),
                );
                if let Some(shelf) = shelf {
                    m.set_field_by_name("shelf", prost_reflect::Value::I32(shelf));
                }
                let mut framed = vec![0];
                framed.extend(m.encode_to_vec());
                let (indexes, body) = message_indexes(&framed).unwrap();
                let v = s.decode(&indexes, body).unwrap();
                prop_assert_eq!(&v["page_id"], &json!(page_id));
                prop_assert_eq!(&v["question"], &json!(question));
                prop_assert_eq!(&v["big"], &json!(big));
                prop_assert_eq!(&v["tags"], &json!(tags));
                prop_assert_eq!(v.get("shelf").cloned(), shelf.map(|x| json!(x)));
            }
        }
    }
}
