//! The store chosen by `VECTOR_STORE`, as one type the handler can be generic over, and its
//! construction from the configuration and its key (read at cold start, re-read as [`Credential`]
//! says).

use lambda_kit::config::Env;
use lambda_kit::init::InitError;
use lambda_kit::postgrest::PostgrestClient;
use lambda_kit::retry::Deadline;
use lambda_kit::secrets::Credential;

use super::{
    QdrantStore, StargateStore, StoreConfig, StoreError, StoredHashes, SupabaseStore, VectorRow,
    VectorStore, qdrant, stargate,
};

/// One of the stores.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// `page_vectors` through PostgREST.
    Supabase(SupabaseStore),
    /// A Qdrant collection.
    Qdrant(QdrantStore),
    /// Stargate REST v2.
    Stargate(StargateStore),
}

impl AnyStore {
    /// The key the configured store is sent (`QDRANT_API_KEY*`, `STARGATE_AUTH_TOKEN*`),
    /// resolved from the environment or Secrets Manager at cold start and re-read as
    /// [`Credential`] says; `None` when it is sent none.
    pub async fn credential(
        config: &StoreConfig,
        env: &Env,
    ) -> Result<Option<Credential>, InitError> {
        match config {
            StoreConfig::Qdrant(q) => q.api_key.credential(env, qdrant::API_KEY_VARS).await,
            StoreConfig::Stargate(s) => {
                s.auth_token
                    .credential(env, stargate::AUTH_TOKEN_VARS)
                    .await
            }
            StoreConfig::Supabase { .. } => Ok(None),
        }
    }

    /// Builds the configured store, sending `key` (from [`AnyStore::credential`]). `postgrest`
    /// serves the Supabase store (the function needs it for dead letters anyway).
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, Secret};
    /// use page_embedder::config::PageSettings;
    /// use page_embedder::store::AnyStore;
    /// let env = Env::from_pairs([("VECTOR_STORE", "qdrant"), ("QDRANT_URL", "http://127.0.0.1:6333")]);
    /// let settings = PageSettings::from_env(&env).unwrap();
    /// let pg = PostgrestClient::new(PostgrestConfig::new("http://127.0.0.1:3000", Secret::new("k"))).unwrap();
    /// let store = AnyStore::from_config(&settings.store, None, pg, &reqwest::Client::new()).unwrap();
    /// assert!(matches!(store, AnyStore::Qdrant(_)));
    /// ```
    pub fn from_config(
        config: &StoreConfig,
        key: Option<Credential>,
        postgrest: PostgrestClient,
        http: &reqwest::Client,
    ) -> Result<Self, StoreError> {
        Ok(match config {
            StoreConfig::Qdrant(q) => Self::Qdrant(QdrantStore::new(q, key, http.clone())?),
            StoreConfig::Stargate(s) => Self::Stargate(StargateStore::new(s, key, http.clone())?),
            StoreConfig::Supabase { table } => {
                Self::Supabase(SupabaseStore::new(postgrest, table.clone()))
            }
        })
    }
}

/// Calls the same [`VectorStore`] method on whichever store `$store` is.
macro_rules! each_store {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            AnyStore::Supabase($s) => $call,
            AnyStore::Qdrant($s) => $call,
            AnyStore::Stargate($s) => $call,
        }
    };
}

impl VectorStore for AnyStore {
    async fn stored_hashes(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<StoredHashes, StoreError> {
        each_store!(self, s => s.stored_hashes(deadline, page_ids).await)
    }

    async fn upsert(&self, deadline: &Deadline, rows: &[VectorRow]) -> Result<(), StoreError> {
        each_store!(self, s => s.upsert(deadline, rows).await)
    }

    async fn delete_pages(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<(), StoreError> {
        each_store!(self, s => s.delete_pages(deadline, page_ids).await)
    }

    async fn delete_all(&self, deadline: &Deadline) -> Result<(), StoreError> {
        each_store!(self, s => s.delete_all(deadline).await)
    }

    fn supports_delete_all(&self) -> bool {
        each_store!(self, s => s.supports_delete_all())
    }

    async fn delete_chunks_from(
        &self,
        deadline: &Deadline,
        page_id: &str,
        from: usize,
    ) -> Result<(), StoreError> {
        each_store!(self, s => s.delete_chunks_from(deadline, page_id, from).await)
    }
}
