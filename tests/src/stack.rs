//! The local stack's environment (`eval "$(scripts/local-stack env)"`) and direct SQL queries.

use std::process::Command;

/// What `scripts/local-stack env` exports.
#[derive(Debug, Clone)]
pub struct StackEnv {
    /// PostgREST base URL.
    pub rest_url: String,
    /// Service-role key.
    pub service_key: String,
    /// Superuser connection string.
    pub database_url: String,
    /// Directory holding `psql` (`KL_PG_BIN`), else `psql` on the PATH.
    pub pg_bin: Option<String>,
    /// Secrets Manager emulator.
    pub secrets_endpoint: Option<String>,
}

impl StackEnv {
    /// The stack's environment, or `None` after printing a loud SKIP line naming the test.
    pub fn get_or_skip(test: &str) -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("SUPABASE_REST_URL"),
            var("SUPABASE_SERVICE_ROLE_KEY"),
            var("DATABASE_URL"),
        ) {
            (Some(rest_url), Some(service_key), Some(database_url)) => Some(Self {
                rest_url,
                service_key,
                database_url,
                pg_bin: var("KL_PG_BIN"),
                secrets_endpoint: var("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
            }),
            _ => {
                eprintln!(
                    "\n!!!! SKIPPED {test}: the local stack environment is absent \
                     (run `scripts/local-stack up` and `eval \"$(scripts/local-stack env)\"`, or scripts/test) !!!!\n"
                );
                None
            }
        }
    }

    /// Runs one SQL statement with psql and returns its unaligned, tuples-only output.
    pub fn sql(&self, query: &str) -> String {
        let psql = match &self.pg_bin {
            Some(dir) => format!("{dir}/psql"),
            None => "psql".to_owned(),
        };
        let out = Command::new(psql)
            .args([
                &self.database_url,
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                query,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    }

    /// A GET of `path` (e.g. `/vault?select=..`) on `base` (the API's URL, or a gate in front of
    /// it) with the service-role key.
    pub fn api_get_on(
        &self,
        client: &reqwest::Client,
        base: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let key = &self.service_key;
        client
            .get(format!("{base}{path}"))
            .header("apikey", key)
            .header("Authorization", format!("Bearer {key}"))
    }

    /// GET `path` on the API with the service-role key; the answer's JSON, which must be a
    /// success.
    pub async fn api_get(&self, path: &str) -> serde_json::Value {
        let resp = self
            .api_get_on(&reqwest::Client::new(), &self.rest_url, path)
            .send()
            .await
            .expect("the API answers");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("a JSON answer")
    }

    /// `sql` parsed as one integer.
    pub fn count(&self, query: &str) -> i64 {
        self.sql(query)
            .parse()
            .unwrap_or_else(|_| panic!("not a number from {query}"))
    }

    /// How many dead letters `topic` has.
    pub fn dead_letter_count(&self, topic: &str) -> i64 {
        self.count(&format!(
            "select count(*) from dead_letters where topic = {}",
            lit(topic)
        ))
    }
}

/// A name unique to this process and call, for topics and event ids.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
