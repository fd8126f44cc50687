//! A reader written for the one shape an ESM payload has: an object of a few strings and
//! `records`, an object of arrays of flat record objects whose long base64 texts hold no
//! escapes. serde_json reads every string byte by byte for escapes and control characters (8 at a
//! time) and goes through a visitor per field; here the closing quote of a text is found with
//! `memchr` (SIMD), numbers are read in place and known field names are matched directly.
//!
//! It reads a subset of what the serde parse ([`RawBatch`](super::RawBatch) through serde_json)
//! reads and gives the same [`KafkaBatch`] for it: anything else (an escape in a name, a duplicate field, a
//! fraction where an integer goes, an array where the payload object goes) is `None`, and the
//! serde parse decides. Headers, schema metadata and unknown fields go through serde_json itself.

use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny};

use super::{EventSource, KafkaBatch, raw_range};
use crate::record::{HeaderList, KafkaRecord, Text};
use crate::schema::{MetadataField, SchemaMetadata};

/// Reads `payload` when it has the usual shape; `None` when the serde parse must decide. The
/// records' texts stay in `payload`, which they share.
pub(super) fn read(payload: &Arc<String>) -> Option<KafkaBatch> {
    let mut r = Reader {
        buf: payload,
        text: payload,
        bytes: payload.as_bytes(),
        at: 0,
        records: Vec::new(),
        topic: None,
        timestamp_type: None,
    };
    let mut batch = r.batch()?;
    r.skip_ws();
    (r.at == r.bytes.len()).then_some(())?;
    batch.sort();
    Some(batch)
}

struct Reader<'a> {
    buf: &'a Arc<String>,
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    records: Vec<KafkaRecord>,
    /// The topic and timestamp type last read: a batch names one or two, over and over, and
    /// its records share them.
    topic: Option<Arc<str>>,
    timestamp_type: Option<Arc<str>>,
}

/// Whether `bytes` start with `text` in quotes. Compared inline: names are a dozen bytes, shorter
/// than a call to `memcmp` is worth.
fn quoted(bytes: &[u8], text: &str) -> bool {
    let n = text.len();
    bytes.len() > n + 1
        && bytes[0] == b'"'
        && bytes[n + 1] == b'"'
        && same_bytes(Some(&bytes[1..=n]), text.as_bytes())
}

/// `a == b`, compared inline (see [`quoted`]).
fn same_bytes(a: Option<&[u8]>, b: &[u8]) -> bool {
    a.is_some_and(|a| {
        a.len() == b.len() && a.iter().zip(b).fold(true, |same, (x, y)| same & (x == y))
    })
}

/// One bit per known field, to refuse duplicates as serde's derive does.
fn first(seen: &mut u16, bit: u16) -> Option<()> {
    (*seen & bit == 0).then(|| *seen |= bit)
}

impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `,` (more follows: `true`) or `close` (done: `false`).
    fn next_or(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            b if b == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// `null`, consumed when it is next.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        let end = self.at + 4;
        (self.bytes.get(self.at..end)? == b"null").then(|| self.at = end)?;
        Some(true)
    }

    /// Where the text of a string without escapes lies (control characters not checked).
    fn span(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.at;
        let len = memchr::memchr2(b'"', b'\\', &self.bytes[start..])?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some((start, start + len))
    }

    /// A string without escapes or control characters, borrowed: names and short values, read
    /// a byte at a time (cheaper than setting up a SIMD search for a dozen bytes).
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = self.bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Between two quotes of a `str`: whole characters.
        self.text.get(start..start + len)
    }

    /// A field name and its colon.
    fn name(&mut self) -> Option<&'a str> {
        let name = self.str()?;
        self.eat(b':')?;
        Some(name)
    }

    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        if self.null()? {
            return Some(None);
        }
        self.str().map(Some)
    }

    /// A string as an `Arc` shared with the records before when it repeats `last` (tried first:
    /// one comparison instead of a scan), else a new one that becomes `last`; `None` for null.
    fn shared(&mut self, last: &mut Option<Arc<str>>) -> Option<Option<Arc<str>>> {
        self.skip_ws();
        if let Some(l) = last
            && quoted(&self.bytes[self.at..], l)
        {
            self.at += l.len() + 2;
            return Some(Some(Arc::clone(l)));
        }
        Some(
            self.opt_str()?
                .map(|s| Arc::clone(last.insert(Arc::from(s)))),
        )
    }

    /// A key or value text, left where it is in the payload; `None` inside for null.
    fn text(&mut self) -> Option<Option<Text>> {
        if self.null()? {
            return Some(None);
        }
        let (start, end) = self.span()?;
        // Control characters are refused as in any JSON string; the text is whole characters.
        let (start, end) = raw_range(self.text, &self.bytes[start..end])?;
        Some(Some(Text::shared(self.buf, start, end)))
    }

    /// A JSON integer as serde_json reads one into an `i64`: no fraction or exponent, no leading
    /// zero, not `-0`, within range.
    fn int(&mut self) -> Option<i64> {
        self.skip_ws();
        let negative = self.bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        let digits = self.bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(self.bytes.len() - start);
        // 19 digits always fit a u64; longer numbers are left to serde_json.
        if digits == 0 || digits > 19 || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        let magnitude = self.bytes[start..start + digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        self.at = start + digits;
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.at) {
            return None;
        }
        if negative {
            // serde_json reads `-0` as the float -0.0, which an i64 refuses.
            if magnitude == 0 {
                return None;
            }
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        }
    }

    /// One value read by serde_json from here on.
    fn serde<T: DeserializeOwned>(&mut self) -> Option<T> {
        self.skip_ws();
        let mut values =
            serde_json::Deserializer::from_str(self.text.get(self.at..)?).into_iter::<T>();
        let value = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(value)
    }

    fn batch(&mut self) -> Option<KafkaBatch> {
        self.eat(b'{')?;
        let mut seen = 0;
        let (mut event_source, mut event_source_arn, mut bootstrap_servers) = (None, None, None);
        if self.peek()? != b'}' {
            loop {
                match self.name()? {
                    "eventSource" => {
                        first(&mut seen, 1)?;
                        event_source = self.opt_str()?;
                    }
                    "eventSourceArn" => {
                        first(&mut seen, 2)?;
                        event_source_arn = self.opt_str()?.map(String::from);
                    }
                    "bootstrapServers" => {
                        first(&mut seen, 4)?;
                        bootstrap_servers = self.opt_str()?.map(String::from);
                    }
                    "records" => {
                        first(&mut seen, 8)?;
                        self.groups()?;
                    }
                    _ => {
                        self.serde::<IgnoredAny>()?;
                    }
                }
                if !self.next_or(b'}')? {
                    break;
                }
            }
        } else {
            self.at += 1;
        }
        // `records` is required.
        (seen & 8 != 0).then_some(())?;
        Some(KafkaBatch {
            event_source: event_source
                .map(EventSource::from)
                .unwrap_or(EventSource::Other(String::new())),
            event_source_arn,
            bootstrap_servers,
            records: std::mem::take(&mut self.records),
        })
    }

    /// `records`: `"<topic>-<partition>"` to a list of records, or null. The keys are not
    /// needed: every record here names its topic and partition.
    fn groups(&mut self) -> Option<()> {
        if self.null()? {
            return Some(());
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.name()?;
            if !self.null()? {
                self.eat(b'[')?;
                if self.peek()? == b']' {
                    self.at += 1;
                } else {
                    loop {
                        let start = self.at;
                        let record = self.record()?;
                        if self.records.is_empty() {
                            // Room for as many records as the payload holds if the rest are like
                            // the first; capacity not written to costs no memory pages.
                            let each = (self.at - start).max(64);
                            self.records
                                .reserve((self.bytes.len() - self.at) / each + 1);
                        }
                        self.records.push(record);
                        if !self.next_or(b']')? {
                            break;
                        }
                    }
                }
            }
            if !self.next_or(b'}')? {
                return Some(());
            }
        }
    }

    /// The next field name and its colon: the index of a known name in `names`, else the name.
    /// The ESM writes a record's fields in one order, so the one after `guess - 1` is tried first
    /// with a single comparison of its quoted form.
    fn field(&mut self, names: &[&str], guess: usize) -> Option<Result<usize, &'a str>> {
        self.skip_ws();
        let rest = &self.bytes[self.at..];
        let field = match names.get(guess) {
            Some(n) if quoted(rest, n) => {
                self.at += n.len() + 2;
                Ok(guess)
            }
            _ => {
                let name = self.str()?;
                names.iter().position(|n| *n == name).ok_or(name)
            }
        };
        self.eat(b':')?;
        Some(field)
    }

    /// A record that names its topic, with a partition in range; anything else (a record
    /// without `topic` takes it from its group's key) is left to serde.
    fn record(&mut self) -> Option<KafkaRecord> {
        /// In the order the ESM writes them.
        const FIELDS: [&str; 10] = [
            "topic",
            "partition",
            "offset",
            "timestamp",
            "timestampType",
            "key",
            "value",
            "headers",
            "keySchemaMetadata",
            "valueSchemaMetadata",
        ];
        self.eat(b'{')?;
        let mut seen = 0;
        let mut topic = None;
        let (mut partition, mut offset, mut timestamp) = (None, None, None);
        let (mut timestamp_type, mut key, mut value) = (None, None, None);
        let mut headers = HeaderList::default();
        let mut key_schema_metadata = MetadataField::default();
        let mut value_schema_metadata = MetadataField::default();
        if self.peek()? == b'}' {
            return None;
        }
        let mut guess = 0;
        loop {
            let field = self.field(&FIELDS, guess)?;
            if let Ok(i) = field {
                first(&mut seen, 1 << i)?;
                guess = i + 1;
            }
            match field {
                Ok(0) => {
                    let mut last = self.topic.take();
                    topic = self.shared(&mut last)?;
                    self.topic = last;
                }
                Ok(1) => partition = Some(i32::try_from(self.int()?).ok()?),
                Ok(2) => offset = Some(self.int()?),
                Ok(3) => timestamp = Some(self.int()?),
                Ok(4) => {
                    let mut last = self.timestamp_type.take();
                    timestamp_type = self.shared(&mut last)?;
                    self.timestamp_type = last;
                }
                Ok(5) => key = self.text()?,
                Ok(6) => value = self.text()?,
                Ok(7) => headers = self.headers()?,
                Ok(8) => key_schema_metadata = self.metadata()?,
                Ok(9) => value_schema_metadata = self.metadata()?,
                _ => {
                    self.serde::<IgnoredAny>()?;
                }
            }
            if !self.next_or(b'}')? {
                break;
            }
        }
        let mut record = KafkaRecord::new(topic?, partition?, offset?, timestamp?);
        record.timestamp_type = timestamp_type;
        record.key = key;
        record.value = value;
        record.headers = headers.0;
        record.key_schema_metadata = key_schema_metadata.0;
        record.value_schema_metadata = value_schema_metadata.0;
        Some(record)
    }

    /// `keySchemaMetadata` / `valueSchemaMetadata`: MSK writes `{"dataFormat":"JSON",
    /// "schemaId":null}` on every record without a schema registry, so the forms with string or
    /// null members are read here; anything else by serde_json.
    fn metadata(&mut self) -> Option<MetadataField> {
        /// What MSK writes on every record without a schema registry, byte for byte.
        const NO_REGISTRY: &[u8] = br#"{"dataFormat":"JSON","schemaId":null}"#;
        self.skip_ws();
        let start = self.at;
        if same_bytes(
            self.bytes.get(start..start + NO_REGISTRY.len()),
            NO_REGISTRY,
        ) {
            self.at += NO_REGISTRY.len();
            return Some(MetadataField(None));
        }
        if let Some(m) = self.metadata_members() {
            return Some(m);
        }
        self.at = start;
        self.serde()
    }

    fn metadata_members(&mut self) -> Option<MetadataField> {
        if self.null()? {
            return Some(MetadataField(None));
        }
        self.eat(b'{')?;
        let (mut format, mut id) = (None, None);
        let mut seen = 0;
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                match self.field(&["dataFormat", "schemaId"], seen)? {
                    Ok(0) if seen == 0 => {
                        seen = 1;
                        format = self.opt_str()?;
                    }
                    Ok(1) if seen < 2 => {
                        seen = 2;
                        id = self.opt_str()?;
                    }
                    // Out of order, repeated or unknown: serde_json decides.
                    _ => return None,
                }
                if !self.next_or(b'}')? {
                    break;
                }
            }
        }
        Some(MetadataField(id.filter(|id| !id.is_empty()).map(|id| {
            Box::new(SchemaMetadata {
                data_format: format.unwrap_or_default().to_owned(),
                schema_id: id.to_owned(),
            })
        })))
    }

    /// `[]` read here (the common case), anything else by serde_json.
    fn headers(&mut self) -> Option<HeaderList> {
        if self.peek()? == b'[' {
            let open = self.at;
            self.at += 1;
            if self.peek()? == b']' {
                self.at += 1;
                return Some(HeaderList::default());
            }
            self.at = open;
        }
        self.serde()
    }
}
