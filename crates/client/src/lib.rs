//! Rampart client library: a profile directory holding the device's credentials, the pinned
//! server certificate and received messages; a connection that speaks the wire protocol; and
//! the account, device and messaging operations the CLI and TUI are built on.
#![forbid(unsafe_code)]

pub mod at_rest;
mod attachment;
pub mod audio_device;
pub mod call_video;
pub mod calls;
mod client;
mod connection;
pub mod e2e;
mod history;
mod pin;
mod profile;
pub mod requests;

pub use attachment::{safe_file_name, sealed_len};
pub use client::{
    Client, ClientError, Identity, PendingLinkHandle, ReceivedMessage, Registration, SafetyCheck,
    SendReceipt, parse_recipient,
};
pub use connection::{Connection, ServerAddress};
pub use history::{
    AttachmentInfo, DeliveryStatus, HistoryItem, MessageKind, NewMessage, Reaction, human_duration,
};
pub use pin::PinnedCertificate;
pub use profile::{ConversationInfo, Credentials, Profile, ProfileError};
