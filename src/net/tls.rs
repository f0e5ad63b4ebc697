//! TLS for ssl:// services: the certificate chain and key from PEM files, reloaded on SIGHUP
//! and when either file changes, without touching open sessions (new handshakes use the new
//! configuration).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// How often the files' modification times are checked.
const POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key (PKCS#8, RSA or EC) found")]
    NoKey { path: PathBuf },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds a server configuration from a PEM chain and a PEM key.
pub(crate) fn load(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = {
        let f = std::fs::File::open(cert).map_err(read_err(cert))?;
        rustls_pemfile::certs(&mut BufReader::new(f))
            .collect::<Result<_, _>>()
            .map_err(read_err(cert))?
    };
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key_der = {
        let f = std::fs::File::open(key).map_err(read_err(key))?;
        rustls_pemfile::private_key(&mut BufReader::new(f))
            .map_err(read_err(key))?
            .ok_or_else(|| TlsError::NoKey {
                path: key.to_path_buf(),
            })?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    Ok(config)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The live TLS configuration.
pub(crate) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    stamps: parking_lot::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    pub(crate) fn new(cert: PathBuf, key: PathBuf) -> Result<Tls, TlsError> {
        let config = load(&cert, &key)?;
        let stamps = (mtime(&cert), mtime(&key));
        Ok(Tls {
            cert,
            key,
            current: RwLock::new(Arc::new(config)),
            stamps: parking_lot::Mutex::new(stamps),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// Loads the files again; on failure the previous configuration stays in use.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(config);
        *self.stamps.lock() = (mtime(&self.cert), mtime(&self.key));
        Ok(())
    }

    fn changed(&self) -> bool {
        *self.stamps.lock() != (mtime(&self.cert), mtime(&self.key))
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => info!("TLS certificate reloaded ({why})"),
            Err(e) => warn!("TLS certificate reload ({why}) failed, keeping the old one: {e}"),
        }
    }

    /// Reloads on SIGHUP and when the files change, until shutdown.
    pub(crate) async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot listen for SIGHUP: {e}");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = async { match &mut hup { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    self.reload_logged("SIGHUP");
                }
                _ = tick.tick() => {
                    if self.changed() {
                        self.reload_logged("files changed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
