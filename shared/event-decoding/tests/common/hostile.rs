//! The hostile Avro values of issue 20 and the process's peak memory, shared by the memory tests
//! (`tests/bounded_memory*.rs`) and the `hostile_avro` example (through `#[path]`).
#![allow(dead_code)] // each user takes what it needs

/// An array of arrays of nulls: a null takes no byte of the body, so a few bytes a block stand
/// for as many values as the block count says.
pub const NESTED_NULLS: &str = r#"{"type":"array","items":{"type":"array","items":"null"}}"#;

/// Appends an Avro long (zigzag varint).
pub fn long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A Confluent-framed value of [`NESTED_NULLS`] (schema id 1): blocks of `arrays` inner arrays of
/// `nulls` nulls each, as many blocks as it takes for the value to reach `at_least` bytes (one
/// at the least), then the end of the outer array.
pub fn nested_nulls(arrays: i64, nulls: i64, at_least: usize) -> Vec<u8> {
    let mut value = vec![0, 0, 0, 0, 1];
    loop {
        long(arrays, &mut value);
        for _ in 0..arrays {
            long(nulls, &mut value);
            long(0, &mut value);
        }
        if value.len() >= at_least {
            break;
        }
    }
    long(0, &mut value);
    value
}

/// The peak resident set of this process so far (`VmHWM` of `/proc/self/status`, Linux), in
/// bytes: unsafe code is forbidden in the workspace, so no counting allocator.
pub fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<usize>().ok())
        .expect("VmHWM in kB")
        * 1024
}
