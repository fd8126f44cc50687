//! Validation of one gift event and its row in the gifts table.
//!
//! A gift is `{"page_id": 1, "question": "..", "answer": "..", "ts": 1732350000.123}` with an
//! optional `event_id`; unknown fields are kept in the row's `raw`, with `ts` as it came, so that
//! columns and `raw` together hold the whole event (`public.vault_event(vault)` rebuilds it).
//! Every failure has its own error code and a message naming the field.

use event_decoding::json_kind;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Limits of the validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiftLimits {
    /// Maximum length of `question` and `answer`, in characters.
    pub max_text_chars: usize,
    /// Maximum length of a provided `event_id`, in characters.
    pub max_event_id_chars: usize,
}

impl Default for GiftLimits {
    fn default() -> Self {
        Self {
            max_text_chars: 10_000,
            max_event_id_chars: 200,
        }
    }
}

/// Why a gift is invalid (permanent: the record is dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GiftError {
    /// The value is JSON but not an object.
    #[error("value must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A required field is absent or null.
    #[error("{0}: is required")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("{field}: must be {expected}, got {got}")]
    InvalidType {
        /// The payload field at fault (`page_id`, `question`, ...).
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        got: &'static str,
    },
    /// `page_id` is negative or does not fit.
    #[error("page_id: must be an integer >= 0 and < 2^63, got {0}")]
    PageIdOutOfRange(String),
    /// A text field is empty or whitespace.
    #[error("{0}: must not be empty")]
    EmptyField(&'static str),
    /// A text field is longer than allowed.
    #[error("{field}: {chars} characters, at most {max} allowed")]
    TooLong {
        /// The payload field at fault (`question`, `answer`).
        field: &'static str,
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// `ts` is neither epoch seconds nor an RFC 3339 date-time in range.
    #[error("ts: {0}")]
    InvalidTimestamp(String),
}

impl GiftError {
    /// The field at fault (`None` when the whole value is, e.g. not an object).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::NotAnObject(_) => None,
            Self::MissingField(f) | Self::EmptyField(f) => Some(f),
            Self::InvalidType { field, .. } | Self::TooLong { field, .. } => Some(field),
            Self::PageIdOutOfRange(_) => Some("page_id"),
            Self::InvalidTimestamp(_) => Some("ts"),
        }
    }

    /// Low-cardinality code stored with the dead letter.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::NotAnObject(_) => "not_an_object",
            Self::MissingField(_) => "missing_field",
            Self::InvalidType { .. } => "invalid_type",
            Self::PageIdOutOfRange(_) => "page_id_out_of_range",
            Self::EmptyField(_) => "empty_field",
            Self::TooLong { .. } => "too_long",
            Self::InvalidTimestamp(_) => "invalid_timestamp",
        }
    }
}

/// Every validation failure is the record's own: dead-lettered, never retried.
impl lambda_kit::error::Classify for GiftError {
    fn class(&self) -> lambda_kit::error::ErrorClass {
        match self {
            Self::NotAnObject(_)
            | Self::MissingField(_)
            | Self::InvalidType { .. }
            | Self::PageIdOutOfRange(_)
            | Self::EmptyField(_)
            | Self::TooLong { .. }
            | Self::InvalidTimestamp(_) => lambda_kit::error::ErrorClass::Data,
        }
    }
    fn error_code(&self) -> &'static str {
        GiftError::error_code(self)
    }
}

/// A validated gift, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Gift {
    /// Idempotency key: the payload's `event_id`, or SHA-256 of the canonical fields.
    pub event_id: String,
    /// Page the gift belongs to.
    pub page_id: i64,
    /// The question asked, as sent (non-empty, within its length limit).
    pub question: String,
    /// The answer given, as sent (non-empty, within its length limit).
    pub answer: String,
    /// Event time in microseconds since the epoch (PostgreSQL's precision).
    pub ts_micros: i64,
    /// The whole original message.
    pub raw: Map<String, Value>,
}

/// Where a record came from, stored with its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance<'a> {
    /// Kafka topic.
    pub topic: &'a str,
    /// Kafka partition of the record.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
}

fn present<'v>(obj: &'v Map<String, Value>, field: &str) -> Option<&'v Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn page_id(obj: &Map<String, Value>) -> Result<i64, GiftError> {
    match present(obj, "page_id") {
        None => Err(GiftError::MissingField("page_id")),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) if i >= 0 => Ok(i),
            (Some(_), _) | (None, Some(_)) => Err(GiftError::PageIdOutOfRange(n.to_string())),
            (None, None) => Err(GiftError::InvalidType {
                field: "page_id",
                expected: "an integer",
                got: "a fractional number",
            }),
        },
        Some(other) => Err(GiftError::InvalidType {
            field: "page_id",
            expected: "an integer",
            got: json_kind(other),
        }),
    }
}

fn text(obj: &Map<String, Value>, field: &'static str, max: usize) -> Result<String, GiftError> {
    let v = present(obj, field).ok_or(GiftError::MissingField(field))?;
    let s = v.as_str().ok_or(GiftError::InvalidType {
        field,
        expected: "a string",
        got: json_kind(v),
    })?;
    if s.trim().is_empty() {
        return Err(GiftError::EmptyField(field));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(GiftError::TooLong { field, chars, max });
    }
    Ok(s.to_owned())
}

/// Earliest and latest accepted event times (years 1 to 9999, as PostgreSQL prints them).
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

fn timestamp(obj: &Map<String, Value>, record_ts_ms: i64) -> Result<i64, GiftError> {
    let micros = match present(obj, "ts") {
        None => record_ts_ms.checked_mul(1000).ok_or_else(|| {
            GiftError::InvalidTimestamp("absent and the Kafka timestamp is out of range".into())
        })?,
        Some(Value::Number(n)) => {
            let secs = n.as_f64().filter(|s| s.is_finite()).ok_or_else(|| {
                GiftError::InvalidTimestamp(format!("{n} is not a finite number"))
            })?;
            match n.as_i64() {
                Some(i) => i.checked_mul(1_000_000).ok_or_else(|| {
                    GiftError::InvalidTimestamp(format!("{n} seconds is out of range"))
                })?,
                None => {
                    let m = (secs * 1e6).round();
                    if !(MIN_MICROS as f64..=MAX_MICROS as f64).contains(&m) {
                        return Err(GiftError::InvalidTimestamp(format!(
                            "{n} seconds is out of range"
                        )));
                    }
                    m as i64
                }
            }
        }
        Some(Value::String(s)) => {
            let dt = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|e| {
                GiftError::InvalidTimestamp(format!(
                    "{:?} is not epoch seconds or an RFC 3339 date-time ({e})",
                    truncate(s, 64)
                ))
            })?;
            i64::try_from(dt.unix_timestamp_nanos() / 1000)
                .map_err(|_| GiftError::InvalidTimestamp("out of range".into()))?
        }
        Some(other) => {
            return Err(GiftError::InvalidType {
                field: "ts",
                expected: "a number of seconds or an RFC 3339 string",
                got: json_kind(other),
            });
        }
    };
    if !(MIN_MICROS..=MAX_MICROS).contains(&micros) {
        return Err(GiftError::InvalidTimestamp(
            "must be between years 1 and 9999".into(),
        ));
    }
    Ok(micros)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Gift {
    /// Validates a decoded message; `record_ts_ms` (the Kafka timestamp) stands in for an absent
    /// `ts`.
    ///
    /// ```
    /// use gift_persister::gift::{Gift, GiftLimits};
    /// let v = serde_json::json!({"page_id": 1, "question": "Q?", "answer": "A", "ts": 1.5});
    /// let g = Gift::validate(v, 0, &GiftLimits::default()).unwrap();
    /// assert_eq!(g.ts_micros, 1_500_000);
    /// assert_eq!(g.event_id.len(), 64);
    /// ```
    pub fn validate(
        value: Value,
        record_ts_ms: i64,
        limits: &GiftLimits,
    ) -> Result<Self, GiftError> {
        Self::validate_all(value, record_ts_ms, limits).map_err(|mut problems| problems.remove(0))
    }

    /// Like [`Gift::validate`], but checks every field and returns every problem (never an empty
    /// list), in field order: `page_id`, `question`, `answer`, `ts`, `event_id`. The first one is
    /// what [`Gift::validate`] reports, so the publisher's 400 and the persister's dead letter
    /// agree.
    ///
    /// ```
    /// use gift_persister::gift::{Gift, GiftLimits};
    /// let v = serde_json::json!({"page_id": -1, "question": "", "answer": "A", "ts": "soon"});
    /// let problems = Gift::validate_all(v, 0, &GiftLimits::default()).unwrap_err();
    /// let fields: Vec<_> = problems.iter().map(|p| p.field()).collect();
    /// assert_eq!(fields, [Some("page_id"), Some("question"), Some("ts")]);
    /// ```
    pub fn validate_all(
        value: Value,
        record_ts_ms: i64,
        limits: &GiftLimits,
    ) -> Result<Self, Vec<GiftError>> {
        let Value::Object(raw) = value else {
            return Err(vec![GiftError::NotAnObject(json_kind(&value))]);
        };
        let page_id = page_id(&raw);
        let question = text(&raw, "question", limits.max_text_chars);
        let answer = text(&raw, "answer", limits.max_text_chars);
        let ts_micros = timestamp(&raw, record_ts_ms);
        let event_id = present(&raw, "event_id")
            .map(|_| text(&raw, "event_id", limits.max_event_id_chars))
            .transpose();
        match (page_id, question, answer, ts_micros, event_id) {
            (Ok(page_id), Ok(question), Ok(answer), Ok(ts_micros), Ok(event_id)) => Ok(Self {
                event_id: event_id
                    .unwrap_or_else(|| content_hash(page_id, &question, &answer, ts_micros)),
                page_id,
                question,
                answer,
                ts_micros,
                raw,
            }),
            (page_id, question, answer, ts_micros, event_id) => Err([
                page_id.err(),
                question.err(),
                answer.err(),
                ts_micros.err(),
                event_id.err(),
            ]
            .into_iter()
            .flatten()
            .collect()),
        }
    }

    /// The row for the gifts table, as JSON. Its `raw` is the event less what the columns hold
    /// verbatim (`page_id`, `question`, `answer`, a given `event_id`): a second copy of those
    /// cost PostgreSQL a third of the time of a 10,000-row upsert and 35% of the bytes on disk
    /// (`scripts/bench-vault-row`, issue 24).
    pub fn to_row(&self, from: Provenance<'_>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Row<'a> {
            event_id: &'a str,
            page_id: i64,
            question: &'a str,
            answer: &'a str,
            ts: String,
            kafka_topic: &'a str,
            kafka_partition: i32,
            kafka_offset: i64,
            raw: Rest<'a>,
        }
        serde_json::to_vec(&Row {
            event_id: &self.event_id,
            page_id: self.page_id,
            question: &self.question,
            answer: &self.answer,
            ts: micros_to_rfc3339(self.ts_micros),
            kafka_topic: from.topic,
            kafka_partition: from.partition,
            kafka_offset: from.offset,
            raw: Rest(self),
        })
        .expect("a gift row always serializes")
    }
}

/// The fields of a gift's event that its columns do not hold verbatim, serialized in place.
struct Rest<'a>(&'a Gift);

impl Rest<'_> {
    /// Whether `field` of the event is a column's value as it stands.
    fn in_columns(&self, field: &str, value: &Value) -> bool {
        match field {
            "page_id" | "question" | "answer" => true,
            "event_id" => value.as_str() == Some(self.0.event_id.as_str()),
            _ => false,
        }
    }
}

impl Serialize for Rest<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .raw
                .iter()
                .filter(|(field, value)| !self.in_columns(field, value)),
        )
    }
}

/// SHA-256 (hex) over the canonical validated fields, so the same gift re-sent without an
/// `event_id` maps to the same row. A JSON array gives an unambiguous encoding of the strings.
pub fn content_hash(page_id: i64, question: &str, answer: &str, ts_micros: i64) -> String {
    let canonical =
        serde_json::to_vec(&(page_id, question, answer, ts_micros)).expect("serializes");
    let mut h = Sha256::new();
    h.update(b"gift:v1:");
    h.update(&canonical);
    hex::encode(h.finalize())
}

fn micros_to_rfc3339(micros: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("validated range");
    dt.format(&Rfc3339).expect("in range years format")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ok(v: Value) -> Gift {
        Gift::validate(v, 1_700_000_000_000, &GiftLimits::default()).unwrap()
    }

    fn err(v: Value) -> GiftError {
        Gift::validate(v, 1_700_000_000_000, &GiftLimits::default()).unwrap_err()
    }

    #[test]
    fn valid_gift_keeps_unknown_fields_and_hashes() {
        let g = ok(
            json!({"page_id": 1, "question": "TEST Q?", "answer": "TEST A", "ts": 1732350000.123, "extra": [1]}),
        );
        assert_eq!(g.page_id, 1);
        assert_eq!(g.ts_micros, 1_732_350_000_123_000);
        assert_eq!(g.raw["extra"], json!([1]));
        assert_eq!(
            g.event_id,
            content_hash(1, "TEST Q?", "TEST A", 1_732_350_000_123_000)
        );
        let row: Value = serde_json::from_slice(&g.to_row(Provenance {
            topic: "t",
            partition: 2,
            offset: 9,
        }))
        .unwrap();
        assert_eq!(row["ts"], "2024-11-23T08:20:00.123Z");
        assert_eq!(row["kafka_partition"], 2);
        assert_eq!(row["raw"], json!({"ts": 1732350000.123, "extra": [1]}));
    }

    /// `raw` holds what the columns do not: never a second copy of `page_id`, `question`,
    /// `answer` or a given `event_id`; `ts` as it came (a number or a string with its offset),
    /// a null field and every unknown field. Columns and `raw` rebuild the event exactly.
    #[test]
    fn raw_holds_only_what_the_columns_do_not() {
        let from = Provenance {
            topic: "t",
            partition: 0,
            offset: 0,
        };
        let events = [
            json!({"event_id": "e-1", "page_id": 7, "question": "Q?", "answer": "A", "ts": 1.5}),
            json!({"page_id": 7, "question": "Q?", "answer": "A", "ts": "2024-11-23T09:20:15+01:00", "sent_ms": 5, "note": null}),
            json!({"page_id": 7, "question": "Q?", "answer": "A"}),
        ];
        let rests = [
            json!({"ts": 1.5}),
            json!({"ts": "2024-11-23T09:20:15+01:00", "sent_ms": 5, "note": null}),
            json!({}),
        ];
        for (event, rest) in events.into_iter().zip(rests) {
            let row: Value = serde_json::from_slice(&ok(event.clone()).to_row(from)).unwrap();
            assert_eq!(row["raw"], rest, "{event}");
            let mut rebuilt = rest.as_object().unwrap().clone();
            for field in ["page_id", "question", "answer"] {
                rebuilt.insert(field.into(), row[field].clone());
            }
            if event.get("event_id").is_some() {
                rebuilt.insert("event_id".into(), row["event_id"].clone());
            }
            assert_eq!(Value::Object(rebuilt), event);
        }
    }

    #[test]
    fn same_content_same_id_and_explicit_id_wins() {
        let a = ok(json!({"page_id": 1, "question": "Q", "answer": "A", "ts": 10}));
        let b = ok(
            json!({"answer": "A", "ts": "1970-01-01T00:00:10Z", "question": "Q", "page_id": 1, "x": 1}),
        );
        assert_eq!(a.event_id, b.event_id);
        let c = ok(json!({"page_id": 1, "question": "Q", "answer": "A ", "ts": 10}));
        assert_ne!(a.event_id, c.event_id);
        assert_eq!(
            ok(json!({"page_id": 1, "question": "Q", "answer": "A", "event_id": "e-1"})).event_id,
            "e-1"
        );
    }

    #[test]
    fn ts_forms() {
        assert_eq!(
            ok(json!({"page_id": 0, "question": "Q", "answer": "A"})).ts_micros,
            1_700_000_000_000_000
        );
        assert_eq!(
            ok(json!({"page_id": 0, "question": "Q", "answer": "A", "ts": null})).ts_micros,
            1_700_000_000_000_000
        );
        assert_eq!(ok(json!({"page_id": 0, "question": "Q", "answer": "A", "ts": "2024-11-23T09:20:15+01:00"})).ts_micros, 1_732_350_015_000_000);
        assert_eq!(
            err(json!({"page_id": 0, "question": "Q", "answer": "A", "ts": "yesterday"}))
                .error_code(),
            "invalid_timestamp"
        );
        assert_eq!(
            err(json!({"page_id": 0, "question": "Q", "answer": "A", "ts": 1e300})).error_code(),
            "invalid_timestamp"
        );
        assert_eq!(
            err(json!({"page_id": 0, "question": "Q", "answer": "A", "ts": true})).error_code(),
            "invalid_type"
        );
    }

    #[test]
    fn every_failure_names_its_field() {
        let cases = [
            (json!([1]), "not_an_object", "object"),
            (
                json!({"question": "Q", "answer": "A"}),
                "missing_field",
                "page_id",
            ),
            (
                json!({"page_id": "twelve", "question": "Q", "answer": "A"}),
                "invalid_type",
                "page_id",
            ),
            (
                json!({"page_id": 1.5, "question": "Q", "answer": "A"}),
                "invalid_type",
                "page_id",
            ),
            (
                json!({"page_id": -1, "question": "Q", "answer": "A"}),
                "page_id_out_of_range",
                "page_id",
            ),
            (
                json!({"page_id": u64::MAX, "question": "Q", "answer": "A"}),
                "page_id_out_of_range",
                "page_id",
            ),
            (
                json!({"page_id": 1, "question": ["Q"], "answer": "A"}),
                "invalid_type",
                "question",
            ),
            (
                json!({"page_id": 1, "question": " \n", "answer": "A"}),
                "empty_field",
                "question",
            ),
            (
                json!({"page_id": 1, "question": "Q"}),
                "missing_field",
                "answer",
            ),
            (
                json!({"page_id": 1, "question": "Q", "answer": "A".repeat(10_001)}),
                "too_long",
                "answer",
            ),
            (
                json!({"page_id": 1, "question": "Q", "answer": "A", "event_id": 5}),
                "invalid_type",
                "event_id",
            ),
            (
                json!({"page_id": 1, "question": "Q", "answer": "A", "event_id": ""}),
                "empty_field",
                "event_id",
            ),
        ];
        for (v, code, field) in cases {
            let e = err(v.clone());
            assert_eq!(e.error_code(), code, "{v}");
            assert!(e.to_string().contains(field), "{v}: {e}");
            assert_eq!(e.field().unwrap_or("object"), field, "{v}");
        }
    }

    #[test]
    fn validate_all_reports_every_bad_field_and_validate_the_first() {
        let limits = GiftLimits::default();
        let v = json!({"page_id": "x", "question": 7, "answer": "", "ts": "later", "event_id": ""});
        let all = Gift::validate_all(v.clone(), 0, &limits).unwrap_err();
        let fields: Vec<_> = all.iter().map(|e| e.field().unwrap()).collect();
        assert_eq!(fields, ["page_id", "question", "answer", "ts", "event_id"]);
        assert_eq!(Gift::validate(v, 0, &limits).unwrap_err(), all[0]);
        // One bad field among good ones: exactly that one.
        let v = json!({"page_id": 3, "question": "Q", "answer": "A", "ts": true});
        let all = Gift::validate_all(v, 0, &limits).unwrap_err();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].field(), Some("ts"));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let limits = GiftLimits {
            max_text_chars: 3,
            ..GiftLimits::default()
        };
        assert!(
            Gift::validate(
                json!({"page_id": 1, "question": "🎁🎁🎁", "answer": "é"}),
                0,
                &limits
            )
            .is_ok()
        );
        assert!(
            Gift::validate(
                json!({"page_id": 1, "question": "🎁🎁🎁🎁", "answer": "é"}),
                0,
                &limits
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn validate_never_panics_and_rows_round_trip(page_id in any::<i64>(), q in ".{0,40}", a in ".{0,40}", ts in any::<f64>()) {
            let v = json!({"page_id": page_id, "question": q, "answer": a, "ts": ts});
            if let Ok(g) = Gift::validate(v, 0, &GiftLimits::default()) {
                let row: Value = serde_json::from_slice(&g.to_row(Provenance { topic: "t", partition: 0, offset: 0 })).unwrap();
                prop_assert_eq!(row["question"].as_str(), Some(q.as_str()));
                let parsed = OffsetDateTime::parse(row["ts"].as_str().unwrap(), &Rfc3339).unwrap();
                prop_assert_eq!((parsed.unix_timestamp_nanos() / 1000) as i64, g.ts_micros);
            }
        }
    }
}
