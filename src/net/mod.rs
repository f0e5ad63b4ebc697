//! Listeners for the client `SERVICES`: TCP, TLS, WebSocket (ws) and WebSocket over TLS (wss),
//! each connection framed and handed to a session (the framing differs, the session is the
//! same). Transports only: what a message means is the session runtime's and the protocol's.
//!
//! | module | job |
//! |---|---|
//! | `framing` | newline and WebSocket framing, the writers |
//! | `tls` | certificates: loading, reloading on SIGHUP or change |
//! | `self_signed` | `SSL_SELF_SIGNED`: the certificate made once in `DB_DIRECTORY` |
//! | `ratelimit` | new connections per IP address |

pub(crate) mod framing;
mod ratelimit;
mod self_signed;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{info, warn};

use crate::config::{Kind, ServerSettings, Service};
use crate::sessions::stats::Limit;
use crate::sessions::Sessions;
use ratelimit::ConnectionLimiter;
use tls::Tls;

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// With `SSL_SELF_SIGNED` on, a TLS service and no certificate supplied, points `settings` at
/// the self-signed pair in `dir`, made now if it is not there. Called at start-up rather than
/// when the services open after the initial sync: the fingerprint is in the log at once, and a
/// volume Sextant cannot write stops the start, not the end of a day's sync.
pub(crate) fn provide_self_signed(settings: &mut ServerSettings, dir: &Path) -> anyhow::Result<()> {
    if !settings.ssl_self_signed || !settings.services.iter().any(|s| s.kind.is_tls()) {
        return Ok(());
    }
    if let Some(cert) = &settings.ssl_certfile {
        info!(
            "TLS: serving SSL_CERTFILE {}; SSL_SELF_SIGNED is not used",
            cert.display()
        );
        return Ok(());
    }
    let hosts = settings
        .services
        .iter()
        .chain(&settings.report_services)
        .map(|s| &s.host);
    let pair = self_signed::ensure(dir, hosts).context("SSL_SELF_SIGNED")?;
    settings.ssl_certfile = Some(pair.cert);
    settings.ssl_keyfile = Some(pair.key);
    Ok(())
}

/// Binds every client service of `settings` (not `rpc://`: the admin RPC binds its own), then
/// accepts connections until `shutdown`.
pub(crate) async fn serve(
    settings: &ServerSettings,
    sessions: Arc<Sessions>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let services: Vec<&Service> = settings
        .services
        .iter()
        .filter(|s| s.kind != Kind::Rpc)
        .collect();
    let tls = if services.iter().any(|s| s.kind.is_tls()) {
        let (cert, key) = (
            settings
                .ssl_certfile
                .clone()
                .context("SSL_CERTFILE is not set")?,
            settings
                .ssl_keyfile
                .clone()
                .context("SSL_KEYFILE is not set")?,
        );
        let tls = Arc::new(Tls::new(cert, key)?);
        tokio::spawn(tls.clone().watch(shutdown.clone()));
        Some(tls)
    } else {
        None
    };
    let mut tasks = Vec::new();
    let limiter = Arc::new(ConnectionLimiter::new(
        sessions.limits().connections_per_sec,
    ));
    tasks.push(tokio::spawn({
        let limiter = limiter.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                limiter.forget_idle();
            }
        }
    }));
    for service in services {
        for listener in bind(service).await? {
            let tls = if service.kind.is_tls() {
                tls.clone()
            } else {
                None
            };
            tasks.push(tokio::spawn(accept_loop(
                sessions.clone(),
                listener,
                tls,
                service.kind,
                limiter.clone(),
            )));
        }
    }
    if tasks.len() == 1 {
        warn!("no Electrum service is listening (SERVICES)");
    }
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Connections the system completes and queues for a listener before it accepts them. tokio's
/// `TcpListener::bind` asks for 128: 500 wallets reconnecting at once (a restart, a TLS
/// handshake storm) overflowed it, and each connection past it waited for the client's SYN to be
/// sent again a second later. The system caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with `LISTEN_BACKLOG`, with the address reusable at once after a
/// restart as the standard library's listeners are.
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds a service's addresses. For all interfaces the IPv6 wildcard is tried first; where it
/// is dual-stack, the IPv4 wildcard is then already taken, which is fine.
pub(crate) async fn bind(service: &Service) -> anyhow::Result<Vec<TcpListener>> {
    let addrs = service.bind_addrs();
    let mut out = Vec::new();
    let mut last_err = None;
    for addr in &addrs {
        match listen_on(*addr) {
            Ok(l) => {
                info!("{} listening on {addr}", service.kind.name());
                out.push(l);
            }
            Err(e) => last_err = Some((addr, e)),
        }
    }
    if out.is_empty() {
        let Some((addr, e)) = last_err else {
            anyhow::bail!("{service}: the host resolves to no address");
        };
        return Err(e).with_context(|| format!("{service}: cannot listen on {addr}"));
    }
    Ok(out)
}

/// Waits until the listener may accept; at `MAX_SESSIONS` it is closed (so new clients are
/// refused by the system, as ElectrumX does) and bound again once sessions fall to the low
/// watermark.
async fn listening(sessions: &Sessions, listener: &mut Option<TcpListener>, addr: SocketAddr) {
    let mut accepting = sessions.accepting();
    loop {
        if *accepting.borrow_and_update() {
            if listener.is_none() {
                match listen_on(addr) {
                    Ok(l) => *listener = Some(l),
                    Err(e) => {
                        warn!("cannot listen again on {addr}: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            return;
        }
        if listener.take().is_some() {
            info!("closed listener {addr} at MAX_SESSIONS");
        }
        let _ = accepting.changed().await;
    }
}

async fn accept_loop(
    server: Arc<Sessions>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    kind: Kind,
    limiter: Arc<ConnectionLimiter>,
) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut listener = Some(listener);
    let mut accepting = server.accepting();
    loop {
        listening(&server, &mut listener, addr).await;
        let Some(l) = listener.as_ref() else {
            continue;
        };
        let accepted = tokio::select! {
            a = l.accept() => a,
            // MAX_SESSIONS reached: close the listener.
            _ = accepting.changed() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !limiter.allow(peer.ip()) {
            tracing::debug!("{peer}: connecting too often; refused");
            server.limit(Limit::RateLimited);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        // New handshakes use the TLS configuration current at accept time.
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            match (kind, acceptor) {
                (Kind::Tcp, _) => framing::lines(server, stream, peer, "TCP").await,
                (Kind::Ssl, Some(acceptor)) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => framing::lines(server, s, peer, "SSL").await,
                        Ok(Err(e)) => log_handshake(peer, &e.to_string()),
                        Err(_) => log_handshake(peer, "timed out"),
                    }
                }
                (Kind::Ws, _) => websocket(server, stream, peer, "WS").await,
                (Kind::Wss, Some(acceptor)) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => websocket(server, s, peer, "WSS").await,
                        Ok(Err(e)) => log_handshake(peer, &e.to_string()),
                        Err(_) => log_handshake(peer, "timed out"),
                    }
                }
                (kind, _) => warn!("{}: no listener for this service kind", kind.name()),
            }
        });
    }
}

/// The WebSocket upgrade (any path), then a session with WebSocket framing. Messages are
/// limited to `MAX_RECV` (0: unlimited).
async fn websocket<S>(server: Arc<Sessions>, stream: S, peer: SocketAddr, kind: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = Some(server.max_recv()).filter(|&m| m > 0);
    let config = WebSocketConfig::default()
        .max_message_size(max)
        .max_frame_size(max);
    let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => framing::websocket(server, ws, peer, kind).await,
        Ok(Err(e)) => tracing::debug!("WebSocket handshake with {peer} failed: {e}"),
        Err(_) => tracing::debug!("WebSocket handshake with {peer} timed out"),
    }
}

fn log_handshake(peer: SocketAddr, why: &str) {
    tracing::debug!("TLS handshake with {peer} failed: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by bench/abuse.sh: of 500 TLS clients connecting at once, those past a backlog of
    /// 128 were answered a second late. A burst of connections must all be completed by the
    /// system at once, none left for the client to send its SYN again.
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_whole() {
        let service = Service {
            kind: Kind::Tcp,
            host: crate::config::Host::Ip(std::net::Ipv4Addr::LOCALHOST.into()),
            port: 0,
        };
        let listener = bind(&service).await.unwrap().remove(0);
        let addr = listener.local_addr().unwrap();
        // Nothing accepts while they connect: a connection past the backlog has its SYN
        // dropped and completes only with the client's retry, one second later at the soonest.
        let clients: Vec<_> = (0..300)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_millis(900),
                    tokio::net::TcpStream::connect(addr),
                ))
            })
            .collect();
        let mut open = Vec::new();
        for c in clients {
            if let Ok(Ok(s)) = c.await.unwrap() {
                open.push(s);
            }
        }
        assert_eq!(open.len(), 300, "connections completed without a retry");
        let mut accepted = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
        {
            accepted += 1;
        }
        assert_eq!(accepted, open.len());
    }
}
