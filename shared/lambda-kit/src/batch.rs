//! The write half of "decode -> plan -> write -> report": rows pre-serialized as JSON objects are
//! sent in chunks bounded by row count and body size, and a chunk rejected for its data is
//! bisected until the offending rows are isolated, so one bad row never blocks the others.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{ConfigError, Env};
use crate::error::Classify;
use crate::fate::Fate;

/// Bounds of one bulk write request.
///
/// Defaults: 500 rows, 1 MiB of JSON body.
///
/// ```
/// use lambda_kit::batch::WriteLimits;
/// let l = WriteLimits { max_rows: 2, max_bytes: 1 << 20 };
/// assert_eq!(l.plan(&[10, 10, 10]), vec![0..2, 2..3]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Rows per request.
    pub max_rows: usize,
    /// JSON body bytes per request (a single larger row still goes alone).
    pub max_bytes: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_rows: 500,
            max_bytes: 1 << 20,
        }
    }
}

impl WriteLimits {
    /// Reads `WRITE_MAX_ROWS` and `WRITE_MAX_BYTES`, overriding the defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            max_rows: env.positive_or("WRITE_MAX_ROWS", d.max_rows)?,
            max_bytes: env.positive_or("WRITE_MAX_BYTES", d.max_bytes)?,
        })
    }

    /// Splits rows of the given serialized sizes into consecutive chunks within the limits.
    pub fn plan(&self, sizes: &[usize]) -> Vec<Range<usize>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut bytes = 2; // "[" + "]"
        for (i, &size) in sizes.iter().enumerate() {
            let add = size + usize::from(i > start);
            if i > start && (i - start >= self.max_rows.max(1) || bytes + add > self.max_bytes) {
                chunks.push(start..i);
                start = i;
                bytes = 2 + size;
            } else {
                bytes += add;
            }
        }
        if start < sizes.len() {
            chunks.push(start..sizes.len());
        }
        chunks
    }
}

/// Joins serialized JSON objects into a JSON array body.
///
/// ```
/// use lambda_kit::batch::json_array;
/// assert_eq!(&json_array(&[b"{\"a\":1}".to_vec(), b"{}".to_vec()])[..], b"[{\"a\":1},{}]");
/// ```
pub fn json_array<R: AsRef<[u8]>>(rows: &[R]) -> Bytes {
    let len = rows.iter().map(|r| r.as_ref().len() + 1).sum::<usize>() + 2;
    let mut buf = BytesMut::with_capacity(len);
    buf.put_u8(b'[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(row.as_ref());
    }
    buf.put_u8(b']');
    buf.freeze()
}

/// Isolates the inputs an operation refuses: `attempt` is called with each range of `ranges` in
/// order; a range refused with an error that is permanent and
/// [blames the input](Classify::blames_input) is halved and both halves are tried, until the
/// refused inputs stand alone. Returns every range tried last, with its result.
///
/// Any other error ends the range's tries with that error; a permanent one (credentials, a
/// missing table: the environment, not the data) also ends the ranges not yet tried, which get
/// the same error without being sent.
///
/// The workspace's one isolation strategy: bulk writes ([`write_rows`]), embedding requests and
/// vector upserts all isolate bad inputs with it.
///
/// ```
/// use lambda_kit::batch::bisect;
/// use lambda_kit::error::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct Bad;
/// impl Classify for Bad {
///     fn class(&self) -> ErrorClass { ErrorClass::Permanent }
///     fn error_code(&self) -> &'static str { "bad" }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let items = [1, 2, 666, 4];
/// let tried = bisect([0..4], |r| {
///     let bad = items[r].contains(&666);
///     async move { if bad { Err(Bad) } else { Ok(()) } }
/// }).await;
/// let refused: Vec<_> = tried.iter().filter(|(_, r)| r.is_err()).map(|(r, _)| r.clone()).collect();
/// assert_eq!(refused, vec![2..3]);
/// # }
/// ```
pub async fn bisect<T, E, F, Fut>(
    ranges: impl IntoIterator<Item = Range<usize>>,
    mut attempt: F,
) -> Vec<(Range<usize>, Result<T, Arc<E>>)>
where
    E: Classify,
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut out = Vec::new();
    // Work list in reverse so ranges are tried in order; halves are pushed back in front.
    let mut todo: Vec<Range<usize>> = ranges.into_iter().collect();
    todo.reverse();
    while let Some(range) = todo.pop() {
        match attempt(range.clone()).await {
            Ok(t) => out.push((range, Ok(t))),
            Err(e) if e.blames_input() && e.class().is_permanent() && range.len() > 1 => {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Err(e) => {
                let environment = e.class().is_permanent() && !e.blames_input();
                let e = Arc::new(e);
                out.push((range, Err(Arc::clone(&e))));
                if environment {
                    out.extend(todo.drain(..).rev().map(|r| (r, Err(Arc::clone(&e)))));
                }
            }
        }
    }
    out
}

/// Writes `rows` (serialized JSON objects) in chunks within `limits`, calling `write` with the
/// JSON array body of each chunk, and returns the fate of every row, in order.
///
/// - success: the chunk's rows are [`Fate::Stored`];
/// - an error that [`blames_input`](Classify::blames_input): the chunk is [bisected](bisect)
///   until single rows remain, which are [`Fate::Rejected`];
/// - any other error: the chunk's rows are [`Fate::Failed`]. A permanent error that does not
///   blame the input (bad credentials, missing table) also fails every row not yet written,
///   without sending them.
///
/// `write` is expected to retry transient faults itself (the PostgREST client does).
///
/// ```
/// use lambda_kit::batch::{write_rows, WriteLimits};
/// use lambda_kit::error::{Classify, ErrorClass};
/// use lambda_kit::fate::Fate;
///
/// #[derive(Debug)]
/// struct BadRow;
/// impl std::fmt::Display for BadRow {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("bad row") }
/// }
/// impl Classify for BadRow {
///     fn class(&self) -> ErrorClass { ErrorClass::Permanent }
///     fn error_code(&self) -> &'static str { "bad_row" }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let rows = vec![b"1".to_vec(), b"2".to_vec(), b"666".to_vec(), b"4".to_vec()];
/// let fates = write_rows(&rows, &WriteLimits::default(), |body| async move {
///     if body.windows(3).any(|w| w == b"666") { Err(BadRow) } else { Ok(()) }
/// }).await;
/// let stored: Vec<bool> = fates.iter().map(Fate::is_stored).collect();
/// assert_eq!(stored, vec![true, true, false, true]);
/// # }
/// ```
pub async fn write_rows<R, E, F, Fut>(rows: &[R], limits: &WriteLimits, mut write: F) -> Vec<Fate>
where
    R: AsRef<[u8]>,
    E: Classify + std::fmt::Display,
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let sizes: Vec<usize> = rows.iter().map(|r| r.as_ref().len()).collect();
    let mut fates: Vec<Option<Fate>> = vec![None; rows.len()];
    let tried = bisect(limits.plan(&sizes), |range| write(json_array(&rows[range]))).await;
    for (range, result) in tried {
        let fate = match result {
            Ok(()) => Fate::Stored,
            Err(e) => Fate::from_error(&*e),
        };
        for i in range {
            fates[i] = Some(fate.clone());
        }
    }
    // Every row is in exactly one range bisect returns; a gap would be a failure, never a
    // silent acknowledgement.
    fates
        .into_iter()
        .map(|f| f.unwrap_or_else(Fate::missing))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq)]
    enum E {
        Row,
        Auth,
        Down,
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }
    impl Classify for E {
        fn class(&self) -> ErrorClass {
            match self {
                E::Row | E::Auth => ErrorClass::Permanent,
                E::Down => ErrorClass::TRANSIENT,
            }
        }
        fn error_code(&self) -> &'static str {
            "e"
        }
        fn blames_input(&self) -> bool {
            *self == E::Row
        }
    }

    fn rows(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .collect()
    }

    #[test]
    fn plan_respects_bytes_and_rows() {
        let l = WriteLimits {
            max_rows: 10,
            max_bytes: 10,
        };
        // [aaa,bbb] = 9 bytes; a third row would exceed 10.
        assert_eq!(l.plan(&[3, 3, 3]), vec![0..2, 2..3]);
        // A row larger than the limit goes alone.
        assert_eq!(l.plan(&[50, 1, 1]), vec![0..1, 1..3]);
        assert!(l.plan(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn plan_covers_every_row_once(sizes in proptest::collection::vec(0usize..300, 0..200), max_rows in 1usize..20, max_bytes in 1usize..2000) {
            let l = WriteLimits { max_rows, max_bytes };
            let chunks = l.plan(&sizes);
            let mut next = 0;
            for c in &chunks {
                prop_assert_eq!(c.start, next);
                prop_assert!(!c.is_empty() && c.len() <= max_rows);
                let body = 2 + sizes[c.clone()].iter().sum::<usize>() + c.len() - 1;
                prop_assert!(c.len() == 1 || body <= max_bytes);
                next = c.end;
            }
            prop_assert_eq!(next, sizes.len());
        }
    }

    #[tokio::test]
    async fn bisects_to_the_bad_rows_only() {
        let rows = rows(37);
        let bad = [3usize, 4, 30];
        let mut calls = 0;
        let fates = write_rows(
            &rows,
            &WriteLimits {
                max_rows: 16,
                max_bytes: 1 << 20,
            },
            |body| {
                calls += 1;
                let text = String::from_utf8(body.to_vec()).unwrap();
                let hit = bad.iter().any(|b| text.contains(&format!("\"i\":{b}}}")));
                async move { if hit { Err(E::Row) } else { Ok(()) } }
            },
        )
        .await;
        for (i, f) in fates.iter().enumerate() {
            assert_eq!(
                matches!(f, Fate::Rejected { .. }),
                bad.contains(&i),
                "row {i}"
            );
            assert_eq!(f.is_stored(), !bad.contains(&i), "row {i}");
        }
        assert!(calls < 37, "bisection, not one request per row: {calls}");
    }

    #[tokio::test]
    async fn transient_fails_chunk_but_continues() {
        let rows = rows(6);
        let mut n = 0;
        let fates = write_rows(
            &rows,
            &WriteLimits {
                max_rows: 2,
                max_bytes: 1 << 20,
            },
            |_| {
                n += 1;
                let fail = n == 2;
                async move { if fail { Err(E::Down) } else { Ok(()) } }
            },
        )
        .await;
        let kinds: Vec<&str> = fates
            .iter()
            .map(|f| match f {
                Fate::Stored => "s",
                Fate::Failed { .. } => "f",
                Fate::Rejected { .. } => "r",
                Fate::Skipped => "skipped",
            })
            .collect();
        assert_eq!(kinds, ["s", "s", "f", "f", "s", "s"]);
    }

    #[tokio::test]
    async fn configuration_error_fails_everything_without_more_requests() {
        let rows = rows(6);
        let mut n = 0;
        let fates = write_rows(
            &rows,
            &WriteLimits {
                max_rows: 2,
                max_bytes: 1 << 20,
            },
            |_| {
                n += 1;
                async { Err(E::Auth) }
            },
        )
        .await;
        assert_eq!(n, 1);
        assert!(fates.iter().all(|f| matches!(f, Fate::Failed { .. })));
    }

    #[tokio::test]
    async fn empty_input_sends_nothing() {
        let mut n = 0;
        let fates = write_rows(&Vec::<Vec<u8>>::new(), &WriteLimits::default(), |_| {
            n += 1;
            async { Ok::<(), E>(()) }
        })
        .await;
        assert!(fates.is_empty());
        assert_eq!(n, 0);
    }
}
