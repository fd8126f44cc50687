//! A reader written for the one shape an ESM payload has: an object of a few strings and
//! `records`, an object of arrays of flat record objects whose long base64 texts hold no
//! escapes. serde_json reads every string byte by byte for escapes and control characters (8 at a
//! time) and goes through a visitor per field; here the closing quote of a text is found with
//! `memchr` (SIMD), numbers are read in place and known field names are matched directly.
//!
//! It reads a subset of what the serde parse ([`RawBatch`] through serde_json) reads and gives
//! the same [`RawBatch`] for it: anything else (an escape in a name, a duplicate field, a
//! fraction where an integer goes, an array where the payload object goes) is `None`, and the
//! serde parse decides. Headers, schema metadata and unknown fields go through serde_json itself.

use std::borrow::Cow;

use serde::de::{DeserializeOwned, IgnoredAny};

use super::{RawBatch, RawRecord, RawRecords, RawText, Str};
use crate::record::HeaderList;
use crate::schema::MetadataField;

/// Reads `payload` when it has the usual shape; `None` when the serde parse must decide.
pub(super) fn read(payload: &str) -> Option<RawBatch<'_, RawText<'_>>> {
    let mut r = Reader {
        text: payload,
        bytes: payload.as_bytes(),
        at: 0,
        last_topic: None,
        last_timestamp_type: None,
    };
    let batch = r.batch()?;
    r.skip_ws();
    (r.at == r.bytes.len()).then_some(batch)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    last_topic: Option<&'a str>,
    last_timestamp_type: Option<&'a str>,
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

    /// The bytes of a string without escapes (control characters not checked).
    fn raw(&mut self) -> Option<&'a [u8]> {
        let (start, end) = self.span()?;
        Some(&self.bytes[start..end])
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

    /// [`opt_str`](Self::opt_str), tried first as a repeat of `last` (a batch names one topic
    /// and one timestamp type over and over): one comparison instead of a scan.
    fn opt_str_again(&mut self, last: &mut Option<&'a str>) -> Option<Option<&'a str>> {
        if let Some(l) = *last {
            self.skip_ws();
            let rest = &self.bytes[self.at..];
            if rest.len() > l.len() + 1
                && rest[0] == b'"'
                && rest[l.len() + 1] == b'"'
                && &rest[1..=l.len()] == l.as_bytes()
            {
                self.at += l.len() + 2;
                return Some(Some(l));
            }
        }
        let s = self.opt_str()?;
        if s.is_some() {
            *last = s;
        }
        Some(s)
    }

    fn opt_raw(&mut self) -> Option<Option<RawText<'a>>> {
        if self.null()? {
            return Some(None);
        }
        self.raw().map(|b| Some(RawText(b)))
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

    fn batch(&mut self) -> Option<RawBatch<'a, RawText<'a>>> {
        self.eat(b'{')?;
        let mut seen = 0;
        let (mut event_source, mut event_source_arn, mut bootstrap_servers) = (None, None, None);
        let mut records = None;
        if self.peek()? != b'}' {
            loop {
                match self.name()? {
                    "eventSource" => {
                        first(&mut seen, 1)?;
                        event_source = self.opt_str()?.map(String::from);
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
                        records = Some(self.groups()?);
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
        Some(RawBatch {
            event_source,
            event_source_arn,
            bootstrap_servers,
            records: records?,
        })
    }

    /// `records`: `"<topic>-<partition>"` to a list of records, or null.
    fn groups(&mut self) -> Option<RawRecords<'a, RawText<'a>>> {
        if self.null()? {
            return Some(RawRecords(Vec::new()));
        }
        self.eat(b'{')?;
        let mut groups = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(RawRecords(groups));
        }
        loop {
            let key = Str(Cow::Borrowed(self.name()?));
            let mut records = Vec::new();
            if !self.null()? {
                self.eat(b'[')?;
                if self.peek()? == b']' {
                    self.at += 1;
                } else {
                    loop {
                        records.push(self.record()?);
                        if !self.next_or(b']')? {
                            break;
                        }
                    }
                }
            }
            groups.push((key, records));
            if !self.next_or(b'}')? {
                return Some(RawRecords(groups));
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
            Some(n)
                if rest.len() > n.len() + 1
                    && rest[0] == b'"'
                    && rest[n.len() + 1] == b'"'
                    && &rest[1..=n.len()] == n.as_bytes() =>
            {
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

    fn record(&mut self) -> Option<RawRecord<'a, RawText<'a>>> {
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
                    let mut last = self.last_topic;
                    topic = self.opt_str_again(&mut last)?;
                    self.last_topic = last;
                }
                Ok(1) => partition = Some(self.int()?),
                Ok(2) => offset = Some(self.int()?),
                Ok(3) => timestamp = Some(self.int()?),
                Ok(4) => {
                    let mut last = self.last_timestamp_type;
                    timestamp_type = self.opt_str_again(&mut last)?;
                    self.last_timestamp_type = last;
                }
                Ok(5) => key = self.opt_raw()?,
                Ok(6) => value = self.opt_raw()?,
                Ok(7) => headers = self.headers()?,
                Ok(8) => key_schema_metadata = self.serde()?,
                Ok(9) => value_schema_metadata = self.serde()?,
                _ => {
                    self.serde::<IgnoredAny>()?;
                }
            }
            if !self.next_or(b'}')? {
                break;
            }
        }
        Some(RawRecord {
            topic: topic.map(|t| Str(Cow::Borrowed(t))),
            partition: partition?,
            offset: offset?,
            timestamp: timestamp?,
            timestamp_type: timestamp_type.map(|t| Str(Cow::Borrowed(t))),
            key,
            value,
            headers,
            key_schema_metadata,
            value_schema_metadata,
        })
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
