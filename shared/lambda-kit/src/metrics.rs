//! Per-invocation metrics as one CloudWatch Embedded Metric Format (EMF) line on stdout.
//!
//! EMF needs no client and no permission beyond the log group: CloudWatch Logs extracts the
//! metrics from any log event that follows the EMF specification, and Lambda sends everything
//! the function writes to stdout to CloudWatch Logs ("Using the embedded metric format with
//! Lambda", CloudWatch user guide). With the function's `LoggingConfig` set to `LogFormat: JSON`
//! the extraction still works: a custom runtime's stdout lines reach the log group unchanged, so
//! an EMF JSON object printed as one line stays an EMF log event (the metric loss the AWS docs
//! warn about with JSON logs concerns Node.js `console.log` wrapping, fixed in their EMF client
//! 4.1.1; we write the line ourselves and never through `tracing`, which would wrap it).
//!
//! Document shape (specification "Embedded metric format document structure"):
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"KafkaLambdas",
//!   "Dimensions":[["FunctionName","service"]],"Metrics":[{"Name":"RecordsReceived","Unit":"Count"},
//!   {"Name":"ColdStart","Unit":"Count"}]}]},
//!  "FunctionName":"gift-persister","service":"kafka-lambdas","RecordsReceived":3,"ColdStart":1}
//! ```
//!
//! Settings: `METRICS_ENABLED` (default `true`; `false`/`0`/`no`/`off` disable),
//! `METRICS_NAMESPACE` (default [`DEFAULT_NAMESPACE`]), dimension `FunctionName` from
//! `AWS_LAMBDA_FUNCTION_NAME`, else the binary name, and dimension `service` from
//! `METRICS_SERVICE` (default [`DEFAULT_SERVICE`]; the template sets the stack name), one
//! dimension set with both, so an alarm or a dashboard names both.
//!
//! `ColdStart` is 1 on the first line a process emits and 0 on every later one: its `Sum` counts
//! cold starts, its `Average` is the share of invocations that were one.
//!
//! Written here rather than with `metrics_cloudwatch_embedded` (0.10.0, released 2026-02-10, one
//! maintainer), the EMF backend of the `metrics` facade. It is a process-wide recorder
//! (`metrics::set_global_recorder`, once per process), where a [`Metrics`] is a value each
//! handler holds and a test captures on its own (`Metrics::capture`, `testing` feature; the
//! integration tests run several functions in one process); it leaves out a metric that did not
//! change unless `emit_zeros` is set, and its cold-start metric is 1 on the cold start only, not
//! the 1-then-0 above whose `Average` is a share. Measured 2026-12-07 on a minimal Lambda binary
//! (lambda_runtime, tokio, reqwest with rustls, serde_json; the workspace's release profile)
//! emitting one line, with and without it and `metrics`: 4 more crates (`cargo tree -e normal`;
//! 3 new to the workspace) and +188 KB (5,419,496 -> 5,607,488 bytes, +3.5%), for what is one
//! `serde_json` document here.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use event_decoding::{Counts, KafkaRecord};
use serde_json::{Map, Value, json};

use crate::config::{ConfigError, Env};

/// Namespace used when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "KafkaLambdas";

/// The function's dimension, on every metric.
pub const DIMENSION: &str = "FunctionName";

/// The service's dimension, on every metric (the Powertools for AWS Lambda convention).
pub const SERVICE_DIMENSION: &str = "service";

/// `service` when `METRICS_SERVICE` is not set.
pub const DEFAULT_SERVICE: &str = "kafka-lambdas";

/// EMF allows at most 100 metrics per directive.
const MAX_METRICS: usize = 100;

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unit {
    /// A count of things.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
}

impl Unit {
    /// The CloudWatch spelling.
    ///
    /// ```
    /// assert_eq!(lambda_kit::metrics::Unit::Milliseconds.as_str(), "Milliseconds");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// The metric values of one invocation, in insertion order; a name set twice keeps the last.
///
/// ```
/// use lambda_kit::metrics::{MetricSet, Unit};
/// let mut m = MetricSet::new();
/// m.count("RecordsReceived", 3).millis("Duration", 12);
/// assert_eq!(m.get("RecordsReceived"), Some((Unit::Count, 3)));
/// assert_eq!(m.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricSet {
    values: Vec<(&'static str, Unit, u64)>,
}

impl MetricSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The common metrics of a Kafka batch: `RecordsReceived`, `RecordsStored`,
    /// `RecordsSkipped`, `RecordsDeadLettered`, `RecordsFailed`, `Duration` and, when the batch
    /// has records, `BatchAge` (now minus the oldest record timestamp).
    ///
    /// ```
    /// use event_decoding::Counts;
    /// use lambda_kit::metrics::MetricSet;
    /// let counts = Counts { stored: 2, failed: 1, ..Counts::default() };
    /// let m = MetricSet::for_batch(&[], &counts, 7, 1_000);
    /// assert_eq!(m.get("RecordsFailed").unwrap().1, 1);
    /// assert_eq!(m.get("BatchAge"), None);
    /// ```
    pub fn for_batch(
        records: &[KafkaRecord],
        counts: &Counts,
        duration_ms: u64,
        now_ms: i64,
    ) -> Self {
        let mut m = Self::new();
        m.count("RecordsReceived", records.len() as u64)
            .count("RecordsStored", counts.stored as u64)
            .count("RecordsSkipped", counts.skipped as u64)
            .count("RecordsDeadLettered", counts.dead_lettered as u64)
            .count("RecordsFailed", counts.failed as u64)
            .millis("Duration", duration_ms);
        if let Some(age) = batch_age_ms(records, now_ms) {
            m.millis("BatchAge", age);
        }
        m
    }

    /// Sets a count.
    pub fn count(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.set(name, Unit::Count, value)
    }

    /// Sets a duration in milliseconds.
    pub fn millis(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.set(name, Unit::Milliseconds, value)
    }

    fn set(&mut self, name: &'static str, unit: Unit, value: u64) -> &mut Self {
        match self.values.iter_mut().find(|(n, _, _)| *n == name) {
            Some(slot) => *slot = (name, unit, value),
            None => self.values.push((name, unit, value)),
        }
        self
    }

    /// Unit and value of `name`.
    pub fn get(&self, name: &str) -> Option<(Unit, u64)> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(_, u, v)| (u, v))
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// `true` when no metric is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Milliseconds between the oldest record timestamp and `now_ms` (0 when the clock is behind the
/// broker's); `None` for an empty batch or one whose records carry no timestamp (Kafka's `-1`, or
/// `0` from producers that never set one: an age of 56 years would only poison the metric).
///
/// ```
/// assert_eq!(lambda_kit::metrics::batch_age_ms(&[], 5), None);
/// ```
pub fn batch_age_ms(records: &[KafkaRecord], now_ms: i64) -> Option<u64> {
    let oldest = records
        .iter()
        .map(|r| r.timestamp)
        .filter(|&ts| ts > 0)
        .min()?;
    Some(u64::try_from(now_ms.saturating_sub(oldest)).unwrap_or(0))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Inner {
    namespace: String,
    function_name: String,
    service: String,
    /// No line emitted yet: the next one is the cold start's.
    cold: AtomicBool,
    sink: Mutex<Box<dyn Write + Send>>,
}

/// Where EMF lines go; cheap to clone. [`Metrics::disabled`] (also the `Default`) emits nothing.
///
/// ```
/// use lambda_kit::metrics::{Metrics, MetricSet};
/// let (metrics, lines) = Metrics::capture("KafkaLambdas", "gift-persister");
/// let mut m = MetricSet::new();
/// m.count("RecordsReceived", 2);
/// metrics.emit(&m);
/// let doc: serde_json::Value = serde_json::from_str(&lines.lines()[0]).unwrap();
/// assert_eq!(doc["RecordsReceived"], 2);
/// assert_eq!(doc["FunctionName"], "gift-persister");
/// ```
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Metrics(disabled)"),
            Some(i) => f
                .debug_struct("Metrics")
                .field("namespace", &i.namespace)
                .field("function_name", &i.function_name)
                .field("service", &i.service)
                .finish_non_exhaustive(),
        }
    }
}

impl Metrics {
    /// Emits nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// From `METRICS_ENABLED`, `METRICS_NAMESPACE`, `METRICS_SERVICE` and
    /// `AWS_LAMBDA_FUNCTION_NAME` (else `binary_name`), writing to stdout.
    ///
    /// ```
    /// use lambda_kit::{config::Env, metrics::Metrics};
    /// let m = Metrics::from_env(&Env::from_pairs([("METRICS_ENABLED", "false")]), "x").unwrap();
    /// assert!(!m.is_enabled());
    /// assert!(Metrics::from_env(&Env::from_pairs([("METRICS_ENABLED", "maybe")]), "x").is_err());
    /// ```
    pub fn from_env(env: &Env, binary_name: &str) -> Result<Self, ConfigError> {
        let enabled = match env.get("METRICS_ENABLED") {
            None => true,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::new(
                        "METRICS_ENABLED",
                        "expected true or false",
                    ));
                }
            },
        };
        if !enabled {
            return Ok(Self::disabled());
        }
        let namespace = env.string_or("METRICS_NAMESPACE", DEFAULT_NAMESPACE);
        let namespace = namespace.trim();
        // CloudWatch namespaces: 1-255 characters, none of them a control character, and not
        // starting with "AWS/" (reserved).
        if namespace.is_empty() || namespace.len() > 255 {
            return Err(ConfigError::new(
                "METRICS_NAMESPACE",
                "must be 1 to 255 characters",
            ));
        }
        if namespace.starts_with("AWS/") || namespace.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "METRICS_NAMESPACE",
                "must not start with AWS/ nor contain control characters",
            ));
        }
        let service = env.string_or("METRICS_SERVICE", DEFAULT_SERVICE);
        let service = service.trim();
        // A dimension value: 1-1024 characters, not only whitespace, no control characters
        // (CloudWatch `Dimension`).
        if service.is_empty() || service.len() > 1024 || service.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "METRICS_SERVICE",
                "must be 1 to 1024 characters without control characters",
            ));
        }
        let function_name = env
            .get("AWS_LAMBDA_FUNCTION_NAME")
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| binary_name.to_owned());
        Ok(Self::build(
            namespace,
            &function_name,
            service,
            Box::new(std::io::stdout()),
        ))
    }

    /// Writes to `sink` (stdout in Lambda, a buffer in tests), with the default `service`.
    pub fn with_sink(
        namespace: &str,
        function_name: &str,
        sink: impl Write + Send + 'static,
    ) -> Self {
        Self::build(namespace, function_name, DEFAULT_SERVICE, Box::new(sink))
    }

    fn build(
        namespace: &str,
        function_name: &str,
        service: &str,
        sink: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                namespace: namespace.to_owned(),
                function_name: function_name.to_owned(),
                service: service.to_owned(),
                cold: AtomicBool::new(true),
                sink: Mutex::new(sink),
            })),
        }
    }

    /// Writes to a buffer that the returned [`Captured`] reads (tests; `testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub fn capture(namespace: &str, function_name: &str) -> (Self, Captured) {
        let captured = Captured::default();
        (
            Self::with_sink(namespace, function_name, captured.clone()),
            captured,
        )
    }

    /// Whether anything is emitted.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The EMF document of `set` at `timestamp_ms`, `None` when disabled.
    pub fn document(&self, set: &MetricSet, timestamp_ms: i64) -> Option<Value> {
        let inner = self.inner.as_ref()?;
        let definitions: Vec<Value> = set
            .values
            .iter()
            .take(MAX_METRICS)
            .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.as_str() }))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": inner.namespace,
                    "Dimensions": [[DIMENSION, SERVICE_DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert(DIMENSION.into(), Value::from(inner.function_name.clone()));
        root.insert(SERVICE_DIMENSION.into(), Value::from(inner.service.clone()));
        for (name, _, value) in set.values.iter().take(MAX_METRICS) {
            root.insert((*name).into(), Value::from(*value));
        }
        Some(Value::Object(root))
    }

    /// Writes the document of `set` and `ColdStart` (1 the first time, 0 after), stamped now, as
    /// one line. A write failure is logged, never returned: losing a metric must not fail the
    /// batch.
    pub fn emit(&self, set: &MetricSet) {
        let Some(inner) = &self.inner else { return };
        let cold = inner.cold.swap(false, Ordering::Relaxed);
        let mut set = set.clone();
        set.count("ColdStart", u64::from(cold));
        let Some(doc) = self.document(&set, now_ms()) else {
            return;
        };
        let mut line = doc.to_string();
        line.push('\n');
        let mut sink = inner.sink.lock().unwrap_or_else(|p| p.into_inner());
        // One write_all + flush of the whole line, so concurrent writers never interleave it.
        if let Err(e) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush()) {
            tracing::warn!(error_code = "metrics_write", error = %e, "EMF metrics line not written");
        }
    }
}

/// Lines written by a [`Metrics::capture`] sink.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

#[cfg(any(test, feature = "testing"))]
impl Captured {
    /// Every complete line written so far.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines parsed as JSON (panics on a line that is not JSON: tests only).
    pub fn documents(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("EMF line is JSON"))
            .collect()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks that `doc` is a well-formed EMF document with one directive and returns its namespace,
/// dimension sets and `(name, unit)` pairs. Used by the tests of the functions.
///
/// ```
/// use lambda_kit::metrics::{Metrics, MetricSet, check_emf};
/// let (m, lines) = Metrics::capture("Ns", "f");
/// m.emit(MetricSet::new().count("A", 1));
/// let doc = &lines.documents()[0];
/// let shape = check_emf(doc).unwrap();
/// assert_eq!(shape.namespace, "Ns");
/// let names: Vec<&str> = shape.metrics.iter().map(|(n, _)| n.as_str()).collect();
/// assert_eq!(names, ["A", "ColdStart"]);
/// ```
#[cfg(any(test, feature = "testing"))]
pub fn check_emf(doc: &Value) -> Result<EmfShape, String> {
    let root = doc.as_object().ok_or("root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("_aws missing or not an object")?;
    let ts = aws
        .get("Timestamp")
        .and_then(Value::as_i64)
        .ok_or("_aws.Timestamp missing or not an integer")?;
    if ts <= 0 {
        return Err("_aws.Timestamp must be milliseconds since the epoch".into());
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics missing or not an array")?;
    let [directive] = directives.as_slice() else {
        return Err(format!("expected 1 directive, found {}", directives.len()));
    };
    let namespace = directive
        .get("Namespace")
        .and_then(Value::as_str)
        .ok_or("Namespace missing or not a string")?
        .to_owned();
    let mut dimensions = Vec::new();
    for set in directive
        .get("Dimensions")
        .and_then(Value::as_array)
        .ok_or("Dimensions missing or not an array")?
    {
        let mut names = Vec::new();
        for d in set.as_array().ok_or("a dimension set is not an array")? {
            let d = d.as_str().ok_or("a dimension name is not a string")?;
            if !root.get(d).is_some_and(Value::is_string) {
                return Err(format!("dimension {d} has no string value at the root"));
            }
            names.push(d.to_owned());
        }
        dimensions.push(names);
    }
    let mut metrics = Vec::new();
    let defs = directive
        .get("Metrics")
        .and_then(Value::as_array)
        .ok_or("Metrics missing or not an array")?;
    if defs.len() > MAX_METRICS {
        return Err(format!("{} metrics, at most {MAX_METRICS}", defs.len()));
    }
    for m in defs {
        let name = m
            .get("Name")
            .and_then(Value::as_str)
            .ok_or("a metric has no Name")?;
        let unit = m.get("Unit").and_then(Value::as_str).unwrap_or("None");
        if !root.get(name).is_some_and(Value::is_number) {
            return Err(format!("metric {name} has no numeric value at the root"));
        }
        metrics.push((name.to_owned(), unit.to_owned()));
    }
    Ok(EmfShape {
        namespace,
        dimensions,
        metrics,
    })
}

/// What [`check_emf`] found.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmfShape {
    /// The directive's namespace.
    pub namespace: String,
    /// Dimension sets.
    pub dimensions: Vec<Vec<String>>,
    /// `(Name, Unit)` of each metric.
    pub metrics: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_decoding::KafkaBatch;

    fn batch(timestamps: &[i64]) -> KafkaBatch {
        let records: Vec<Value> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                json!({"topic": "t", "partition": 0, "offset": i, "timestamp": ts,
                       "timestampType": "CREATE_TIME", "value": "e30=", "headers": []})
            })
            .collect();
        serde_json::from_value(json!({
            "eventSource": "aws:kafka",
            "records": {"t-0": records},
        }))
        .unwrap()
    }

    #[test]
    fn document_follows_the_emf_specification() {
        let (m, lines) = Metrics::capture("KafkaLambdas", "gift-persister");
        let counts = Counts {
            stored: 2,
            skipped: 1,
            dead_lettered: 1,
            failed: 0,
        };
        let b = batch(&[1_000, 400, 900, 700]);
        let mut set = MetricSet::for_batch(b.as_slice(), &counts, 42, 1_500);
        set.count("EmbeddingCalls", 3);
        m.emit(&set);
        let out = lines.lines();
        assert_eq!(out.len(), 1, "exactly one line per emit");
        let doc: Value = serde_json::from_str(&out[0]).unwrap();
        let shape = check_emf(&doc).unwrap();
        assert_eq!(shape.namespace, "KafkaLambdas");
        assert_eq!(
            shape.dimensions,
            vec![vec!["FunctionName".to_owned(), "service".to_owned()]]
        );
        assert_eq!(doc["FunctionName"], "gift-persister");
        assert_eq!(doc["service"], DEFAULT_SERVICE);
        assert_eq!(doc["ColdStart"], 1, "the first line of the process");
        assert_eq!(doc["RecordsReceived"], 4);
        assert_eq!(doc["RecordsStored"], 2);
        assert_eq!(doc["RecordsSkipped"], 1);
        assert_eq!(doc["RecordsDeadLettered"], 1);
        assert_eq!(doc["RecordsFailed"], 0);
        assert_eq!(doc["EmbeddingCalls"], 3);
        assert_eq!(doc["Duration"], 42);
        assert_eq!(doc["BatchAge"], 1_100, "now 1500 minus oldest 400");
        let units: std::collections::HashMap<_, _> = shape.metrics.into_iter().collect();
        assert_eq!(units["BatchAge"], "Milliseconds");
        assert_eq!(units["Duration"], "Milliseconds");
        assert_eq!(units["RecordsReceived"], "Count");
        let ts = doc["_aws"]["Timestamp"].as_i64().unwrap();
        assert!((now_ms() - ts).abs() < 60_000, "timestamp is now in ms");
        // Nothing but _aws, the two dimensions and the metrics at the root.
        assert_eq!(doc.as_object().unwrap().len(), 3 + 9);

        m.emit(&set);
        m.clone().emit(&set);
        let later: Vec<u64> = lines.documents()[1..]
            .iter()
            .map(|d| d["ColdStart"].as_u64().unwrap())
            .collect();
        assert_eq!(later, [0, 0], "warm invocations, clones included");
        // A new Metrics is a new process's (a new execution environment builds its own).
        let (fresh, fresh_lines) = Metrics::capture("KafkaLambdas", "gift-persister");
        fresh.emit(&set);
        assert_eq!(fresh_lines.documents()[0]["ColdStart"], 1);
    }

    #[test]
    fn env_settings() {
        let m = Metrics::from_env(&Env::empty(), "page-embedder").unwrap();
        assert!(m.is_enabled());
        let d = m.document(&MetricSet::new(), 1).unwrap();
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "KafkaLambdas"
        );
        assert_eq!(d["FunctionName"], "page-embedder");

        let env = Env::from_pairs([
            ("METRICS_NAMESPACE", "Gifts/Prod"),
            ("AWS_LAMBDA_FUNCTION_NAME", "gifts-prod-fn"),
        ]);
        let d = Metrics::from_env(&env, "gift-persister")
            .unwrap()
            .document(&MetricSet::new(), 1)
            .unwrap();
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Gifts/Prod");
        assert_eq!(d["FunctionName"], "gifts-prod-fn");
        assert_eq!(d["service"], DEFAULT_SERVICE);
        let env = Env::from_pairs([("METRICS_SERVICE", " gifts-prod ")]);
        let d = Metrics::from_env(&env, "gift-persister")
            .unwrap()
            .document(&MetricSet::new(), 1)
            .unwrap();
        assert_eq!(d["service"], "gifts-prod");
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "service"]])
        );

        for off in ["false", "FALSE", "0", "off", "no"] {
            let env = Env::from_pairs([("METRICS_ENABLED", off)]);
            let m = Metrics::from_env(&env, "x").unwrap();
            assert!(!m.is_enabled(), "{off}");
            assert!(m.document(&MetricSet::new(), 1).is_none());
        }
        for (var, value) in [
            ("METRICS_ENABLED", "sometimes"),
            ("METRICS_NAMESPACE", "AWS/Lambda"),
            ("METRICS_NAMESPACE", "Ns\u{7}"),
            ("METRICS_SERVICE", "a\nb"),
        ] {
            let err = Metrics::from_env(&Env::from_pairs([(var, value)]), "x").unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn disabled_writes_nothing_and_empty_batch_has_no_age() {
        Metrics::disabled().emit(MetricSet::new().count("A", 1));
        let m = MetricSet::for_batch(&[], &Counts::default(), 1, 10);
        assert_eq!(m.get("BatchAge"), None);
        assert_eq!(m.get("RecordsReceived"), Some((Unit::Count, 0)));
        // A record from the future (clock skew) is age 0, not a wrapped huge number.
        let b = batch(&[2_000]);
        assert_eq!(batch_age_ms(b.as_slice(), 1_000), Some(0));
    }

    #[test]
    fn records_without_timestamps_do_not_count_for_batch_age() {
        assert_eq!(batch_age_ms(batch(&[-1, 0]).as_slice(), 5_000), None);
        assert_eq!(
            batch_age_ms(batch(&[0, 4_000, 4_500]).as_slice(), 5_000),
            Some(1_000)
        );
    }

    #[test]
    fn setting_a_name_twice_keeps_one_metric() {
        let mut m = MetricSet::new();
        m.count("A", 1).count("A", 5);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get("A"), Some((Unit::Count, 5)));
    }

    #[test]
    fn check_emf_rejects_malformed_documents() {
        let good = Metrics::with_sink("N", "f", std::io::sink())
            .document(MetricSet::new().count("A", 1), 5)
            .unwrap();
        assert!(check_emf(&good).is_ok());
        let mut no_value = good.clone();
        no_value.as_object_mut().unwrap().remove("A");
        assert!(check_emf(&no_value).unwrap_err().contains("metric A"));
        let mut no_dim = good.clone();
        no_dim.as_object_mut().unwrap().remove("FunctionName");
        assert!(check_emf(&no_dim).unwrap_err().contains("FunctionName"));
        let mut no_ts = good;
        no_ts["_aws"].as_object_mut().unwrap().remove("Timestamp");
        assert!(check_emf(&no_ts).unwrap_err().contains("Timestamp"));
    }

    #[test]
    fn many_threads_never_interleave_lines() {
        let (m, lines) = Metrics::capture("N", "f");
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let m = m.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        m.emit(MetricSet::new().count("T", t).count("I", i));
                    }
                });
            }
        });
        let docs = lines.documents();
        assert_eq!(docs.len(), 200);
        assert!(docs.iter().all(|d| check_emf(d).is_ok()));
    }
}
