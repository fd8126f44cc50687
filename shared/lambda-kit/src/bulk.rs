//! Bulk writes and bisection: rows pre-serialized as JSON objects are sent in chunks bounded by
//! row count and body size, up to [`WriteLimits::concurrency`] chunks in flight at once, and a
//! chunk rejected for its data is bisected ([`bisect`], [`bisect_concurrently`]) until the
//! offending rows are isolated, so one bad row never blocks the others.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::config::{ConfigError, Env};
use crate::error::{Classify, ErrorClass};
use crate::fate::Fate;

/// Bounds of bulk writes: of one request, and of the requests in flight at once.
///
/// Defaults: 500 rows, 1 MiB of JSON body, 4 requests in flight.
///
/// ```
/// use lambda_kit::bulk::WriteLimits;
/// let l = WriteLimits { max_rows: 2, ..WriteLimits::default() };
/// assert_eq!(l.plan(&[10, 10, 10]), vec![0..2, 2..3]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Rows per request.
    pub max_rows: usize,
    /// JSON body bytes per request (a single larger row still goes alone).
    pub max_bytes: usize,
    /// Requests in flight at once (`WRITE_CONCURRENCY`): the chunks of one write are sent side by
    /// side, each holding one database connection of the API's pool while it runs.
    pub concurrency: usize,
}

/// Default of [`WriteLimits::concurrency`]: measured on the local stack (README, "Write
/// concurrency"), 4 requests in flight take most of the gain while leaving most of a small
/// Supabase plan's PostgREST pool to the other invocations and clients.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 4;

/// Largest accepted `WRITE_CONCURRENCY`: past it the database's pool, not the function, decides
/// how many requests run, and each waiting one still holds its body in memory.
pub const MAX_WRITE_CONCURRENCY: usize = 64;

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_rows: 500,
            max_bytes: 1 << 20,
            concurrency: DEFAULT_WRITE_CONCURRENCY,
        }
    }
}

impl WriteLimits {
    /// Reads `WRITE_MAX_ROWS`, `WRITE_MAX_BYTES` and `WRITE_CONCURRENCY`, overriding the
    /// defaults.
    ///
    /// ```
    /// use lambda_kit::bulk::WriteLimits;
    /// use lambda_kit::config::Env;
    /// let l = WriteLimits::from_env(&Env::from_pairs([("WRITE_CONCURRENCY", "2")])).unwrap();
    /// assert_eq!(l.concurrency, 2);
    /// let e = WriteLimits::from_env(&Env::from_pairs([("WRITE_CONCURRENCY", "1000")])).unwrap_err();
    /// assert!(e.to_string().contains("WRITE_CONCURRENCY"));
    /// ```
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let concurrency = env.positive_or("WRITE_CONCURRENCY", d.concurrency)?;
        if concurrency > MAX_WRITE_CONCURRENCY {
            return Err(ConfigError::new(
                "WRITE_CONCURRENCY",
                format!(
                    "must be at most {MAX_WRITE_CONCURRENCY} (requests in flight per invocation; keep it under the database pool's size)"
                ),
            ));
        }
        Ok(Self {
            max_rows: env.positive_or("WRITE_MAX_ROWS", d.max_rows)?,
            max_bytes: env.positive_or("WRITE_MAX_BYTES", d.max_bytes)?,
            concurrency,
        })
    }

    /// Splits rows of the given serialized sizes into consecutive chunks within the limits.
    pub fn plan(&self, sizes: &[usize]) -> Vec<Range<usize>> {
        self.plan_groups(sizes.iter().map(|&size| (1, size)))
    }

    /// [`plan`](Self::plan) for groups of rows that travel together (the chunks of one page):
    /// each group is `(rows, bytes)` and the chunks are ranges of groups, within the limits
    /// unless a single group exceeds them (then it goes alone).
    ///
    /// ```
    /// use lambda_kit::bulk::WriteLimits;
    /// let l = WriteLimits { max_rows: 4, ..WriteLimits::default() };
    /// assert_eq!(l.plan_groups([(3, 10), (2, 10), (1, 10), (5, 10)]), vec![0..1, 1..3, 3..4]);
    /// ```
    pub fn plan_groups(
        &self,
        groups: impl IntoIterator<Item = (usize, usize)>,
    ) -> Vec<Range<usize>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut rows = 0;
        let mut bytes = 2; // "[" + "]"
        let mut len = 0;
        for (i, (n, size)) in groups.into_iter().enumerate() {
            len = i + 1;
            let add = size + usize::from(i > start);
            if i > start && (rows + n > self.max_rows.max(1) || bytes + add > self.max_bytes) {
                chunks.push(start..i);
                start = i;
                rows = n;
                bytes = 2 + size;
            } else {
                rows += n;
                bytes += add;
            }
        }
        if start < len {
            chunks.push(start..len);
        }
        chunks
    }
}

/// Joins serialized JSON objects into a JSON array body.
///
/// ```
/// use lambda_kit::bulk::json_array;
/// assert_eq!(&json_array(&[b"{\"a\":1}".to_vec(), b"{}".to_vec()])[..], b"[{\"a\":1},{}]");
/// ```
pub fn json_array<R: AsRef<[u8]>>(rows: &[R]) -> Bytes {
    json_array_of(rows.iter().map(AsRef::as_ref))
}

fn json_array_of<'a>(rows: impl Iterator<Item = &'a [u8]> + Clone) -> Bytes {
    let len = rows.clone().map(|r| r.len() + 1).sum::<usize>() + 2;
    let mut buf = BytesMut::with_capacity(len);
    buf.put_u8(b'[');
    for (i, row) in rows.enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(row);
    }
    buf.put_u8(b']');
    buf.freeze()
}

/// What [`bisect`] returns: every range tried last, with its result.
pub type Tried<T, E> = Vec<(Range<usize>, Result<T, Arc<E>>)>;

/// Isolates the inputs an operation refuses: `attempt` is called with each range of `ranges` in
/// order; a range refused with an [`ErrorClass::Data`] error (the input's fault) is halved and
/// both halves are tried, until the refused inputs stand alone. Returns every range tried last, with its result, in input order.
///
/// Any other error ends the range's tries with that error; an [`ErrorClass::Environment`] one
/// (credentials, a missing table: not the data) also ends the ranges not yet tried, which get
/// the same error without being sent.
///
/// The workspace's one isolation strategy: bulk writes ([`write_rows`]), embedding requests,
/// reads of a batch's ids and vector upserts all isolate bad inputs with it, so a function's
/// write hands the [runner](crate::runner) rejections of inputs tried alone, and nothing is
/// isolated twice. One range at a time; [`bisect_concurrently`] tries several side by side.
///
/// ```
/// use lambda_kit::bulk::bisect;
/// use lambda_kit::error::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct Bad;
/// impl Classify for Bad {
///     fn class(&self) -> ErrorClass { ErrorClass::Data }
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
    attempt: F,
) -> Tried<T, E>
where
    E: Classify,
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    // One range in flight: the attempt is never called while another call's future is alive
    // elsewhere, so a `FnMut` is enough; the mutex is only ever taken uncontended.
    let attempt = std::sync::Mutex::new(attempt);
    bisect_concurrently(
        ranges,
        1,
        |i| i,
        |range| (attempt.lock().unwrap_or_else(|p| p.into_inner()))(range),
    )
    .await
}

/// [`bisect`] with up to `concurrency` of `ranges` in flight at once, never two that hold inputs
/// of the same key (`key` of an input's index): ranges start in order, and one sharing a key
/// with a range in flight waits for it, so a key's writes land in input order, one at a time.
/// Within a range, halves are tried one after the other. At most `concurrency` calls of
/// `attempt` are alive at once (what bounds the request bodies in memory).
///
/// An [`ErrorClass::Environment`] error stops everything not yet sent,
/// ranges and halves alike, which get that error; ranges in flight finish their current try.
///
/// ```
/// use lambda_kit::bulk::bisect_concurrently;
/// use lambda_kit::error::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct Bad;
/// impl Classify for Bad {
///     fn class(&self) -> ErrorClass { ErrorClass::Data }
///     fn error_code(&self) -> &'static str { "bad" }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let items = [1, 2, 666, 4, 5, 6];
/// let tried = bisect_concurrently([0..3, 3..6], 2, |i| items[i], |r| {
///     let bad = items[r].contains(&666);
///     async move { if bad { Err(Bad) } else { Ok(()) } }
/// }).await;
/// let refused: Vec<_> = tried.iter().filter(|(_, r)| r.is_err()).map(|(r, _)| r.clone()).collect();
/// assert_eq!(refused, vec![2..3]);
/// # }
/// ```
pub async fn bisect_concurrently<T, E, K, F, Fut>(
    ranges: impl IntoIterator<Item = Range<usize>>,
    concurrency: usize,
    key: impl Fn(usize) -> K,
    attempt: F,
) -> Tried<T, E>
where
    E: Classify,
    K: Eq + Hash,
    F: Fn(Range<usize>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let stop: OnceLock<Arc<E>> = OnceLock::new();
    let mut pending = ranges.into_iter().peekable();
    let mut running = FuturesUnordered::new();
    // Keys of the ranges in flight, with how many of them hold each.
    let mut busy: HashMap<K, usize> = HashMap::new();
    let mut out = Vec::new();
    loop {
        while running.len() < concurrency.max(1) {
            let Some(next) = pending.peek() else { break };
            if let Some(e) = stop.get() {
                out.extend(pending.by_ref().map(|r| (r, Err(Arc::clone(e)))));
                break;
            }
            if next.clone().any(|i| busy.contains_key(&key(i))) {
                break;
            }
            let range = next.clone();
            pending.next();
            for i in range.clone() {
                *busy.entry(key(i)).or_default() += 1;
            }
            running.push(bisect_one(range, &attempt, &stop));
        }
        let Some((range, tried)) = running.next().await else {
            break;
        };
        for i in range {
            if let Some(n) = busy.get_mut(&key(i)) {
                *n -= 1;
                if *n == 0 {
                    busy.remove(&key(i));
                }
            }
        }
        out.extend(tried);
    }
    // Nothing waits on a key once nothing runs, so every range was tried or stopped.
    debug_assert!(pending.peek().is_none());
    out.sort_by_key(|(r, _)| r.start);
    out
}

/// Bisects one range, its halves one after the other, until `stop` holds an environment fault.
async fn bisect_one<T, E, F, Fut>(
    whole: Range<usize>,
    attempt: &F,
    stop: &OnceLock<Arc<E>>,
) -> (Range<usize>, Tried<T, E>)
where
    E: Classify,
    F: Fn(Range<usize>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut out = Vec::new();
    // Work list in reverse so ranges are tried in order; halves are pushed back in front.
    let mut todo = vec![whole.clone()];
    while let Some(range) = todo.pop() {
        if let Some(e) = stop.get() {
            out.push((range, Err(Arc::clone(e))));
            out.extend(todo.drain(..).rev().map(|r| (r, Err(Arc::clone(e)))));
            break;
        }
        match attempt(range.clone()).await {
            Ok(t) => out.push((range, Ok(t))),
            Err(e) if e.class() == ErrorClass::Data && range.len() > 1 => {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Err(e) => {
                let environment = e.class() == ErrorClass::Environment;
                let e = Arc::new(e);
                out.push((range, Err(Arc::clone(&e))));
                if environment {
                    let e = Arc::clone(stop.get_or_init(|| e));
                    out.extend(todo.drain(..).rev().map(|r| (r, Err(Arc::clone(&e)))));
                }
            }
        }
    }
    (whole, out)
}

/// Writes `rows` (each a key and a serialized JSON object) in chunks within `limits`, up to
/// `limits.concurrency` chunks in flight and never two holding rows of one key, calling `write`
/// with the JSON array body of each chunk, and returns the fate of every row, in order.
///
/// - success: the chunk's rows are [`Fate::Stored`];
/// - an [`ErrorClass::Data`] error: the chunk is [bisected](bisect) until single rows remain,
///   which are [`Fate::Rejected`];
/// - any other error: the chunk's rows are [`Fate::Failed`]. An [`ErrorClass::Environment`]
///   error (bad credentials, missing table) also fails every row not yet written, without
///   sending them.
///
/// `write` is expected to retry transient faults itself and to stop at the invocation's deadline
/// (the PostgREST client does); a body is built when its request starts, so at most
/// `limits.concurrency` bodies are in memory.
///
/// ```
/// use lambda_kit::bulk::{write_rows, WriteLimits};
/// use lambda_kit::error::{Classify, ErrorClass};
/// use lambda_kit::fate::Fate;
///
/// #[derive(Debug)]
/// struct BadRow;
/// impl std::fmt::Display for BadRow {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("bad row") }
/// }
/// impl Classify for BadRow {
///     fn class(&self) -> ErrorClass { ErrorClass::Data }
///     fn error_code(&self) -> &'static str { "bad_row" }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let rows = vec![("a", b"1".to_vec()), ("b", b"2".to_vec()), ("c", b"666".to_vec()), ("d", b"4".to_vec())];
/// let fates = write_rows(&rows, &WriteLimits::default(), |body| async move {
///     if body.windows(3).any(|w| w == b"666") { Err(BadRow) } else { Ok(()) }
/// }).await;
/// let stored: Vec<bool> = fates.iter().map(Fate::is_stored).collect();
/// assert_eq!(stored, vec![true, true, false, true]);
/// # }
/// ```
pub async fn write_rows<K, R, E, F, Fut>(
    rows: &[(K, R)],
    limits: &WriteLimits,
    write: F,
) -> Vec<Fate>
where
    K: Eq + Hash,
    R: AsRef<[u8]>,
    E: Classify + std::fmt::Display,
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let sizes: Vec<usize> = rows.iter().map(|(_, r)| r.as_ref().len()).collect();
    let mut fates: Vec<Option<Fate>> = vec![None; rows.len()];
    let tried = bisect_concurrently(
        limits.plan(&sizes),
        limits.concurrency,
        |i| &rows[i].0,
        |range| write(json_array_of(rows[range].iter().map(|(_, r)| r.as_ref()))),
    )
    .await;
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
                E::Row => ErrorClass::Data,
                E::Auth => ErrorClass::Environment,
                E::Down => ErrorClass::TRANSIENT,
            }
        }
        fn error_code(&self) -> &'static str {
            "e"
        }
    }

    fn rows(n: usize) -> Vec<(usize, Vec<u8>)> {
        (0..n)
            .map(|i| (i, format!("{{\"i\":{i}}}").into_bytes()))
            .collect()
    }

    fn limits(max_rows: usize, concurrency: usize) -> WriteLimits {
        WriteLimits {
            max_rows,
            max_bytes: 1 << 20,
            concurrency,
        }
    }

    #[test]
    fn plan_respects_bytes_and_rows() {
        let l = WriteLimits {
            max_rows: 10,
            max_bytes: 10,
            ..WriteLimits::default()
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
            let l = WriteLimits { max_rows, max_bytes, ..WriteLimits::default() };
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

    /// A writer recording the keys of the requests in flight (`InFlight`). Rows are
    /// `{"k":"<key>","i":<n>}`; a row with `i` in `bad` refuses its chunk.
    #[derive(Default)]
    struct Recorder {
        keys: crate::in_flight::InFlight,
        calls: std::sync::atomic::AtomicUsize,
        /// Per key, the `i` of its rows in the order they were written.
        order: std::sync::Mutex<HashMap<String, Vec<u64>>>,
        bad: Vec<u64>,
    }

    impl Recorder {
        async fn write(&self, body: Bytes) -> Result<(), E> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            let keys: Vec<String> = rows
                .iter()
                .map(|r| r["k"].as_str().unwrap().to_owned())
                .collect();
            self.keys.around(keys.clone(), async {}).await;
            let refused = rows
                .iter()
                .any(|r| self.bad.contains(&r["i"].as_u64().unwrap()));
            if refused {
                return Err(E::Row);
            }
            let mut order = self.order.lock().unwrap();
            for (k, r) in keys.into_iter().zip(&rows) {
                order.entry(k).or_default().push(r["i"].as_u64().unwrap());
            }
            Ok(())
        }
    }

    /// Rows `i` of keys `keys[i]`.
    fn keyed(keys: &[&str]) -> Vec<(String, Vec<u8>)> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let row = serde_json::json!({ "k": k, "i": i });
                (k.to_string(), row.to_string().into_bytes())
            })
            .collect()
    }

    #[tokio::test]
    async fn chunks_overlap_up_to_the_limit_and_never_beyond() {
        for concurrency in [1, 2, 3, 8] {
            let w = Recorder::default();
            let rows = keyed(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]);
            let fates = write_rows(&rows, &limits(1, concurrency), |body| w.write(body)).await;
            assert!(fates.iter().all(Fate::is_stored));
            // One row per request, so the most keys in flight is the most requests in flight.
            let most = w.keys.most();
            assert_eq!(
                most,
                concurrency.min(rows.len()),
                "concurrency {concurrency}"
            );
            assert_eq!(w.calls.load(std::sync::atomic::Ordering::SeqCst), 12);
        }
    }

    #[tokio::test]
    async fn two_writes_of_one_key_are_never_in_flight_and_land_in_order() {
        // Chunks of 2: [a b] [a c] [d e] [f a] [g h] [b i]: a is in three chunks, b in two.
        let keys = ["a", "b", "a", "c", "d", "e", "f", "a", "g", "h", "b", "i"];
        let w = Recorder::default();
        let rows = keyed(&keys);
        let fates = write_rows(&rows, &limits(2, 4), |body| w.write(body)).await;
        assert!(fates.iter().all(Fate::is_stored));
        assert!(w.keys.clashes().is_empty(), "{:?}", w.keys.clashes());
        let order = w.order.lock().unwrap();
        assert_eq!(
            order["a"],
            [0, 2, 7],
            "a key's rows are written in input order"
        );
        assert_eq!(order["b"], [1, 10]);
        // Chunks of other keys still ran beside them.
        assert!(w.keys.most() > 2);
    }

    #[tokio::test]
    async fn bisection_isolates_the_bad_rows_under_concurrency() {
        let keys: Vec<String> = (0..37).map(|i| format!("k{}", i % 29)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let w = Recorder {
            bad: vec![3, 4, 30],
            ..Recorder::default()
        };
        let rows = keyed(&keys);
        let fates = write_rows(&rows, &limits(4, 4), |body| w.write(body)).await;
        for (i, f) in fates.iter().enumerate() {
            let bad = w.bad.contains(&(i as u64));
            assert_eq!(matches!(f, Fate::Rejected { .. }), bad, "row {i}");
            assert_eq!(f.is_stored(), !bad, "row {i}");
        }
        assert!(w.keys.clashes().is_empty());
        assert!(w.keys.most() > 4, "chunks overlapped");
        assert!(w.calls.load(std::sync::atomic::Ordering::SeqCst) < 37);
    }

    #[tokio::test]
    async fn bisects_to_the_bad_rows_only() {
        let rows = rows(37);
        let bad = [3usize, 4, 30];
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let fates = write_rows(&rows, &limits(16, 1), |body| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let text = String::from_utf8(body.to_vec()).unwrap();
            let hit = bad.iter().any(|b| text.contains(&format!("\"i\":{b}}}")));
            async move { if hit { Err(E::Row) } else { Ok(()) } }
        })
        .await;
        for (i, f) in fates.iter().enumerate() {
            assert_eq!(
                matches!(f, Fate::Rejected { .. }),
                bad.contains(&i),
                "row {i}"
            );
            assert_eq!(f.is_stored(), !bad.contains(&i), "row {i}");
        }
        let calls = calls.into_inner();
        assert!(calls < 37, "bisection, not one request per row: {calls}");
    }

    #[tokio::test]
    async fn transient_fails_chunk_but_continues() {
        let rows = rows(6);
        let fates = write_rows(&rows, &limits(2, 4), |body| {
            let fail = body.starts_with(b"[{\"i\":2}");
            async move { if fail { Err(E::Down) } else { Ok(()) } }
        })
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
        let n = std::sync::atomic::AtomicUsize::new(0);
        let fates = write_rows(&rows, &limits(2, 1), |_| {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Err(E::Auth) }
        })
        .await;
        assert_eq!(n.into_inner(), 1);
        assert!(fates.iter().all(|f| matches!(f, Fate::Failed { .. })));

        // Concurrently: the chunks already in flight end with it, nothing more is sent (the
        // halves of a chunk being bisected included).
        let rows = self::rows(40);
        let n = std::sync::atomic::AtomicUsize::new(0);
        let fates = write_rows(&rows, &limits(4, 3), |body| {
            let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bad_chunk = body.starts_with(b"[{\"i\":0}");
            async move {
                // The first chunk refuses a row (bisected) after the second one is refused for
                // the table.
                for _ in 0..if bad_chunk { 8 } else { 4 } {
                    tokio::task::yield_now().await;
                }
                if bad_chunk {
                    Err(E::Row)
                } else if k == 1 {
                    Err(E::Auth)
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(
            n.into_inner(),
            3,
            "the three chunks in flight, nothing after"
        );
        assert!(fates[..8].iter().all(|f| matches!(f, Fate::Failed { .. })));
        assert!(fates[8..12].iter().all(Fate::is_stored));
        assert!(fates[12..].iter().all(|f| matches!(f, Fate::Failed { .. })));
    }

    #[tokio::test]
    async fn empty_input_sends_nothing() {
        let n = std::sync::atomic::AtomicUsize::new(0);
        let fates = write_rows(
            &Vec::<(usize, Vec<u8>)>::new(),
            &WriteLimits::default(),
            |_| {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { Ok::<(), E>(()) }
            },
        )
        .await;
        assert!(fates.is_empty());
        assert_eq!(n.into_inner(), 0);
    }

    #[test]
    fn concurrency_is_read_with_the_other_limits() {
        let l = WriteLimits::from_env(&Env::from_pairs([("WRITE_CONCURRENCY", "8")])).unwrap();
        assert_eq!(l.concurrency, 8);
        assert_eq!(
            WriteLimits::from_env(&Env::from_pairs::<&str, &str>([])).unwrap(),
            WriteLimits::default()
        );
        for bad in ["0", "65", "x"] {
            let e =
                WriteLimits::from_env(&Env::from_pairs([("WRITE_CONCURRENCY", bad)])).unwrap_err();
            assert!(e.to_string().contains("WRITE_CONCURRENCY"), "{e}");
        }
    }
}
