//! The profile's storage: the only module that opens its databases. `profile.db` holds
//! credentials, conversations, history, requests, contacts and the call log; `mls.db` the MLS
//! state. Both are SQLCipher files under the passphrase when the profile has one (`at_rest`).

pub mod at_rest;
mod calls;
mod error;
mod history;
pub(crate) mod mls;
mod profile;
mod requests;

pub use calls::CallLogEntry;
pub use error::ProfileError;
pub use history::{
    AttachmentInfo, DeliveryStatus, HistoryItem, MessageKind, NewMessage, Reaction, human_duration,
};
pub use profile::{ConversationInfo, Credentials, Profile};
pub use requests::{ConsentCounters, MessageRequest};
