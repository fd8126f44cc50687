//! A server whose answers never end: every request gets `200` and a JSON body that opens
//! (`prefix`, e.g. `{"embeddings":[[`) and then repeats `0.125,` for as long as the client reads
//! (HTTP/1.1 with `connection: close` and no length: the body runs until the connection closes,
//! which HTTP allows). It counts the bytes it managed to write and the connections whose client
//! hung up, so a test can tell a client that stops reading from one that reads forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server; it stops accepting when dropped (its task is aborted).
#[derive(Debug)]
pub struct EndlessServer {
    port: u16,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    sent: AtomicU64,
    hung_up: AtomicU64,
}

impl EndlessServer {
    /// Starts on a free loopback port; answers open with `prefix`.
    pub async fn start(prefix: &'static str) -> Self {
        let listener = crate::async_listener().await;
        let port = listener.local_addr().expect("addr").port();
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    // The request head and what fits of its body: the answer does not depend on it.
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = sock.read(&mut buf).await;
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{prefix}"
                    );
                    let chunk = "0.125,".repeat(10_000);
                    let mut out = sock.write_all(head.as_bytes()).await;
                    while out.is_ok() {
                        out = sock.write_all(chunk.as_bytes()).await;
                        if out.is_ok() {
                            c.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                    }
                    c.hung_up.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        Self {
            port,
            counters,
            task,
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Body bytes written so far, over every connection.
    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// Connections whose client closed them (the server's write failed).
    pub fn hung_up(&self) -> u64 {
        self.counters.hung_up.load(Ordering::Relaxed)
    }

    /// Waits up to `within` for every connection to be hung up; `true` when they all were.
    pub async fn all_hung_up(&self, within: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while self.hung_up() < self.requests() && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.hung_up() == self.requests()
    }
}

impl Drop for EndlessServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
