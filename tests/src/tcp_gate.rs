//! A TCP forwarder on 127.0.0.1 that can be taken down and brought back on the same port: an
//! API outage (connection refused, open connections cut) private to one test, where stopping the
//! shared API (`scripts/local-stack stop-api`) would disturb every test running beside it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// The running gate; everything stops when dropped.
#[derive(Debug)]
pub struct TcpGate {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and every connection it forwards, aborted together on `down`.
    tasks: Arc<Mutex<JoinSet<()>>>,
    up: bool,
}

impl TcpGate {
    /// Starts forwarding a free local port to the host:port of `upstream_url` (`http://h:p/...`).
    pub async fn start(upstream_url: &str) -> Self {
        let upstream = upstream_addr(upstream_url);
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().unwrap();
        let mut gate = Self {
            addr,
            upstream,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
            up: false,
        };
        gate.serve(listener);
        gate
    }

    /// `http://127.0.0.1:<port>` followed by the path of `upstream_url`.
    pub fn url_for(&self, upstream_url: &str) -> String {
        let rest = upstream_url
            .split_once("://")
            .map_or("", |(_, r)| r.split_once('/').map_or("", |(_, p)| p));
        let base = format!("http://{}", self.addr);
        if rest.is_empty() {
            base
        } else {
            format!("{base}/{rest}")
        }
    }

    /// Closes the port (new connections are refused) and cuts the open ones; returns once they
    /// are closed.
    pub async fn down(&mut self) {
        loop {
            let mut set = std::mem::take(&mut *self.tasks.lock().unwrap());
            if set.is_empty() {
                break;
            }
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
        self.up = false;
    }

    /// Listens on the same port again.
    pub fn up(&mut self) {
        if !self.up {
            let listener = bind(self.addr);
            self.serve(listener);
        }
    }

    fn serve(&mut self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let upstream = self.upstream;
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.up = true;
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

fn bind(addr: SocketAddr) -> TcpListener {
    // SO_REUSEADDR: the port comes back at once although cut connections sit in TIME_WAIT.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket.listen(128).unwrap()
}

fn upstream_addr(url: &str) -> SocketAddr {
    let hostport = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap();
    let hostport = hostport.replacen("localhost", "127.0.0.1", 1);
    hostport
        .parse()
        .unwrap_or_else(|_| panic!("the gate needs an ip:port upstream, got {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_refuses_when_down_and_comes_back_on_the_same_port() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                });
            }
        });
        let mut gate = TcpGate::start(&format!("http://{echo_addr}/rest")).await;
        let url = gate.url_for(&format!("http://{echo_addr}/rest"));
        assert!(
            url.ends_with("/rest") && !url.contains(&echo_addr.to_string()),
            "{url}"
        );
        let addr = gate.addr;
        let roundtrip = |mut s: TcpStream| async move {
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map(|_| buf)
        };
        let open = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            &roundtrip(TcpStream::connect(addr).await.unwrap())
                .await
                .unwrap(),
            b"ping"
        );

        gate.down().await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "refused while down"
        );
        assert!(roundtrip(open).await.is_err(), "open connections are cut");

        gate.up();
        assert_eq!(
            &roundtrip(TcpStream::connect(addr).await.unwrap())
                .await
                .unwrap(),
            b"ping"
        );
    }
}
