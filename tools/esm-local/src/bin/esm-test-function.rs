//! Test function for `esm-local`'s own tests, built on `lambda_runtime` like the real ones.
//!
//! Environment:
//! - `ESM_TEST_OUT`: file to append JSON lines to: one `{"kind":"batch",...}` per invocation and
//!   one `{"kind":"stored","partition","offset","value","stored_at_ms"}` per record it acknowledges.
//! - `ESM_TEST_FAIL`: `topic-partition:offset` list; those records are reported in
//!   `batchItemFailures` (with everything after them in their partition left unstored).
//! - `ESM_TEST_FAIL_TIMES`: how many times each listed record fails (default: always).
//! - `ESM_TEST_ERROR_VALUE`: a record whose value equals this makes the whole invocation error.
//! - `ESM_TEST_CRASH_VALUE`: a record whose value equals this aborts the process (once per
//!   marker file `ESM_TEST_OUT.crashed`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

struct Behaviour {
    out: String,
    fail: HashMap<(String, i64), u32>,
    fail_times: Option<u32>,
    error_value: Option<String>,
    crash_value: Option<String>,
}

fn append(path: &str, lines: &[Value]) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut buf, l)?;
        buf.push(b'\n');
    }
    // One write per invocation on an O_APPEND file: lanes share the file safely.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(&buf)
}

async fn handle(b: &Mutex<Behaviour>, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    let records = payload["records"]
        .as_object()
        .ok_or("event has no records object")?;
    let mut b = b.lock().unwrap();
    let mut lines = vec![json!({
        "kind": "batch",
        "request_id": ctx.request_id,
        "event_source": payload["eventSource"],
        "bootstrap_servers": payload["bootstrapServers"],
        "pid": std::process::id(),
        "partitions": records.iter().map(|(k, v)| (k.clone(), json!(v.as_array().map_or(0, Vec::len)))).collect::<serde_json::Map<_, _>>(),
    })];
    let mut failures = Vec::new();
    let mut function_error = None;
    for (key, recs) in records {
        for r in recs.as_array().ok_or("records group is not an array")? {
            let offset = r["offset"].as_i64().ok_or("record without offset")?;
            let value = r["value"]
                .as_str()
                .map(|v| B64.decode(v))
                .transpose()?
                .unwrap_or_default();
            let value = String::from_utf8(value)?;
            if b.crash_value.as_deref() == Some(value.as_str()) {
                let marker = format!("{}.crashed", b.out);
                if std::fs::metadata(&marker).is_err() {
                    std::fs::write(&marker, b"1")?;
                    std::process::abort();
                }
            }
            if b.error_value.as_deref() == Some(value.as_str()) {
                function_error = Some(format!("poison value at {key}@{offset}"));
            }
            let times = b.fail_times;
            if let Some(n) = b.fail.get_mut(&(key.clone(), offset))
                && times.is_none_or(|t| *n < t)
            {
                *n += 1;
                failures.push(json!({"itemIdentifier": {"partition": key, "offset": offset}}));
                break; // the rest of this partition is redelivered anyway
            }
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            lines.push(json!({"kind": "stored", "partition": key, "offset": offset, "value": value, "stored_at_ms": at_ms}));
        }
    }
    if let Some(e) = function_error {
        append(&b.out, &lines[..1])?;
        return Err(e.into());
    }
    append(&b.out, &lines)?;
    Ok(json!({ "batchItemFailures": failures }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let out = std::env::var("ESM_TEST_OUT").map_err(|_| "ESM_TEST_OUT is not set")?;
    let fail = std::env::var("ESM_TEST_FAIL")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (p, o) = s
                .rsplit_once(':')
                .ok_or("ESM_TEST_FAIL entries are partition:offset")?;
            Ok(((p.to_owned(), o.parse::<i64>()?), 0))
        })
        .collect::<Result<HashMap<_, _>, Error>>()?;
    let b = Mutex::new(Behaviour {
        out,
        fail,
        fail_times: std::env::var("ESM_TEST_FAIL_TIMES")
            .ok()
            .map(|v| v.parse())
            .transpose()?,
        error_value: std::env::var("ESM_TEST_ERROR_VALUE").ok(),
        crash_value: std::env::var("ESM_TEST_CRASH_VALUE").ok(),
    });
    let b = &b;
    lambda_runtime::run(service_fn(move |e| handle(b, e))).await
}
