//! [`PostgrestClient`]: upserts, selects (one page or all of them), updates and deletes, each sent
//! with the key's headers, retried within the deadline and read through the answer limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::de::DeserializeOwned;

use crate::http;
use crate::retry::Deadline;
use crate::secrets::{Credential, PerValue};

use super::error::postgrest_error;
use super::key::{AuthHeaders, auth_headers};
use super::query::encode;
use super::{Duplicates, Filter, PostgrestConfig, PostgrestError, Upsert};

/// The settings of PostgREST's URL, named when it redirects or answers too much.
const URL_VARS: &str = "SUPABASE_URL (or SUPABASE_REST_URL)";

/// Largest PostgREST answer the functions read: a page of [`READ_PAGE_ROWS`] rows of 16 KB each,
/// far more than the ids, versions and hashes they read. Past it the call fails as an environment
/// fault, having read no more. `kl`, which reads whole dead letters, sets its own
/// ([`PostgrestClient::with_max_answer`]).
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Most rows one [`PostgrestClient::select_all`] returns: a server that ignored `offset` would
/// otherwise answer the same page forever while the result grows.
pub const MAX_SELECT_ALL_ROWS: usize = 1_000 * READ_PAGE_ROWS;

/// Rows asked for per request by [`PostgrestClient::select_all`]: Supabase's default
/// `db-max-rows`.
pub const READ_PAGE_ROWS: usize = 1000;

/// The PostgREST client; cheap to clone (shared connection pool and counters).
#[derive(Debug, Clone)]
pub struct PostgrestClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    /// Sent as `apikey`, and as `Authorization: Bearer` for JWT keys ([`KeyKind::sends_bearer`]).
    key: Credential,
    /// The headers of the key's current value, checked ([`auth_headers`]).
    headers: Arc<PerValue<AuthHeaders>>,
    /// Timeout, retries and the answer's limit.
    sender: http::Sender,
    requests: Arc<AtomicU64>,
}

impl PostgrestClient {
    /// Builds the client (connection pool, timeouts).
    ///
    /// ```
    /// use lambda_kit::postgrest::{PostgrestClient, PostgrestConfig, Secret};
    /// let c = PostgrestClient::new(PostgrestConfig::new("http://127.0.0.1:3000", Secret::new("k"))).unwrap();
    /// assert_eq!(c.table_url("vault"), "http://127.0.0.1:3000/vault");
    /// ```
    pub fn new(config: PostgrestConfig) -> Result<Self, PostgrestError> {
        let http = http::client_builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| PostgrestError::Build(http::describe_reqwest(&e)))?;
        Self::with_http(config, http)
    }

    /// Like [`new`](Self::new) but on a connection pool the caller already has (a function that
    /// also calls other HTTP APIs loads the TLS roots once). Every request carries
    /// `config.request_timeout` itself (capped by the invocation deadline); the client's own
    /// connect timeout applies, `config.connect_timeout` does not.
    pub fn with_http(
        config: PostgrestConfig,
        http: reqwest::Client,
    ) -> Result<Self, PostgrestError> {
        Ok(Self {
            http,
            base_url: Arc::from(config.base_url.trim_end_matches('/')),
            key: config.key,
            headers: Arc::default(),
            sender: http::Sender::new(
                "postgrest",
                config.request_timeout,
                config.retry,
                http::Limit::new(URL_VARS, MAX_ANSWER),
            ),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same client, reading answers of up to `bytes` (default [`MAX_ANSWER`]).
    pub fn with_max_answer(mut self, bytes: usize) -> Self {
        self.sender.limit = http::Limit::new(URL_VARS, bytes);
        self
    }

    /// URL of a table (path segment percent-encoded).
    pub fn table_url(&self, table: &str) -> String {
        format!("{}/{}", self.base_url, encode(table))
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Inserts or upserts the rows of `body`, a JSON array of objects, in one request
    /// (`Prefer: return=minimal`).
    pub async fn upsert(
        &self,
        deadline: &Deadline,
        table: &str,
        body: Bytes,
        options: &Upsert,
    ) -> Result<(), PostgrestError> {
        let mut url = self.table_url(table);
        if let Some(cols) = &options.on_conflict {
            url.push_str("?on_conflict=");
            url.push_str(&encode(cols).replace("%2C", ","));
        }
        let prefer = match options.duplicates {
            Some(Duplicates::Merge) => "return=minimal,resolution=merge-duplicates",
            Some(Duplicates::Ignore) => "return=minimal,resolution=ignore-duplicates",
            None => "return=minimal",
        };
        self.send(deadline, || {
            self.http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .header("Prefer", prefer)
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Rows of `table` matching every filter, `select` being PostgREST's column list (`*`,
    /// `a,b`).
    pub async fn select<T: DeserializeOwned>(
        &self,
        deadline: &Deadline,
        table: &str,
        select: &str,
        filters: &[Filter],
    ) -> Result<Vec<T>, PostgrestError> {
        let url = self.url_with_filters(table, Some(select), filters);
        let body = self.send(deadline, || self.http.get(&url)).await?;
        serde_json::from_slice(&body).map_err(|e| PostgrestError::Decode(e.to_string()))
    }

    /// Every row matching the filters, read in pages of [`READ_PAGE_ROWS`] ordered by `order` (a
    /// column list that is unique per row, e.g. the primary key), so that the API's row limit
    /// (Supabase answers at most 1000 rows per request by default, `db-max-rows`) never cuts the
    /// result short silently. Reading stops at the first empty page, whatever limit the server
    /// applies, or fails past [`MAX_SELECT_ALL_ROWS`] rows.
    pub async fn select_all<T: DeserializeOwned>(
        &self,
        deadline: &Deadline,
        table: &str,
        select: &str,
        filters: &[Filter],
        order: &str,
    ) -> Result<Vec<T>, PostgrestError> {
        let base = self.url_with_filters(table, Some(select), filters);
        let order = encode(order).replace("%2C", ",");
        let mut out: Vec<T> = Vec::new();
        loop {
            let url = format!(
                "{base}&order={order}&limit={READ_PAGE_ROWS}&offset={}",
                out.len()
            );
            let body = self.send(deadline, || self.http.get(&url)).await?;
            let page: Vec<T> =
                serde_json::from_slice(&body).map_err(|e| PostgrestError::Decode(e.to_string()))?;
            if page.is_empty() {
                return Ok(out);
            }
            if page.len() > MAX_SELECT_ALL_ROWS - out.len() {
                return Err(PostgrestError::Decode(format!(
                    "{table}: more than {MAX_SELECT_ALL_ROWS} rows in pages of {READ_PAGE_ROWS}; a selection this large is refused (does the server ignore `offset`?)"
                )));
            }
            out.extend(page);
        }
    }

    /// Sets the columns of `body` (one JSON object) on the rows matching every filter (at least
    /// one filter is required, to avoid rewriting a whole table by mistake).
    pub async fn update(
        &self,
        deadline: &Deadline,
        table: &str,
        filters: &[Filter],
        body: Bytes,
    ) -> Result<(), PostgrestError> {
        if filters.is_empty() {
            return Err(PostgrestError::Build(
                "update without a filter is refused".into(),
            ));
        }
        let url = self.url_with_filters(table, None, filters);
        self.send(deadline, || {
            self.http
                .patch(&url)
                .header(CONTENT_TYPE, "application/json")
                .header("Prefer", "return=minimal")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Deletes the rows matching every filter (at least one filter is required, to avoid
    /// emptying a table by mistake).
    pub async fn delete(
        &self,
        deadline: &Deadline,
        table: &str,
        filters: &[Filter],
    ) -> Result<(), PostgrestError> {
        if filters.is_empty() {
            return Err(PostgrestError::Build(
                "delete without a filter is refused".into(),
            ));
        }
        let url = self.url_with_filters(table, None, filters);
        self.send(deadline, || {
            self.http.delete(&url).header("Prefer", "return=minimal")
        })
        .await
        .map(drop)
    }

    fn url_with_filters(&self, table: &str, select: Option<&str>, filters: &[Filter]) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(filters.len() + 1);
        if let Some(select) = select {
            parts.push(format!(
                "select={}",
                encode(select).replace("%2C", ",").replace("%2A", "*")
            ));
        }
        parts.extend(filters.iter().map(Filter::to_query));
        let mut url = self.table_url(table);
        if !parts.is_empty() {
            url.push('?');
            url.push_str(&parts.join("&"));
        }
        url
    }

    /// Sends with the current key; a 401/403 re-reads the key ([`Credential::call`]) and, when
    /// it changed, sends once more with the new one within the same deadline. A refusal that
    /// stands names the setting to fix.
    async fn send<F>(&self, deadline: &Deadline, build: F) -> Result<Bytes, PostgrestError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.sender
            .send_with_credential(
                deadline,
                &self.key,
                |key| {
                    let headers = self.headers.get(&key, |k| auth_headers(k, &self.key));
                    std::future::ready(headers)
                },
                |(apikey, auth)| {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    let request = build().header("apikey", apikey.clone());
                    match auth {
                        Some(auth) => request.header(AUTHORIZATION, auth.clone()),
                        None => request,
                    }
                },
                || PostgrestError::DeadlineExceeded,
                postgrest_error,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
    use crate::postgrest::test_support::{client, insert_empty, rotating_key};
    use crate::retry::RetryPolicy;
    use crate::secrets::Secret;
    use crate::testing::MockServer;

    #[tokio::test]
    async fn upsert_sends_auth_prefer_and_conflict() {
        let server = MockServer::start(vec![(201, vec![], String::new())]).await;
        let c = client(&server.url());
        c.upsert(
            &Deadline::after(Duration::from_secs(5)),
            "vault",
            Bytes::from_static(b"[{}]"),
            &Upsert::on_conflict("event_id", Duplicates::Ignore),
        )
        .await
        .unwrap();
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert!(
            r.head
                .starts_with("POST /vault?on_conflict=event_id HTTP/1.1"),
            "{}",
            r.head
        );
        let head = r.head.to_ascii_lowercase();
        assert!(head.contains("apikey: sekret-key"));
        assert!(head.contains("authorization: bearer sekret-key"));
        assert!(head.contains("prefer: return=minimal,resolution=ignore-duplicates"));
        assert_eq!(r.body, b"[{}]");
        assert_eq!(c.requests_sent(), 1);
    }

    #[tokio::test]
    async fn retries_503_then_succeeds_and_parses_select() {
        let server = MockServer::start(vec![
            (503, vec![("retry-after", "0")], "oops".into()),
            (200, vec![], r#"[{"id":1}]"#.into()),
        ])
        .await;
        let c = client(&server.url());
        let rows: Vec<serde_json::Value> = c
            .select(
                &Deadline::after(Duration::from_secs(5)),
                "t",
                "id,name",
                &[Filter::eq("topic", "a&b")],
            )
            .await
            .unwrap();
        assert_eq!(rows, vec![serde_json::json!({"id": 1})]);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert!(
            reqs[1]
                .head
                .starts_with("GET /t?select=id,name&topic=eq.a%26b "),
            "{}",
            reqs[1].head
        );
    }

    /// PostgREST answers a revoked key 401 (`PGRST301` for a JWT it cannot verify): the client
    /// re-reads the secret and sends once more with the rotated key, within the same call.
    #[tokio::test]
    async fn unauthorized_re_reads_the_key_and_retries_once() {
        let refused = r#"{"code":"PGRST301","message":"JWT cryptographic operation failed"}"#;
        let server = MockServer::start(vec![
            (401, vec![], refused.into()),
            (201, vec![], String::new()),
            (403, vec![], refused.into()),
            (401, vec![], refused.into()),
        ])
        .await;
        let value = Arc::new(std::sync::Mutex::new("key-a".to_owned()));
        let c = PostgrestClient::new(PostgrestConfig::new(
            server.url(),
            rotating_key(&value).await,
        ))
        .unwrap();
        *value.lock().unwrap() = "key-b".into();
        insert_empty(&c, "vault").await.unwrap();
        let keys: Vec<String> = server
            .requests()
            .iter()
            .map(|r| {
                let head = r.head.to_ascii_lowercase();
                head.lines()
                    .find_map(|l| l.strip_prefix("apikey: ").map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(keys, ["key-a", "key-b"]);

        // Refused again, and the secret still holds the refused key (re-read rate-limited or
        // unchanged): an environment error naming the variable, no third request.
        let e = insert_empty(&c, "vault").await.unwrap_err();
        assert_eq!(server.requests().len(), 3);
        assert_eq!(e.error_code(), "db_unauthorized");
        assert_eq!(e.class(), ErrorClass::Environment);
        let text = e.to_string();
        assert!(
            text.contains("SUPABASE_KEY_SECRET_ID") && text.contains("app/supabase"),
            "{text}"
        );
        assert!(!text.contains("key-b"), "{text}");
    }

    #[tokio::test]
    async fn connection_refused_gives_up_at_the_deadline() {
        let port = crate::testing::unused_port();
        let mut cfg = PostgrestConfig::new(format!("http://127.0.0.1:{port}"), Secret::new("k"));
        cfg.retry = RetryPolicy {
            max_attempts: 1000,
            initial_backoff: Duration::from_millis(20),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let c = PostgrestClient::new(cfg).unwrap();
        let start = std::time::Instant::now();
        let e = c
            .upsert(
                &Deadline::after(Duration::from_millis(300)),
                "t",
                Bytes::new(),
                &Upsert::insert(),
            )
            .await
            .unwrap_err();
        assert!(e.class().is_transient(), "{e:?}");
        assert!(
            start.elapsed() < Duration::from_millis(600),
            "{:?}",
            start.elapsed()
        );
        assert!(c.requests_sent() >= 2);
    }

    /// A server whose row limit (2 here, 1000 on Supabase) is below what was asked: every row is
    /// still read, page after page, until an empty page.
    #[tokio::test]
    async fn select_all_reads_past_the_servers_row_limit() {
        let server = MockServer::start(vec![
            (200, vec![], r#"[{"id":1},{"id":2}]"#.into()),
            (200, vec![], r#"[{"id":3}]"#.into()),
            (200, vec![], "[]".into()),
        ])
        .await;
        let c = client(&server.url());
        let rows: Vec<serde_json::Value> = c
            .select_all(
                &Deadline::after(Duration::from_secs(5)),
                "page_vectors",
                "id",
                &[Filter::in_list("page_id", ["a", "b"])],
                "page_id,chunk_index",
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        let heads: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.head.lines().next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(heads.len(), 3);
        for (head, offset) in heads.iter().zip([0, 2, 3]) {
            assert!(
                head.contains("order=page_id,chunk_index")
                    && head.contains(&format!("limit={READ_PAGE_ROWS}&offset={offset} ")),
                "{head}"
            );
        }
    }

    #[tokio::test]
    async fn select_all_stops_when_the_server_ignores_the_offset() {
        // The same full page, whatever the offset.
        let page = format!("[{}]", vec!["1"; READ_PAGE_ROWS].join(","));
        let server = MockServer::start(vec![(200, vec![], page)]).await;
        let e = client(&server.url())
            .select_all::<serde::de::IgnoredAny>(
                &Deadline::after(Duration::from_secs(60)),
                "dead_letters",
                "*",
                &[],
                "id",
            )
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "db_decode");
        assert_eq!(e.class(), ErrorClass::Environment);
        assert!(e.to_string().contains("more than 1000000 rows"), "{e}");
        assert_eq!(
            server.requests().len(),
            MAX_SELECT_ALL_ROWS / READ_PAGE_ROWS + 1
        );
    }

    #[tokio::test]
    async fn answers_are_read_through_the_limit_and_redirects_name_the_url_setting() {
        let server = MockServer::start(vec![(200, vec![], "[1,2,3,4,5,6,7,8,9]".into())]).await;
        let e = client(&server.url())
            .with_max_answer(8)
            .select::<u8>(&Deadline::after(Duration::from_secs(5)), "t", "*", &[])
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "http_body_too_large");
        assert_eq!(e.class(), ErrorClass::Environment);
        let server = MockServer::start(vec![(
            308,
            vec![("location", "https://elsewhere.example/rest/v1/t")],
            String::new(),
        )])
        .await;
        let e = client(&server.url())
            .select::<u8>(&Deadline::after(Duration::from_secs(5)), "t", "*", &[])
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), "http_redirect");
        assert_eq!(e.class(), ErrorClass::Environment);
        assert!(e.to_string().contains("SUPABASE_URL"), "{e}");
        assert!(!e.to_string().contains("sekret-key"), "{e}");
        assert_eq!(server.requests().len(), 1, "not retried");
    }
}
