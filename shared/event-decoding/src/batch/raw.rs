//! The payload as serde reads it before records are built: [`RawBatch`] of [`RawRecord`]s whose
//! key and value texts are JSON strings ([`Str`], the strict parse) or the bytes between the
//! quotes ([`RawText`], the fast parse), checked and turned into a [`KafkaBatch`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{EventSource, KafkaBatch};
use crate::error::BatchError;
use crate::record::{HeaderList, KafkaRecord, Text};

/// The payload as parsed, before records are built. `T` is how a key or value text is read:
/// [`Str`] (a JSON string, checked like any other) or [`RawText`] (the bytes between the quotes,
/// found with SIMD; checked afterwards, for the whole batch at once).
#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "'de: 'a, T: Deserialize<'de>")
)]
pub(super) struct RawBatch<'a, T> {
    #[serde(default)]
    pub(super) event_source: Option<String>,
    #[serde(default)]
    pub(super) event_source_arn: Option<String>,
    #[serde(default)]
    pub(super) bootstrap_servers: Option<String>,
    #[serde(borrow)]
    pub(super) records: RawRecords<'a, T>,
}

/// `records` keeps the map keys only to recover a topic a record does not state.
pub(super) struct RawRecords<'a, T>(pub(super) Vec<(Str<'a>, Vec<RawRecord<'a, T>>)>);

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for RawRecords<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(std::marker::PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = RawRecords<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping \"<topic>-<partition>\" to a list of records")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawRecords(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) =
                    map.next_entry::<Str<'a>, Option<Vec<RawRecord<'a, T>>>>()?
                {
                    out.push((k, v.unwrap_or_default()));
                }
                Ok(RawRecords(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A string of the payload, borrowed when the JSON has no escape in it, so parsing allocates
/// nothing per string.
pub(super) struct Str<'a>(pub(super) Cow<'a, str>);

impl Str<'_> {
    pub(super) fn owned(s: String) -> Self {
        Str(Cow::Owned(s))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The bytes between the quotes of a JSON string with no escape in it, read the way serde_json
/// reads bytes: a SIMD search for the closing quote, where reading a `str` goes 8 bytes at a time
/// checking each for control characters. Anything else (an escape, a number, an array) fails, and
/// the payload is parsed again with [`Str`]. Control characters and UTF-8 are checked by
/// `text_of` when the batch is built.
pub(super) struct RawText<'a>(pub(super) &'a [u8]);

impl<'de: 'a, 'a> Deserialize<'de> for RawText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string without escapes")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<RawText<'de>, E> {
                Ok(RawText(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A key or value text as parsed.
pub(super) trait TextBytes {
    /// `true` when the bytes are not yet known to be a JSON string's.
    const RAW: bool;
    fn bytes(&self) -> &[u8];
}

impl TextBytes for Str<'_> {
    const RAW: bool = false;
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl TextBytes for RawText<'_> {
    const RAW: bool = true;
    fn bytes(&self) -> &[u8] {
        self.0
    }
}

/// Where raw text `bytes` lie in `payload`, which they were borrowed from: `None` unless a JSON
/// string without escapes could hold them (no control character) and they are text (whole
/// characters of the payload, which is UTF-8 already: no second validation).
pub(super) fn raw_range(payload: &str, bytes: &[u8]) -> Option<(usize, usize)> {
    // One pass without early exit, which the compiler vectorises.
    if bytes.iter().fold(false, |acc, &b| acc | (b < 0x20)) {
        return None;
    }
    range_in(payload, bytes)
}

/// Where `bytes`, borrowed from `payload`, lie in it, when they are whole characters.
pub(super) fn range_in(payload: &str, bytes: &[u8]) -> Option<(usize, usize)> {
    let start = (bytes.as_ptr() as usize).checked_sub(payload.as_ptr() as usize)?;
    let end = start.checked_add(bytes.len())?;
    payload.get(start..end).map(|_| (start, end))
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "'de: 'a, T: Deserialize<'de>")
)]
pub(super) struct RawRecord<'a, T> {
    #[serde(default, borrow)]
    pub(super) topic: Option<Str<'a>>,
    pub(super) partition: i64,
    pub(super) offset: i64,
    pub(super) timestamp: i64,
    #[serde(default, borrow)]
    pub(super) timestamp_type: Option<Str<'a>>,
    #[serde(default)]
    pub(super) key: Option<T>,
    #[serde(default)]
    pub(super) value: Option<T>,
    #[serde(default)]
    pub(super) headers: HeaderList,
    /// Set by an ESM schema registry with `EventRecordFormat: SOURCE`.
    #[serde(default)]
    pub(super) key_schema_metadata: crate::schema::MetadataField,
    #[serde(default)]
    pub(super) value_schema_metadata: crate::schema::MetadataField,
}

impl<T: TextBytes> RawBatch<'_, T> {
    /// `None` when the texts are not what JSON strings would have given (only [`RawText`]s can
    /// fail so): the caller parses again with [`Str`], which names the problem. `payload` is the
    /// text that raw texts were borrowed from; the records share it.
    pub(super) fn into_batch(
        self,
        payload: &Arc<String>,
    ) -> Option<Result<KafkaBatch, BatchError>> {
        let groups = self.records.0;
        let texts = || {
            groups
                .iter()
                .flat_map(|(_, g)| g)
                .flat_map(|r| [&r.key, &r.value])
        };
        let buf = if T::RAW {
            // Raw texts stay where they are in the payload: nothing is copied.
            for t in texts().flatten() {
                raw_range(payload, t.bytes())?;
            }
            Arc::clone(payload)
        } else {
            // Strict texts may be unescaped copies: one buffer for all of them, not one each.
            let mut buf = String::with_capacity(texts().flatten().map(|t| t.bytes().len()).sum());
            for t in texts().flatten() {
                buf.push_str(std::str::from_utf8(t.bytes()).ok()?);
            }
            Arc::new(buf)
        };
        let mut at = 0;
        let mut next_text = |t: Option<T>| {
            t.map(|t| {
                let (start, end) = if T::RAW {
                    range_in(&buf, t.bytes()).expect("checked above")
                } else {
                    at += t.bytes().len();
                    (at - t.bytes().len(), at)
                };
                Text::shared(&buf, start, end)
            })
        };
        Some((|| {
            let mut records = Vec::with_capacity(groups.iter().map(|(_, v)| v.len()).sum());
            // A batch names a handful of topics and timestamp types: each is allocated once.
            let mut topic: Option<Arc<str>> = None;
            let mut timestamp_type: Option<Arc<str>> = None;
            for (group_key, group) in groups {
                for r in group {
                    let partition =
                        i32::try_from(r.partition).map_err(|_| BatchError::OutOfRange {
                            field: "partition",
                            value: r.partition,
                        })?;
                    let name = match &r.topic {
                        Some(t) => Cow::Borrowed(&*t.0),
                        // Never split the key on '-': the partition field tells us the exact suffix.
                        None => Cow::Owned(
                            topic_from_group_key(&group_key.0, partition).ok_or_else(|| {
                                BatchError::InvalidEvent {
                                    path: format!("records.{}", group_key.0),
                                    message: format!(
                                        "record at offset {} has no `topic` and the key does not end in -{partition}",
                                        r.offset
                                    ),
                                }
                            })?,
                        ),
                    };
                    let mut record = KafkaRecord::new(
                        interned(&mut topic, &name),
                        partition,
                        r.offset,
                        r.timestamp,
                    );
                    record.timestamp_type = r
                        .timestamp_type
                        .map(|t| interned(&mut timestamp_type, &t.0));
                    record.key = next_text(r.key);
                    record.value = next_text(r.value);
                    record.headers = r.headers.0;
                    record.key_schema_metadata = r.key_schema_metadata.0;
                    record.value_schema_metadata = r.value_schema_metadata.0;
                    records.push(record);
                }
            }
            let mut batch = KafkaBatch {
                event_source: self
                    .event_source
                    .as_deref()
                    .map(EventSource::from)
                    .unwrap_or(EventSource::Other(String::new())),
                event_source_arn: self.event_source_arn,
                bootstrap_servers: self.bootstrap_servers,
                records,
            };
            batch.sort();
            Ok(batch)
        })())
    }
}

/// `last` when it reads `name`, else a new `Arc` that becomes `last`.
pub(super) fn interned(last: &mut Option<Arc<str>>, name: &str) -> Arc<str> {
    match last {
        Some(l) if **l == *name => Arc::clone(l),
        _ => Arc::clone(last.insert(Arc::from(name))),
    }
}

pub(super) fn topic_from_group_key(key: &str, partition: i32) -> Option<String> {
    let suffix = format!("-{partition}");
    key.strip_suffix(&suffix)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}
