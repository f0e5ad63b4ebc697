//! An outgoing connection to another Electrum server: TCP or TLS (certificates not verified,
//! as ElectrumX does for peers: most use self-signed ones), optionally through a SOCKS5 proxy,
//! optionally from our listening address; and newline-framed JSON-RPC requests over it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::{self, client::danger, pki_types};

use super::peer::Transport;

/// Longest reply line accepted from a peer: headers, features and peer lists are small.
const MAX_LINE: u64 = 4_000_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("SOCKS proxy: {0}")]
    Socks(String),
    #[error("connection closed")]
    Closed,
    #[error("unparsable reply: {0}")]
    Malformed(String),
    #[error("RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// A verification check failed: the peer is marked bad.
    #[error("{0}")]
    Bad(String),
}

/// Where and how to connect.
pub(crate) struct Dial<'a> {
    pub host: &'a str,
    pub port: u16,
    pub transport: Transport,
    /// SOCKS5 proxy; the proxy resolves the host.
    pub proxy: Option<SocketAddr>,
    /// Our listening address, so the peer sees the address we announce.
    pub local_ip: Option<IpAddr>,
    pub timeout: Duration,
    pub tls: &'a tokio_rustls::TlsConnector,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(crate) struct Conn {
    stream: BufReader<Box<dyn Stream>>,
    next_id: u64,
    timeout: Duration,
    /// The address connected to (none through a proxy).
    pub remote: Option<SocketAddr>,
}

async fn tcp_from(addr: SocketAddr, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = local_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// SOCKS5 CONNECT without authentication, the host name resolved by the proxy.
async fn socks5(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, PeerError> {
    let bad = |why: &str| PeerError::Socks(why.to_string());
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(&[5, 1, 0]).await?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await?;
    if reply != [5, 0] {
        return Err(bad("the proxy wants authentication or is not SOCKS5"));
    }
    let name = host.as_bytes();
    if name.len() > 255 {
        return Err(bad("host name too long"));
    }
    let mut req = vec![5, 1, 0, 3, name.len() as u8];
    req.extend_from_slice(name);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[1] != 0 {
        return Err(PeerError::Socks(format!(
            "connect refused (code {})",
            head[1]
        )));
    }
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(s.read_u8().await?),
        _ => return Err(bad("malformed reply")),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await?;
    Ok(s)
}

/// Accepts any certificate: peers' certificates are mostly self-signed, and what is checked
/// is the chain they serve, not who they are.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &pki_types::CertificateDer<'_>,
        _intermediates: &[pki_types::CertificateDer<'_>],
        _server_name: &pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: pki_types::UnixTime,
    ) -> Result<danger::ServerCertVerified, rustls::Error> {
        Ok(danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS for peer connections: any certificate is accepted, as ElectrumX does (most peers use
/// self-signed ones; the peer is judged by its answers instead).
pub(crate) fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn with_timeout<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or(Err(PeerError::Timeout))
}

impl Conn {
    pub(crate) async fn connect(d: &Dial<'_>) -> Result<Conn, PeerError> {
        with_timeout(d.timeout, Conn::connect_inner(d)).await
    }

    async fn connect_inner(d: &Dial<'_>) -> Result<Conn, PeerError> {
        let (tcp, remote) = match d.proxy {
            Some(proxy) => (socks5(proxy, d.host, d.port).await?, None),
            None => {
                let mut last = None;
                let mut found = None;
                for addr in tokio::net::lookup_host((d.host, d.port)).await? {
                    match tcp_from(addr, d.local_ip).await {
                        Ok(s) => {
                            found = Some((s, Some(addr)));
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                match (found, last) {
                    (Some(f), _) => f,
                    (None, Some(e)) => return Err(e.into()),
                    (None, None) => return Err(PeerError::Socks("no address".into())),
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match d.transport {
            Transport::Tcp => Box::new(tcp),
            Transport::Ssl => {
                let name = match d.host.parse::<IpAddr>() {
                    Ok(ip) => pki_types::ServerName::IpAddress(ip.into()),
                    Err(_) => pki_types::ServerName::try_from(d.host.to_string())
                        .map_err(|e| PeerError::Malformed(e.to_string()))?,
                };
                Box::new(d.tls.connect(name, tcp).await?)
            }
        };
        Ok(Conn {
            stream: BufReader::new(stream),
            next_id: 0,
            timeout: d.timeout,
            remote,
        })
    }

    /// Sends one request and waits for its reply, skipping notifications.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Value, PeerError> {
        let timeout = self.timeout;
        with_timeout(timeout, self.request_inner(method, params)).await
    }

    async fn request_inner(&mut self, method: &str, params: Value) -> Result<Value, PeerError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).await?;
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.stream)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .await?;
            if n == 0 || buf.last() != Some(&b'\n') {
                return Err(PeerError::Closed);
            }
            let msg: Value =
                serde_json::from_slice(&buf).map_err(|e| PeerError::Malformed(e.to_string()))?;
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(err) = msg.get("error").filter(|e| !e.is_null()) {
                return Err(PeerError::Rpc {
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
            return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
        }
    }
}
