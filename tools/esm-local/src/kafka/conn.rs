//! One plaintext TCP connection to one broker: request framing, correlation ids.
//!
//! Requests on a connection are strictly sequential (`&mut self`), which is all the runner needs:
//! every lane owns its own connections, so there is never a response to demultiplex.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::{KafkaError, check};

/// Largest response we accept; a fetch is bounded by our own `max_bytes` well below this.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// A connection to one broker.
#[derive(Debug)]
pub struct BrokerConnection {
    stream: BufStream<TcpStream>,
    addr: String,
    correlation_id: i32,
}

impl BrokerConnection {
    /// Connects to `addr` (`host:port`) and checks the API versions it serves.
    pub async fn connect(addr: &str) -> Result<Self, KafkaError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| KafkaError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        tcp.set_nodelay(true).ok();
        let mut conn = Self {
            stream: BufStream::new(tcp),
            addr: addr.to_owned(),
            correlation_id: 0,
        };
        conn.check_versions().await?;
        Ok(conn)
    }

    /// The `host:port` this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` at `version` and waits for its response.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("esm-local")));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0); // size, patched below
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(KafkaError::encode)?;
        req.encode(&mut buf, version).map_err(KafkaError::encode)?;
        let size = i32::try_from(buf.len() - 4)
            .map_err(|_| KafkaError::Protocol("request too large".into()))?;
        buf[..4].copy_from_slice(&size.to_be_bytes());

        let io = |source| KafkaError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(&buf).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;

        let io = |source| KafkaError::Io {
            addr: self.addr.clone(),
            source,
        };
        let len = self.stream.read_i32().await.map_err(io)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_FRAME && *l >= 4)
            .ok_or_else(|| {
                KafkaError::Protocol(format!("response frame of {len} bytes from {}", self.addr))
            })?;
        let mut frame = vec![0u8; len];
        let io = |source| KafkaError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.read_exact(&mut frame).await.map_err(io)?;
        let mut frame = Bytes::from(frame);
        let resp_header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(KafkaError::decode)?;
        if resp_header.correlation_id != self.correlation_id {
            return Err(KafkaError::Protocol(format!(
                "correlation id {} does not match request {}",
                resp_header.correlation_id, self.correlation_id
            )));
        }
        let resp = R::Response::decode(&mut frame, version).map_err(KafkaError::decode)?;
        if frame.has_remaining() {
            tracing::trace!(left = frame.remaining(), "response has trailing bytes");
        }
        Ok(resp)
    }

    /// Fails early, with the API named, when the broker does not speak a version we use.
    async fn check_versions(&mut self) -> Result<(), KafkaError> {
        let resp = self.send(&ApiVersionsRequest::default(), 0).await?;
        check(resp.error_code, "ApiVersions")?;
        for (key, version) in super::VERSIONS {
            let supported = resp.api_keys.iter().find(|k| k.api_key == *key as i16);
            match supported {
                Some(k) if k.min_version <= *version && *version <= k.max_version => {}
                Some(k) => {
                    return Err(KafkaError::Unsupported(format!(
                        "{key:?} v{version} (broker {} supports v{}..v{})",
                        self.addr, k.min_version, k.max_version
                    )));
                }
                None => {
                    return Err(KafkaError::Unsupported(format!(
                        "{key:?} (broker {} lacks it)",
                        self.addr
                    )));
                }
            }
        }
        Ok(())
    }
}
