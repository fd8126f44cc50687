//! A TCP forwarder on 127.0.0.1 that can be taken down and brought back on the same port: an
//! API outage (connection refused, open connections cut) private to one test, where stopping the
//! shared API (`scripts/local-stack stop-api`) would disturb every test running beside it.
//! With a delay, it also puts the API a round trip away (`TcpGate::delayed`): a network between
//! the function and the database, on loopback, for the write benchmark (`scripts/bench-write`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The running gate; everything stops when dropped.
#[derive(Debug)]
pub struct TcpGate {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and every connection it forwards, aborted together on `down`.
    tasks: Arc<Mutex<JoinSet<()>>>,
    up: bool,
    /// Added to every byte's trip in each direction.
    one_way: Duration,
}

impl TcpGate {
    /// Starts forwarding a free local port to the host:port of `upstream_url` (`http://h:p/...`).
    pub async fn start(upstream_url: &str) -> Self {
        Self::delayed(upstream_url, Duration::ZERO).await
    }

    /// Like [`TcpGate::start`], but every byte reaches the other side `rtt / 2` after it was
    /// read, in both directions, so a request and its answer take `rtt` more than on loopback
    /// (at least: tokio's timer rounds each wait up to the next millisecond). Bytes keep flowing
    /// meanwhile, as on a network with room in its pipe; at most [`IN_FLIGHT_CHUNKS`] reads per
    /// direction are held at once.
    pub async fn delayed(upstream_url: &str, rtt: Duration) -> Self {
        let upstream = upstream_addr(upstream_url);
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().unwrap();
        let mut gate = Self {
            addr,
            upstream,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
            up: false,
            one_way: rtt / 2,
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
        let (upstream, one_way) = (self.upstream, self.one_way);
        self.tasks.lock().unwrap().spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tasks.lock().unwrap().spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    if one_way.is_zero() {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    // Small writes go out when due, not when Nagle's algorithm lets them.
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        delayed_copy(in_read, out_write, one_way),
                        delayed_copy(out_read, in_write, one_way)
                    );
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

/// Reads held at once per direction of a delayed connection (64 KiB each at most): the bound on
/// a delayed gate's memory per connection; a reader past it waits, as a full network pipe would.
pub const IN_FLIGHT_CHUNKS: usize = 64;

/// Copies `from` to `to`, each read written `delay` after it was read; shuts `to` down after the
/// last.
async fn delayed_copy(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
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

    /// An echo server on 127.0.0.1; returns its address.
    async fn echo() -> SocketAddr {
        let echo = crate::async_listener().await;
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        echo_addr
    }

    /// A delayed gate hands every byte over intact and in order both ways (3 MB, far more than
    /// its in-flight bound), and the answer to a ping comes no sooner than the round trip it adds
    /// (a lower bound the timer guarantees, not a speed figure).
    #[tokio::test]
    async fn a_delayed_gate_forwards_everything_a_round_trip_later() {
        let echo_addr = echo().await;
        let rtt = Duration::from_millis(40);
        let gate = TcpGate::delayed(&format!("http://{echo_addr}"), rtt).await;
        let s = TcpStream::connect(gate.addr).await.unwrap();
        let (mut r, mut w) = s.into_split();

        let started = Instant::now();
        w.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        r.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"ping");
        assert!(started.elapsed() >= rtt, "{:?}", started.elapsed());

        let sent: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes reordered or changed");
    }

    #[tokio::test]
    async fn forwards_refuses_when_down_and_comes_back_on_the_same_port() {
        let echo_addr = echo().await;
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
