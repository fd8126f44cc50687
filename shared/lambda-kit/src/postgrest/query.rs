//! How a request names rows: [`Filter`] (`column=op.value`, values percent-encoded, long
//! `in.(...)` lists split by encoded length) and the [`Upsert`] options (conflict target,
//! [`Duplicates`]).

use std::fmt;
use std::ops::Range;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters left as is in query values; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What an upsert does with a row whose conflict key already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Duplicates {
    /// `Prefer: resolution=merge-duplicates`: update the existing row.
    Merge,
    /// `Prefer: resolution=ignore-duplicates`: keep the existing row.
    Ignore,
}

/// Options of [`PostgrestClient::upsert`](super::PostgrestClient::upsert).
///
/// ```
/// use lambda_kit::postgrest::{Duplicates, Upsert};
/// let u = Upsert::on_conflict("event_id", Duplicates::Ignore);
/// assert_eq!(u.on_conflict.as_deref(), Some("event_id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upsert {
    /// Columns of the unique constraint (`?on_conflict=`), comma separated.
    pub on_conflict: Option<String>,
    /// Resolution of duplicates; `None` is a plain insert (duplicates fail with 409).
    pub duplicates: Option<Duplicates>,
}

impl Upsert {
    /// An upsert on the given unique columns.
    pub fn on_conflict(columns: impl Into<String>, duplicates: Duplicates) -> Self {
        Self {
            on_conflict: Some(columns.into()),
            duplicates: Some(duplicates),
        }
    }

    /// A plain insert.
    pub fn insert() -> Self {
        Self {
            on_conflict: None,
            duplicates: None,
        }
    }
}

/// Longest encoded `in.(...)` query pair of one [`Filter::in_lists`] filter: with the table
/// URL, `select`, ordering and the other filters, a request URL stays under 8 KiB.
pub const MAX_IN_LIST_BYTES: usize = 6 * 1024;

/// A PostgREST row filter (`column=op.value`), values percent-encoded.
///
/// ```
/// use lambda_kit::postgrest::Filter;
/// assert_eq!(Filter::eq("topic", "a b&c").to_query(), "topic=eq.a%20b%26c");
/// assert_eq!(Filter::in_list("id", ["1", "x,y"]).to_query(), "id=in.(%221%22,%22x%2Cy%22)");
/// assert_eq!(Filter::lt("n", 5).to_query(), "n=lt.5");
/// assert_eq!(Filter::like("page_id", "wiki-*").to_query(), "page_id=like.wiki-%2A");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    column: String,
    op: &'static str,
    value: String,
}

impl Filter {
    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "eq",
            value: encode(&value.to_string()),
        }
    }

    /// `column >= value`.
    pub fn gte(column: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "gte",
            value: encode(&value.to_string()),
        }
    }

    /// `column < value`.
    pub fn lt(column: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "lt",
            value: encode(&value.to_string()),
        }
    }

    /// `column LIKE pattern`, PostgREST's `*` standing for SQL's `%` (`_` matches one
    /// character).
    pub fn like(column: impl Into<String>, pattern: impl fmt::Display) -> Self {
        Self {
            column: column.into(),
            op: "like",
            value: encode(&pattern.to_string()),
        }
    }

    /// `column IS NULL`.
    pub fn is_null(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            op: "is",
            value: "null".into(),
        }
    }

    /// `column IS NOT NULL` (every row, when `column` is the primary key).
    pub fn not_null(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            op: "not.is",
            value: "null".into(),
        }
    }

    /// `column IN (values...)`. Every value is double-quoted with `"` and `\` backslash-escaped,
    /// so PostgREST's reserved characters (`,.:()`) inside values are taken literally.
    pub fn in_list<I, V>(column: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: AsRef<str>,
    {
        let items: Vec<String> = values
            .into_iter()
            .map(|v| encode(&quote_in_value(v.as_ref())))
            .collect();
        Self {
            column: column.into(),
            op: "in",
            value: format!("({})", items.join(",")),
        }
    }

    /// `column IN (values...)` split into consecutive filters, for reads and deletes of many
    /// keys: each filter holds at most `max_values` values and its encoded query pair at most
    /// [`MAX_IN_LIST_BYTES`] bytes (one value longer than that goes alone), so long keys cannot
    /// push a request past the servers' URL limits (8 KiB is common: PostgREST behind Kong,
    /// nginx, AWS load balancers). Together the filters hold every value once, in order.
    ///
    /// ```
    /// use lambda_kit::postgrest::{Filter, MAX_IN_LIST_BYTES};
    /// let ids: Vec<String> = (0..5).map(|i| format!("{i}").repeat(2000)).collect();
    /// let parts = Filter::in_lists("page_id", &ids, 200);
    /// assert_eq!(parts.len(), 2);
    /// assert!(parts.iter().all(|f| f.to_query().len() <= MAX_IN_LIST_BYTES));
    /// assert_eq!(Filter::in_lists("id", &["1", "2", "3"], 2).len(), 2);
    /// ```
    pub fn in_lists<V: AsRef<str>>(
        column: impl Into<String>,
        values: &[V],
        max_values: usize,
    ) -> Vec<Self> {
        let column = column.into();
        let encoded: Vec<String> = values
            .iter()
            .map(|v| encode(&quote_in_value(v.as_ref())))
            .collect();
        in_list_ranges(&column, &encoded, max_values)
            .into_iter()
            .map(|range| Self {
                column: column.clone(),
                op: "in",
                value: format!("({})", encoded[range].join(",")),
            })
            .collect()
    }

    /// The query-string pair.
    pub fn to_query(&self) -> String {
        format!("{}={}.{}", encode(&self.column), self.op, self.value)
    }
}

/// The consecutive ranges of `encoded` (values quoted and percent-encoded) that
/// [`Filter::in_lists`] puts in one filter each.
fn in_list_ranges(column: &str, encoded: &[String], max_values: usize) -> Vec<Range<usize>> {
    // `column=in.(` and `)`.
    let fixed = encode(column).len() + "=in.()".len();
    let mut out = Vec::new();
    let mut start = 0;
    let mut len = fixed;
    for (i, item) in encoded.iter().enumerate() {
        let add = item.len() + usize::from(i > start);
        if i > start && (i - start >= max_values.max(1) || len + add > MAX_IN_LIST_BYTES) {
            out.push(start..i);
            start = i;
            len = fixed + item.len();
        } else {
            len += add;
        }
    }
    if start < encoded.len() {
        out.push(start..encoded.len());
    }
    out
}

pub(super) fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn quote_in_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_lists_split_long_values_by_encoded_length_and_cover_each_value_once() {
        // 512-byte ids of two-byte characters: 1,536 bytes each once percent-encoded, so 200 of
        // them (the count bound alone) would make a 300 KB URL.
        let ids: Vec<String> = (0..200)
            .map(|i| format!("{i:03}{}", "é".repeat(254)))
            .collect();
        let encoded = |values: &[String]| -> Vec<String> {
            values.iter().map(|v| encode(&quote_in_value(v))).collect()
        };
        let ranges = in_list_ranges("page_id", &encoded(&ids), 200);
        let filters = Filter::in_lists("page_id", &ids, 200);
        assert!(ranges.len() > 1);
        assert_eq!(ranges.len(), filters.len());
        let mut next = 0;
        for (range, filter) in ranges.iter().zip(&filters) {
            assert_eq!(range.start, next);
            next = range.end;
            let query = filter.to_query();
            assert!(query.len() <= MAX_IN_LIST_BYTES, "{}", query.len());
            assert_eq!(
                query,
                Filter::in_list("page_id", &ids[range.clone()]).to_query()
            );
        }
        assert_eq!(next, ids.len());
        // The count bound still holds for short values; one value over the budget goes alone.
        let short: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert_eq!(
            in_list_ranges("id", &encoded(&short), 2),
            [0..2, 2..4, 4..5]
        );
        let huge = [
            "a".to_string(),
            "b".repeat(MAX_IN_LIST_BYTES),
            "c".to_string(),
        ];
        assert_eq!(
            in_list_ranges("id", &encoded(&huge), 200),
            [0..1, 1..2, 2..3]
        );
        assert!(Filter::in_lists("id", &Vec::<String>::new(), 200).is_empty());
    }

    #[test]
    fn in_list_quoting() {
        assert_eq!(quote_in_value("abc"), "\"abc\"");
        assert_eq!(quote_in_value("a,b"), "\"a,b\"");
        assert_eq!(quote_in_value("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(quote_in_value(""), "\"\"");
        assert_eq!(
            Filter::in_list("k", ["é"]).to_query(),
            "k=in.(%22%C3%A9%22)"
        );
        assert_eq!(Filter::is_null("x").to_query(), "x=is.null");
    }
}
