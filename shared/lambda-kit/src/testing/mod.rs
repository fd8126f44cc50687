//! Loopback helpers for tests, of this crate and of the crates built on it (`testing` feature):
//! the one way test code gets a listener or a port nothing listens on.

use std::net::{SocketAddr, TcpListener};

#[cfg(test)]
mod servers;
#[cfg(test)]
pub(crate) use servers::{EndlessServer, MockServer};

/// A listener on 127.0.0.1 at a port the system picked.
///
/// ```
/// let listener = lambda_kit::testing::listener();
/// assert!(listener.local_addr().unwrap().ip().is_loopback());
/// ```
pub fn listener() -> TcpListener {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0")
}

/// [`listener`] for a tokio runtime.
pub async fn async_listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind 127.0.0.1:0")
}

/// A port on 127.0.0.1 with nothing listening (bound, then released): a connection to it is
/// refused.
///
/// ```
/// let port = lambda_kit::testing::unused_port();
/// assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
/// ```
pub fn unused_port() -> u16 {
    listener().local_addr().expect("local addr").port()
}
