//! Behaviour of the real all-MiniLM-L6-v2 model (`scripts/model` fetches it). Skipped, loudly,
//! when `LOCAL_MODEL_DIR` is unset.

use std::sync::OnceLock;

use local_embedder::LocalEmbedder;

fn embedder() -> Option<&'static LocalEmbedder> {
    static EMBEDDER: OnceLock<Option<LocalEmbedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| match std::env::var_os("LOCAL_MODEL_DIR") {
            Some(dir) if !dir.is_empty() => {
                Some(LocalEmbedder::load(&dir).expect("LOCAL_MODEL_DIR is set but does not load"))
            }
            _ => {
                eprintln!(
                    "SKIPPED: LOCAL_MODEL_DIR is unset; run `export LOCAL_MODEL_DIR=\"$(scripts/model)\"` to test the local embedder"
                );
                None
            }
        })
        .as_ref()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn vectors_have_the_model_dimension_and_unit_length() {
    let Some(e) = embedder() else { return };
    assert_eq!(e.dimensions(), 384);
    let v = e
        .embed(&["A short sentence.", "", "ünïcödé — 日本語のテキスト 🚀"])
        .unwrap();
    assert_eq!(v.len(), 3);
    for vector in &v {
        assert_eq!(vector.len(), 384);
        let norm = cosine(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        assert!(vector.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn a_paraphrase_is_closer_than_an_unrelated_sentence() {
    let Some(e) = embedder() else { return };
    let v = e
        .embed(&[
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Quarterly revenue exceeded the analysts' forecast.",
        ])
        .unwrap();
    let paraphrase = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        paraphrase > unrelated + 0.3,
        "paraphrase {paraphrase} vs unrelated {unrelated}"
    );
    assert!(paraphrase > 0.5, "paraphrase similarity {paraphrase}");
}

#[test]
fn nearest_neighbour_finds_the_matching_topic() {
    let Some(e) = embedder() else { return };
    let docs = [
        "Preheat the oven and bake the bread for forty minutes.",
        "The goalkeeper saved a penalty in the final minute of the match.",
        "Interest rates were raised by the central bank to fight inflation.",
    ];
    let queries = [
        ("how long should I bake a loaf", 0),
        ("football game result", 1),
        ("monetary policy and prices", 2),
    ];
    let d = e.embed(&docs).unwrap();
    for (query, expected) in queries {
        let q = &e.embed(&[query]).unwrap()[0];
        let best = (0..docs.len())
            .max_by(|&a, &b| cosine(q, &d[a]).total_cmp(&cosine(q, &d[b])))
            .unwrap();
        assert_eq!(best, expected, "query {query:?}");
    }
}

#[test]
fn batching_gives_the_same_vectors_as_one_by_one() {
    let Some(e) = embedder() else { return };
    // Different lengths force padding inside a batch; more than one forward pass (32 texts per
    // pass) checks that grouping and reordering keep the order.
    let long = "word ".repeat(400);
    let mut texts: Vec<String> = (0..40)
        .map(|i| format!("Sentence number {i} {}", "and more words ".repeat(i % 7)))
        .collect();
    texts.push(long);
    texts.push(String::new());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = e.embed(&refs).unwrap();
    assert_eq!(batched.len(), refs.len());
    for (i, text) in refs.iter().enumerate() {
        let single = &e.embed(&[text]).unwrap()[0];
        let max_diff = single
            .iter()
            .zip(&batched[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max_diff < 1e-5, "text {i}: max difference {max_diff}");
    }
}

#[test]
fn long_texts_are_truncated_not_rejected() {
    let Some(e) = embedder() else { return };
    let long = "lorem ipsum dolor sit amet ".repeat(500);
    let longer = format!("{long} and a different ending that is past the limit");
    let v = e.embed(&[&long, &longer]).unwrap();
    // Both truncate to the same first max_tokens tokens.
    let diff = v[0]
        .iter()
        .zip(&v[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "difference {diff}");
}

#[test]
fn empty_input_gives_empty_output() {
    let Some(e) = embedder() else { return };
    assert!(e.embed(&[]).unwrap().is_empty());
}
