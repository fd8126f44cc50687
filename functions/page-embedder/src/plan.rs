//! Reducing a batch's page changes to one action per page: within a batch the last change of a
//! page (in partition/offset order) wins, so an update followed by a delete ends deleted and a
//! delete followed by a create ends present. Every record of the page is tied to that one action,
//! so if the action fails none of them is acknowledged ahead of it.

use std::collections::HashMap;

/// What a record asks for a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// Create, update, snapshot read or Cassandra insert: the page's text is now `body`.
    Upsert {
        /// The full text of the page (may be empty: then the page has no vectors).
        body: String,
    },
    /// Delete or tombstone: the page is gone.
    Delete,
}

/// The action decided for one page, with the records (indices into the batch, in batch order)
/// whose outcome follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePlan {
    /// Page id, normalised to text.
    pub page_id: String,
    /// The last change of the page in the batch.
    pub change: PageChange,
    /// Every record of the batch that changed this page.
    pub records: Vec<usize>,
}

/// Groups changes by page, keeping the last change per page; pages come out in the order of their
/// first record. `changes` must be in batch order (partition, then offset).
///
/// ```
/// use page_embedder::plan::{plan, PageChange};
/// let plans = plan(vec![
///     (0, "p1".to_string(), PageChange::Upsert { body: "v1".into() }),
///     (1, "p2".to_string(), PageChange::Delete),
///     (2, "p1".to_string(), PageChange::Delete),
/// ]);
/// assert_eq!(plans.len(), 2);
/// assert_eq!(plans[0].change, PageChange::Delete);
/// assert_eq!(plans[0].records, vec![0, 2]);
/// ```
pub fn plan(changes: impl IntoIterator<Item = (usize, String, PageChange)>) -> Vec<PagePlan> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut plans: Vec<PagePlan> = Vec::new();
    for (record, page_id, change) in changes {
        match index.get(&page_id) {
            Some(&i) => {
                plans[i].change = change;
                plans[i].records.push(record);
            }
            None => {
                index.insert(page_id.clone(), plans.len());
                plans.push(PagePlan {
                    page_id,
                    change,
                    records: vec![record],
                });
            }
        }
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(body: &str) -> PageChange {
        PageChange::Upsert { body: body.into() }
    }

    #[test]
    fn update_then_delete_ends_deleted() {
        let p = plan(vec![
            (0, "a".into(), up("x")),
            (1, "a".into(), PageChange::Delete),
        ]);
        assert_eq!(
            p,
            vec![PagePlan {
                page_id: "a".into(),
                change: PageChange::Delete,
                records: vec![0, 1]
            }]
        );
    }

    #[test]
    fn delete_then_create_ends_present_with_last_body() {
        let p = plan(vec![
            (0, "a".into(), PageChange::Delete),
            (1, "a".into(), up("new")),
            (2, "a".into(), up("newer")),
        ]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].change, up("newer"));
        assert_eq!(p[0].records, vec![0, 1, 2]);
    }

    #[test]
    fn interleaved_pages_keep_first_appearance_order_and_their_own_records() {
        let p = plan(vec![
            (0, "b".into(), up("b1")),
            (1, "a".into(), up("a1")),
            (2, "b".into(), PageChange::Delete),
            (3, "c".into(), PageChange::Delete),
            (4, "a".into(), up("a2")),
        ]);
        let ids: Vec<_> = p.iter().map(|p| p.page_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert_eq!(p[0].change, PageChange::Delete);
        assert_eq!(p[0].records, vec![0, 2]);
        assert_eq!(p[1].change, up("a2"));
        assert_eq!(p[1].records, vec![1, 4]);
        assert_eq!(p[2].records, vec![3]);
    }

    #[test]
    fn empty_batch_gives_no_plan() {
        assert!(plan(Vec::new()).is_empty());
    }
}
