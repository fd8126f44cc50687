//! Protobuf bodies against repeated, nested, recursive, empty and map messages: the first byte
//! picks the message, the rest is the body.
#![no_main]

use std::sync::LazyLock;

use event_decoding::ProtoSchema;
use libfuzzer_sys::fuzz_target;

static SCHEMA: LazyLock<ProtoSchema> = LazyLock::new(|| {
    ProtoSchema::parse(
        r#"syntax = "proto3";
           import "google/protobuf/timestamp.proto";
           message Wide { int64 a = 1; string c = 3; bool d = 4; double e = 5;
                          repeated int32 f = 6; google.protobuf.Timestamp t = 7; }
           message Box { repeated Wide items = 1; repeated Box kids = 2; Box next = 3;
                         map<string, Wide> m = 5; repeated Empty empties = 6; }
           message Empty {}"#,
        &[],
    )
    .expect("a valid schema")
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let _ = SCHEMA.decode(&[i32::from(which % 3)], body);
});
