//! The runner's lifecycle over fake functions: grouping and fates for each [`Keep`], judging a
//! write's refusals, dead letters, the batch span's export and the metrics line.

use std::sync::Mutex;
use std::time::Duration;

use event_decoding::{EventSource, KafkaBatch, KafkaRecord};

use super::{BatchFunction, Decoded, Handled, Keep, Runner};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::fate::{Fate, Fault};
use crate::metrics::Metrics;
use crate::otlp::OtlpExporter;
use crate::retry::{Deadline, DeadlineSettings};

/// Values are `"<key>:<what>"`; `what` is `ok`, `bad` (rejected at write), `down` (failed
/// transiently at write), `junk` (rejected at decode) or `poison` (refuses the whole write:
/// every item of a write holding it is rejected alike, as a read of all the batch's ids
/// refused for one of them). `short` makes write return one fate too few.
struct Fake {
    short: bool,
    written: Mutex<Vec<String>>,
}

impl BatchFunction for Fake {
    type Key = String;
    type Item = String;
    type Stats = usize;
    type AfterSettled = ();
    fn keep(&self) -> Keep {
        Keep::First
    }
    fn name(&self) -> &str {
        "fake"
    }
    fn decode(&self, record: &KafkaRecord, _: &mut usize) -> Decoded<String, String> {
        let text = record.value_str().unwrap().unwrap_or_default();
        match text.split_once(':') {
            Some((_, "junk")) | None => {
                Decoded::Settled(Fate::rejected("junk", "not a key:what pair"))
            }
            Some((key, _)) => Decoded::Item {
                key: key.to_owned(),
                item: text,
            },
        }
    }
    async fn write(
        &self,
        _: &Deadline,
        items: Vec<(String, String)>,
        calls: &mut usize,
        _: &mut (),
    ) -> Vec<Fate> {
        *calls += 1;
        if items.iter().any(|(_, item)| item.ends_with(":poison")) {
            return vec![Fate::rejected("db_bad_request", "batch read refused"); items.len()];
        }
        let mut fates: Vec<Fate> = items
            .iter()
            .map(|(_, item)| {
                self.written.lock().unwrap().push(item.clone());
                match item.split_once(':').unwrap().1 {
                    "bad" => Fate::rejected("bad_item", "refused"),
                    "down" => Fate::Failed {
                        code: "down",
                        message: "503".into(),
                        fault: Fault::Transient,
                    },
                    _ => Fate::Stored,
                }
            })
            .collect();
        if self.short {
            fates.pop();
        }
        fates
    }
}

/// The same function keeping the last item of a key.
struct LastFake(Fake);

impl BatchFunction for LastFake {
    type Key = String;
    type Item = String;
    type Stats = usize;
    type AfterSettled = ();
    fn keep(&self) -> Keep {
        Keep::Last
    }
    fn name(&self) -> &str {
        "fake"
    }
    fn decode(&self, record: &KafkaRecord, stats: &mut usize) -> Decoded<String, String> {
        self.0.decode(record, stats)
    }
    /// A change marked `old` (a replay of an earlier version) never replaces another.
    fn supersedes(&self, new: &String, _: &String) -> bool {
        !new.ends_with(":old")
    }
    async fn write(
        &self,
        d: &Deadline,
        items: Vec<(String, String)>,
        calls: &mut usize,
        _: &mut (),
    ) -> Vec<Fate> {
        self.0.write(d, items, calls, &mut ()).await
    }
}

/// The same function writing every record of a key; its write leaves the items it was given
/// for `after_settled`, which keeps them in `settled`.
struct AllFake(Fake, Mutex<Vec<Vec<String>>>);

impl BatchFunction for AllFake {
    type Key = String;
    type Item = String;
    type Stats = usize;
    type AfterSettled = Vec<String>;
    fn keep(&self) -> Keep {
        Keep::All
    }
    fn name(&self) -> &str {
        "fake"
    }
    fn decode(&self, record: &KafkaRecord, stats: &mut usize) -> Decoded<String, String> {
        self.0.decode(record, stats)
    }
    async fn write(
        &self,
        d: &Deadline,
        items: Vec<(String, String)>,
        calls: &mut usize,
        after: &mut Vec<String>,
    ) -> Vec<Fate> {
        after.extend(items.iter().map(|(_, item)| item.clone()));
        self.0.write(d, items, calls, &mut ()).await
    }
    async fn after_settled(&self, _: &Deadline, after: Vec<String>, _: &mut usize) {
        self.1.lock().unwrap().push(after);
    }
}

/// Stores letters, except those of the given offsets (refused) and past `limit` (missing).
#[derive(Default)]
struct Letters {
    refuse: Vec<i64>,
    limit: Option<usize>,
    seen: Mutex<Vec<(i64, String)>>,
}

impl DeadLetterSink for Letters {
    async fn write(&self, _: &Deadline, letters: &[DeadLetter]) -> Vec<Fate> {
        let mut seen = self.seen.lock().unwrap();
        let mut out = Vec::new();
        for l in letters.iter().take(self.limit.unwrap_or(usize::MAX)) {
            seen.push((l.record.offset, l.error_code.clone()));
            out.push(if self.refuse.contains(&l.record.offset) {
                Fate::Failed {
                    code: "db_unavailable",
                    message: "503".into(),
                    fault: Fault::Transient,
                }
            } else {
                Fate::Stored
            });
        }
        out
    }
}

fn fake(short: bool) -> Fake {
    Fake {
        short,
        written: Mutex::default(),
    }
}

fn batch(values: &[&str]) -> KafkaBatch {
    KafkaBatch::builder(EventSource::Msk)
        .records(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| KafkaRecord::new("t", 0, i as i64, 0).with_value(*v)),
        )
        .build()
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(5))
}

fn failed_offsets(h: &Handled<usize>) -> Vec<i64> {
    let mut v: Vec<i64> = h
        .response
        .as_ref()
        .unwrap()
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.offset)
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn first_wins_duplicates_follow_the_first_record() {
    let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
    let b = batch(&["a:ok", "b:bad", "a:ok", "b:bad", "c:junk", "d:down", "d:ok"]);
    let h = r.process(&b, &deadline()).await;
    assert_eq!(h.stats, 1, "one write call");
    assert_eq!(
        *r.function().written.lock().unwrap(),
        ["a:ok", "b:bad", "d:down"],
        "one item per key, the first"
    );
    assert_eq!(h.counts.stored, 1);
    assert_eq!(h.counts.skipped, 1, "the duplicate of a stored record");
    assert_eq!(h.counts.dead_lettered, 3, "b twice and the junk record");
    assert_eq!(
        failed_offsets(&h),
        [5, 6],
        "d failed, its duplicate with it"
    );
    let letters = r.dead_letters().seen.lock().unwrap().clone();
    assert_eq!(
        letters,
        [
            (1, "bad_item".into()),
            (3, "bad_item".into()),
            (4, "junk".into())
        ]
    );
}

#[tokio::test]
async fn last_wins_superseded_records_share_the_fate_or_are_skipped() {
    let r = Runner::new(
        LastFake(fake(false)),
        Letters::default(),
        DeadlineSettings::default(),
    );
    let b = batch(&["a:bad", "a:ok", "b:ok", "b:bad", "c:ok", "c:down"]);
    let h = r.process(&b, &deadline()).await;
    assert_eq!(
        *r.function().0.written.lock().unwrap(),
        ["a:ok", "b:bad", "c:down"]
    );
    assert_eq!(h.counts.stored, 2, "a's two records");
    assert_eq!(h.counts.skipped, 1, "b's superseded record");
    assert_eq!(h.counts.dead_lettered, 1, "only b's last record");
    assert_eq!(failed_offsets(&h), [4, 5]);
    assert_eq!(
        *r.dead_letters().seen.lock().unwrap(),
        [(3, "bad_item".to_string())]
    );
}

#[tokio::test]
async fn keep_all_writes_every_record_of_a_key_in_offset_order_each_with_its_own_fate() {
    let r = Runner::new(
        AllFake(fake(false), Mutex::default()),
        Letters::default(),
        DeadlineSettings::default(),
    );
    // Partition 1 is given first: the write still sees a key's records in partition/offset
    // order, a key's items adjacent, keys in order of their first record.
    let at = |p: i32, o: i64, v: &str| KafkaRecord::new("t", p, o, 0).with_value(v);
    let b = KafkaBatch::builder(EventSource::Msk)
        .records([
            at(1, 0, "a:down"),
            at(0, 0, "a:ok"),
            at(0, 1, "b:ok"),
            at(0, 2, "a:bad"),
            at(0, 3, "c:junk"),
            at(0, 4, "a:ok"),
            at(1, 1, "b:bad"),
        ])
        .build();
    let h = r.process(&b, &deadline()).await;
    assert_eq!(h.stats, 1, "one write call");
    let given = ["a:ok", "a:bad", "a:ok", "a:down", "b:ok", "b:bad"];
    assert_eq!(*r.function().0.written.lock().unwrap(), given);
    assert_eq!(h.counts.stored, 3, "a's two good records and b's");
    assert_eq!(h.counts.skipped, 0, "nothing superseded, no duplicate");
    assert_eq!(
        h.counts.dead_lettered, 3,
        "a's and b's bad records, the junk one"
    );
    let failed: Vec<(i32, i64)> = h
        .response
        .unwrap()
        .batch_item_failures
        .iter()
        .map(|f| {
            (
                f.item_identifier.partition.clone(),
                f.item_identifier.offset,
            )
        })
        .map(|(tp, o)| (tp.rsplit_once('-').unwrap().1.parse().unwrap(), o))
        .collect();
    assert_eq!(
        failed,
        [(1, 0)],
        "only a's failed record, no other of its key"
    );
    let mut letters = r.dead_letters().seen.lock().unwrap().clone();
    letters.sort();
    assert_eq!(
        letters,
        [
            (1, "bad_item".into()),
            (2, "bad_item".into()),
            (3, "junk".into())
        ]
    );
    assert_eq!(
        *r.function().1.lock().unwrap(),
        [given.map(String::from).to_vec()],
        "what the write left reaches after_settled"
    );

    // Nothing to write: no write call, and after_settled gets the default.
    let h = r.process(&batch(&["x:junk"]), &deadline()).await;
    assert_eq!(h.stats, 0);
    assert_eq!(
        r.function().1.lock().unwrap().last().unwrap(),
        &Vec::<String>::new()
    );
}

#[tokio::test]
async fn every_item_refused_alike_is_an_environment_fault_not_dead_letters() {
    let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
    let h = r
        .process(&batch(&["a:bad", "b:bad", "c:junk"]), &deadline())
        .await;
    assert_eq!(failed_offsets(&h), [0, 1], "redelivered, not dead-lettered");
    assert_eq!(
        h.counts.dead_lettered, 1,
        "only the record that failed to decode"
    );
    assert_eq!(
        *r.dead_letters().seen.lock().unwrap(),
        [(2, "junk".to_string())]
    );

    // One item alone, or refusals that differ, are the rows' own fault.
    let h = r.process(&batch(&["a:bad", "b:ok"]), &deadline()).await;
    assert_eq!(h.counts.dead_lettered, 1);
    let h = r.process(&batch(&["d:bad"]), &deadline()).await;
    assert_eq!(h.counts.dead_lettered, 1);
}

#[tokio::test]
async fn records_of_one_key_refused_alike_are_dead_lettered_not_blamed_on_the_target() {
    // Keep::All: a bad row and its retried copy, alone in a batch, are refused alike; one key's
    // rows say nothing about the target, and judged as its fault they would come back forever.
    let r = Runner::new(
        AllFake(fake(false), Mutex::default()),
        Letters::default(),
        DeadlineSettings::default(),
    );
    let h = r.process(&batch(&["a:bad", "a:bad"]), &deadline()).await;
    assert_eq!(h.counts.dead_lettered, 2);
    assert!(h.response.unwrap().batch_item_failures.is_empty());
    // Two keys refused alike still point at the target.
    let h = r.process(&batch(&["a:bad", "b:bad"]), &deadline()).await;
    assert_eq!(h.counts.dead_lettered, 0);
    assert_eq!(h.response.unwrap_err().failed, 2);
}

#[tokio::test]
async fn a_write_is_made_once_and_a_refusal_of_every_item_judged_without_writing_again() {
    let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
    // Every item refused alike: the target is at fault, nothing is dead-lettered, and the
    // items are not written again (isolating is the write's own job, done where the requests
    // are made: a function whose write embeds first would embed them all again).
    let h = r
        .process(&batch(&["x:poison", "y:poison", "z:poison"]), &deadline())
        .await;
    assert_eq!(h.stats, 1, "one write call");
    assert_eq!(h.counts.dead_lettered, 0);
    assert_eq!(h.response.unwrap_err().failed, 3, "redelivered");

    let values: Vec<String> = (0..8).map(|i| format!("k{i}:bad")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let h = r.process(&batch(&values), &deadline()).await;
    assert_eq!(h.stats, 1, "one write call");
    assert_eq!(h.counts.dead_lettered, 0);
    assert_eq!(h.response.unwrap_err().failed, 8);
}

#[tokio::test]
async fn a_replayed_older_change_does_not_replace_the_newer_one() {
    let r = Runner::new(
        LastFake(fake(false)),
        Letters::default(),
        DeadlineSettings::default(),
    );
    let h = r
        .process(&batch(&["a:ok", "a:old", "b:down", "b:old"]), &deadline())
        .await;
    assert_eq!(*r.function().0.written.lock().unwrap(), ["a:ok", "b:down"]);
    assert_eq!(
        h.counts.stored, 2,
        "a's newer change and the replay it supersedes"
    );
    assert_eq!(
        failed_offsets(&h),
        [2, 3],
        "b failed: its replay is not acknowledged ahead of it"
    );
}

#[tokio::test]
async fn a_missing_write_result_is_a_failure_not_an_acknowledgement() {
    let r = Runner::new(fake(true), Letters::default(), DeadlineSettings::default());
    let h = r.process(&batch(&["a:ok", "b:ok"]), &deadline()).await;
    assert_eq!(h.counts.stored, 1);
    assert_eq!(failed_offsets(&h), [1]);
}

#[tokio::test]
async fn a_dead_letter_not_stored_or_not_answered_fails_its_record() {
    let letters = Letters {
        refuse: vec![0],
        limit: Some(2),
        ..Letters::default()
    };
    let r = Runner::new(fake(false), letters, DeadlineSettings::default());
    let h = r
        .process(&batch(&["x", "y", "z", "a:ok"]), &deadline())
        .await;
    // 0 refused, 1 stored, 2 never answered by the sink.
    assert_eq!(h.counts.dead_lettered, 1);
    assert_eq!(failed_offsets(&h), [0, 2]);
}

#[tokio::test]
async fn every_record_failed_is_all_failed_and_empty_batch_writes_nothing() {
    let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
    let h = r.process(&batch(&["a:down", "b:down"]), &deadline()).await;
    assert_eq!(h.response.unwrap_err().failed, 2);

    let h = r.process(&batch(&[]), &deadline()).await;
    assert_eq!(h.stats, 0, "no write call for an empty batch");
    assert!(h.response.unwrap().batch_item_failures.is_empty());
}

fn traced(values: &[&str]) -> KafkaBatch {
    let tps = [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ];
    KafkaBatch::builder(EventSource::Msk)
        .records(values.iter().enumerate().map(|(i, v)| {
            KafkaRecord::new("gifts", 0, i as i64, 0)
                .with_value(*v)
                .with_header(crate::trace::TRACEPARENT, tps[i % 2])
        }))
        .build()
}

fn otlp_to(url: &str) -> OtlpExporter {
    let env = crate::config::Env::from_pairs([
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url),
    ]);
    OtlpExporter::from_env(&env, "fake").unwrap().unwrap()
}

#[tokio::test]
async fn a_traced_batch_exports_one_span_when_enabled() {
    let server = crate::testing::MockServer::start(vec![(200, vec![], "{}".into())]).await;
    let b = traced(&["a:ok", "b:down", "c:ok"]);

    // Off (the default): nothing is sent.
    let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
    r.process(&b, &deadline()).await;
    assert!(server.requests().is_empty());

    let r = r.with_otlp(Some(otlp_to(&server.url())));
    let before = std::time::SystemTime::now();
    let h = r.process(&b, &deadline()).await;
    assert_eq!(failed_offsets(&h), [1]);
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "one request per batch");
    assert!(seen[0].head.starts_with("POST /v1/traces "));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans.as_array().unwrap().len(), 1);
    let span = &spans[0];
    assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["kind"], 5);
    assert_eq!(span["status"]["code"], 2, "a record failed");
    assert_eq!(span["links"][0]["spanId"], "b7ad6b7169203331");
    let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let before = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(before <= start && start <= end, "{before} {start} {end}");
    assert_eq!(
        body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "fake"
    );

    // An untraced batch sends nothing.
    r.process(&batch(&["z:ok"]), &deadline()).await;
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_collector_down_or_failing_does_not_change_the_result() {
    let b = traced(&["a:ok", "b:bad", "c:down"]);
    let plain = Runner::new(fake(false), Letters::default(), DeadlineSettings::default());
    let expected = failed_offsets(&plain.process(&b, &deadline()).await);
    assert_eq!(expected, [2]);

    let failing = crate::testing::MockServer::start(vec![(500, vec![], "no".into())]).await;
    let port = crate::testing::unused_port();
    for url in [failing.url(), format!("http://127.0.0.1:{port}")] {
        let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default())
            .with_otlp(Some(otlp_to(&url)));
        let h = r.process(&b, &deadline()).await;
        assert_eq!(failed_offsets(&h), expected, "{url}");
        assert_eq!((h.counts.stored, h.counts.dead_lettered), (1, 1));
    }
    assert_eq!(failing.requests().len(), 1, "no retry");
}

#[tokio::test]
async fn metrics_line_has_the_batch_counts() {
    let (metrics, lines) = Metrics::capture("KafkaLambdas", "fake");
    let r = Runner::new(fake(false), Letters::default(), DeadlineSettings::default())
        .with_metrics(metrics);
    r.process(&batch(&["a:ok", "b:bad", "c:down"]), &deadline())
        .await;
    let docs = lines.documents();
    assert_eq!(docs.len(), 1);
    crate::metrics::check_emf(&docs[0]).unwrap();
    assert_eq!(docs[0]["RecordsReceived"], 3);
    assert_eq!(docs[0]["RecordsStored"], 1);
    assert_eq!(docs[0]["RecordsDeadLettered"], 1);
    assert_eq!(docs[0]["RecordsFailed"], 1);
}
