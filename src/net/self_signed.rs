//! `SSL_SELF_SIGNED`: a self-signed certificate for the TLS services, made once in
//! `DB_DIRECTORY` and reused at every start, so ssl:// answers with no certificate supplied and
//! wallets that pinned it on first use keep trusting it.
//!
//! Crash safety: each file is written whole under a temporary name, synced, and renamed over its
//! final name, the key first. A start therefore finds no pair, a pair that loads, or (after a
//! crash between the two renames) a key without its certificate; anything that cannot be served
//! is replaced, since no wallet can have pinned it. A pair that cannot be *read* (permissions)
//! stops the start instead: replacing it would break every wallet that pinned it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{sha256, Hash};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use tracing::{info, warn};

use super::tls::{self, TlsError};
use crate::config::Host;

/// The files' names in `DB_DIRECTORY` (RocksDB ignores files it did not name).
pub(crate) const CERT_FILE: &str = "sextant.crt";
pub(crate) const KEY_FILE: &str = "sextant.key";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SelfSignedError {
    #[error(
        "cannot read the self-signed certificate's {path}: {source}; give the user Sextant runs \
         as access to it (deleting the pair makes a new certificate, which wallets that pinned \
         the old one will refuse)"
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the self-signed certificate just made does not load: {0}")]
    Load(#[from] TlsError),
}

/// The certificate and key files of a pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Pair {
    pub(crate) fn in_dir(dir: &Path) -> Pair {
        Pair {
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }
}

/// The pair in `dir`, made now unless a usable one is there; `hosts` (the services' and
/// reported services' hosts) are named in a new certificate beside localhost.
pub(crate) fn ensure<'a>(
    dir: &Path,
    hosts: impl IntoIterator<Item = &'a Host>,
) -> Result<Pair, SelfSignedError> {
    let pair = Pair::in_dir(dir);
    let cert_exists = exists(&pair.cert)?;
    let key_exists = exists(&pair.key)?;
    if cert_exists && key_exists {
        match tls::load(&pair.cert, &pair.key) {
            Ok(_) => {
                let fp = fingerprint_of(&pair.cert)?;
                info!(
                    "TLS: self-signed certificate {} (SHA-256 fingerprint {fp})",
                    pair.cert.display()
                );
                return Ok(pair);
            }
            // A PEM file cut short reads as invalid data: unusable, not unreadable.
            Err(TlsError::Read { path, source }) if source.kind() != io::ErrorKind::InvalidData => {
                return Err(SelfSignedError::Unreadable { path, source })
            }
            Err(e) => warn!(
                "TLS: {} and {} are not a usable pair ({e}): making a new self-signed \
                 certificate; wallets that pinned the old one will warn their users",
                pair.cert.display(),
                pair.key.display()
            ),
        }
    } else if cert_exists || key_exists {
        warn!(
            "TLS: {} without {} (an interrupted first start?): making a new self-signed \
             certificate",
            if cert_exists { &pair.cert } else { &pair.key }.display(),
            if cert_exists { &pair.key } else { &pair.cert }.display(),
        );
    }
    let (cert_pem, key_pem, der) = generate(hosts)?;
    // The key first: a crash before the certificate's rename leaves a key alone, which the next
    // start replaces; never a certificate that was served and then lost its key.
    write_atomically(&pair.key, key_pem.as_bytes(), 0o600)?;
    write_atomically(&pair.cert, cert_pem.as_bytes(), 0o644)?;
    sync_dir(dir)?;
    tls::load(&pair.cert, &pair.key)?;
    info!(
        "TLS: made a self-signed certificate {} (key {}), SHA-256 fingerprint {}; wallets pin \
         it on first use, so keep these files: publish the fingerprint for users to compare",
        pair.cert.display(),
        pair.key.display(),
        fingerprint(&der)
    );
    Ok(pair)
}

/// `openssl x509 -fingerprint -sha256`'s form: upper-case hex pairs joined by colons.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = sha256::Hash::hash(der);
    let hex: Vec<String> = digest
        .as_byte_array()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    hex.join(":")
}

fn fingerprint_of(cert: &Path) -> Result<String, SelfSignedError> {
    let unreadable = |source| SelfSignedError::Unreadable {
        path: cert.to_path_buf(),
        source,
    };
    let pem = std::fs::read(cert).map_err(unreadable)?;
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .transpose()
        .map_err(unreadable)?
        .ok_or_else(|| unreadable(io::ErrorKind::InvalidData.into()))?;
    Ok(fingerprint(&der))
}

/// Whether `path` exists; an error other than its absence (a directory it cannot search) is
/// reported rather than taken as "make a new one".
fn exists(path: &Path) -> Result<bool, SelfSignedError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SelfSignedError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A new ECDSA P-256 key and a certificate for localhost and `hosts`; PEM of both, and the
/// certificate's DER.
fn generate<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
) -> Result<(String, String, Vec<u8>), rcgen::Error> {
    let names = subject_alt_names(hosts);
    let mut params = CertificateParams::default();
    let common_name = names
        .iter()
        .find_map(|n| match n {
            SanType::DnsName(d) if d.as_str() != "localhost" => Some(d.as_str().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "localhost".into());
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Sextant self-signed");
    params.subject_alt_names = names;
    // From a year back, so a client whose clock is behind accepts it; for a century, since a
    // pinned certificate that expires strands every wallet that pinned it.
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 100, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Mean Gregorian year; a day off at a year's edge does not matter here.
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

/// localhost, its addresses, then every named host and address, once each. Names a
/// certificate cannot carry (not ASCII) are left out.
fn subject_alt_names<'a>(hosts: impl IntoIterator<Item = &'a Host>) -> Vec<SanType> {
    let mut out: Vec<SanType> = Vec::new();
    let mut push = |san: SanType| {
        if !out.contains(&san) {
            out.push(san);
        }
    };
    push(SanType::DnsName(
        "localhost".try_into().expect("an ASCII name"),
    ));
    push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    for host in hosts {
        match host {
            Host::AllInterfaces => {}
            Host::Ip(ip) if !ip.is_unspecified() => push(SanType::IpAddress(*ip)),
            Host::Ip(_) => {}
            Host::Name(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.as_str().try_into() {
                    Ok(n) => push(SanType::DnsName(n)),
                    Err(_) => warn!("TLS: {name} cannot be named in a certificate; left out"),
                }
            }
        }
    }
    out
}

/// Writes `contents` to `path` through a synced temporary file renamed over it, created with
/// `mode` (before any byte is written: the key is never readable by others, even briefly).
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), SelfSignedError> {
    let tmp = path.with_file_name(format!(
        "{}.tmp",
        path.file_name().map_or("".into(), |n| n.to_string_lossy())
    ));
    let write_err = |source| SelfSignedError::Write {
        path: tmp.clone(),
        source,
    };
    // A leftover from a crash: created anew, so that `mode` applies.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(write_err(e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    f.write_all(contents).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|source| SelfSignedError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes the renames durable.
fn sync_dir(dir: &Path) -> Result<(), SelfSignedError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SelfSignedError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hosts() -> Vec<Host> {
        vec![
            Host::AllInterfaces,
            Host::Name("Electrum.Example.com.".into()),
            Host::Ip("203.0.113.7".parse().unwrap()),
            Host::Name("electrum.example.com".into()),
            Host::Name("localhost".into()),
        ]
    }

    fn der_of(cert: &Path) -> Vec<u8> {
        let pem = std::fs::read(cert).unwrap();
        let der = rustls_pemfile::certs(&mut &pem[..])
            .next()
            .unwrap()
            .unwrap();
        der.to_vec()
    }

    #[test]
    fn names_localhost_and_the_configured_hosts_once() {
        let names: Vec<String> = subject_alt_names(&hosts())
            .iter()
            .map(|n| match n {
                SanType::DnsName(d) => d.as_str().to_string(),
                SanType::IpAddress(ip) => ip.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "electrum.example.com",
                "203.0.113.7"
            ]
        );
    }

    #[test]
    fn made_once_with_a_private_key_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pair = ensure(dir.path(), &hosts()).unwrap();
        assert_eq!(pair, Pair::in_dir(dir.path()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pair.key), 0o600);
        let first = der_of(&pair.cert);
        let again = ensure(dir.path(), &[]).unwrap();
        assert_eq!(der_of(&again.cert), first, "reused, not remade");
        assert!(
            !dir.path().join("sextant.key.tmp").exists()
                && !dir.path().join("sextant.crt.tmp").exists()
        );
        assert_eq!(fingerprint(&first).len(), 32 * 3 - 1);
    }

    #[test]
    fn a_half_written_pair_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let pair = Pair::in_dir(dir.path());
        // A crash between the renames: the key alone, and a temporary file left behind.
        std::fs::write(&pair.key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        std::fs::write(dir.path().join("sextant.crt.tmp"), "half").unwrap();
        ensure(dir.path(), &[]).unwrap();
        tls::load(&pair.cert, &pair.key).expect("a usable pair");
        // An empty certificate, then one cut short, beside its key.
        for cut in ["", "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU"] {
            let old = der_of(&pair.cert);
            std::fs::write(&pair.cert, cut).unwrap();
            ensure(dir.path(), &[]).unwrap();
            assert_ne!(der_of(&pair.cert), old);
            tls::load(&pair.cert, &pair.key).expect("a usable pair");
        }
        // Another pair's key: they do not match.
        let other = tempfile::tempdir().unwrap();
        let other = ensure(other.path(), &[]).unwrap();
        let old = der_of(&pair.cert);
        std::fs::copy(&other.key, &pair.key).unwrap();
        ensure(dir.path(), &[]).unwrap();
        assert_ne!(der_of(&pair.cert), old);
        tls::load(&pair.cert, &pair.key).expect("a usable pair");
    }

    #[test]
    fn an_unreadable_pair_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let pair = ensure(dir.path(), &[]).unwrap();
        let before = std::fs::read(&pair.cert).unwrap();
        // Make the key unreadable: a directory in its place reads as an I/O error for anyone,
        // root included (permission bits would not stop root, which the tests may run as).
        std::fs::remove_file(&pair.key).unwrap();
        std::fs::create_dir(&pair.key).unwrap();
        let e = ensure(dir.path(), &[]).unwrap_err();
        assert!(matches!(e, SelfSignedError::Unreadable { .. }), "{e}");
        assert_eq!(std::fs::read(&pair.cert).unwrap(), before, "left alone");
    }
}
