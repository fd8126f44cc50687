//! What the sample events of `events/` must give, shared by this crate's tests and the stack
//! tests (`testing` feature).

/// `offset:error_code` of each record of `events/table-sink-bad.json` that is dead-lettered when no
/// allow-list is set (`SINK_COLUMNS` unset, so the field name of offset 11 is checked), in offset
/// order; offsets 0 and 12 are stored.
pub const BAD_FIXTURE_LETTERS: [&str; 11] = [
    "1:invalid_base64",
    "2:invalid_utf8",
    "3:invalid_json",
    "4:missing_value",
    "5:not_an_object",
    "6:not_an_object",
    "7:missing_key_column",
    "8:missing_key_column",
    "9:invalid_key_column",
    "10:db_bad_request",
    "11:invalid_column_name",
];
