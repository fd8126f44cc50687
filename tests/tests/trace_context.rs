//! W3C trace context from Kafka record headers (lambda_kit::trace): a record's `traceparent` is in
//! the log line about that record, the batch's outbound requests (PostgREST through a recording
//! proxy in front of the real local stack, the embedding provider) carry the batch span, a child
//! of the first traced record's span, and a page's RAG notification (that record's work alone) a
//! child of its own record's span. Its own test binary: it captures logs
//! ([`integration_tests::logs`] says why that must not share a process with other tests).

// The function handlers nest deep futures (runner, PostgREST client, credential refresh).
#![recursion_limit = "256"]

use std::time::Duration;

use event_decoding::KafkaRecord;
use integration_tests::fixtures::pages::{batch, stack, unique, upsert};
use integration_tests::logs::LogCapture;
use integration_tests::servers::embedding::{Api, EmbeddingServer};
use integration_tests::servers::fault_proxy::FaultProxy;
use integration_tests::servers::rag::RagServer;
use lambda_kit::config::Env;
use lambda_kit::retry::Deadline;
use lambda_kit::trace::TraceContext;
use page_embedder::config::Config;

const TP_A: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TS_A: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const TP_B: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TP_D: &str = "00-1f2e3d4c5b6a79881f2e3d4c5b6a7988-0123456789abcdef-00";

#[tokio::test]
async fn traceparent_reaches_the_log_lines_and_every_outbound_request() {
    if stack("traceparent_reaches_the_log_lines_and_every_outbound_request").is_none() {
        return;
    }
    let capture = LogCapture::start(tracing::Level::INFO);

    let rest = FaultProxy::start(&std::env::var("SUPABASE_REST_URL").unwrap()).await;
    let embedder = EmbeddingServer::start(Api::Ollama, "nomic-embed-text", 768).await;
    let rag = RagServer::start().await;
    let env = Env::from_pairs([
        ("SUPABASE_REST_URL", rest.url()),
        (
            "SUPABASE_SERVICE_ROLE_KEY",
            std::env::var("SUPABASE_SERVICE_ROLE_KEY").unwrap(),
        ),
        ("METRICS_ENABLED", "false".into()),
        ("EMBED_PROVIDER", "ollama".into()),
        ("EMBED_BASE_URL", embedder.base_url()),
        ("RAG_REFRESH_URL", rag.url()),
    ]);
    let mut h = Config::load(&env)
        .await
        .unwrap()
        .build()
        .expect("the handler builds");
    let function_name = unique("trace");
    h.function_mut().settings.function_name = function_name.clone();

    let prefix = unique("trace");
    let (page_a, page_c, page_d) = (
        format!("{prefix}-a"),
        format!("{prefix}-c"),
        format!("{prefix}-d"),
    );
    let b = batch(vec![
        upsert(0, &page_a, "A traced page.")
            .with_header("traceparent", TP_A)
            .with_header("tracestate", TS_A),
        // Not JSON: dead-lettered, with a line of its own.
        KafkaRecord::new("cdc.pages", 0, 1, 0)
            .with_key(format!("{prefix}-b"))
            .with_value("not json")
            .with_header("traceparent", TP_B),
        upsert(2, &page_c, "An untraced page."),
        upsert(3, &page_d, "A page of another trace.").with_header("traceparent", TP_D),
    ]);
    let handled = h
        .process(&b, &Deadline::after(Duration::from_secs(20)))
        .await;
    let log = capture.stop();
    assert_eq!(handled.counts.stored, 3, "{:?}", handled.counts);
    assert_eq!(handled.counts.dead_lettered, 1, "{:?}", handled.counts);

    let line = |needle: &str| -> &str {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
    };
    // The rejected record's own context is in its line.
    let rejected = line("record rejected");
    assert!(rejected.contains(TP_B), "{rejected}");
    assert!(rejected.contains("offset=1"), "{rejected}");

    // The batch span: A's trace, a new span id, A's span as parent, B's and D's traces as links.
    let summary = line("batch processed");
    let a = TraceContext::parse(TP_A, None).unwrap();
    assert!(
        summary.contains(&format!("trace_id=\"{}\"", a.trace_id()))
            || summary.contains(&format!("trace_id={}", a.trace_id())),
        "{summary}"
    );
    assert!(summary.contains(&a.span_id()), "parent span: {summary}");
    for link in [
        "0af7651916cd43dd8448eb211c80319c",
        "1f2e3d4c5b6a79881f2e3d4c5b6a7988",
    ] {
        assert!(summary.contains(link), "link {link}: {summary}");
    }
    assert!(summary.contains("linked_traces=2"), "{summary}");
    let span_id = summary
        .split("span_id=")
        .nth(1)
        .map(|rest| {
            rest.trim_start_matches('"')
                .chars()
                .take(16)
                .collect::<String>()
        })
        .unwrap();
    let expected = format!("00-{}-{span_id}-01", a.trace_id());
    assert_ne!(span_id, a.span_id(), "a span of its own");

    // Every outbound request carried it: the embedding calls (with A's tracestate) ...
    let embeds = embedder.with_state(|s| s.trace.clone());
    assert!(!embeds.is_empty());
    for (tp, ts) in &embeds {
        assert_eq!(tp.as_deref(), Some(expected.as_str()));
        assert_eq!(ts.as_deref(), Some(TS_A));
    }
    // ... the RAG notifications: each traced page's in a child span of its own record's (trace
    // and flags kept, a new span id), the untraced page's in the batch span ...
    let rag_calls: std::collections::HashMap<String, Option<String>> =
        rag.traceparents.lock().unwrap().iter().cloned().collect();
    assert_eq!(rag_calls.len(), 3, "{rag_calls:?}");
    assert_eq!(rag_calls[&page_c].as_deref(), Some(expected.as_str()));
    for (page, tp) in [(&page_a, TP_A), (&page_d, TP_D)] {
        let record = TraceContext::parse(tp, None).unwrap();
        let sent = TraceContext::parse(rag_calls[page].as_deref().unwrap(), None).unwrap();
        assert_eq!(sent.trace_id(), record.trace_id(), "{page}");
        assert_eq!(sent.sampled(), record.sampled(), "{page}");
        assert_ne!(
            sent.span_id(),
            record.span_id(),
            "{page}: a span of its own"
        );
        assert_ne!(sent.span_id(), span_id, "{page}: not the batch span");
    }
    // ... and every PostgREST request: page state, vectors, the dead letter.
    let writes = rest.traceparents();
    for table in ["page_vectors", "dead_letters", "page_state"] {
        assert!(
            writes.iter().any(|(path, _)| path.contains(table)),
            "no request to {table}: {writes:?}"
        );
    }
    for (path, tp) in &writes {
        assert_eq!(tp.as_deref(), Some(expected.as_str()), "{path}");
    }
}
