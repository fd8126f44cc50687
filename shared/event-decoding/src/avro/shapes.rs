//! [`Shapes`]: the Kafka Connect and Debezium annotations of a schema's JSON text
//! (`connect.name`, `connect.parameters`, logical decimals) read into a [`Shape`] tree, which
//! `apache-avro`'s parsed schema does not keep.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::tree::Shape;

/// Named types seen so far, for references by name.
#[derive(Default)]
pub(super) struct Shapes {
    pub(super) named: HashMap<String, Shape>,
}

impl Shapes {
    pub(super) fn of(&mut self, schema: &Value, namespace: &str) -> Shape {
        match schema {
            Value::String(name) => self.named(name, namespace),
            Value::Array(branches) => {
                Shape::Union(branches.iter().map(|b| self.of(b, namespace)).collect())
            }
            Value::Object(o) => self.of_object(o, namespace),
            _ => Shape::Plain,
        }
    }

    pub(super) fn named(&self, name: &str, namespace: &str) -> Shape {
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

    pub(super) fn of_object(&mut self, o: &Map<String, Value>, namespace: &str) -> Shape {
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

pub(super) fn qualified(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

pub(super) fn is_primitive(t: &str) -> bool {
    matches!(
        t,
        "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string"
    )
}

/// The decimal scale: Avro's `scale`, else Kafka Connect's `connect.parameters.scale` (a string).
pub(super) fn scale(o: &Map<String, Value>) -> u32 {
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
