//! [`RecordId`]: where a record lives (topic, partition, offset), the identity errors and the
//! partial batch response name a record by.

use std::fmt;

/// Where a record lives: topic, partition, offset. Orders by topic, then partition, then offset.
///
/// ```
/// use event_decoding::RecordId;
/// let id = RecordId::new("cdc.pages-v2", 3, 42);
/// assert_eq!(id.topic_partition(), "cdc.pages-v2-3");
/// assert_eq!(id.to_string(), "cdc.pages-v2-3@42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    /// Topic name (may contain dashes and dots).
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

impl RecordId {
    /// Builds an id.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    /// `"<topic>-<partition>"`, the key of the ESM `records` object and the `partition` of a
    /// batch item failure.
    pub fn topic_partition(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}@{}", self.topic, self.partition, self.offset)
    }
}
