//! Trust on first use, like SSH: the first connection records the server certificate's
//! SHA-256 fingerprint; every later connection must present the same certificate.
//!
//! The handshake signature is still verified against the presented certificate's key, so a
//! peer must hold the pinned certificate's private key, not just a copy of the certificate.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The fingerprint format: uppercase hex pairs separated by colons.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A certificate verifier that pins one fingerprint, or learns it on first use.
#[derive(Debug)]
pub struct PinnedCertificate {
    expected: Option<String>,
    /// The fingerprint the server presented, for the caller to store (first use) or report.
    pub presented: Arc<Mutex<Option<String>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertificate {
    pub fn new(expected: Option<String>, provider: &CryptoProvider) -> Self {
        Self { expected, presented: Arc::default(), algorithms: provider.signature_verification_algorithms }
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity.as_ref());
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(seen.clone());
        }
        match &self.expected {
            Some(pinned) if *pinned != seen => Err(rustls::Error::General(format!(
                "the server's certificate changed (pinned {pinned}, presented {seen})"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
