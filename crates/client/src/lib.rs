//! Rampart client library: a profile directory holding the device's credentials, the pinned
//! server certificate and received messages; a connection that speaks the wire protocol; and
//! the account, device, messaging and call operations the CLI and TUI are built on.
//!
//! The modules form layers, each using only those below it (ARCHITECTURE.md draws them):
//! - values and decisions with no I/O: [`error`], [`clock`], [`recipient`], [`event`],
//!   `call::inbox`, `call::session`;
//! - [`storage`], which alone opens the profile's databases, and [`net`], the connection;
//! - `client` (the `Client` and its parts), then the operations on it: `e2e` (keys,
//!   conversations, receiving), `requests`, `attachment`, and [`call`] (the call driver and
//!   its media);
//! - [`online`], which keeps one connection open and hands what happens on it to whoever
//!   listens.
#![forbid(unsafe_code)]

mod attachment;
pub mod call;
mod call_inbox;
mod call_session;
mod client;
pub mod clock;
mod e2e;
pub mod error;
pub mod event;
pub mod net;
pub mod online;
pub mod recipient;
mod requests;
pub mod storage;

pub use attachment::{safe_file_name, sealed_len};
pub use client::{
    CLIENT_NAME, Client, Identity, LINK_KEY_CHECK_LEN, PendingLinkHandle, ReceivedMessage, Registration,
    SafetyCheck, SendReceipt, link_key_check,
};
pub use error::ClientError;
pub use event::Event;
pub use net::{Connection, PinnedCertificate, ServerAddress};
pub use recipient::parse_recipient;
pub use storage::{
    AttachmentInfo, CallLogEntry, ConsentCounters, ConversationInfo, Credentials, DeliveryStatus,
    HistoryItem, MessageKind, MessageRequest, NewMessage, Profile, ProfileError, Reaction, human_duration,
};
