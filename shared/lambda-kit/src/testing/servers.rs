//! Scripted HTTP/1.1 servers for the unit tests of the HTTP clients: answers in order, and an
//! answer that never ends.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::async_listener;

/// A request as received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

type Reply = (u16, Vec<(&'static str, &'static str)>, String);

/// Answers the scripted replies in order (the last one repeats), one per connection.
#[derive(Debug)]
pub(crate) struct MockServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl MockServer {
    pub(crate) async fn start(replies: Vec<Reply>) -> Self {
        let listener = async_listener().await;
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut i = 0;
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(p);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                log.lock().unwrap().push(Seen { head, body });
                let (status, headers, text) = &replies[i.min(replies.len() - 1)];
                i += 1;
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    text.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(text);
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        Self { port, seen }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A server that answers every request `200` with a body that never ends (HTTP/1.0 style: no
/// length, the body runs until the connection closes), counting the bytes it managed to write;
/// its writing stops only when the client closes the connection.
#[derive(Debug)]
pub(crate) struct EndlessServer {
    port: u16,
    sent: Arc<std::sync::atomic::AtomicU64>,
    ended: Arc<std::sync::atomic::AtomicU64>,
}

impl EndlessServer {
    pub(crate) async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = async_listener().await;
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, e) = (Arc::clone(&sent), Arc::clone(&ended));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (s, e) = (Arc::clone(&s), Arc::clone(&e));
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[";
                    let chunk = "0.125,".repeat(10_000);
                    let mut out = sock.write_all(head.as_bytes()).await;
                    while out.is_ok() {
                        out = sock.write_all(chunk.as_bytes()).await;
                        if out.is_ok() {
                            s.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                    }
                    e.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        Self { port, sent, ended }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Body bytes written so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections whose client hung up.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(std::sync::atomic::Ordering::Relaxed)
    }
}
