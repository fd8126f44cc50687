//! Decode: a record into the change it asks for its page ([`PageItem`]), keyed by the page id
//! as text. A bad page id or body is the record's fault (dead-lettered); a truncate, a skip or a
//! change whose body the producer did not send settles the record without a change.

use event_decoding::{Change, KafkaRecord, json_kind};
use lambda_kit::fate::Fate;
use lambda_kit::trace::TraceContext;
use serde_json::Value;

use super::{PageChange, PageItem, Pipeline, Settings, Stats};
use crate::embed::Embedder;
use crate::rag::RagNotifier;
use crate::store::VectorStore;

impl Settings {
    /// Whether a truncate of `table` (as the event names it) deletes every vector.
    fn truncates_all(&self, table: Option<&str>) -> bool {
        let (Some(wanted), Some(table)) = (self.source_table.as_deref(), table) else {
            return false;
        };
        self.truncate_deletes_all
            && (table == wanted
                || (!wanted.contains('.')
                    && table.rsplit_once('.').is_some_and(|(_, t)| t == wanted)))
    }

    fn is_unavailable(&self, body: Option<&Value>) -> bool {
        let Some(Value::String(body)) = body else {
            return false;
        };
        use base64::Engine as _;
        let b64 = || base64::engine::general_purpose::STANDARD.encode(&self.unavailable_value);
        !self.unavailable_value.is_empty()
            && (*body == self.unavailable_value
                || (body.len() < 4 * self.unavailable_value.len() && *body == b64()))
    }
}

/// The grouping key of a truncate: never a page id (page ids are not empty).
const TRUNCATE_KEY: &str = "";

/// Longest page id, in UTF-8 bytes. A page id travels in URLs (`in.(...)` reads, deletes) and
/// keys of every store; a longer one is the record's fault (`invalid_page_id`), never a read
/// that fails the whole batch.
pub const MAX_PAGE_ID_BYTES: usize = 512;

/// Page id as text: strings as they are, integers in decimal. Empty, negative, longer than
/// [`MAX_PAGE_ID_BYTES`] or holding a control character (NUL, which PostgreSQL text cannot hold,
/// newlines, ...) is refused: the message says why without echoing the id.
fn page_id_text(v: &Value) -> Result<String, &'static str> {
    match v {
        Value::String(s) if s.len() > MAX_PAGE_ID_BYTES => {
            Err("is longer than 512 bytes (MAX_PAGE_ID_BYTES)")
        }
        Value::String(s) if s.chars().any(char::is_control) => {
            Err("holds a control character (NUL, newline, ...)")
        }
        Value::String(s) if s.trim().is_empty() => Err("is empty"),
        // Page ids are non-negative numbers or names; "-9" is a corrupted numeric id.
        Value::String(s) if s.trim().parse::<i64>().is_ok_and(|i| i < 0) => {
            Err("must not be negative")
        }
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => Err("must not be negative"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::Number(_) => Err("is a non-integer number"),
        _ => Err("must be a string or an integer"),
    }
}

impl<E: Embedder, S: VectorStore, R: RagNotifier> Pipeline<E, S, R> {
    /// Decodes a record into `(page id, change)` (with its trace context when there is a RAG
    /// hook to notify in it), `Ok(None)` for records without a page change
    /// (truncate, skip), `Err` for a record to dead-letter.
    pub(crate) fn decode_change(
        &self,
        record: &KafkaRecord,
        stats: &mut Stats,
    ) -> Result<Option<(String, PageItem)>, Fate> {
        let reject = Fate::rejected;
        let (change, version) = record
            .change_with_version_via(self.values.decoding())
            .map_err(|e| Fate::undecodable(&e))?;
        let trace = if self.settings.rag_enabled {
            TraceContext::from_record(record)
        } else {
            None
        };
        let item = |change| PageItem {
            change,
            version,
            position: (record.partition, record.offset),
            trace: trace.clone(),
        };
        let id_field = &self.settings.page_id_field;
        let page_id = |change: &Change| -> Result<String, Fate> {
            let value = change.field(id_field).or_else(|| {
                // A scalar record key (`"42"`) identifies the page of a delete or tombstone.
                matches!(change, Change::Delete { .. } | Change::Tombstone { .. })
                    .then(|| change.key())
                    .flatten()
                    .filter(|k| k.is_string() || k.is_number())
            });
            let value = value.ok_or_else(|| {
                reject(
                    "missing_page_id",
                    format!(
                        "{id_field}: missing from the row and the key ({})",
                        change.kind()
                    ),
                )
            })?;
            page_id_text(value).map_err(|p| reject("invalid_page_id", format!("{id_field}: {p}")))
        };
        match &change {
            Change::Truncate { table } if self.settings.truncates_all(table.as_deref()) => {
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, table = table.as_deref(), "truncate event: every vector is deleted (CDC_ON_TRUNCATE=delete-all)");
                Ok(Some((TRUNCATE_KEY.to_owned(), item(PageChange::DeleteAll))))
            }
            Change::Truncate { table } if self.settings.truncate_deletes_all => {
                // Not the configured table (a topic fed by several tables): acting on it would
                // wipe the vectors of a table that was not emptied. Not a bad record either, so
                // not dead-lettered: a replay of it must not wipe them later.
                stats.truncates_ignored += 1;
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, table = table.as_deref(), source_table = self.settings.source_table.as_deref(), "truncate event of another table than CDC_SOURCE_TABLE (or naming none) ignored: the stored vectors are kept");
                Ok(None)
            }
            Change::Truncate { .. } => {
                stats.truncates_ignored += 1;
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, "truncate event ignored: the stored vectors are kept (never a mass delete); delete the pages' vectors by hand if the source table was emptied for good");
                Ok(None)
            }
            Change::Skip { reason } => {
                tracing::debug!(offset = record.offset, reason, "record skipped");
                Ok(None)
            }
            Change::Delete { .. } | Change::Tombstone { .. } => {
                Ok(Some((page_id(&change)?, item(PageChange::Delete))))
            }
            Change::Upsert { row, unset, .. } => {
                let id = page_id(&change)?;
                let field = &self.settings.body_field;
                if unset.iter().any(|c| c == field) || self.settings.is_unavailable(row.get(field))
                {
                    // The change did not carry the body: the page's text is unchanged, so its
                    // vectors stay as they are (embedding the placeholder would replace them).
                    stats.bodies_unavailable += 1;
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, page_id = %id, "body not sent with this change (unavailable-value placeholder or unset column): vectors kept; set REPLICA IDENTITY FULL on the source table to always receive it");
                    return Ok(None);
                }
                let body = match row.get(field) {
                    None => {
                        return Err(reject(
                            "missing_body",
                            format!("{field}: missing from the row"),
                        ));
                    }
                    // A NULL column: the page has no text, hence no vectors.
                    Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => {
                        return Err(reject(
                            "invalid_body",
                            format!("{field}: expected a string, found {}", json_kind(other)),
                        ));
                    }
                };
                Ok(Some((id, item(PageChange::Upsert { body }))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lambda_kit::bulk::WriteLimits;
    use serde_json::json;

    use super::*;
    use crate::chunk::ChunkLimits;
    use crate::embed::EmbedSettings;

    #[test]
    fn delete_all_acts_only_on_the_configured_source_table() {
        let settings = |on: bool, table: Option<&str>| Settings {
            page_id_field: "page_id".into(),
            body_field: "body".into(),
            doc_prefix: String::new(),
            limits: ChunkLimits::new(100, 10),
            embed: EmbedSettings {
                batch_size: 1,
                concurrency: 1,
                retry: lambda_kit::retry::RetryPolicy::default(),
            },
            writes: WriteLimits::default(),
            rag_enabled: false,
            function_name: "page-embedder".into(),
            truncate_deletes_all: on,
            source_table: table.map(Into::into),
            unavailable_value: String::new(),
        };
        let s = settings(true, Some("public.pages"));
        assert!(s.truncates_all(Some("public.pages")));
        assert!(!s.truncates_all(Some("public.drafts")));
        assert!(!s.truncates_all(Some("archive.pages")));
        assert!(!s.truncates_all(None), "an event naming no table");
        let any_schema = settings(true, Some("pages"));
        assert!(any_schema.truncates_all(Some("archive.pages")));
        assert!(any_schema.truncates_all(Some("pages")));
        assert!(!any_schema.truncates_all(Some("public.pages_old")));
        assert!(!settings(false, Some("pages")).truncates_all(Some("pages")));
    }

    #[test]
    fn page_ids_are_normalised_to_text_and_bad_ones_named() {
        assert_eq!(page_id_text(&json!("42")), Ok("42".into()));
        assert_eq!(page_id_text(&json!(42)), Ok("42".into()));
        assert_eq!(page_id_text(&json!(u64::MAX)), Ok(u64::MAX.to_string()));
        assert_eq!(page_id_text(&json!("-9")), Err("must not be negative"));
        assert_eq!(page_id_text(&json!(-9)), Err("must not be negative"));
        assert_eq!(page_id_text(&json!(" ")), Err("is empty"));
        assert_eq!(page_id_text(&json!(1.5)), Err("is a non-integer number"));
        assert_eq!(
            page_id_text(&json!(true)),
            Err("must be a string or an integer")
        );
        // The poison ids: a NUL, and 10,000 characters.
        assert!(
            page_id_text(&json!("p\u{0}1"))
                .unwrap_err()
                .contains("control")
        );
        assert!(page_id_text(&json!("tab\there")).is_err());
        assert!(
            page_id_text(&json!("x".repeat(10_000)))
                .unwrap_err()
                .contains("512")
        );
        let longest = "é".repeat(MAX_PAGE_ID_BYTES / 2);
        assert_eq!(page_id_text(&json!(longest.clone())), Ok(longest.clone()));
        assert!(page_id_text(&json!(format!("{longest}a"))).is_err());
        assert_eq!(
            page_id_text(&json!("wiki/Ünïcode page")),
            Ok("wiki/Ünïcode page".into())
        );
    }
}
