//! Device certificates: what binds an MLS signature key to an account and a device.
//!
//! An account's first device signs its own certificate (the account's root). Every device
//! linked later is certified by a device the account already trusts, at approval time. Peers
//! accept a device only if its certificate verifies and its signer is a key they already trust
//! for that account, so a server that invents a device for someone cannot get it into any
//! conversation: it cannot sign for the account.

use openmls::prelude::{BasicCredential, Credential, CredentialWithKey, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use rampart_core::{AccountId, DeviceId};
use rampart_proto::{DeviceCertificate, decode_certificate, encode_certificate};

use crate::MlsError;

const DOMAIN: &[u8] = b"rampart device certificate v1";

fn signed_bytes(account: AccountId, device: DeviceId, key: &[u8; 32], signer: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 80);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&account.0.to_be_bytes());
    out.extend_from_slice(&device.0.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(signer);
    out
}

/// A fresh Ed25519 signature key pair for a device.
pub fn new_signature_key() -> Result<SignatureKeyPair, MlsError> {
    SignatureKeyPair::new(SignatureScheme::ED25519).map_err(|e| MlsError::Crypto(format!("{e:?}")))
}

/// The 32-byte public half of a device's signature key.
pub fn public_key(key: &SignatureKeyPair) -> Result<[u8; 32], MlsError> {
    <[u8; 32]>::try_from(key.public()).map_err(|_| MlsError::Crypto("not an Ed25519 key".into()))
}

/// Certify `subject` (a device's public signature key) as `device` of `account`, signed by
/// `signer`: the device itself for an account's first device, else an already trusted one.
pub fn certify(
    signer: &SignatureKeyPair,
    account: AccountId,
    device: DeviceId,
    subject: [u8; 32],
) -> Result<DeviceCertificate, MlsError> {
    let signer_key = public_key(signer)?;
    let signature = signer
        .sign(&signed_bytes(account, device, &subject, &signer_key))
        .map_err(|e| MlsError::Crypto(format!("{e:?}")))?;
    let signature =
        <[u8; 64]>::try_from(signature.as_slice()).map_err(|_| MlsError::Crypto("bad signature".into()))?;
    Ok(DeviceCertificate { account, device, signature_key: subject, signer_key, signature })
}

/// Check a certificate's own signature (not yet whether its signer is trusted).
pub fn verify_certificate(cert: &DeviceCertificate) -> Result<(), MlsError> {
    RustCrypto::default()
        .verify_signature(
            SignatureScheme::ED25519,
            &signed_bytes(cert.account, cert.device, &cert.signature_key, &cert.signer_key),
            &cert.signer_key,
            &cert.signature,
        )
        .map_err(|_| MlsError::BadCertificate("signature does not verify".into()))
}

/// Decode and verify a certificate from bytes someone sent.
pub fn parse_certificate(bytes: &[u8]) -> Result<DeviceCertificate, MlsError> {
    let cert = decode_certificate(bytes).map_err(|e| MlsError::BadCertificate(e.to_string()))?;
    verify_certificate(&cert)?;
    Ok(cert)
}

/// The MLS credential of a certified device: a basic credential whose identity is the
/// certificate.
pub fn credential_with_key(cert: &DeviceCertificate) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(encode_certificate(cert)).into(),
        signature_key: cert.signature_key.to_vec().into(),
    }
}

/// Who a member is, read from its MLS credential and checked against its leaf's signature key.
pub fn member_certificate(
    credential: &Credential,
    signature_key: &[u8],
) -> Result<DeviceCertificate, MlsError> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| MlsError::BadCertificate("not a basic credential".into()))?;
    let cert = parse_certificate(basic.identity())?;
    if cert.signature_key.as_slice() != signature_key {
        return Err(MlsError::BadCertificate("certificate is for another key".into()));
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_verifies_and_any_change_breaks_it() -> Result<(), MlsError> {
        let root = new_signature_key()?;
        let linked = new_signature_key()?;
        let cert = certify(&root, AccountId(7), DeviceId(9), public_key(&linked)?)?;
        verify_certificate(&cert)?;
        let round = parse_certificate(&encode_certificate(&cert))?;
        assert_eq!(round, cert);

        let mut other_device = cert.clone();
        other_device.device = DeviceId(10);
        assert!(verify_certificate(&other_device).is_err());
        let mut other_account = cert.clone();
        other_account.account = AccountId(8);
        assert!(verify_certificate(&other_account).is_err());
        let mut other_key = cert;
        other_key.signature_key = public_key(&root)?;
        assert!(verify_certificate(&other_key).is_err());
        assert!(parse_certificate(b"\xff\x00garbage").is_err());
        Ok(())
    }
}
