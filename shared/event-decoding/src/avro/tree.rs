//! The Avro schema resolved once into a tree of [`Node`]s: how to read each datum and what JSON
//! it becomes, Kafka Connect and Debezium annotations ([`Shape`]) folded in, named types by
//! index, and the output each node shapes before any body is read (the budget's allowance).

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, NamespaceRef, RecordField,
    RecordSchema, UnionSchema,
};
use serde_json::Value;

use crate::budget::{self, SLOT};

/// What the JSON mapping needs of the schema beyond what `apache-avro` keeps: Kafka Connect
/// and Debezium annotations (`connect.name`, `connect.parameters`) on any type.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Shape {
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
pub(super) enum Node {
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
pub(super) struct Field {
    pub(super) name: String,
    pub(super) node: Node,
}

/// `apache-avro`'s reader for a type this module does not read itself.
#[derive(Clone)]
pub(super) struct Other(pub(super) Arc<apache_avro::GenericSingleObjectReader>);

impl std::fmt::Debug for Other {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Other")
    }
}

/// What [`Node::shaped`] knows of a named type.
#[derive(Clone, Copy)]
pub(super) enum Shaped {
    Unknown,
    /// Being measured: a type that holds itself adds nothing more (its next level takes bytes).
    Measuring,
    Known(usize),
}

impl Node {
    /// The output this node shapes with little help from the body: every field of every record
    /// (each union at its largest branch, each array and map with one item), what the budget
    /// allows any body beyond its bytes. A record that holds itself counts once.
    pub(super) fn shaped(&self, named: &[Node], seen: &mut [Shaped]) -> usize {
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
pub(super) fn decimal_len(bytes: usize, scale: u32) -> usize {
    bytes
        .saturating_mul(5)
        .div_ceil(2)
        .saturating_add(scale as usize)
        .saturating_add(3)
}

/// Builds the [`Node`] tree of a schema.
pub(super) struct Tree<'s> {
    pub(super) names: &'s apache_avro::schema::NamesRef<'s>,
    /// Named types by index; `None` while one is being built (a record that holds itself).
    pub(super) named: Vec<Option<Node>>,
    pub(super) index: HashMap<Name, usize>,
}

impl Tree<'_> {
    /// The node of `schema` with its `shape`. One arm per Avro schema kind, so every kind is seen
    /// to have its node in one place; records, unions and references build theirs below.
    pub(super) fn node(
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
                self.record(name, fields, shape, namespace)?
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
            S::Union(u) => self.union(u, shape, namespace)?,
            S::Ref { name } => self.reference(name, shape, namespace)?,
            S::Uuid(_) | S::BigDecimal | S::Duration(_) => Node::Other(Other(Arc::new(
                apache_avro::GenericSingleObjectReader::builder()
                    .schema(schema.clone())
                    .header(Vec::new())
                    .build()
                    .map_err(|e| e.to_string())?,
            ))),
        })
    }

    /// A record: registered as a named type before its fields are built (a field can refer to
    /// the record itself), read as Debezium's `VariableScaleDecimal` when its shape says so.
    fn record(
        &mut self,
        name: &Name,
        record_fields: &[RecordField],
        shape: &Shape,
        namespace: NamespaceRef<'_>,
    ) -> Result<Node, String> {
        use apache_avro::Schema as S;
        let full = name.fully_qualified_name(namespace).into_owned();
        let slot = self.named.len();
        self.named.push(None);
        self.index.entry(full.clone()).or_insert(slot);
        let inner = full.namespace();
        let node = if *shape == Shape::VariableScaleDecimal {
            // Its fields are read as they are, without the JSON mapping's annotations.
            let fields = record_fields
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
                    .zip(record_fields.iter().map(|f| &f.schema))
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
            let fields = record_fields
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
        Ok(node)
    }

    /// A union: each branch with its own shape.
    fn union(
        &mut self,
        union: &UnionSchema,
        shape: &Shape,
        namespace: NamespaceRef<'_>,
    ) -> Result<Node, String> {
        let branches = union
            .variants()
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
            .collect::<Result<_, String>>()?;
        Ok(Node::Union(branches))
    }

    /// A reference to a named type: its index, built on first use.
    fn reference(
        &mut self,
        name: &Name,
        shape: &Shape,
        namespace: NamespaceRef<'_>,
    ) -> Result<Node, String> {
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
            apache_avro::Schema::Record(_) => {
                let slot = self.named.len();
                self.node(target, shape, full.namespace())?;
                Ok(Node::Named(slot))
            }
            _ => {
                let node = self.node(target, shape, full.namespace())?;
                let slot = self.named.len();
                self.named.push(Some(node));
                self.index.insert(full, slot);
                Ok(Node::Named(slot))
            }
        }
    }
}
