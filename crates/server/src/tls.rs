//! TLS is always on. Operators may bring a certificate; otherwise one is created on first start
//! and kept in the data dir, and clients pin its SHA-256 fingerprint on first contact.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("cannot create a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    #[error("give both tls_cert and tls_key, or neither")]
    HalfConfigured,
}

/// The server's certificate and key, ready for rustls.
#[derive(Debug)]
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where the certificate came from, for the first-run message.
    pub source: PathBuf,
    /// True when this start created the certificate.
    pub created: bool,
}

impl ServerIdentity {
    /// SHA-256 over the DER of the leaf certificate, as colon-separated hex: what clients pin.
    pub fn fingerprint(&self) -> String {
        self.chain.first().map(|c| fingerprint_of(c.as_ref())).unwrap_or_default()
    }

    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The same certificate for TURN over TLS, which has no ALPN of its own.
    pub fn relay_rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        Ok(Arc::new(cfg))
    }
}

/// Format a SHA-256 fingerprint the way clients show and compare it.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Load the operator's certificate, or the one in the data dir, or create one there.
pub fn load_or_create(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    hostnames: &[String],
) -> Result<ServerIdentity, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => load(c, k, false),
        (None, None) => {
            let c = data_dir.join("tls-cert.pem");
            let k = data_dir.join("tls-key.pem");
            if c.exists() && k.exists() {
                return load(&c, &k, false);
            }
            create(&c, &k, hostnames)?;
            load(&c, &k, true)
        }
        _ => Err(TlsError::HalfConfigured),
    }
}

fn load(cert: &Path, key: &Path, created: bool) -> Result<ServerIdentity, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read { path: cert.into(), source })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read { path: key.into(), source })?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read { path: cert.into(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read { path: key.into(), source })?
        .ok_or_else(|| TlsError::NoKey { path: key.into() })?;
    Ok(ServerIdentity { chain, key: key_der, source: cert.into(), created })
}

fn create(cert: &Path, key: &Path, hostnames: &[String]) -> Result<(), TlsError> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.extend(hostnames.iter().cloned());
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem())
        .map_err(|source| TlsError::Write { path: cert.into(), source })?;
    Ok(())
}

/// Write a file only its owner can read (the private key, the log key).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|source| TlsError::Write { path: path.into(), source })?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|source| TlsError::Write { path: path.into(), source })
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn operator_certificate_is_used_as_given() {
        let dir = tempfile::tempdir().ok();
        let dir = dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default();
        let (cert, key) = (dir.join("op-cert.pem"), dir.join("op-key.pem"));
        let made = rcgen::generate_simple_self_signed(vec!["chat.example.org".to_owned()]).ok();
        let Some(made) = made else { panic!("rcgen failed") };
        std::fs::write(&cert, made.cert.pem()).ok();
        std::fs::write(&key, made.signing_key.serialize_pem()).ok();
        let id = load_or_create(&dir, Some(&cert), Some(&key), &[]).ok();
        let id = id.as_ref();
        assert_eq!(id.map(|i| i.fingerprint()), Some(fingerprint_of(made.cert.der())));
        assert_eq!(id.map(|i| i.created), Some(false));
        assert!(id.is_some_and(|i| i.rustls_config().is_ok()));
        assert!(!dir.join("tls-cert.pem").exists(), "no self-signed certificate is made");
        assert!(matches!(load_or_create(&dir, Some(&cert), None, &[]), Err(TlsError::HalfConfigured)));
        std::fs::write(&key, "not a key").ok();
        assert!(matches!(load_or_create(&dir, Some(&cert), Some(&key), &[]), Err(TlsError::NoKey { .. })));
    }

    #[test]
    fn creates_once_then_reuses() {
        let dir = tempfile::tempdir().ok();
        let dir = dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default();
        let first = load_or_create(&dir, None, None, &[]).map(|i| (i.fingerprint(), i.created));
        let second = load_or_create(&dir, None, None, &[]).map(|i| (i.fingerprint(), i.created));
        let (fp1, created1) = first.unwrap_or_default();
        let (fp2, created2) = second.unwrap_or_default();
        assert!(created1 && !created2);
        assert_eq!(fp1, fp2);
        assert_eq!(fp1.len(), 32 * 3 - 1);
    }
}
