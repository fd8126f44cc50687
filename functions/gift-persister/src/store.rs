//! The gifts table behind PostgREST.

use std::future::Future;

use lambda_kit::batch::{ChunkLimits, RowFate, write_rows};
use lambda_kit::error::Classify;
use lambda_kit::postgrest::{Duplicates, PostgrestClient, PostgrestError, Upsert};
use lambda_kit::retry::Deadline;

/// Where validated gifts go.
pub trait GiftStore: Send + Sync {
    /// Why a row could not be stored.
    type Error: Classify + std::fmt::Display + std::fmt::Debug + Send + Sync + 'static;

    /// Upserts the rows (JSON objects, unique `event_id`s) and returns the fate of each, in order.
    fn write(
        &self,
        deadline: &Deadline,
        rows: &[Vec<u8>],
    ) -> impl Future<Output = Vec<RowFate<Self::Error>>> + Send;
}

/// Gifts upserted on `event_id` with `resolution=ignore-duplicates`: a redelivered or re-sent
/// gift keeps its first row (and provenance) and never fails.
#[derive(Debug, Clone)]
pub struct PostgrestGiftStore {
    client: PostgrestClient,
    table: String,
    limits: ChunkLimits,
    upsert: Upsert,
}

impl PostgrestGiftStore {
    /// Gifts in `table` through `client`, written in chunks within `limits`.
    pub fn new(client: PostgrestClient, table: impl Into<String>, limits: ChunkLimits) -> Self {
        Self {
            client,
            table: table.into(),
            limits,
            upsert: Upsert::on_conflict("event_id", Duplicates::Ignore),
        }
    }
}

impl GiftStore for PostgrestGiftStore {
    type Error = PostgrestError;

    async fn write(&self, deadline: &Deadline, rows: &[Vec<u8>]) -> Vec<RowFate<PostgrestError>> {
        write_rows(rows, &self.limits, |body| {
            self.client
                .upsert(deadline, &self.table, body, &self.upsert)
        })
        .await
    }
}
