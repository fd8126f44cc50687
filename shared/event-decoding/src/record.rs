//! One Kafka record as the event source mapping delivers it: coordinates, base64 key and value
//! (decoded on demand), and headers.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ErrorCode, RecordError};
use crate::record_id::RecordId;
use crate::schema::SchemaMetadata;

mod change;
mod schema_ids;
mod via;

pub use schema_ids::{key_and_value_schema_ids, schema_ids};

/// Standard alphabet; padding is optional on input because some producers of test payloads
/// strip it, and it carries no information.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A record header: a name and raw bytes. The ESM encodes the bytes as signed numbers
/// (`-61` is the byte `0xC3`); this type holds the real bytes.
///
/// ```
/// use event_decoding::Header;
/// let h = Header::new("origin", "Zürich");
/// assert_eq!(h.as_str(), Some("Zürich"));
/// assert_eq!(Header::new("bin", vec![0xff]).as_str(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value bytes.
    pub value: Vec<u8>,
}

impl Header {
    /// Builds a header from any bytes.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The value as UTF-8 text, or `None` when it is not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// One Kafka record. Key and value stay base64 text as delivered until asked for, so records that
/// a function skips cost nothing and dead letters can carry the exact original text.
///
/// ```
/// use event_decoding::KafkaRecord;
/// let r = KafkaRecord::new("gift_events", 0, 10, 1_732_350_000_123)
///     .with_key("g-1")
///     .with_value(r#"{"page_id":1}"#)
///     .with_header("trace", "abc");
/// assert_eq!(r.raw_value(), Some("eyJwYWdlX2lkIjoxfQ=="));
/// assert_eq!(r.value_str().unwrap().as_deref(), Some(r#"{"page_id":1}"#));
/// assert_eq!(r.header("trace").and_then(|h| h.as_str()), Some("abc"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRecord {
    /// Topic name, shared by the records of a batch that have the same topic (one allocation per
    /// topic, not per record). Derefs to `&str`.
    #[serde(serialize_with = "serialize_str")]
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Record timestamp, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// `CREATE_TIME` or `LOG_APPEND_TIME` when the ESM says (shared like `topic`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_str"
    )]
    pub timestamp_type: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<Text>,
    #[serde(serialize_with = "serialize_headers")]
    pub(crate) headers: Vec<Header>,
    /// `keySchemaMetadata` (an ESM schema registry with `EventRecordFormat: SOURCE`); boxed, as
    /// most records have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key_schema_metadata: Option<Box<SchemaMetadata>>,
    /// `valueSchemaMetadata`, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value_schema_metadata: Option<Box<SchemaMetadata>>,
}

impl KafkaRecord {
    /// A record with no key, no value and no headers.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64, timestamp: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            timestamp,
            timestamp_type: None,
            key: None,
            value: None,
            headers: Vec::new(),
            key_schema_metadata: None,
            value_schema_metadata: None,
        }
    }

    /// Sets the key to `bytes` (base64-encoded for the payload).
    pub fn with_key(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.key = Some(Text::new(BASE64.encode(bytes)));
        self
    }

    /// Sets the value to `bytes` (base64-encoded for the payload).
    pub fn with_value(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.value = Some(Text::new(BASE64.encode(bytes)));
        self
    }

    /// Sets the key text exactly as the ESM would deliver it (base64, or garbage for tests).
    pub fn with_raw_key(mut self, base64: impl Into<String>) -> Self {
        self.key = Some(Text::new(base64.into()));
        self
    }

    /// Sets the value text exactly as the ESM would deliver it (base64, or garbage for tests).
    pub fn with_raw_value(mut self, base64: impl Into<String>) -> Self {
        self.value = Some(Text::new(base64.into()));
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the timestamp type (`CREATE_TIME` / `LOG_APPEND_TIME`).
    pub fn with_timestamp_type(mut self, timestamp_type: impl Into<Arc<str>>) -> Self {
        self.timestamp_type = Some(timestamp_type.into());
        self
    }

    /// `keySchemaMetadata`, when the event source mapping's schema registry set it.
    pub fn key_schema_metadata(&self) -> Option<&SchemaMetadata> {
        self.key_schema_metadata.as_deref()
    }

    /// `valueSchemaMetadata`, when the event source mapping's schema registry set it.
    pub fn value_schema_metadata(&self) -> Option<&SchemaMetadata> {
        self.value_schema_metadata.as_deref()
    }

    /// Sets `keySchemaMetadata`.
    pub fn with_key_schema_metadata(mut self, meta: SchemaMetadata) -> Self {
        self.key_schema_metadata = Some(Box::new(meta));
        self
    }

    /// Sets `valueSchemaMetadata`.
    pub fn with_value_schema_metadata(mut self, meta: SchemaMetadata) -> Self {
        self.value_schema_metadata = Some(Box::new(meta));
        self
    }

    /// The record's coordinates.
    pub fn id(&self) -> RecordId {
        RecordId::new(&*self.topic, self.partition, self.offset)
    }

    /// `"<topic>-<partition>"`.
    pub fn topic_partition(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// The key bytes; `None` when the key is null or absent.
    pub fn key(&self) -> Result<Option<Vec<u8>>, RecordError> {
        self.decode(self.raw_key(), "key")
    }

    /// The value bytes; `None` when the value is null or absent (a tombstone).
    pub fn value(&self) -> Result<Option<Vec<u8>>, RecordError> {
        self.decode(self.raw_value(), "value")
    }

    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Result<Option<String>, RecordError> {
        self.key()?.map(|b| self.utf8(b, "key")).transpose()
    }

    /// The value as UTF-8 text (`invalid_utf8` when it is not).
    pub fn value_str(&self) -> Result<Option<String>, RecordError> {
        self.value()?.map(|b| self.utf8(b, "value")).transpose()
    }

    /// Decodes the value as JSON into `T`.
    ///
    /// Errors: `missing_value` (null/absent value), `invalid_base64`, `invalid_utf8`,
    /// `invalid_json` (syntax), `invalid_field` (well-formed JSON that does not fit `T`; the
    /// message names the field path).
    ///
    /// ```
    /// use event_decoding::{ErrorCode, KafkaRecord};
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Gift { page_id: i64 }
    /// let ok = KafkaRecord::new("t", 0, 0, 0).with_value(r#"{"page_id": 7}"#);
    /// assert_eq!(ok.value_json::<Gift>().unwrap().page_id, 7);
    /// let bad = KafkaRecord::new("t", 0, 1, 0).with_value(r#"{"page_id": "x"}"#);
    /// let err = bad.value_json::<Gift>().unwrap_err();
    /// assert_eq!(err.code, ErrorCode::InvalidField);
    /// assert!(err.message.contains("page_id"));
    /// ```
    pub fn value_json<T: DeserializeOwned>(&self) -> Result<T, RecordError> {
        let bytes = self.value()?.ok_or_else(|| {
            self.error(
                ErrorCode::MissingValue,
                "value is null or absent; expected a JSON document",
            )
        })?;
        self.parse_json(&bytes, "value")
    }

    /// The base64 key text exactly as delivered (for dead letters).
    pub fn raw_key(&self) -> Option<&str> {
        self.key.as_ref().map(Text::as_str)
    }

    /// The base64 value text exactly as delivered (for dead letters).
    pub fn raw_value(&self) -> Option<&str> {
        self.value.as_ref().map(Text::as_str)
    }

    /// All headers, in delivery order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    pub(crate) fn error(&self, code: ErrorCode, message: impl Into<String>) -> RecordError {
        RecordError::new(self.id(), code, message)
    }

    fn decode(&self, text: Option<&str>, what: &str) -> Result<Option<Vec<u8>>, RecordError> {
        text.map(|t| {
            decode_base64(t).map_err(|e| {
                self.error(
                    ErrorCode::InvalidBase64,
                    format!("{what} is not valid base64: {e}"),
                )
            })
        })
        .transpose()
    }

    fn utf8(&self, bytes: Vec<u8>, what: &str) -> Result<String, RecordError> {
        String::from_utf8(bytes).map_err(|e| {
            self.error(
                ErrorCode::InvalidUtf8,
                format!(
                    "{what} is not valid UTF-8: invalid byte sequence at byte {}",
                    e.utf8_error().valid_up_to()
                ),
            )
        })
    }

    /// Parses JSON with the failing field path in the message. `what` names the part of the
    /// record (`key` / `value`).
    pub(crate) fn parse_json<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<T, RecordError> {
        if let Some(v) = parse_fast::<T>(bytes) {
            return Ok(v);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(v) => de
                .end()
                .map(|()| v)
                .map_err(|e| self.json_error(bytes, what, ".", e)),
            Err(err) => {
                let path = err.path().to_string();
                Err(self.json_error(bytes, what, &path, err.into_inner()))
            }
        }
    }

    fn json_error(
        &self,
        bytes: &[u8],
        what: &str,
        path: &str,
        inner: serde_json::Error,
    ) -> RecordError {
        // serde_json rejects invalid UTF-8 inside strings as a syntax error; name the real cause.
        if let Err(e) = std::str::from_utf8(bytes) {
            return self.error(
                ErrorCode::InvalidUtf8,
                format!(
                    "{what} is not valid UTF-8: invalid byte sequence at byte {}",
                    e.valid_up_to()
                ),
            );
        }
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { what } else { path };
                self.error(ErrorCode::InvalidField, format!("{field}: {inner}"))
            }
            _ => self.error(
                ErrorCode::InvalidJson,
                format!("{what} is not valid JSON: {inner}"),
            ),
        }
    }
}

/// The base64 text of a key or value as delivered: a range of a buffer that the records of one
/// parsed payload share, so a batch holds its texts in one allocation instead of one string each.
/// Compares and prints as the text.
#[derive(Clone)]
pub(crate) struct Text {
    buf: Arc<String>,
    start: usize,
    end: usize,
}

impl Text {
    /// A text of its own.
    pub(crate) fn new(text: String) -> Self {
        let end = text.len();
        Self {
            buf: Arc::new(text),
            start: 0,
            end,
        }
    }

    /// `buf[start..end]`; `start..end` must lie on character boundaries of `buf`.
    pub(crate) fn shared(buf: &Arc<String>, start: usize, end: usize) -> Self {
        debug_assert!(buf.is_char_boundary(start) && buf.is_char_boundary(end));
        Self {
            buf: Arc::clone(buf),
            start,
            end,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.buf[self.start..self.end]
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn serialize_str<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text)
}

fn serialize_opt_str<S: Serializer>(text: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) => s.serialize_str(t),
        None => s.serialize_none(),
    }
}

/// Decodes like [`BASE64`], with SIMD. `base64-simd` is as strict as `BASE64` (padding checked when
/// present, non-canonical trailing bits rejected), so anything it refuses goes to `BASE64`, which
/// decides and words the error exactly as before.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let simd = if text.len().is_multiple_of(4) {
        &base64_simd::STANDARD
    } else {
        &base64_simd::STANDARD_NO_PAD
    };
    match simd.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => BASE64.decode(text),
    }
}

fn serialize_headers<S: Serializer>(headers: &[Header], s: S) -> Result<S::Ok, S::Error> {
    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for b in self.0 {
                // The ESM (a JVM) sends Java's signed bytes.
                seq.serialize_element(&(*b as i8))?;
            }
            seq.end()
        }
    }
    struct Entry<'a>(&'a Header);
    impl Serialize for Entry<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(&self.0.name, &Bytes(&self.0.value))?;
            map.end()
        }
    }
    let mut seq = s.serialize_seq(Some(headers.len()))?;
    for h in headers {
        seq.serialize_element(&Entry(h))?;
    }
    seq.end()
}

/// The ESM header list: `[{"name": [signed bytes]}, ...]`, possibly `null` or absent. Each map
/// normally has one entry; more are accepted and kept in order.
#[derive(Debug, Default)]
pub(crate) struct HeaderList(pub(crate) Vec<Header>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = HeaderList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of {name: [bytes]} objects, or null")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<HeaderList, E> {
                Ok(HeaderList::default())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<HeaderList, E> {
                Ok(HeaderList::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<HeaderList, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderList, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                // Each map appends straight into `out`: no vector per map.
                while seq.next_element_seed(HeaderMap(&mut out))?.is_some() {}
                Ok(HeaderList(out))
            }
        }
        d.deserialize_option(ListVisitor)
    }
}

/// One `{name: [bytes], ...}` map of the header list, appended to the list as it is read.
struct HeaderMap<'a>(&'a mut Vec<Header>);

impl<'de> DeserializeSeed<'de> for HeaderMap<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderMap<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object mapping a header name to an array of bytes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((name, HeaderBytes(value))) = map.next_entry::<String, HeaderBytes>()? {
            self.0.push(Header { name, value });
        }
        Ok(())
    }
}

struct HeaderBytes(Vec<u8>);

impl<'de> Deserialize<'de> for HeaderBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The bytes, or the first number out of range.
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Result<Vec<u8>, i16>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // Signed (-128..=127, what the ESM sends) and unsigned (128..=255, what
                // hand-written payloads sometimes use) both map onto the same byte.
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                let mut out_of_range = None;
                while let Some(n) = seq.next_element::<i16>()? {
                    if (-128..=255).contains(&n) {
                        bytes.push(n as u8);
                    } else if out_of_range.is_none() {
                        out_of_range = Some(n);
                    }
                }
                Ok(out_of_range.map_or(Ok(bytes), Err))
            }
        }
        // The range error is raised after the array is read, so it points where it always did.
        d.deserialize_seq(BytesVisitor)?
            .map(HeaderBytes)
            .map_err(|n| {
                serde::de::Error::custom(format!("header byte {n} out of range -128..=255"))
            })
    }
}

/// JSON without path tracking, UTF-8 checked once rather than string by string: `None` on any
/// failure, which the caller then parses again with `serde_path_to_error` only to name where it
/// went wrong. Tracking the path costs on every value; a valid payload never pays it.
pub(crate) fn parse_fast<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    serde_json::from_str(simdutf8::basic::from_utf8(bytes).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Gift {
        page_id: i64,
        question: String,
    }

    fn rec() -> KafkaRecord {
        KafkaRecord::new("gift_events", 2, 9, 1)
    }

    #[test]
    fn absent_and_null_key_value_are_none() {
        let r = rec();
        assert_eq!(r.key().unwrap(), None);
        assert_eq!(r.value().unwrap(), None);
        assert_eq!(r.value_str().unwrap(), None);
    }

    #[test]
    fn missing_value_for_json() {
        let err = rec().value_json::<Gift>().unwrap_err();
        assert_eq!(err.code, ErrorCode::MissingValue);
        assert_eq!(err.id, RecordId::new("gift_events", 2, 9));
    }

    #[test]
    fn invalid_base64_names_key_or_value() {
        let err = rec().with_raw_key("@@@").key().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidBase64);
        assert!(
            err.message.starts_with("key is not valid base64"),
            "{}",
            err.message
        );
        let err = rec().with_raw_value("%%").value_json::<Gift>().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidBase64);
        assert!(err.message.starts_with("value is not valid base64"));
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let r = rec().with_raw_value("aGk");
        assert_eq!(r.value_str().unwrap().as_deref(), Some("hi"));
    }

    #[test]
    fn invalid_utf8_in_text_and_json() {
        let r = rec().with_value([b'"', 0xff, b'"']);
        assert_eq!(r.value_str().unwrap_err().code, ErrorCode::InvalidUtf8);
        assert_eq!(
            r.value_json::<String>().unwrap_err().code,
            ErrorCode::InvalidUtf8
        );
    }

    #[test]
    fn invalid_json_vs_invalid_field() {
        let err = rec()
            .with_value("{\"page_id\": 1,")
            .value_json::<Gift>()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
        let err = rec()
            .with_value(r#"{"page_id": 1, "question": "q"} trailing"#)
            .value_json::<Gift>()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
        let err = rec()
            .with_value(r#"{"page_id": 1, "question": 5}"#)
            .value_json::<Gift>()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        assert!(
            err.message.starts_with("question: invalid type"),
            "{}",
            err.message
        );
        let err = rec()
            .with_value(r#"{"page_id": 1}"#)
            .value_json::<Gift>()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        assert!(
            err.message.contains("missing field `question`"),
            "{}",
            err.message
        );
        let err = rec().with_value("5").value_json::<Gift>().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidField);
        assert!(
            err.message.starts_with("value: invalid type"),
            "{}",
            err.message
        );
    }

    #[test]
    fn error_message_does_not_leak_payload() {
        let secret = "s3cr3t-token-value";
        let err = rec()
            .with_value(format!(r#"{{"page_id": 1, "question": 5, "x": "{secret}""#))
            .value_json::<Gift>()
            .unwrap_err();
        assert!(!err.to_string().contains(secret));
    }

    proptest::proptest! {
        #[test]
        fn simd_base64_decodes_exactly_like_base64(
            text in "[A-Za-z0-9+/=]{0,70}|[A-Za-z0-9+/=@ \n-]{0,12}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        ) {
            proptest::prop_assert_eq!(decode_base64(&text), BASE64.decode(&text));
            let padded = BASE64.encode(&bytes);
            let unpadded = padded.trim_end_matches('=');
            proptest::prop_assert_eq!(decode_base64(&padded), Ok(bytes.clone()));
            proptest::prop_assert_eq!(decode_base64(unpadded), Ok(bytes));
        }
    }

    #[test]
    fn simd_base64_edge_cases_match_base64() {
        for text in [
            "",
            "=",
            "==",
            "A",
            "AA",
            "AA=",
            "AA==",
            "AAA",
            "AAA=",
            "AB==",
            "AE==",
            "aGk",
            "aGk=",
            "aGl=",
            "aGk==",
            "a=Gk",
            "aGk=aGk=",
            "YQ",
            "YR",
            "Y===",
            "\u{e9}AAA",
        ] {
            assert_eq!(decode_base64(text), BASE64.decode(text), "{text:?}");
        }
    }

    #[test]
    fn header_bytes_signed_and_unsigned() {
        let json = r#"[{"a":[-61,-68]},{"b":[195,188]},{"c":[]}]"#;
        let HeaderList(h) = serde_json::from_str(json).unwrap();
        assert_eq!(h[0].as_str(), Some("ü"));
        assert_eq!(h[0].value, h[1].value);
        assert_eq!(h[2].value, Vec::<u8>::new());
        assert!(serde_json::from_str::<HeaderList>(r#"[{"a":[300]}]"#).is_err());
        assert!(
            serde_json::from_str::<HeaderList>("null")
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[test]
    fn headers_serialize_as_signed_bytes() {
        let r = rec().with_header("origin", "ü");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["headers"], serde_json::json!([{"origin": [-61, -68]}]));
        assert!(v.get("key").is_none());
    }
}
