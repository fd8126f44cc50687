//! Avro schema references inlined: Avro names a type defined elsewhere by its name alone, and a
//! name must be defined before use, so the first use of each referenced name is replaced by the
//! referenced schema (itself with its references inlined). The whole is then one self-contained
//! schema, which the parser and the JSON mapping both read as if the producer had written it so.
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

/// How deep references may refer to references.
const MAX_DEPTH: usize = 32;

/// `Ok(None)` when there is nothing to inline.
pub(super) fn inline(
    definition: &str,
    references: &[(String, String)],
) -> Result<Option<String>, String> {
    if references.is_empty() {
        return Ok(None);
    }
    let mut by_name: HashMap<String, Value> = HashMap::new();
    for (name, text) in references {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("reference {name} is not JSON: {e}"))?;
        if let Some(full) = full_name(&schema, "") {
            by_name.insert(full, schema.clone());
        }
        by_name.insert(name.clone(), schema);
    }
    let mut main: Value =
        serde_json::from_str(definition).map_err(|e| format!("not a valid Avro schema: {e}"))?;
    let mut inliner = Inliner {
        references: &by_name,
        defined: HashSet::new(),
    };
    inliner.walk(&mut main, "", 0)?;
    Ok(Some(main.to_string()))
}

struct Inliner<'a> {
    references: &'a HashMap<String, Value>,
    /// Full names defined so far, in document order.
    defined: HashSet<String>,
}

const KEYWORDS: [&str; 14] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "error",
    "enum", "array", "map", "fixed",
];

fn qualified(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn full_name(schema: &Value, namespace: &str) -> Option<String> {
    let o = schema.as_object()?;
    let name = o.get("name")?.as_str()?;
    let ns = o
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(namespace);
    Some(qualified(name, ns))
}

impl Inliner<'_> {
    fn walk(&mut self, schema: &mut Value, namespace: &str, depth: usize) -> Result<(), String> {
        match schema {
            Value::String(name) if !KEYWORDS.contains(&name.as_str()) => {
                let full = qualified(name, namespace);
                if self.defined.contains(&full) || self.defined.contains(name.as_str()) {
                    return Ok(());
                }
                let found = [full.as_str(), name.as_str()]
                    .into_iter()
                    .find_map(|n| self.references.get(n));
                if let Some(reference) = found {
                    if depth >= MAX_DEPTH {
                        return Err(format!("references nest deeper than {MAX_DEPTH} levels"));
                    }
                    let mut reference = reference.clone();
                    // A referenced type without a namespace takes the one of the place it is
                    // inlined at, as the parser will read it; later uses of its bare name
                    // there resolve to it (Avro cannot name a type of the null namespace from
                    // inside a namespace).
                    self.walk(&mut reference, namespace, depth + 1)?;
                    *schema = reference;
                }
                Ok(())
            }
            Value::Array(branches) => {
                for b in branches {
                    self.walk(b, namespace, depth)?;
                }
                Ok(())
            }
            Value::Object(o) => self.walk_object(o, namespace, depth),
            _ => Ok(()),
        }
    }

    fn walk_object(
        &mut self,
        o: &mut Map<String, Value>,
        namespace: &str,
        depth: usize,
    ) -> Result<(), String> {
        let ns = o
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace)
            .to_string();
        let named = matches!(
            o.get("type").and_then(Value::as_str),
            Some("record" | "error" | "enum" | "fixed")
        );
        let mut inner_ns = ns.clone();
        if named && let Some(name) = o.get("name").and_then(Value::as_str) {
            let full = qualified(name, &ns);
            if let Some((n, _)) = full.rsplit_once('.') {
                inner_ns = n.to_string();
            }
            self.defined.insert(full);
        }
        for key in ["type", "items", "values"] {
            if let Some(v) = o.get_mut(key) {
                self.walk(v, &ns, depth)?;
            }
        }
        if let Some(Value::Array(fields)) = o.get_mut("fields") {
            for f in fields {
                if let Some(t) = f.get_mut("type") {
                    self.walk(t, &inner_ns, depth)?;
                }
            }
        }
        Ok(())
    }
}
