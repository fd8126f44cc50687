//! A mapping's `FilterCriteria`, applied as Lambda applies it to Kafka records: a record whose
//! value matches no pattern is committed without being delivered.
//!
//! AWS documents the rules in "Filtering events from Amazon MSK and self-managed Apache Kafka
//! event sources" (<https://docs.aws.amazon.com/lambda/latest/dg/kafka-filtering.html>): Kafka
//! mappings filter on the `value` key only, the value read as JSON when it is valid JSON and as a
//! plain string otherwise; and in "Control which events Lambda sends to your function"
//! (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html>): filters are
//! ORed, a pattern's keys are ANDed, a key's list of matchers is ORed; the matchers are the
//! literal value (string, number, boolean, null), `prefix`, `suffix`, `equals-ignore-case`,
//! `exists`, `numeric` (`=`, `>`, `>=`, `<`, `<=`, one or two comparisons) and `anything-but` (a
//! value, a list of values or `{"prefix": ...}`). A record without a value (a tombstone) matches
//! no pattern that names `value`.

use serde_json::{Map, Value};

/// The filters of a mapping; none = every record is delivered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterCriteria {
    patterns: Vec<Map<String, Value>>,
}

impl FilterCriteria {
    /// Parses each `Pattern` (a JSON text); an error names the pattern and what is wrong with it.
    ///
    /// ```
    /// use esm_local::filter::FilterCriteria;
    /// let f = FilterCriteria::parse(&[r#"{"value": {"kind": ["gift"]}}"#.into()]).unwrap();
    /// assert!(f.matches(Some(br#"{"kind":"gift"}"#)));
    /// assert!(!f.matches(Some(br#"{"kind":"page"}"#)));
    /// assert!(!f.matches(None));
    /// ```
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let v: Value = serde_json::from_str(p)
                .map_err(|e| format!("filter pattern {}: not JSON: {e}", i + 1))?;
            let Value::Object(m) = v else {
                return Err(format!("filter pattern {}: not a JSON object", i + 1));
            };
            if let Some(k) = m.keys().find(|k| *k != "value") {
                return Err(format!(
                    "filter pattern {}: Kafka mappings filter on `value` only, not `{k}`",
                    i + 1
                ));
            }
            check(
                &Value::Object(m.clone()),
                &format!("filter pattern {}", i + 1),
            )?;
            out.push(m);
        }
        Ok(Self { patterns: out })
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a record with this value is delivered.
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let decoded = value.map(|v| {
            serde_json::from_slice::<Value>(v)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(v).into_owned()))
        });
        let mut event = Map::new();
        if let Some(v) = decoded {
            event.insert("value".into(), v);
        }
        self.patterns.iter().any(|p| object_matches(p, &event))
    }
}

/// Refuses matchers this module does not know, so a pattern is never silently ignored.
fn check(pattern: &Value, at: &str) -> Result<(), String> {
    match pattern {
        Value::Object(m) => m
            .iter()
            .try_for_each(|(k, v)| check(v, &format!("{at}.{k}"))),
        Value::Array(ms) => {
            for m in ms {
                if let Value::Object(o) = m {
                    let known = [
                        "prefix",
                        "suffix",
                        "equals-ignore-case",
                        "exists",
                        "numeric",
                        "anything-but",
                    ];
                    if o.len() != 1 || !known.contains(&o.keys().next().expect("one").as_str()) {
                        return Err(format!("{at}: unsupported matcher {m}"));
                    }
                }
            }
            Ok(())
        }
        other => Err(format!(
            "{at}: a field needs a list of matchers or an object, not {other}"
        )),
    }
}

fn object_matches(pattern: &Map<String, Value>, event: &Map<String, Value>) -> bool {
    pattern.iter().all(|(k, p)| {
        let field = event.get(k);
        match p {
            Value::Object(nested) => match field {
                Some(Value::Object(e)) => object_matches(nested, e),
                _ => false,
            },
            Value::Array(matchers) => matchers.iter().any(|m| field_matches(m, field)),
            _ => false,
        }
    })
}

/// One matcher against a field (absent = `None`); a field that is a list matches when one of its
/// items does.
fn field_matches(m: &Value, field: Option<&Value>) -> bool {
    if let Value::Object(o) = m
        && let Some(Value::Bool(want)) = o.get("exists")
    {
        return field.is_some() == *want;
    }
    let Some(field) = field else {
        return false;
    };
    if let Value::Array(items) = field {
        return items.iter().any(|i| value_matches(m, i));
    }
    value_matches(m, field)
}

fn value_matches(m: &Value, v: &Value) -> bool {
    let Value::Object(o) = m else {
        return literal_eq(m, v);
    };
    let Some((op, arg)) = o.iter().next() else {
        return false;
    };
    let s = v.as_str();
    match (op.as_str(), arg) {
        ("prefix", Value::String(p)) => s.is_some_and(|s| s.starts_with(p.as_str())),
        ("suffix", Value::String(p)) => s.is_some_and(|s| s.ends_with(p.as_str())),
        ("equals-ignore-case", Value::String(p)) => s.is_some_and(|s| s.eq_ignore_ascii_case(p)),
        ("numeric", Value::Array(cmp)) => v.as_f64().is_some_and(|n| numeric(cmp, n)),
        ("anything-but", Value::Array(xs)) => !xs.iter().any(|x| literal_eq(x, v)),
        ("anything-but", Value::Object(p)) => match p.get("prefix") {
            Some(Value::String(p)) => s.is_some_and(|s| !s.starts_with(p.as_str())),
            _ => false,
        },
        ("anything-but", x) => !literal_eq(x, v),
        _ => false,
    }
}

fn literal_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn numeric(cmp: &[Value], n: f64) -> bool {
    if cmp.is_empty() || !cmp.len().is_multiple_of(2) {
        return false;
    }
    cmp.chunks(2).all(|pair| {
        let (Some(op), Some(x)) = (pair[0].as_str(), pair[1].as_f64()) else {
            return false;
        };
        match op {
            "=" => n == x,
            ">" => n > x,
            ">=" => n >= x,
            "<" => n < x,
            "<=" => n <= x,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str) -> FilterCriteria {
        FilterCriteria::parse(&[p.to_owned()]).unwrap()
    }

    #[test]
    fn no_filter_delivers_everything_even_tombstones() {
        let none = FilterCriteria::default();
        assert!(none.matches(None));
        assert!(none.matches(Some(b"not json")));
    }

    /// The pattern the template's PageFilterPattern documents (Debezium without schemas).
    #[test]
    fn nested_equality_like_the_page_filter() {
        let p = f(r#"{"value": {"source": {"table": ["pages"]}}}"#);
        assert!(p.matches(Some(br#"{"op":"c","source":{"table":"pages"}}"#)));
        assert!(!p.matches(Some(br#"{"op":"c","source":{"table":"users"}}"#)));
        assert!(!p.matches(Some(br#"{"op":"c"}"#)));
        assert!(!p.matches(None), "a tombstone never matches");
    }

    #[test]
    fn matchers() {
        let v = br#"{"kind":"Gift","n":5,"tags":["a","b"],"id":"AB12","z":null}"#;
        let cases = [
            (r#"{"value": {"id": [{"prefix": "AB"}]}}"#, true),
            (r#"{"value": {"id": [{"prefix": "X"}]}}"#, false),
            (r#"{"value": {"id": [{"suffix": "12"}]}}"#, true),
            (
                r#"{"value": {"kind": [{"equals-ignore-case": "gift"}]}}"#,
                true,
            ),
            (
                r#"{"value": {"n": [{"numeric": [">", 0, "<=", 5]}]}}"#,
                true,
            ),
            (r#"{"value": {"n": [{"numeric": [">", 5]}]}}"#, false),
            (r#"{"value": {"n": [5]}}"#, true),
            (r#"{"value": {"missing": [{"exists": false}]}}"#, true),
            (r#"{"value": {"n": [{"exists": false}]}}"#, false),
            (r#"{"value": {"n": [{"exists": true}]}}"#, true),
            (
                r#"{"value": {"kind": [{"anything-but": ["Page", "Other"]}]}}"#,
                true,
            ),
            (r#"{"value": {"kind": [{"anything-but": "Gift"}]}}"#, false),
            (
                r#"{"value": {"id": [{"anything-but": {"prefix": "AB"}}]}}"#,
                false,
            ),
            (r#"{"value": {"tags": ["b"]}}"#, true),
            (r#"{"value": {"z": [null]}}"#, true),
            (r#"{"value": {"kind": ["Page", "Gift"], "n": [6]}}"#, false),
        ];
        for (p, want) in cases {
            assert_eq!(f(p).matches(Some(v)), want, "{p}");
        }
    }

    #[test]
    fn plain_string_values_and_or_of_filters() {
        let p = f(r#"{"value": [{"prefix": "Hello"}]}"#);
        assert!(p.matches(Some(b"Hello, this is a test.")));
        assert!(!p.matches(Some(b"Bye")));
        let either = FilterCriteria::parse(&[
            r#"{"value": {"a": [1]}}"#.into(),
            r#"{"value": {"b": [2]}}"#.into(),
        ])
        .unwrap();
        assert!(either.matches(Some(br#"{"b":2}"#)));
        assert!(!either.matches(Some(br#"{"a":2}"#)));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (p, why) in [
            ("{", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"key": ["k"]}"#, "on `value` only"),
            (
                r#"{"value": {"a": [{"wildcard": "x*"}]}}"#,
                "unsupported matcher",
            ),
            (r#"{"value": {"a": 1}}"#, "list of matchers"),
        ] {
            let e = FilterCriteria::parse(&[p.into()]).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
