//! The settings of one `AWS::Lambda::EventSourceMapping` of a template, and of the function it
//! invokes, resolved for a local run (`esm-local run --template T --mapping ID`).
//!
//! Property names and ranges are those of the CloudFormation resource and of Lambda's
//! `CreateEventSourceMapping` API; the function's `Environment.Variables`, `Timeout` and
//! `MemorySize` come from its resource, over the template's `Globals.Function` (SAM).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::kafka::OffsetSpec;
use crate::template::{Template, TemplateError, scalar_text};

/// Lambda's default function timeout when neither the function nor `Globals` sets one.
const DEFAULT_TIMEOUT_S: u64 = 3;
/// Lambda's default memory size.
const DEFAULT_MEMORY_MB: u32 = 128;

/// What the mapping's schema registry delivers (`SchemaRegistryConfig.EventRecordFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRecordFormat {
    /// No registry on the mapping: the record bytes as produced.
    None,
    /// The registry validates and converts values to JSON.
    Json,
    /// The producer's bytes without the registry's wire prefix, plus `valueSchemaMetadata`.
    Source,
}

/// The mapping's and its function's settings, as the template deploys them.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingSettings {
    /// The mapping's logical id.
    pub logical_id: String,
    /// The function's logical id (`FunctionName: !Ref X`).
    pub function: String,
    /// `Topics`.
    pub topics: Vec<String>,
    /// `...KafkaEventSourceConfig.ConsumerGroupId`.
    pub consumer_group: Option<String>,
    /// `BatchSize`.
    pub batch_size: Option<usize>,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window: Option<Duration>,
    /// `StartingPosition`.
    pub starting_position: Option<OffsetSpec>,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `MaximumRetryAttempts` (-1 = infinite).
    pub maximum_retry_attempts: Option<i64>,
    /// `MaximumRecordAgeInSeconds` (-1 = no limit).
    pub maximum_record_age_s: Option<i64>,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: bool,
    /// `FilterCriteria.Filters[].Pattern`, each a JSON text.
    pub filter_patterns: Vec<String>,
    /// `SchemaRegistryConfig.EventRecordFormat`.
    pub event_record_format: EventRecordFormat,
    /// `DestinationConfig.OnFailure.Destination`.
    pub on_failure: Option<String>,
    /// The function's environment (`Globals.Function` first, the function's own over it).
    pub env: Vec<(String, String)>,
    /// The function's `Timeout`.
    pub timeout: Duration,
    /// The function's `MemorySize`.
    pub memory_mb: u32,
    /// The mapping's `Condition`, when it is false with these parameters (the stack would not
    /// create the mapping; a local run goes on, with a warning).
    pub inactive_condition: Option<String>,
}

impl MappingSettings {
    /// Resolves the mapping `logical_id` of `template`; errors name the property.
    pub fn from_template(template: &Template, logical_id: &str) -> Result<Self, TemplateError> {
        let res = template.resource(logical_id)?;
        let base = format!("Resources.{logical_id}");
        let ty = res.get("Type").and_then(Value::as_str).unwrap_or("");
        if ty != "AWS::Lambda::EventSourceMapping" {
            let mappings = template.resources_of_type("AWS::Lambda::EventSourceMapping");
            return Err(TemplateError {
                at: base,
                problem: format!(
                    "is a {ty}, not an AWS::Lambda::EventSourceMapping (the template's: {})",
                    mappings.join(", ")
                ),
            });
        }
        let inactive_condition = match res.get("Condition").and_then(Value::as_str) {
            Some(c) if !template.condition(c)? => Some(c.to_owned()),
            _ => None,
        };
        let at = format!("{base}.Properties");
        let props = match res.get("Properties") {
            Some(p) => template.resolve(p, &at)?,
            None => None,
        };
        let map = props
            .as_ref()
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let props = Props { map, at };

        let function = props.function_name()?;
        let topics = props.topics()?;
        let consumer_group = props
            .source_config()
            .and_then(|c| c.get("ConsumerGroupId"))
            .and_then(scalar_text);
        let event_record_format = props.event_record_format()?;
        let batch_size = props.batch_size()?;
        let batching_window = props.batching_window()?;
        let starting_position = props.starting_position()?;
        let report_batch_item_failures = props.report_batch_item_failures();
        let maximum_retry_attempts =
            props.int_within("MaximumRetryAttempts", "needs -1..=10000", |n| {
                (-1..=10_000).contains(&n)
            })?;
        let maximum_record_age_s = props.int_within(
            "MaximumRecordAgeInSeconds",
            "needs -1 or 60..=604800",
            |n| n == -1 || (60..=604_800).contains(&n),
        )?;
        let filter_patterns = props.filter_patterns()?;
        let on_failure = props.on_failure();

        let (env, timeout, memory_mb) = function_settings(template, &function)?;
        Ok(Self {
            logical_id: logical_id.to_owned(),
            function,
            topics,
            consumer_group,
            batch_size,
            batching_window,
            starting_position,
            report_batch_item_failures,
            maximum_retry_attempts,
            maximum_record_age_s,
            bisect_batch_on_function_error: props.boolean("BisectBatchOnFunctionError")?,
            filter_patterns,
            event_record_format,
            on_failure,
            env,
            timeout,
            memory_mb,
            inactive_condition,
        })
    }
}

/// A mapping's resolved `Properties`, read with errors that name the property.
struct Props {
    map: Map<String, Value>,
    /// `Resources.<id>.Properties`.
    at: String,
}

impl Props {
    fn get(&self, k: &str) -> Option<&Value> {
        self.map.get(k)
    }

    fn at(&self, k: &str) -> String {
        format!("{}.{k}", self.at)
    }

    fn bad(&self, k: &str, what: &str, v: &Value) -> TemplateError {
        TemplateError {
            at: self.at(k),
            problem: format!("{what}, not {v}"),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, TemplateError> {
        self.get(k)
            .map(|v| {
                scalar_text(v)
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| self.bad(k, "needs a whole number", v))
            })
            .transpose()
    }

    /// A whole number that `ok` accepts; `what` says which ones it does.
    fn int_within(
        &self,
        k: &str,
        what: &str,
        ok: impl Fn(i64) -> bool,
    ) -> Result<Option<i64>, TemplateError> {
        let n = self.int(k)?;
        match n {
            Some(n) if !ok(n) => Err(self.bad(k, what, &Value::from(n))),
            _ => Ok(n),
        }
    }

    fn boolean(&self, k: &str) -> Result<bool, TemplateError> {
        match self.get(k) {
            None => Ok(false),
            Some(v) => match scalar_text(v).as_deref() {
                Some("true" | "True") => Ok(true),
                Some("false" | "False") => Ok(false),
                _ => Err(self.bad(k, "needs true or false", v)),
            },
        }
    }

    fn function_name(&self) -> Result<String, TemplateError> {
        self.get("FunctionName")
            .and_then(scalar_text)
            .ok_or_else(|| TemplateError {
                at: self.at("FunctionName"),
                problem: "is missing or not a single value".into(),
            })
    }

    fn topics(&self) -> Result<Vec<String>, TemplateError> {
        let topics: Vec<String> = match self.get("Topics") {
            Some(Value::Array(a)) => a.iter().filter_map(scalar_text).collect(),
            _ => Vec::new(),
        };
        if topics.is_empty() {
            return Err(TemplateError {
                at: self.at("Topics"),
                problem: "names no topic".into(),
            });
        }
        Ok(topics)
    }

    /// `AmazonManagedKafkaEventSourceConfig`, else `SelfManagedKafkaEventSourceConfig`.
    fn source_config(&self) -> Option<&Value> {
        self.get("AmazonManagedKafkaEventSourceConfig")
            .or_else(|| self.get("SelfManagedKafkaEventSourceConfig"))
    }

    fn event_record_format(&self) -> Result<EventRecordFormat, TemplateError> {
        let format = self
            .source_config()
            .and_then(|c| c.get("SchemaRegistryConfig"))
            .and_then(|r| r.get("EventRecordFormat"));
        match format {
            None => Ok(EventRecordFormat::None),
            Some(v) => match scalar_text(v).as_deref() {
                Some("JSON") => Ok(EventRecordFormat::Json),
                Some("SOURCE") => Ok(EventRecordFormat::Source),
                _ => Err(self.bad(
                    "SchemaRegistryConfig.EventRecordFormat",
                    "needs JSON or SOURCE",
                    v,
                )),
            },
        }
    }

    fn batch_size(&self) -> Result<Option<usize>, TemplateError> {
        self.int("BatchSize")?
            .map(|n| {
                usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| self.bad("BatchSize", "needs 1..=10000", &Value::from(n)))
            })
            .transpose()
    }

    fn batching_window(&self) -> Result<Option<Duration>, TemplateError> {
        let k = "MaximumBatchingWindowInSeconds";
        self.int(k)?
            .map(|s| {
                u64::try_from(s)
                    .ok()
                    .filter(|s| *s <= 300)
                    .map(Duration::from_secs)
                    .ok_or_else(|| self.bad(k, "needs 0..=300", &Value::from(s)))
            })
            .transpose()
    }

    fn starting_position(&self) -> Result<Option<OffsetSpec>, TemplateError> {
        let Some(v) = self.get("StartingPosition") else {
            return Ok(None);
        };
        match scalar_text(v).as_deref() {
            Some("TRIM_HORIZON") => Ok(Some(OffsetSpec::Earliest)),
            Some("LATEST") => Ok(Some(OffsetSpec::Latest)),
            _ => Err(self.bad("StartingPosition", "needs TRIM_HORIZON or LATEST", v)),
        }
    }

    fn report_batch_item_failures(&self) -> bool {
        match self.get("FunctionResponseTypes") {
            Some(Value::Array(a)) => a
                .iter()
                .any(|v| v.as_str() == Some("ReportBatchItemFailures")),
            _ => false,
        }
    }

    /// `FilterCriteria.Filters[].Pattern`, each as JSON text.
    fn filter_patterns(&self) -> Result<Vec<String>, TemplateError> {
        match self.get("FilterCriteria").and_then(|f| f.get("Filters")) {
            Some(Value::Array(fs)) => fs
                .iter()
                .map(|f| match f.get("Pattern") {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(v @ Value::Object(_)) => Ok(v.to_string()),
                    _ => Err(TemplateError {
                        at: self.at("FilterCriteria.Filters"),
                        problem: "a filter without a Pattern".into(),
                    }),
                })
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn on_failure(&self) -> Option<String> {
        self.get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
            .and_then(|o| o.get("Destination"))
            .and_then(scalar_text)
            .filter(|d| !d.is_empty())
    }
}

/// A function's environment, timeout and memory size.
type FunctionSettings = (Vec<(String, String)>, Duration, u32);

/// The environment, timeout and memory of the function resource `function`, over `Globals`.
fn function_settings(
    template: &Template,
    function: &str,
) -> Result<FunctionSettings, TemplateError> {
    let res = template.resource(function).map_err(|e| TemplateError {
        at: e.at,
        problem: "the mapping's FunctionName names no function resource of the template".into(),
    })?;
    let at = format!("Resources.{function}.Properties");
    let own = match res.get("Properties") {
        Some(p) => template.resolve(p, &at)?,
        None => None,
    };
    let globals = match template.globals("Function") {
        Some(g) => template.resolve(g, "Globals.Function")?,
        None => None,
    };
    let layers: Vec<&Map<String, Value>> = [globals.as_ref(), own.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .collect();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT_S;
    let mut memory = DEFAULT_MEMORY_MB;
    for layer in layers {
        if let Some(Value::Object(vars)) = layer.get("Environment").and_then(|e| e.get("Variables"))
        {
            for (k, v) in vars {
                let v = scalar_text(v).ok_or_else(|| TemplateError {
                    at: format!("{at}.Environment.Variables.{k}"),
                    problem: "is not a single value".into(),
                })?;
                env.retain(|(e, _)| e != k);
                env.push((k.clone(), v));
            }
        }
        if let Some(v) = layer.get("Timeout") {
            timeout = scalar_text(v)
                .and_then(|s| s.parse().ok())
                .filter(|t| *t >= 1)
                .ok_or_else(|| TemplateError {
                    at: format!("{at}.Timeout"),
                    problem: format!("needs a number of seconds, not {v}"),
                })?;
        }
        if let Some(v) = layer.get("MemorySize") {
            memory = scalar_text(v)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| TemplateError {
                    at: format!("{at}.MemorySize"),
                    problem: format!("needs a number of MB, not {v}"),
                })?;
        }
    }
    Ok((env, Duration::from_secs(timeout), memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_template(overrides: &[(&str, &str)]) -> Template {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let text = std::fs::read_to_string(path).expect("the project's template.yaml");
        // The two parameters without a Default: a local run gives them (the key itself comes
        // from the environment, SUPABASE_SECRET_KEY).
        let o: Vec<(String, String)> = [
            ("SupabaseUrl", "http://127.0.0.1:54321"),
            ("SupabaseKeySecretArn", ""),
        ]
        .iter()
        .chain(overrides)
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        Template::parse(&text, &o, "kafka-lambdas").unwrap()
    }

    /// The project's own template: every mapping it defines resolves with the defaults.
    #[test]
    fn every_mapping_of_the_project_template_resolves() {
        let t = project_template(&[]);
        let ids = t.resources_of_type("AWS::Lambda::EventSourceMapping");
        assert!(ids.len() >= 6, "{ids:?}");
        for id in ids {
            MappingSettings::from_template(&t, &id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn gift_persister_mapping_with_defaults() {
        let t = project_template(&[]);
        let m = MappingSettings::from_template(&t, "GiftPersisterMskMapping").unwrap();
        assert_eq!(m.function, "GiftPersisterFunction");
        assert_eq!(m.topics, ["gift_events"]);
        assert_eq!(m.consumer_group.as_deref(), Some("gift-persister"));
        assert_eq!(m.batch_size, Some(100));
        assert_eq!(m.batching_window, Some(Duration::from_secs(1)));
        assert_eq!(m.starting_position, Some(OffsetSpec::Earliest));
        assert!(m.report_batch_item_failures);
        assert_eq!(m.maximum_retry_attempts, Some(5));
        assert_eq!(m.maximum_record_age_s, Some(-1));
        assert!(m.bisect_batch_on_function_error);
        assert!(m.filter_patterns.is_empty());
        assert_eq!(m.event_record_format, EventRecordFormat::None);
        assert_eq!(m.on_failure.as_deref(), Some("arn:aws:s3:::FailureBucket"));
        assert_eq!(m.timeout, Duration::from_secs(60));
        assert_eq!(m.inactive_condition, None);
        let env: std::collections::HashMap<_, _> = m.env.iter().cloned().collect();
        assert_eq!(env["METRICS_SERVICE"], "kafka-lambdas", "Globals");
        assert_eq!(env["GIFTS_TABLE"], "vault");
        assert!(!env.contains_key("SCHEMA_REGISTRY_URL"), "AWS::NoValue");
        // The self-managed twin is the same mapping, not deployed with KafkaSource=MSK.
        let k = MappingSettings::from_template(&t, "GiftPersisterKafkaMapping").unwrap();
        assert_eq!(k.inactive_condition.as_deref(), Some("UseSelfManaged"));
        assert_eq!(k.topics, m.topics);
    }

    #[test]
    fn parameters_change_the_mapping() {
        let t = project_template(&[
            ("OnFailureDestination", "Kafka"),
            ("GiftTopic", "gifts.v2"),
            ("MaximumRetryAttempts", "-1"),
            ("MaximumRecordAgeInSeconds", "3600"),
            ("BisectBatchOnFunctionError", "false"),
            (
                "GiftFilterPattern",
                r#"{"value": {"page_id": [{"numeric": [">", 0]}]}}"#,
            ),
            ("SchemaRegistryUri", "https://registry.example"),
            ("SchemaRegistryEventRecordFormat", "SOURCE"),
            ("GiftPersisterTimeout", "30"),
        ]);
        let m = MappingSettings::from_template(&t, "GiftPersisterMskMapping").unwrap();
        assert_eq!(m.on_failure.as_deref(), Some("kafka://gifts.v2.on-failure"));
        assert_eq!(m.maximum_retry_attempts, Some(-1));
        assert_eq!(m.maximum_record_age_s, Some(3600));
        assert!(!m.bisect_batch_on_function_error);
        assert_eq!(m.filter_patterns.len(), 1);
        assert_eq!(m.event_record_format, EventRecordFormat::Source);
        assert_eq!(m.timeout, Duration::from_secs(30));
        let sqs = project_template(&[("OnFailureDestination", "SQS")]);
        let m = MappingSettings::from_template(&sqs, "PageEmbedderMskMapping").unwrap();
        assert_eq!(
            m.on_failure.as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:PageEmbedderFailureQueue")
        );
        assert_eq!(m.topics, ["cdc.pages"]);
        assert_eq!(m.batch_size, Some(32));
    }

    #[test]
    fn wrong_ids_and_values_are_named() {
        let t = project_template(&[]);
        let e = MappingSettings::from_template(&t, "GiftPersisterFunction").unwrap_err();
        assert!(
            e.problem.contains("not an AWS::Lambda::EventSourceMapping"),
            "{e}"
        );
        assert!(e.problem.contains("GiftPersisterMskMapping"), "{e}");
        let e = MappingSettings::from_template(&t, "Nope").unwrap_err();
        assert_eq!(e.at, "Resources.Nope");
        let t = project_template(&[("GiftBatchSize", "0")]);
        let e = MappingSettings::from_template(&t, "GiftPersisterMskMapping").unwrap_err();
        assert_eq!(
            e.at,
            "Resources.GiftPersisterMskMapping.Properties.BatchSize"
        );
    }
}
