//! What can go wrong in the client library, typed so that callers decide by kind, never by
//! reading a message.

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
    #[error("end-to-end encryption: {0}")]
    Crypto(String),
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
            ClientError::Crypto(_) => "crypto",
            ClientError::NoKeys => "no_keys",
            ClientError::NoSuchConversation(_) => "no_such_conversation",
            ClientError::Attachment(_) => "attachment",
            ClientError::Call(_) | ClientError::CallRefused(_) => "call",
            ClientError::IdentityChanged(_) => "identity_changed",
        }
    }
}

impl From<MlsError> for ClientError {
    fn from(e: MlsError) -> Self {
        ClientError::Crypto(e.to_string())
    }
}
