//! `VECTOR_STORE=stargate`: chunk vectors in a Cassandra table through the Stargate REST API v2,
//! the store the Python worker used (`/v2/keyspaces/{keyspace}/{table}/{primaryKey...}`,
//! `X-Cassandra-Token`).
//!
//! **Prefer another store for new deployments.** DataStax deprecated the Stargate REST API on
//! Astra DB in September 2024 (end of life scheduled for the end of 2025; the Data API or CQL
//! drivers replace it). It remains available in self-hosted Stargate in front of Cassandra/DSE.
//! This store exists to keep such a deployment running; Supabase (`pgvector`) or Qdrant are the
//! maintained choices.
//!
//! Expected table (the partition is the page, the clustering key the chunk):
//!
//! ```text
//! CREATE TABLE gibsey.page_vectors (
//!   page_id text, chunk_index int, embedding list<float>,
//!   content_hash text, model text, chunk_text text,
//!   PRIMARY KEY ((page_id), chunk_index));
//! ```
//!
//! Every user-controlled path segment is percent-encoded (the old worker interpolated `page_id`
//! raw, so an id like `a/b?c` or `../x` changed the request); ids that no URL can carry as a
//! segment (empty, `.`, `..`) are rejected as bad input. The REST API has one request per row:
//! writes go out with bounded concurrency.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use lambda_kit::config::{ConfigError, Env};
use lambda_kit::retry::{Deadline, RetryPolicy};
use lambda_kit::secrets::Credential;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::qdrant::http_url;
use super::rest::{MAX_ROWS_READ, RestClient, Service, json_text, segment, too_many_rows};
use super::{StoreError, StoredChunk, StoredHashes, VectorRow, VectorStore};
use crate::keys::{KeySource, key_source};

/// Stargate REST v2: the token in `X-Cassandra-Token`, errors as `{"description": "..."}`.
const STARGATE: Service = Service {
    name: "stargate",
    url_var: "STARGATE_URL",
    auth_header: "x-cassandra-token",
    error_text: stargate_error_text,
    // Not known: Stargate's wording for a table of another shape was not checked against a
    // server, so its 400s keep blaming the rows.
    refuses_setup: |_| false,
};

/// The variables giving the auth token: directly, or as a Secrets Manager id.
pub(crate) const AUTH_TOKEN_VARS: (&str, &str) =
    ("STARGATE_AUTH_TOKEN", "STARGATE_AUTH_TOKEN_SECRET_ID");

/// Requests in flight at once (the API has no bulk write).
const CONCURRENCY: usize = 8;
/// Rows per read page.
const PAGE_SIZE: usize = 1000;

/// Settings of the Stargate store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StargateConfig {
    /// `STARGATE_URL`: the REST API base, e.g. `http://localhost:8082`.
    pub url: String,
    /// `STARGATE_KEYSPACE` (default `gibsey`).
    pub keyspace: String,
    /// `STARGATE_TABLE` (default `page_vectors`).
    pub table: String,
    /// `STARGATE_AUTH_TOKEN` or `STARGATE_AUTH_TOKEN_SECRET_ID`, sent as `X-Cassandra-Token`.
    pub auth_token: KeySource,
    /// `HTTP_TIMEOUT_MS` (default 10 s).
    pub request_timeout: Duration,
    /// `RETRY_MAX_ATTEMPTS`, `RETRY_INITIAL_BACKOFF_MS`, `RETRY_MAX_BACKOFF_MS`.
    pub retry: RetryPolicy,
}

impl StargateConfig {
    /// Reads the settings; `STARGATE_URL` is required.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::store::StargateConfig;
    /// let c = StargateConfig::from_env(&Env::from_pairs([("STARGATE_URL", "http://127.0.0.1:8082")])).unwrap();
    /// assert_eq!((c.keyspace.as_str(), c.table.as_str()), ("gibsey", "page_vectors"));
    /// ```
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let auth_token = key_source(env, AUTH_TOKEN_VARS)?;
        Ok(Self {
            url: http_url(env, "STARGATE_URL", !matches!(auth_token, KeySource::None))?,
            keyspace: env.identifier_or("STARGATE_KEYSPACE", "gibsey")?,
            table: env.identifier_or("STARGATE_TABLE", "page_vectors")?,
            auth_token,
            request_timeout: env.millis_or("HTTP_TIMEOUT_MS", Duration::from_secs(10))?,
            retry: RetryPolicy::from_env(env, "RETRY_")?,
        })
    }
}

/// Stargate's error body: `{"description": "...", "code": 400}`.
fn stargate_error_text(body: &[u8]) -> Option<String> {
    json_text(body, "/description")
}

/// Chunk vectors in a Cassandra table behind Stargate REST v2.
#[derive(Debug, Clone)]
pub struct StargateStore {
    rest: RestClient,
    /// `{url}/v2/keyspaces/{keyspace}/{table}`.
    base: String,
}

#[derive(Serialize)]
struct Columns<'a> {
    embedding: &'a [f32],
    content_hash: &'a str,
    model: &'a str,
    chunk_text: &'a str,
}

#[derive(Deserialize)]
struct Rows {
    #[serde(rename = "pageState")]
    page_state: Option<String>,
    data: Vec<HashRow>,
}

#[derive(Deserialize)]
struct HashRow {
    chunk_index: usize,
    content_hash: String,
}

impl StargateStore {
    /// A store for `config`, with the token already resolved.
    ///
    /// ```
    /// use lambda_kit::config::Env;
    /// use page_embedder::store::{StargateConfig, StargateStore};
    /// let c = StargateConfig::from_env(&Env::from_pairs([("STARGATE_URL", "http://127.0.0.1:8082")])).unwrap();
    /// let s = StargateStore::new(&c, None, reqwest::Client::new()).unwrap();
    /// assert_eq!(s.row_url("a/b?c", Some(2)).unwrap(), "http://127.0.0.1:8082/v2/keyspaces/gibsey/page_vectors/a%2Fb%3Fc/2");
    /// assert!(s.row_url("..", None).is_err());
    /// ```
    pub fn new(
        config: &StargateConfig,
        auth_token: Option<Credential>,
        http: reqwest::Client,
    ) -> Result<Self, StoreError> {
        let rest = RestClient::new(
            &STARGATE,
            auth_token,
            http,
            config.request_timeout,
            &config.retry,
        )?;
        let base = format!(
            "{}/v2/keyspaces/{}/{}",
            config.url,
            segment("STARGATE_KEYSPACE", &config.keyspace)?,
            segment("STARGATE_TABLE", &config.table)?
        );
        Ok(Self { rest, base })
    }

    /// URL of a page's partition, or of one chunk's row.
    pub fn row_url(&self, page_id: &str, chunk_index: Option<usize>) -> Result<String, StoreError> {
        let mut url = format!("{}/{}", self.base, segment("page_id", page_id)?);
        if let Some(i) = chunk_index {
            url.push('/');
            url.push_str(&i.to_string());
        }
        Ok(url)
    }

    /// Every stored chunk of one page, following `pageState`.
    async fn page_chunks(
        &self,
        deadline: &Deadline,
        page_id: &str,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        let partition = self.row_url(page_id, None)?;
        let mut out = Vec::new();
        let mut page_state: Option<String> = None;
        loop {
            let mut url =
                format!("{partition}?fields=chunk_index,content_hash&page-size={PAGE_SIZE}");
            if let Some(state) = page_state.take() {
                url.push_str("&page-state=");
                url.extend(utf8_percent_encode(&state, NON_ALPHANUMERIC));
            }
            let body = self.rest.send(deadline, Method::GET, &url, None).await?;
            let rows: Rows = self.rest.decode(&body)?;
            if rows.data.len() > MAX_ROWS_READ - out.len() {
                return Err(too_many_rows("stargate"));
            }
            out.extend(rows.data.into_iter().map(|r| StoredChunk {
                chunk_index: r.chunk_index,
                content_hash: r.content_hash,
            }));
            match rows.page_state {
                Some(s) if !s.is_empty() => page_state = Some(s),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete_url(&self, deadline: &Deadline, url: String) -> Result<(), StoreError> {
        self.rest
            .send(deadline, Method::DELETE, &url, None)
            .await
            .map(drop)
    }
}

/// Runs the requests with at most [`CONCURRENCY`] in flight; the first error wins.
async fn bounded<T, F>(futures: Vec<F>) -> Result<Vec<T>, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    futures_util::stream::iter(futures)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

impl VectorStore for StargateStore {
    async fn stored_hashes(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<StoredHashes, StoreError> {
        let reads: Vec<_> = page_ids
            .iter()
            .map(|id| async move {
                Ok::<_, StoreError>((id.clone(), self.page_chunks(deadline, id).await?))
            })
            .collect();
        let pages: Vec<(String, Vec<StoredChunk>)> = bounded(reads).await?;
        Ok(pages
            .into_iter()
            .filter(|(_, chunks)| !chunks.is_empty())
            .collect())
    }

    async fn upsert(&self, deadline: &Deadline, rows: &[VectorRow]) -> Result<(), StoreError> {
        // Check every key before writing anything, so a bad id fails the batch cleanly.
        let requests: Vec<(String, Vec<u8>)> = rows
            .iter()
            .map(|r| {
                let url = self.row_url(&r.page_id, Some(r.chunk_index))?;
                let body = serde_json::to_vec(&Columns {
                    embedding: &r.embedding,
                    content_hash: &r.content_hash,
                    model: &r.model,
                    chunk_text: &r.chunk_text,
                })
                .map_err(|e| StoreError {
                    class: lambda_kit::error::ErrorClass::Data,
                    code: "encode",
                    message: e.to_string(),
                })?;
                Ok((url, body))
            })
            .collect::<Result<_, StoreError>>()?;
        let writes: Vec<_> = requests
            .into_iter()
            .map(|(url, body)| async move {
                // PUT on the full primary key replaces the row (an upsert in Cassandra terms).
                self.rest
                    .send(deadline, Method::PUT, &url, Some(body))
                    .await
                    .map(drop)
            })
            .collect();
        bounded(writes).await.map(drop)
    }

    async fn delete_pages(
        &self,
        deadline: &Deadline,
        page_ids: &[String],
    ) -> Result<(), StoreError> {
        let urls = page_ids
            .iter()
            .map(|id| self.row_url(id, None))
            .collect::<Result<Vec<_>, _>>()?;
        // DELETE on the partition key alone removes the whole partition; absent rows are fine.
        let deletes: Vec<_> = urls
            .into_iter()
            .map(|url| self.delete_url(deadline, url))
            .collect();
        bounded(deletes).await.map(drop)
    }

    async fn delete_chunks_from(
        &self,
        deadline: &Deadline,
        page_id: &str,
        from: usize,
    ) -> Result<(), StoreError> {
        // The REST API deletes by full key or whole partition, not by range: read the page's
        // chunk indexes and delete the tail one by one.
        let tail: Vec<String> = self
            .page_chunks(deadline, page_id)
            .await?
            .into_iter()
            .filter(|c| c.chunk_index >= from)
            .map(|c| self.row_url(page_id, Some(c.chunk_index)))
            .collect::<Result<_, _>>()?;
        let deletes: Vec<_> = tail
            .into_iter()
            .map(|url| self.delete_url(deadline, url))
            .collect();
        bounded(deletes).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_reads_stargate_bodies() {
        assert_eq!(
            stargate_error_text(br#"{"description":"Role unauthorized for operation","code":401}"#)
                .unwrap(),
            "Role unauthorized for operation"
        );
        assert!(stargate_error_text(b"<html>").is_none());
    }

    #[test]
    fn settings_validate_names() {
        let err = StargateConfig::from_env(&Env::from_pairs([
            ("STARGATE_URL", "http://h"),
            ("STARGATE_KEYSPACE", "a/b"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "STARGATE_KEYSPACE");
        let err = StargateConfig::from_env(&Env::from_pairs([
            ("STARGATE_URL", "http://stargate.internal:8082"),
            ("STARGATE_AUTH_TOKEN", "t"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "STARGATE_URL");
        assert!(err.problem.contains("https://"), "{err}");
        assert!(
            StargateConfig::from_env(&Env::from_pairs([
                ("STARGATE_URL", "http://127.0.0.1:8082"),
                ("STARGATE_AUTH_TOKEN", "t"),
            ]))
            .is_ok()
        );
        assert_eq!(
            StargateConfig::from_env(&Env::empty()).unwrap_err().var,
            "STARGATE_URL"
        );
    }
}
