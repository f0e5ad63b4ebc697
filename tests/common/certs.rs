//! TLS material for tests: self-signed certificates made with the openssl CLI.

use std::path::Path;
use std::process::Command;

/// A fresh self-signed certificate for `localhost` / 127.0.0.1, written to `cert`/`key` (via a
/// temporary file and a rename, as a certificate manager would). Returns its DER.
pub fn make_cert(dir: &Path, cert: &Path, key: &Path, cn: &str) -> Vec<u8> {
    let (tmp_cert, tmp_key) = (dir.join("new-cert.pem"), dir.join("new-key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&tmp_key)
        .arg("-out")
        .arg(&tmp_cert)
        .output()
        .expect("the openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp_key, key).unwrap();
    std::fs::rename(&tmp_cert, cert).unwrap();
    let pem = std::fs::read(cert).unwrap();
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .unwrap()
        .unwrap();
    der.as_ref().to_vec()
}
