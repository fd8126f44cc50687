//! The AWS Glue Schema Registry wire format: what the Glue serializers (Java, and the Python and
//! .NET libraries that follow it) put before a Kafka key or value.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | header version, always `3` |
//! | 1 | compression: `0` none, `5` zlib (the whole body is one zlib stream) |
//! | 2..18 | the writer's schema version id, a UUID (most significant byte first) |
//! | 18.. | the body: Avro, JSON text, or for Protobuf the message index then the message |
//!
//! A JSON text never starts with byte 3 (nor a Confluent-framed value, whose magic byte is 0),
//! so a value is told apart by its first byte.
//!
//! ```
//! use event_decoding::{GlueCompression, glue_prefix};
//! let mut value = vec![3, 0];
//! value.extend_from_slice(&[0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x40, 0x71, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7, 0xe8, 0xf9]);
//! value.extend_from_slice(b"body");
//! let header = glue_prefix(&value).unwrap();
//! assert_eq!(header.schema_version_id, "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9");
//! assert_eq!(header.compression, GlueCompression::None);
//! assert_eq!(&*header.body().unwrap(), b"body");
//! ```

use std::borrow::Cow;

use prost_reflect::MessageDescriptor;

use crate::protobuf::ProtoSchema;

/// The header version byte the Glue serializers write.
pub const GLUE_HEADER_VERSION: u8 = 3;

/// Bytes before the body: version, compression, schema version id.
pub const GLUE_HEADER_LEN: usize = 18;

/// The most an inflated body may weigh. Kafka's default message limit is 1 MiB and MSK's largest
/// is 8 MiB; a zlib stream that inflates past this is refused rather than allowed to fill memory
/// (a few kilobytes of zlib can claim gigabytes).
pub const MAX_INFLATED_BODY: usize = 16 << 20;

/// The compression byte of a Glue-framed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlueCompression {
    /// `0`: the body as written.
    None,
    /// `5`: the body is one zlib stream (RFC 1950), as `java.util.zip.Deflater` writes it.
    Zlib,
}

impl GlueCompression {
    /// The compression byte, parsed; `None` for a byte the Glue serializers never write.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::None),
            5 => Some(Self::Zlib),
            _ => None,
        }
    }
}

/// A value in the Glue wire format, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueHeader<'b> {
    /// The writer's schema version id as canonical UUID text (lower case, hyphenated): what
    /// `GetSchemaVersion` takes as `SchemaVersionId`, and what an event source mapping puts in
    /// `valueSchemaMetadata.schemaId`.
    pub schema_version_id: String,
    /// How the body is compressed.
    pub compression: GlueCompression,
    /// The body as it is on the wire (still compressed for [`GlueCompression::Zlib`]).
    pub raw_body: &'b [u8],
}

impl<'b> GlueHeader<'b> {
    /// The body, inflated when it is compressed (at most [`MAX_INFLATED_BODY`] bytes).
    ///
    /// Errors: the zlib stream is corrupt, cut short, or inflates past the limit; the record is
    /// bad (no schema can read it).
    pub fn body(&self) -> Result<Cow<'b, [u8]>, String> {
        match self.compression {
            GlueCompression::None => Ok(Cow::Borrowed(self.raw_body)),
            GlueCompression::Zlib => inflate(self.raw_body, MAX_INFLATED_BODY).map(Cow::Owned),
        }
    }
}

/// Splits a value in the Glue wire format: header version 3, a known compression byte (0 or 5),
/// a 16-byte schema version id, then the body (possibly empty). `None` when `bytes` do not start
/// so.
///
/// ```
/// use event_decoding::glue_prefix;
/// assert!(glue_prefix(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_some());
/// assert!(glue_prefix(&[3, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_none());
/// assert!(glue_prefix(b"{}").is_none());
/// assert!(glue_prefix(&[3, 0, 1, 2]).is_none());
/// ```
pub fn glue_prefix(bytes: &[u8]) -> Option<GlueHeader<'_>> {
    let (header, raw_body) = bytes.split_first_chunk::<GLUE_HEADER_LEN>()?;
    if header[0] != GLUE_HEADER_VERSION {
        return None;
    }
    let compression = GlueCompression::from_byte(header[1])?;
    let id: &[u8; 16] = header[2..].try_into().expect("16 bytes");
    Some(GlueHeader {
        schema_version_id: uuid_text(id),
        compression,
        raw_body,
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case, as `java.util.UUID::toString` and
/// Glue's API write it.
fn uuid_text(id: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// Whether `id` is a Glue schema version id: a UUID as text (`8-4-4-4-12` hex digits), which is
/// what an event source mapping with a Glue registry puts in `valueSchemaMetadata.schemaId`
/// (a Confluent registry's ids are decimal numbers).
///
/// ```
/// # use event_decoding::is_glue_schema_version_id;
/// assert!(is_glue_schema_version_id("2b9d0c6e-51a4-4f87-b3e2-9c0d1e2f3a4b"));
/// assert!(is_glue_schema_version_id("2B9D0C6E-51A4-4F87-B3E2-9C0D1E2F3A4B"));
/// assert!(!is_glue_schema_version_id("11"));
/// assert!(!is_glue_schema_version_id("2b9d0c6e51a44f87b3e29c0d1e2f3a4b"));
/// assert!(!is_glue_schema_version_id("2b9d0c6e-51a4-4f87-b3e2-9c0d1e2f3a4g"));
/// ```
pub fn is_glue_schema_version_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Inflates one zlib stream (RFC 1950: header, deflate data, Adler-32 checksum) into at most
/// `limit` bytes. Bytes after the end of the stream are ignored, as the Glue deserializers ignore
/// them; a stream cut short, corrupt, or with a wrong checksum is an error.
///
/// ```
/// // zlib.compress(b"\x06\x04hi") in Python.
/// let z = [0x78, 0x9c, 0x63, 0x63, 0xc9, 0xc8, 0x04, 0x00, 0x01, 0x61, 0x00, 0xdc];
/// assert_eq!(event_decoding::inflate(&z, 100).unwrap(), [6, 4, b'h', b'i']);
/// assert!(event_decoding::inflate(&z, 3).unwrap_err().contains("more than 3 bytes"));
/// assert!(event_decoding::inflate(&z[..9], 100).unwrap_err().contains("cut short"));
/// ```
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let too_big = || format!("the zlib-compressed body inflates to more than {limit} bytes");
    let mut d = Decompress::new(true);
    // Output grows by doubling, never past limit + 1 (one byte past the limit tells it is too
    // big): a bomb costs at most `limit` bytes of memory.
    let cap = limit.saturating_add(1);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).max(64).min(cap));
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(too_big());
            }
            out.reserve_exact(out.capacity().min(cap - out.len()));
        }
        let (read, written) = (d.total_in(), out.len());
        let input = usize::try_from(read)
            .ok()
            .and_then(|r| compressed.get(r..))
            .unwrap_or_default();
        let status = d
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|e| format!("the zlib-compressed body does not inflate: {e}"))?;
        match status {
            Status::StreamEnd if out.len() > limit => return Err(too_big()),
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError => {
                let stalled = d.total_in() == read && out.len() == written;
                if stalled && out.len() < out.capacity() {
                    return Err("the zlib-compressed body is cut short".to_string());
                }
            }
        }
    }
}

/// The message index the Glue Protobuf serializer writes before the message: one unsigned varint
/// (protobuf `uint32`, at most 5 bytes), then the message. `None` when the body does not start
/// with a valid varint.
///
/// The index numbers every message type of the schema, nested ones included, in the
/// lexicographic order of their full names ([`glue_message_name`]).
///
/// ```
/// use event_decoding::glue_protobuf_index;
/// assert_eq!(glue_protobuf_index(&[0, 8, 1]), Some((0, &[8u8, 1][..])));
/// assert_eq!(glue_protobuf_index(&[0x96, 0x01, 8]), Some((150, &[8u8][..])));
/// assert_eq!(glue_protobuf_index(&[0x80]), None);
/// ```
pub fn glue_protobuf_index(body: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u64 = 0;
    for (i, b) in body.iter().enumerate().take(5) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, &body[i + 1..]));
        }
    }
    None
}

/// The full name of the message type that Glue message index `index` names, among `full_names`
/// (every message type of the schema, nested ones included, in any order): the Glue serializer
/// sorts the full names lexicographically and numbers them from 0.
///
/// ```
/// use event_decoding::glue_message_name;
/// // message B { message C {} message A { message D {} } }
/// let names = ["B", "B.C", "B.A", "B.A.D"];
/// assert_eq!(glue_message_name(names, 0), Some("B"));
/// assert_eq!(glue_message_name(names, 1), Some("B.A"));
/// assert_eq!(glue_message_name(names, 2), Some("B.A.D"));
/// assert_eq!(glue_message_name(names, 3), Some("B.C"));
/// assert_eq!(glue_message_name(names, 4), None);
/// ```
pub fn glue_message_name<'n>(
    full_names: impl IntoIterator<Item = &'n str>,
    index: u32,
) -> Option<&'n str> {
    let mut names: Vec<&str> = full_names.into_iter().collect();
    // Java compares UTF-16 code units; protobuf identifiers are ASCII, where that is byte order.
    names.sort_unstable();
    names.dedup();
    names.get(usize::try_from(index).ok()?).copied()
}

/// The message a Glue-framed Protobuf body is, as the path of indexes [`ProtoSchema::message`]
/// takes, and the message's bytes: Glue's message index counts every message type of the schema,
/// nested ones (map entries too, as `Descriptor.getNestedTypes` lists them) included, in the
/// lexicographic order of their full names.
pub(crate) fn glue_message_indexes<'b>(
    schema: &ProtoSchema,
    body: &'b [u8],
) -> Result<(Vec<i32>, &'b [u8]), String> {
    let (index, rest) = glue_protobuf_index(body)
        .ok_or("no Glue message index (a varint) before the Protobuf body")?;
    fn walk(m: &MessageDescriptor, path: Vec<i32>, out: &mut Vec<(String, Vec<i32>)>) {
        for (i, child) in m.child_messages().enumerate() {
            let mut p = path.clone();
            p.push(i32::try_from(i).unwrap_or(i32::MAX));
            walk(&child, p, out);
        }
        out.push((m.full_name().to_string(), path));
    }
    let mut all = Vec::new();
    let mut top = 0;
    while let Ok(m) = schema.message(&[top]) {
        walk(&m, vec![top], &mut all);
        top += 1;
    }
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let path = usize::try_from(index)
        .ok()
        .and_then(|i| all.into_iter().nth(i))
        .map(|(_, path)| path)
        .ok_or_else(|| format!("Glue message index {index} names no message of the schema"))?;
    Ok((path, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const ID: &str = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9";

    // Written by the `aws-glue-schema-registry` Python package (`aws_schema_registry.codec.encode`,
    // an encoder independent of this one) for schema version ID: the body [6, 4, 'h', 'i'] plain
    // and zlib-compressed, and 1000 bytes of "gift " compressed.
    const PLAIN: &str = "03000a1b2c3d4e5f40718293a4b5c6d7e8f906046869";
    const ZLIB: &str = "03050a1b2c3d4e5f40718293a4b5c6d7e8f9789c6363c9c80400016100dc";
    const ZLIB_1000: &str =
        "03050a1b2c3d4e5f40718293a4b5c6d7e8f9789c4bcf4c2b51481f2546895162381300206c65e0";

    #[test]
    fn splits_what_the_python_serializer_writes() {
        let plain = hex(PLAIN);
        let h = glue_prefix(&plain).unwrap();
        assert_eq!(h.schema_version_id, ID);
        assert_eq!(h.compression, GlueCompression::None);
        assert_eq!(&*h.body().unwrap(), [6, 4, b'h', b'i']);
        assert!(matches!(h.body().unwrap(), Cow::Borrowed(_)));

        let z = hex(ZLIB);
        let h = glue_prefix(&z).unwrap();
        assert_eq!(h.schema_version_id, ID);
        assert_eq!(h.compression, GlueCompression::Zlib);
        assert_eq!(&*h.body().unwrap(), [6, 4, b'h', b'i']);

        let z = hex(ZLIB_1000);
        let body = glue_prefix(&z).unwrap().body().unwrap();
        assert_eq!(body.len(), 1000);
        assert_eq!(&*body, "gift ".repeat(200).as_bytes());
    }

    #[test]
    fn what_is_not_glue() {
        let plain = hex(PLAIN);
        // Short of the header, another version, an unknown compression byte.
        assert!(glue_prefix(&plain[..17]).is_none());
        assert!(glue_prefix(&[]).is_none());
        let mut v = plain.clone();
        v[0] = 2;
        assert!(glue_prefix(&v).is_none());
        let mut v = plain.clone();
        v[1] = 1;
        assert!(glue_prefix(&v).is_none());
        // Confluent framing and JSON text.
        assert!(glue_prefix(&[0, 0, 0, 0, 1, 6, 4, b'h', b'i']).is_none());
        assert!(glue_prefix(br#"{"page_id": 1, "question": "is this glue?"}"#).is_none());
        // The header alone: an empty body.
        let h = glue_prefix(&plain[..18]).unwrap();
        assert!(h.raw_body.is_empty());
    }

    #[test]
    fn broken_zlib_bodies_are_errors() {
        let z = hex(ZLIB_1000);
        // Cut short, inside the data and inside the checksum.
        for cut in [z.len() - 10, z.len() - 2, 20] {
            let h = glue_prefix(&z[..cut]).unwrap();
            let e = h.body().unwrap_err();
            assert!(e.contains("zlib"), "{cut}: {e}");
        }
        // Not zlib at all.
        let mut v = z[..18].to_vec();
        v.extend_from_slice(b"plain avro");
        assert!(glue_prefix(&v).unwrap().body().is_err());
        // Empty compressed body.
        assert!(glue_prefix(&z[..18]).unwrap().body().is_err());
        // A corrupt checksum.
        let mut v = z.clone();
        let last = v.len() - 1;
        v[last] ^= 0xff;
        assert!(glue_prefix(&v).unwrap().body().is_err());
    }

    #[test]
    fn a_zlib_bomb_is_refused_without_inflating_it() {
        use std::io::Write as _;
        // 20 MiB of zeros deflate to ~20 KiB.
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..20 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1 << 17, "{}", bomb.len());
        let e = inflate(&bomb, MAX_INFLATED_BODY).unwrap_err();
        assert!(e.contains("more than 16777216 bytes"), "{e}");
        // The limit is inclusive.
        let z = hex(ZLIB_1000);
        assert_eq!(inflate(&z[18..], 1000).unwrap().len(), 1000);
        assert!(inflate(&z[18..], 999).is_err());
        assert!(inflate(&z[18..], 0).is_err());
    }

    #[test]
    fn protobuf_message_index() {
        assert_eq!(glue_protobuf_index(&[]), None);
        assert_eq!(glue_protobuf_index(&[5]), Some((5, &[][..])));
        // uint32::MAX in 5 bytes; a value past u32 or a sixth byte is not a uint32.
        assert_eq!(
            glue_protobuf_index(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1]),
            Some((u32::MAX, &[1u8][..]))
        );
        assert_eq!(glue_protobuf_index(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(
            glue_protobuf_index(&[0x80, 0x80, 0x80, 0x80, 0x80, 0]),
            None
        );
        assert_eq!(glue_message_name(["a.Z", "a.B", "a.B"], 1), Some("a.Z"));
    }

    #[test]
    fn protobuf_bodies_name_their_message_as_glue_numbers_them() {
        // message B { message C {} message A { message D {} } }: B = 0, B.A = 1, B.A.D = 2, B.C = 3
        // (the example of the Glue serializer's MessageIndexFinder).
        let schema = ProtoSchema::parse(
            "syntax = \"proto3\"; package p;
             message B { message C { int32 c = 1; } message A { message D { int32 d = 1; } int32 a = 1; } int32 b = 1; }
             message E { int32 e = 1; }",
            &[],
        )
        .unwrap();
        for (index, name) in [
            (0, "p.B"),
            (1, "p.B.A"),
            (2, "p.B.A.D"),
            (3, "p.B.C"),
            (4, "p.E"),
        ] {
            let body = [index, 8, 7];
            let (path, rest) = glue_message_indexes(&schema, &body).unwrap();
            assert_eq!(schema.message(&path).unwrap().full_name(), name);
            assert_eq!(rest, [8, 7]);
        }
        // B.A.D's field 1 = 7.
        let (path, rest) = glue_message_indexes(&schema, &[2, 8, 7]).unwrap();
        assert_eq!(
            schema.decode(&path, rest).unwrap(),
            serde_json::json!({"d": 7})
        );
        let e = glue_message_indexes(&schema, &[5, 8, 7]).unwrap_err();
        assert!(e.contains("index 5"), "{e}");
        assert!(glue_message_indexes(&schema, &[]).is_err());
    }

    proptest! {
        #[test]
        fn header_round_trip(id in any::<[u8; 16]>(), zlib in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
            use std::io::Write as _;
            let mut v = vec![3, if zlib { 5 } else { 0 }];
            v.extend_from_slice(&id);
            if zlib {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&body).unwrap();
                v.extend(e.finish().unwrap());
            } else {
                v.extend_from_slice(&body);
            }
            let h = glue_prefix(&v).unwrap();
            let text: String = h.schema_version_id.chars().filter(|c| *c != '-').collect();
            prop_assert_eq!(text, id.iter().map(|b| format!("{b:02x}")).collect::<String>());
            prop_assert_eq!(&*h.body().unwrap(), &body[..]);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(h) = glue_prefix(&bytes) {
                let _ = h.body();
                let _ = glue_protobuf_index(h.raw_body);
            }
        }
    }
}
