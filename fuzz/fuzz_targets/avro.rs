//! Avro bodies against the shapes that expand most: the first byte picks the schema, the rest is
//! the body. Every body ends in a value or an error, within its output budget (a value past it
//! would be an out-of-memory kill, which libFuzzer reports with `-rss_limit_mb`).
#![no_main]

use std::sync::LazyLock;

use event_decoding::AvroSchema;
use libfuzzer_sys::fuzz_target;

static SCHEMAS: LazyLock<Vec<AvroSchema>> = LazyLock::new(|| {
    [
        r#"{"type":"array","items":{"type":"array","items":"null"}}"#,
        r#"{"type":"map","values":{"type":"array","items":{"type":"record","name":"E","fields":[]}}}"#,
        r#"{"type":"record","name":"Tree","fields":[{"name":"kids","type":{"type":"array","items":"Tree"}},{"name":"tag","type":["null","string",{"type":"bytes","logicalType":"decimal","precision":30,"scale":4}]}]}"#,
        r#"{"type":"record","name":"Link","fields":[{"name":"next","type":["null","Link"]},{"name":"j","type":{"type":"string","connect.name":"io.debezium.data.Json"}}]}"#,
        r#"{"type":"array","items":{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data","fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],"connect.name":"io.debezium.data.VariableScaleDecimal"}}"#,
    ]
    .iter()
    .map(|s| AvroSchema::parse(s).expect("a valid schema"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let _ = SCHEMAS[usize::from(which) % SCHEMAS.len()].decode(body);
});
