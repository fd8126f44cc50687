//! `match_page_chunks` (supabase/migrations/*_match_page_chunks.sql) called the way a RAG service
//! calls it: through the API's RPC endpoint with the `postgrest` client library from PyPI (the
//! one supabase-py's `.rpc()` is), installed by `scripts/postgrest-py` into a cached venv. The
//! chunks are rows of this test's own model name among whatever other tests stored, so the
//! filter has to do its job for the nearest page to come back.

use std::io::Write as _;
use std::process::{Command, Stdio};

use integration_tests::stack::{StackEnv, lit, unique};
use serde_json::{Value, json};

/// A unit vector of `dims` dimensions along `axes` (equal weights).
fn along(dims: usize, axes: &[usize]) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    for &a in axes {
        v[a] = 1.0 / (axes.len() as f32).sqrt();
    }
    v
}

fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Runs the calls through `tests/py/rpc_calls.py`; one JSON answer per call.
fn rpc(calls: &Value) -> Vec<Value> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new(format!("{root}/scripts/postgrest-py"))
        .arg(format!("{root}/tests/py/rpc_calls.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/postgrest-py runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(calls.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rpc_calls.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

fn page_ids(answer: &Value) -> Vec<&str> {
    answer["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data expected: {answer}"))
        .iter()
        .map(|row| row["page_id"].as_str().unwrap())
        .collect()
}

#[test]
fn nearest_page_through_the_rpc_endpoint_with_the_client_library() {
    let Some(stack) = StackEnv::get_or_skip("nearest_page_through_the_rpc_endpoint") else {
        return;
    };
    if std::env::var("SUPABASE_ANON_KEY").is_err() {
        eprintln!(
            "\n!!!! SKIPPED nearest_page_through_the_rpc_endpoint: SUPABASE_ANON_KEY unset (scripts/local-stack env exports it) !!!!\n"
        );
        return;
    }
    let model = unique("rpc_model");
    let page = |name: &str| format!("{model}-{name}");
    let insert = |table: &str, id: &str, chunk: i32, v: &[f32], text: &str| {
        stack.sql(&format!(
            "insert into public.{table} (page_id, chunk_index, embedding, content_hash, model, chunk_text) \
             values ({}, {chunk}, '{}', 'h', {}, {})",
            lit(id),
            vector_literal(v),
            lit(&model),
            lit(text)
        ));
    };
    // 768 dimensions (page_vectors): bread along axis 0, football along 1, a page about both.
    insert(
        "page_vectors",
        &page("bread"),
        0,
        &along(768, &[0]),
        "bake the loaf",
    );
    insert(
        "page_vectors",
        &page("football"),
        0,
        &along(768, &[1]),
        "a penalty",
    );
    insert(
        "page_vectors",
        &page("both"),
        0,
        &along(768, &[0, 1]),
        "a cake at the match",
    );
    insert(
        "page_vectors",
        &page("both"),
        1,
        &along(768, &[1, 2]),
        "half time",
    );
    // 384 dimensions (page_vectors_minilm, the in-process model's table).
    insert(
        "page_vectors_minilm",
        &page("cats"),
        0,
        &along(384, &[5]),
        "cats sleep",
    );
    insert(
        "page_vectors_minilm",
        &page("rates"),
        0,
        &along(384, &[6]),
        "interest rates",
    );

    // Near bread, a little towards football.
    let mut query = along(768, &[0]);
    query[1] = 0.2;
    let mine = json!({ "model": model });
    let answers = rpc(&json!([
        {"function": "match_page_chunks", "params": {"query_embedding": query, "match_count": 3, "filter": mine}},
        {"function": "match_page_chunks", "params": {"query_embedding": query, "match_count": 5,
            "filter": {"model": model, "page_id": page("both")}}},
        {"function": "match_page_chunks", "params": {"query_embedding": along(384, &[6]), "match_count": 1, "filter": mine}},
        {"function": "match_page_chunks", "params": {"query_embedding": query, "filter": mine}, "role": "anon"},
        {"function": "match_page_chunks", "params": {"query_embedding": query, "filter": {"modle": model}}},
        {"function": "match_page_chunks", "params": {"query_embedding": along(5, &[0])}},
        {"function": "match_page_chunks", "params": {"query_embedding": query, "match_count": 0}},
    ]));
    // The answers are in hand: remove the fixture before any assertion can stop the test.
    for table in ["page_vectors", "page_vectors_minilm"] {
        stack.sql(&format!(
            "delete from public.{table} where model = {}",
            lit(&model)
        ));
    }

    // Nearest first, among this model's chunks only; similarity is 1 - cosine distance.
    let nearest = &answers[0];
    assert_eq!(
        page_ids(nearest),
        [page("bread"), page("both"), page("football")],
        "{nearest}"
    );
    let rows = nearest["data"].as_array().unwrap();
    let expected = 1.0 / (1.0f64 + 0.04).sqrt(); // cos(query, bread axis)
    let bread = rows[0]["similarity"].as_f64().unwrap();
    assert!((bread - expected).abs() < 1e-4, "{bread} vs {expected}");
    assert_eq!(rows[0]["chunk_text"], "bake the loaf");
    assert_eq!(rows[0]["chunk_index"], 0);
    let sims: Vec<f64> = rows
        .iter()
        .map(|r| r["similarity"].as_f64().unwrap())
        .collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{sims:?}");

    // Filter by page: its two chunks, the nearer one first.
    let both = answers[1]["data"].as_array().unwrap();
    let chunks: Vec<i64> = both
        .iter()
        .map(|r| r["chunk_index"].as_i64().unwrap())
        .collect();
    assert_eq!(chunks, [0, 1], "{}", answers[1]);

    // A 384-dimension query searches the in-process model's table.
    assert_eq!(page_ids(&answers[2]), [page("rates")]);

    // The anon key may not call it; mistakes are named errors, not empty answers.
    assert_eq!(answers[3]["error"]["code"], "42501", "{}", answers[3]);
    assert_eq!(answers[4]["error"]["code"], "22023", "{}", answers[4]);
    assert!(
        answers[4]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("modle"),
        "{}",
        answers[4]
    );
    assert_eq!(answers[5]["error"]["code"], "22000", "{}", answers[5]);
    assert_eq!(answers[6]["error"]["code"], "22023", "{}", answers[6]);
}
