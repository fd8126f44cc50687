//! The gifts table behind PostgREST.

use std::future::Future;

use lambda_kit::bulk::{WriteLimits, write_rows};
use lambda_kit::fate::Fate;
use lambda_kit::postgrest::{Duplicates, PostgrestClient, Upsert};
use lambda_kit::retry::Deadline;

/// Where validated gifts go.
pub trait GiftStore: Send + Sync {
    /// Upserts the rows (each its `event_id` and its JSON object) and returns the fate of each,
    /// in order.
    fn write(
        &self,
        deadline: &Deadline,
        rows: &[(String, Vec<u8>)],
    ) -> impl Future<Output = Vec<Fate>> + Send;
}

/// Gifts upserted on `event_id` with `resolution=ignore-duplicates`: a redelivered or re-sent
/// gift keeps its first row (and provenance) and never fails.
#[derive(Debug, Clone)]
pub struct PostgrestGiftStore {
    client: PostgrestClient,
    table: String,
    limits: WriteLimits,
    upsert: Upsert,
}

impl PostgrestGiftStore {
    /// Gifts in `table` through `client`, written in chunks within `limits`.
    pub fn new(client: PostgrestClient, table: impl Into<String>, limits: WriteLimits) -> Self {
        Self {
            client,
            table: table.into(),
            limits,
            upsert: Upsert::on_conflict("event_id", Duplicates::Ignore),
        }
    }

    /// The PostgREST client (its request counter is shared with the dead-letter sink's clone).
    pub fn client(&self) -> &PostgrestClient {
        &self.client
    }
}

impl GiftStore for PostgrestGiftStore {
    /// Chunks within the limits, up to `WRITE_CONCURRENCY` in flight, never two holding one
    /// `event_id`.
    async fn write(&self, deadline: &Deadline, rows: &[(String, Vec<u8>)]) -> Vec<Fate> {
        write_rows(rows, &self.limits, |body| {
            self.client
                .upsert(deadline, &self.table, body, &self.upsert)
        })
        .await
    }
}
