//! What can go wrong in the client library, typed so that callers decide by kind, never by
//! reading a message.

use rampart_core::{AccountId, DeviceId};
use rampart_mls::MlsError;
use rampart_proto::{DecodeError, ErrorBody, GoodbyeReason};

use crate::storage::ProfileError;

/// Everything that can go wrong, with text meant for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not a server address: {0:?} (expected host:port, e.g. https://chat.example.org:8443)")]
    BadServerAddress(String),
    #[error("{0}")]
    Io(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error(
        "THE SERVER'S CERTIFICATE HAS CHANGED.\n  pinned:    {pinned}\n  presented: {presented}\n\
         Someone may be intercepting this connection, or the operator replaced the certificate.\n\
         Ask the operator for the new fingerprint out of band; if it matches, run\n  \
         rampart account trust {presented}"
    )]
    CertificateChanged { pinned: String, presented: String },
    #[error("the server refused: {}", .0.message)]
    Server(ErrorBody),
    #[error("the server sent an invalid frame: {0}")]
    Protocol(DecodeError),
    #[error("the server closed the connection: {message}")]
    Closed { reason: GoodbyeReason, message: String },
    #[error(
        "this profile has no account yet: run `rampart account register` or `rampart account link` first"
    )]
    NotRegistered,
    #[error("no registration is pending in this profile: run `rampart account register` first")]
    NoPendingRegistration,
    #[error("{0}")]
    Input(String),
    #[error("unexpected answer from the server to {0}")]
    Unexpected(&'static str),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The MLS engine refused or failed; [`ClientError::is_refusal`] tells which.
    #[error("end-to-end encryption: {0}")]
    Mls(#[from] MlsError),
    /// This device's MLS key store (`mls.db`) could not be opened or written.
    #[error("this device's key store: {0}")]
    KeyStore(String),
    /// What the server or another member said was refused as untrustworthy.
    #[error("end-to-end encryption: {0}")]
    Refused(#[from] Refusal),
    /// Other members' commits kept taking the epoch this device's change was made in.
    #[error("end-to-end encryption: the conversation kept changing; try again")]
    Contended,
    #[error("this device has no end-to-end keys yet; run any command once it is registered or linked")]
    NoKeys,
    #[error("attachment: {0}")]
    Attachment(String),
    #[error("call: {0}")]
    Call(String),
    #[error("call: {0}")]
    CallRefused(#[from] crate::call_session::CallRefusal),
    #[error(
        "{0}'s identity key changed since you verified it: nothing is sent to them until you compare the new safety number (rampart verify {0}) and mark it verified again (rampart verify {0} --mark-verified), or stop treating them as verified (rampart verify {0} --unverify)"
    )]
    IdentityChanged(String),
    #[error(
        "no conversation named {0:?}: give +E164, @username, or a group's name or id (`rampart conversations` lists them)"
    )]
    NoSuchConversation(String),
}

impl ClientError {
    /// A stable machine-readable kind for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::BadServerAddress(_) | ClientError::Input(_) => "bad_input",
            ClientError::Io(_) => "network",
            ClientError::Tls(_) => "tls",
            ClientError::Timeout(_) => "timeout",
            ClientError::CertificateChanged { .. } => "certificate_changed",
            ClientError::Server(e) => e.code.as_str(),
            ClientError::Protocol(_) => "protocol",
            ClientError::Closed { .. } => "closed",
            ClientError::NotRegistered => "not_registered",
            ClientError::NoPendingRegistration => "no_pending_registration",
            ClientError::Unexpected(_) => "unexpected",
            ClientError::Profile(_) => "profile",
            ClientError::Mls(_)
            | ClientError::KeyStore(_)
            | ClientError::Refused(_)
            | ClientError::Contended => "crypto",
            ClientError::NoKeys => "no_keys",
            ClientError::NoSuchConversation(_) => "no_such_conversation",
            ClientError::Attachment(_) => "attachment",
            ClientError::Call(_) | ClientError::CallRefused(_) => "call",
            ClientError::IdentityChanged(_) => "identity_changed",
        }
    }
}

impl ClientError {
    /// Whether the input (a delivery, a key, the server's answer) was refused, as opposed to a
    /// failure of this device. A refused delivery is reported and acknowledged; after a failure
    /// of this device (its storage, say) the delivery is left queued and comes again.
    pub fn is_refusal(&self) -> bool {
        match self {
            ClientError::Refused(_) => true,
            ClientError::Mls(e) => !is_local_failure(e),
            _ => false,
        }
    }
}

/// An MLS error that says nothing about the input: this device's storage failed.
pub(crate) fn is_local_failure(e: &MlsError) -> bool {
    matches!(e, MlsError::Storage(_))
}

/// Why keys, members or a conversation offered by the server (or another member) are not
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server holds a certificate for a key this device does not have")]
    ForeignCertificate,
    #[error("refused a conversation with {device} of {account}, whose key is not certified by its account")]
    UncertifiedMember { device: DeviceId, account: AccountId },
    #[error("no valid key package for the new devices")]
    NoValidKeyPackage,
    #[error("{0} has no device with end-to-end keys yet; they need to open Rampart once")]
    NoKeysYet(String),
    #[error(
        "your conversation with {with} holds devices neither identity certified ({devices}): it cannot be marked verified"
    )]
    UncertifiedDevicesInConversation { with: String, devices: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_input_is_told_apart_from_a_failure_of_this_device() {
        let refused = [
            ClientError::Mls(MlsError::Undecryptable("bad tag".into())),
            ClientError::Mls(MlsError::Unauthorized("not a member".into())),
            ClientError::Mls(MlsError::BadCertificate("unsigned".into())),
            ClientError::Refused(Refusal::ForeignCertificate),
            ClientError::Refused(Refusal::UncertifiedMember { device: DeviceId(2), account: AccountId(1) }),
        ];
        for e in &refused {
            assert!(e.is_refusal(), "{e}");
            assert_eq!(e.kind(), "crypto");
        }
        // Acknowledging after one of these would lose the delivery: it must come again.
        let failures = [
            ClientError::Mls(MlsError::Storage("disk I/O error".into())),
            ClientError::KeyStore("database is locked".into()),
            ClientError::Profile(ProfileError::Corrupt("stored certificate")),
            ClientError::Io("connection lost".into()),
            ClientError::Contended,
        ];
        for e in &failures {
            assert!(!e.is_refusal(), "{e}");
        }
    }
}
