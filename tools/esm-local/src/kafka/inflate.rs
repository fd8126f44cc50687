//! Record batches decompressed through a byte limit: a fetched batch names its codec and the
//! codec's stream says how much it inflates to, so a few kilobytes from the broker could claim
//! gigabytes. `kafka-protocol`'s own decompressors read to the end whatever the size; these
//! stop at [`MAX_INFLATED_BATCH`] with an error naming the codec.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;

/// The most one record batch may inflate to. The ESM sends at most 6 MB per invocation and a
/// broker's default `max.message.bytes` is 1 MiB of compressed batch: 64 MiB leaves room for
/// any honest batch and bounds what a hostile one costs.
pub(crate) const MAX_INFLATED_BATCH: usize = 64 * 1024 * 1024;

/// xerial's snappy framing (what Kafka's Java client writes): this magic, two version ints,
/// then blocks of a 4-byte length and raw snappy.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// The decompressed records of a batch, or why not (the codec and the problem).
pub(crate) fn decompress(
    compressed: &mut Bytes,
    compression: Compression,
    limit: usize,
) -> anyhow::Result<Bytes> {
    let input = compressed.copy_to_bytes(compressed.remaining());
    let out = match compression {
        Compression::None => return Ok(input),
        Compression::Gzip => read_limited(flate2::read::GzDecoder::new(&input[..]), "gzip", limit)?,
        Compression::Lz4 => read_limited(lz4::Decoder::new(&input[..])?, "lz4", limit)?,
        Compression::Zstd => {
            read_limited(zstd::stream::read::Decoder::new(&input[..])?, "zstd", limit)?
        }
        Compression::Snappy => snappy(&input, limit)?,
    };
    Ok(Bytes::from(out))
}

fn read_limited(reader: impl Read, codec: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow::anyhow!("{codec}: {e}"))?;
    if out.len() > limit {
        anyhow::bail!("{codec}: the record batch inflates past {limit} bytes");
    }
    Ok(out)
}

/// Raw snappy states its length up front: checked before anything is allocated.
fn snappy(input: &[u8], limit: usize) -> anyhow::Result<Vec<u8>> {
    let too_large = || anyhow::anyhow!("snappy: the record batch inflates past {limit} bytes");
    let raw = |block: &[u8], out: &mut Vec<u8>| -> anyhow::Result<()> {
        let n = snap::raw::decompress_len(block).map_err(|e| anyhow::anyhow!("snappy: {e}"))?;
        if out.len().saturating_add(n) > limit {
            return Err(too_large());
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| anyhow::anyhow!("snappy: {e}"))?;
        Ok(())
    };
    let mut out = Vec::new();
    let Some(mut rest) = input.strip_prefix(XERIAL_MAGIC) else {
        raw(input, &mut out)?;
        return Ok(out);
    };
    // The version and the compatible version.
    rest = rest.get(8..).unwrap_or_default();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| anyhow::anyhow!("snappy: a block length cut short"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| anyhow::anyhow!("snappy: a block cut short"))?;
        raw(block, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A megabyte of zeros, in each codec: a few hundred bytes each.
    fn bombs() -> Vec<(Compression, Vec<u8>)> {
        let zeros = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz.write_all(&zeros).unwrap();
        let (lz, done) = lz.finish();
        done.unwrap();
        let raw = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend([0, 0, 0, 1, 0, 0, 0, 1]);
        xerial.extend((raw.len() as u32).to_be_bytes());
        xerial.extend(&raw);
        vec![
            (Compression::Gzip, gz.finish().unwrap()),
            (Compression::Lz4, lz),
            (Compression::Zstd, zstd::encode_all(&zeros[..], 19).unwrap()),
            (Compression::Snappy, raw),
            (Compression::Snappy, xerial),
        ]
    }

    #[test]
    fn every_codec_stops_at_the_limit() {
        for (codec, bomb) in bombs() {
            assert!(bomb.len() < 100_000, "{codec:?}: {}", bomb.len());
            let whole = decompress(&mut Bytes::from(bomb.clone()), codec, 1 << 20).unwrap();
            assert_eq!(whole.len(), 1 << 20, "{codec:?}");
            let err = decompress(&mut Bytes::from(bomb), codec, 64 * 1024).unwrap_err();
            assert!(
                err.to_string().contains("inflates past 65536 bytes"),
                "{codec:?}: {err}"
            );
        }
    }

    #[test]
    fn corrupt_streams_are_errors() {
        for codec in [
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            assert!(
                decompress(&mut Bytes::from_static(b"\xff\xfe garbage"), codec, 1 << 20).is_err()
            );
        }
    }
}
