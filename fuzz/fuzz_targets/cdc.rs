//! CDC envelopes: the bytes as a record's JSON value (Debezium, flattened, Cassandra shapes), and
//! as a Confluent-framed Avro Debezium envelope whose row holds a `VariableScaleDecimal`.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use event_decoding::{DataFormat, Decoding, KafkaRecord, ValueFormat, WriterSchema};
use libfuzzer_sys::fuzz_target;

static SCHEMAS: LazyLock<HashMap<String, Arc<WriterSchema>>> = LazyLock::new(|| {
    let envelope = r#"{"type":"record","name":"Envelope","namespace":"pg.public.pages","fields":[
      {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
        {"name":"page_id","type":"long"},
        {"name":"weight","type":["null",{"type":"record","name":"VariableScaleDecimal","namespace":"io.debezium.data",
          "fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}],
          "connect.name":"io.debezium.data.VariableScaleDecimal"}]}]}]},
      {"name":"after","type":["null","Value"]},
      {"name":"op","type":"string"}]}"#;
    let schema = WriterSchema::parse(DataFormat::Avro, envelope, &[]).expect("a valid schema");
    HashMap::from([("1".to_string(), Arc::new(schema))])
});

fuzz_target!(|data: &[u8]| {
    let json = KafkaRecord::new("t", 0, 0, 0).with_value(data.to_vec());
    let _ = json.change();
    let mut framed = vec![0, 0, 0, 0, 1];
    framed.extend_from_slice(data);
    let avro = KafkaRecord::new("t", 0, 0, 0).with_value(framed);
    let _ = avro.change_via(Decoding::new(ValueFormat::Avro, &*SCHEMAS));
});
