//! Which partition a key goes to: the Java client's default partitioner for keyed records
//! (`murmur2(key) & 0x7fffffff % partitions`), which librdkafka calls `murmur2_random`.
//!
//! Being compatible matters during a migration: gifts of one page published by the old Faust API
//! (or any Java / `murmur2_random` producer) and by this function land in the same partition, so
//! the persister sees a page's gifts in order.

const SEED: u32 = 0x9747_b28c;
const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// MurmurHash2 (32-bit) as Kafka's Java client computes it.
pub fn murmur2(data: &[u8]) -> u32 {
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of `key` among `partitions` (> 0).
///
/// ```
/// use gift_publisher::partition::partition_for;
/// assert_eq!(partition_for(b"42", 1), 0);
/// assert!(partition_for(b"42", 8) < 8);
/// ```
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_java_clients_published_vectors() {
        // Kafka's `Utils.murmur2` test vectors (signed Java ints).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, java) in cases {
            assert_eq!(
                murmur2(key) as i32,
                java,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    proptest! {
        #[test]
        fn always_a_valid_partition(key in proptest::collection::vec(any::<u8>(), 0..64), n in 1i32..1000) {
            let p = partition_for(&key, n);
            prop_assert!((0..n).contains(&p));
        }
    }
}
