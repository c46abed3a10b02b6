//! End-to-end encryption for Rampart on MLS (RFC 9420), through openmls.
//!
//! - [`identity`]: device certificates that bind an MLS signature key to an account and a
//!   device, signed by the account's first device or by a device it already trusts.
//! - [`Engine`]: one device's MLS state: key packages, conversations as MLS groups, encrypt and
//!   decrypt, commits that wait for the delivery service's verdict before they take effect.
//! - [`ds`]: the checks the server runs as delivery service on MLS bytes it cannot read.
//! - [`safety`]: safety numbers over two accounts' device keys.
//!
//! No sockets and no clock. Storage is openmls' `StorageProvider` trait: the client passes its
//! SQLite provider, tests and benchmarks an in-memory one. Randomness comes from the crypto
//! provider (the operating system's generator), as key generation must.
#![forbid(unsafe_code)]

pub mod ds;
mod engine;
pub mod identity;
pub mod safety;
pub mod trust;

pub use engine::{CommitBundle, Engine, IncomingCommit, Member, Processed, check_removals, group_config};
pub use openmls_basic_credential::SignatureKeyPair;

use openmls::prelude::Ciphersuite;

/// The one ciphersuite Rampart speaks: X25519, AES-128-GCM, SHA-256, Ed25519.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Why an MLS operation failed. Messages never quote key material or content.
#[derive(Debug, thiserror::Error)]
pub enum MlsError {
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    #[error("device certificate refused: {0}")]
    BadCertificate(String),
    #[error("key package refused: {0}")]
    BadKeyPackage(String),
    #[error("unknown conversation")]
    UnknownGroup,
    #[error("message for epoch {got}, the conversation is at epoch {current}")]
    WrongEpoch { got: u64, current: u64 },
    #[error("message already processed")]
    Duplicate,
    #[error("cannot decrypt: {0}")]
    Undecryptable(String),
    #[error("commit refused: {0}")]
    Unauthorized(String),
    #[error("this device is not a member of the conversation")]
    NotMember,
    #[error("crypto failure: {0}")]
    Crypto(String),
    #[error("MLS state: {0}")]
    State(String),
    #[error("storage: {0}")]
    Storage(String),
}
