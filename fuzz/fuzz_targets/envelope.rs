//! The ESM payload reader: any bytes are a batch or an error, and every record of a batch reads
//! its key and value (base64, then JSON) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = event_decoding::KafkaBatch::from_slice(data) {
        for r in batch.records() {
            let _ = r.key();
            let _ = r.value_json::<serde_json::Value>();
        }
    }
});
