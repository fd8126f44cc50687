//! W3C Trace Context (`traceparent`, `tracestate`) carried from Kafka record headers to the logs
//! and to every outbound HTTP request, so one trace runs producer -> function -> store.
//!
//! A producer that traces its sends puts `traceparent` (and maybe `tracestate`) in the record's
//! headers (the OpenTelemetry Kafka instrumentations do). Each record's context is logged with
//! every per-record line the runner writes. The runner's work for a batch is one span: a child of
//! the first traced record's span (same trace id, a new span id, that record's flags and
//! `tracestate`), because the requests it makes (one PostgREST upsert, one embedding call) each
//! serve many records at once. Every request sent through [`crate::http::attempt`] while the
//! batch runs carries that span's `traceparent`/`tracestate`; the summary line names the span, its
//! parent and the other traces of the batch (its links, at most [`MAX_LINKS`] listed).
//!
//! Parsing follows the W3C Trace Context recommendation: version `00` is exactly
//! `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case, ids not all zeros; a
//! higher version (not `ff`) is read by its first four fields. An invalid `traceparent` is ignored
//! (the record is processed untraced), and so is `tracestate` without a valid `traceparent`.
//!
//! Written here rather than with `opentelemetry_sdk`'s `TraceContextPropagator` and
//! `tracing-opentelemetry` (0.33.1 and 0.34.0, released 2026-10 and 2026-09, well kept): the
//! batch span is one span with a parent and links taken from many records, not a `tracing` span
//! per record, and giving `tracing` spans OpenTelemetry ids takes the SDK's tracer as a layer of
//! the subscriber, where the functions use `lambda_runtime`'s default one. Measured 2026-12-07: on a minimal
//! Lambda binary (lambda_runtime, tokio, reqwest with rustls, serde_json; the workspace's release
//! profile) extracting a context and injecting a span's, they add 11 crates (`cargo tree -e
//! normal`; 3 new to the workspace) and +237 KB (5,419,496 -> 5,656,056 bytes, +4.4%); and
//! `extract` from a record's headers took 280 ns a record where [`TraceContext::parse`] took 76
//! (best of 20 rounds of 10,000 records, both in one release binary).
//!
//! ```
//! use lambda_kit::trace::TraceContext;
//! let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let cx = TraceContext::parse(tp, Some("congo=t61rcWkgMzE")).unwrap();
//! assert_eq!(cx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! let child = cx.child();
//! assert_eq!(child.trace_id(), cx.trace_id());
//! assert_ne!(child.span_id(), cx.span_id());
//! assert_eq!(child.tracestate(), Some("congo=t61rcWkgMzE"));
//! assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
//! ```

use std::collections::HashSet;
use std::fmt;
use std::future::Future;

use event_decoding::KafkaRecord;

/// Header names, as the W3C recommendation spells them (Kafka header names are case-sensitive;
/// these are the ones the OpenTelemetry propagators write).
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` passed on (the recommendation asks to propagate at least 512 bytes; a
/// longer one is dropped rather than cut mid-entry).
pub const MAX_TRACESTATE: usize = 512;

/// Most trace ids listed as links in the summary line.
pub const MAX_LINKS: usize = 16;

/// One span context: a trace id, a span id, flags, and the vendors' `tracestate`.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    tracestate: Option<String>,
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl TraceContext {
    /// Parses a `traceparent` header value and an optional `tracestate`; `None` when
    /// `traceparent` is not valid. An invalid or over-long `tracestate` is dropped.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let tp = traceparent.trim_matches([' ', '\t']);
        let b = tp.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        match version {
            0xff => return None,
            0 if b.len() != 55 => return None,
            // A later version may add fields after the flags, separated by '-'.
            _ if b.len() > 55 && b[55] != b'-' => return None,
            _ => {}
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, out) in span_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| valid_tracestate(s))
            .map(str::to_owned);
        Some(Self {
            trace_id,
            span_id,
            flags,
            tracestate,
        })
    }

    /// The context a record's headers carry, if any.
    ///
    /// ```
    /// use event_decoding::KafkaRecord;
    /// use lambda_kit::trace::TraceContext;
    /// let r = KafkaRecord::new("t", 0, 0, 0)
    ///     .with_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert_eq!(TraceContext::from_record(&r).unwrap().span_id(), "00f067aa0ba902b7");
    /// assert!(TraceContext::from_record(&KafkaRecord::new("t", 0, 1, 0)).is_none());
    /// ```
    pub fn from_record(record: &KafkaRecord) -> Option<Self> {
        if record.headers().is_empty() {
            return None;
        }
        let tp = record.header(TRACEPARENT)?.as_str()?;
        let ts = record.header(TRACESTATE).and_then(|h| h.as_str());
        Self::parse(tp, ts)
    }

    /// A new span in the same trace, child of this one: a random span id, the same flags and
    /// `tracestate`.
    pub fn child(&self) -> Self {
        let mut span_id = [0u8; 8];
        while span_id == [0; 8] {
            span_id = fastrand::u64(..).to_be_bytes();
        }
        Self {
            span_id,
            ..self.clone()
        }
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id, 16 lower-case hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// Whether the producer sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The `traceparent` value of this span (always version `00`).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.span_id(),
            self.flags
        )
    }

    /// The `tracestate` passed on, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// Adds `traceparent` (and `tracestate`) to a request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header(TRACEPARENT, self.traceparent());
        match &self.tracestate {
            Some(ts) => request.header(TRACESTATE, ts.as_str()),
            None => request,
        }
    }
}

/// The traces of one batch: each record's context (parsed once) and the batch's span.
#[derive(Debug, Default)]
pub struct BatchTrace {
    records: Vec<Option<TraceContext>>,
    span: Option<TraceContext>,
    parent_span_id: Option<String>,
}

impl BatchTrace {
    /// Reads every record's headers. The batch's span is a child of the first traced record's.
    pub fn of(records: &[KafkaRecord]) -> Self {
        // Most batches carry no headers at all: nothing to parse or keep per record.
        if records.iter().all(|r| r.headers().is_empty()) {
            return Self::default();
        }
        let records: Vec<Option<TraceContext>> =
            records.iter().map(TraceContext::from_record).collect();
        let parent = records.iter().flatten().next();
        Self {
            span: parent.map(TraceContext::child),
            parent_span_id: parent.map(TraceContext::span_id),
            records,
        }
    }

    /// Record `i`'s `traceparent` as its producer sent it (for its log lines).
    pub fn record(&self, i: usize) -> Option<String> {
        self.records.get(i)?.as_ref().map(TraceContext::traceparent)
    }

    /// The batch's span, sent on outbound requests.
    pub fn span(&self) -> Option<&TraceContext> {
        self.span.as_ref()
    }

    /// The span id of the batch span's parent (the first traced record's span).
    pub fn parent_span_id(&self) -> Option<&str> {
        self.parent_span_id.as_deref()
    }

    /// The batch's other traces (distinct trace ids, the span's own excluded), at most
    /// [`MAX_LINKS`], and how many there are in all.
    pub fn links(&self) -> (Vec<String>, usize) {
        let own = self.span.as_ref().map(|s| s.trace_id);
        // A set: a batch of 10,000 records may carry 10,000 traces.
        let mut seen: HashSet<[u8; 16]> = HashSet::new();
        let mut listed = Vec::new();
        for cx in self.records.iter().flatten() {
            if Some(cx.trace_id) != own && seen.insert(cx.trace_id) && listed.len() < MAX_LINKS {
                listed.push(hex(&cx.trace_id));
            }
        }
        (listed, seen.len())
    }

    /// The span contexts of the batch's traced records other than the span's parent, each once
    /// (the span's links when it is exported, see [`crate::otlp`]), at most `max`, and how many
    /// there are in all.
    pub fn linked_spans(&self, max: usize) -> (Vec<&TraceContext>, usize) {
        let parent = self.records.iter().flatten().next();
        let mut seen: HashSet<([u8; 16], [u8; 8])> = HashSet::new();
        if let Some(p) = parent {
            seen.insert((p.trace_id, p.span_id));
        }
        let mut listed = Vec::new();
        let mut total = 0;
        for cx in self.records.iter().flatten() {
            if seen.insert((cx.trace_id, cx.span_id)) {
                total += 1;
                if listed.len() < max {
                    listed.push(cx);
                }
            }
        }
        (listed, total)
    }

    /// Runs `work` with the batch's span as the current context of [`crate::http::attempt`].
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        match &self.span {
            Some(span) => CURRENT.scope(Some(span.clone()), work).await,
            None => work.await,
        }
    }
}

tokio::task_local! {
    /// The span whose context outbound requests carry (set by [`BatchTrace::scope`]).
    static CURRENT: Option<TraceContext>;
}

/// Runs `work` with `cx` as the current context of outbound requests (a function that makes a
/// request for one record's work alone may narrow the batch's span to that record's).
pub async fn in_context<F: Future>(cx: Option<TraceContext>, work: F) -> F::Output {
    CURRENT.scope(cx, work).await
}

/// Adds the current span's headers to `request` (nothing outside a scope).
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match CURRENT.try_with(Clone::clone).ok().flatten() {
        Some(cx) => cx.apply(request),
        None => request,
    }
}

/// The current span's `traceparent`, if any.
pub fn current_traceparent() -> Option<String> {
    CURRENT
        .try_with(|cx| cx.as_ref().map(TraceContext::traceparent))
        .ok()
        .flatten()
}

/// tracestate: list members `key=value` separated by commas (optional spaces/tabs), printable
/// ASCII without `,` and `=` in values, at most 32 members, at most [`MAX_TRACESTATE`] bytes.
fn valid_tracestate(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_TRACESTATE {
        return false;
    }
    let mut members = 0;
    for member in s.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue; // empty list members are allowed
        }
        members += 1;
        let Some((key, value)) = member.split_once('=') else {
            return false;
        };
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.bytes().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
            });
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && value
                .bytes()
                .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
            && !value.ends_with(' ');
        if !key_ok || !value_ok {
            return false;
        }
    }
    members > 0 && members <= 32
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_recommendation_examples_and_round_trips() {
        let cx = TraceContext::parse(TP, None).unwrap();
        assert_eq!(cx.traceparent(), TP);
        assert!(cx.sampled());
        let cx = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            None,
        )
        .unwrap();
        assert!(!cx.sampled());
        // A future version with an extra field is read by its first four.
        let cx = TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            None,
        )
        .unwrap();
        assert_eq!(cx.traceparent(), TP);
    }

    #[test]
    fn rejects_invalid_traceparents() {
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad}");
        }
    }

    #[test]
    fn tracestate_is_kept_only_when_valid() {
        let keep = |ts: &str| {
            TraceContext::parse(TP, Some(ts))
                .unwrap()
                .tracestate()
                .map(str::to_owned)
        };
        assert_eq!(
            keep("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE").as_deref(),
            Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
        );
        assert_eq!(
            keep("fw529a3039@dt=ZmVk,,x=1").as_deref(),
            Some("fw529a3039@dt=ZmVk,,x=1")
        );
        assert_eq!(keep("no-equals"), None);
        assert_eq!(keep("Upper=1"), None);
        assert_eq!(keep("a=b\nc"), None);
        assert_eq!(keep(&format!("a={}", "x".repeat(600))), None);
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(keep(&many.join(",")), None);
    }

    #[test]
    fn batch_span_is_a_child_of_the_first_traced_record_and_links_the_others() {
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let records = vec![
            KafkaRecord::new("t", 0, 0, 0),
            KafkaRecord::new("t", 0, 1, 0)
                .with_header(TRACEPARENT, TP)
                .with_header(TRACESTATE, "congo=t61rcWkgMzE"),
            KafkaRecord::new("t", 0, 2, 0).with_header(TRACEPARENT, other),
            KafkaRecord::new("t", 0, 3, 0).with_header(TRACEPARENT, other),
            KafkaRecord::new("t", 0, 4, 0).with_header(TRACEPARENT, "not a traceparent"),
        ];
        let bt = BatchTrace::of(&records);
        assert_eq!(bt.record(0), None);
        assert_eq!(bt.record(1).as_deref(), Some(TP));
        assert_eq!(bt.record(4), None);
        let span = bt.span().unwrap();
        assert_eq!(span.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(span.span_id(), "00f067aa0ba902b7");
        assert_eq!(span.tracestate(), Some("congo=t61rcWkgMzE"));
        assert_eq!(bt.parent_span_id(), Some("00f067aa0ba902b7"));
        assert_eq!(
            bt.links(),
            (vec!["0af7651916cd43dd8448eb211c80319c".to_owned()], 1)
        );
        let (linked, total) = bt.linked_spans(16);
        assert_eq!(
            total, 1,
            "the parent is not linked, a repeated context once"
        );
        assert_eq!(linked[0].span_id(), "b7ad6b7169203331");
        assert_eq!(bt.linked_spans(0), (vec![], 1));
        assert!(BatchTrace::of(&records[..1]).span().is_none());
    }

    #[tokio::test]
    async fn requests_carry_the_scoped_span_only_inside_the_scope() {
        let bt = BatchTrace::of(&[KafkaRecord::new("t", 0, 0, 0).with_header(TRACEPARENT, TP)]);
        let client = reqwest::Client::new();
        let headers = |r: reqwest::RequestBuilder| r.build().unwrap().headers().clone();
        let outside = headers(propagate(client.get("http://127.0.0.1:1/")));
        assert!(outside.get(TRACEPARENT).is_none());
        let inside = bt
            .scope(async { headers(propagate(client.get("http://127.0.0.1:1/"))) })
            .await;
        assert_eq!(
            inside[TRACEPARENT].to_str().unwrap(),
            bt.span().unwrap().traceparent()
        );
        assert!(inside.get(TRACESTATE).is_none());
        let none = in_context(None, async { current_traceparent() }).await;
        assert_eq!(none, None);
    }
}
