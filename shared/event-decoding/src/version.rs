//! Where a change sits in its source's history, so that a consumer can tell an older change
//! re-delivered after a newer one (a re-driven batch, a manual replay) and ignore it.

use serde_json::{Map, Value};

/// The position of a change in its source, as the connector reports it. Two versions compare
/// only when they are of the same kind (and, for offsets, of the same partition):
/// [`SourceVersion::is_older_than`] says `None` otherwise.
///
/// ```
/// use event_decoding::SourceVersion;
/// let a = SourceVersion::Lsn(100);
/// let b = SourceVersion::Lsn(250);
/// assert_eq!(a.is_older_than(&b), Some(true));
/// assert_eq!(b.is_older_than(&a), Some(false));
/// assert_eq!(a.is_older_than(&SourceVersion::TimestampMs(5)), None);
/// // A text form that sorts like the version and reads back.
/// assert_eq!(SourceVersion::parse(&a.to_text()), Some(a));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceVersion {
    /// PostgreSQL: the change's WAL position (Debezium `source.lsn`).
    Lsn(u64),
    /// MySQL / MariaDB: binlog file number, position, and row within the event (Debezium
    /// `source.file`, `source.pos`, `source.row`).
    Binlog {
        /// The numeric suffix of the binlog file name (`mysql-bin.000003` -> 3).
        file: u64,
        /// Position in the file.
        pos: u64,
        /// Row within the binlog event.
        row: u64,
    },
    /// Any other connector: the source's commit time in milliseconds (Debezium `source.ts_ms`).
    TimestampMs(i64),
    /// Nothing better: the Kafka partition and offset (comparable within one partition only).
    Offset {
        /// Kafka partition of the record.
        partition: i32,
        /// The record's offset, comparable only with offsets of the same partition.
        offset: i64,
    },
}

impl SourceVersion {
    /// `Some(true)` when `self` is strictly older than `other`, `None` when the two cannot be
    /// compared (different kinds, or offsets of different partitions).
    pub fn is_older_than(&self, other: &Self) -> Option<bool> {
        use SourceVersion::*;
        match (self, other) {
            (Lsn(a), Lsn(b)) => Some(a < b),
            (
                Binlog { file, pos, row },
                Binlog {
                    file: f,
                    pos: p,
                    row: r,
                },
            ) => Some((file, pos, row) < (f, p, r)),
            (TimestampMs(a), TimestampMs(b)) => Some(a < b),
            (
                Offset { partition, offset },
                Offset {
                    partition: p,
                    offset: o,
                },
            ) if partition == p => Some(offset < o),
            _ => None,
        }
    }

    /// A text form for storage: the kind, then zero-padded numbers, so that versions of one kind
    /// sort as text in version order.
    pub fn to_text(&self) -> String {
        match self {
            Self::Lsn(l) => format!("lsn:{l:020}"),
            Self::Binlog { file, pos, row } => format!("binlog:{file:020}:{pos:020}:{row:010}"),
            // Shifted so negative times (never seen) still sort.
            Self::TimestampMs(t) => format!("ts:{:020}", (*t as i128 + (1i128 << 63)) as u128),
            Self::Offset { partition, offset } => format!("offset:{partition:010}:{offset:020}"),
        }
    }

    /// Reads [`to_text`](Self::to_text) back.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let kind = parts.next()?;
        let mut num = || parts.next().and_then(|p| p.parse::<u128>().ok());
        let version = match kind {
            "lsn" => Self::Lsn(u64::try_from(num()?).ok()?),
            "binlog" => Self::Binlog {
                file: u64::try_from(num()?).ok()?,
                pos: u64::try_from(num()?).ok()?,
                row: u64::try_from(num()?).ok()?,
            },
            "ts" => Self::TimestampMs(i64::try_from(num()? as i128 - (1i128 << 63)).ok()?),
            "offset" => Self::Offset {
                partition: i32::try_from(num()?).ok()?,
                offset: i64::try_from(num()?).ok()?,
            },
            _ => return None,
        };
        Some(version)
    }

    /// The version a Debezium envelope's `source` block gives: `lsn` (PostgreSQL), else
    /// `file`/`pos`/`row` (MySQL), else `ts_ms`.
    pub(crate) fn from_source(source: &Map<String, Value>) -> Option<Self> {
        let num = |k: &str| match source.get(k)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if let Some(lsn) = num("lsn") {
            return Some(Self::Lsn(lsn));
        }
        if let (Some(file), Some(pos)) = (source.get("file").and_then(Value::as_str), num("pos")) {
            let digits: String = file
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            if let Ok(file) = digits.parse() {
                return Some(Self::Binlog {
                    file,
                    pos,
                    row: num("row").unwrap_or(0),
                });
            }
        }
        source
            .get("ts_ms")
            .and_then(Value::as_i64)
            .map(Self::TimestampMs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn postgres_mysql_and_other_sources() {
        assert_eq!(
            SourceVersion::from_source(&source(
                json!({"connector": "postgresql", "lsn": 24023128, "ts_ms": 5})
            )),
            Some(SourceVersion::Lsn(24023128))
        );
        assert_eq!(
            SourceVersion::from_source(&source(
                json!({"connector": "mysql", "file": "mysql-bin.000003", "pos": 154, "row": 1, "ts_ms": 5})
            )),
            Some(SourceVersion::Binlog {
                file: 3,
                pos: 154,
                row: 1
            })
        );
        assert_eq!(
            SourceVersion::from_source(&source(
                json!({"connector": "cassandra", "ts_ms": 1732350000000i64})
            )),
            Some(SourceVersion::TimestampMs(1_732_350_000_000))
        );
        assert_eq!(
            SourceVersion::from_source(&source(json!({"connector": "x"}))),
            None
        );
    }

    #[test]
    fn binlog_order_is_file_then_position_then_row() {
        let v = |file, pos, row| SourceVersion::Binlog { file, pos, row };
        assert_eq!(v(3, 900, 0).is_older_than(&v(4, 4, 0)), Some(true));
        assert_eq!(v(4, 4, 1).is_older_than(&v(4, 4, 0)), Some(false));
        assert_eq!(
            v(4, 4, 0).is_older_than(&v(4, 4, 0)),
            Some(false),
            "equal is not older"
        );
    }

    #[test]
    fn offsets_compare_within_a_partition_only() {
        let o = |partition, offset| SourceVersion::Offset { partition, offset };
        assert_eq!(o(1, 5).is_older_than(&o(1, 9)), Some(true));
        assert_eq!(o(1, 5).is_older_than(&o(2, 9)), None);
    }

    #[test]
    fn text_form_round_trips_and_sorts_like_the_version() {
        let versions = [
            SourceVersion::Lsn(7),
            SourceVersion::Lsn(u64::MAX),
            SourceVersion::Binlog {
                file: 3,
                pos: 154,
                row: 2,
            },
            SourceVersion::TimestampMs(-5),
            SourceVersion::TimestampMs(1_732_350_000_000),
            SourceVersion::Offset {
                partition: 3,
                offset: 42,
            },
        ];
        for v in versions {
            assert_eq!(SourceVersion::parse(&v.to_text()), Some(v), "{v:?}");
        }
        assert!(SourceVersion::Lsn(9).to_text() < SourceVersion::Lsn(10).to_text());
        assert!(SourceVersion::TimestampMs(-5).to_text() < SourceVersion::TimestampMs(3).to_text());
        assert_eq!(SourceVersion::parse("lsn:abc"), None);
        assert_eq!(SourceVersion::parse("nope:1"), None);
    }
}
