//! Rampart's sans-IO core.
//!
//! Everything here is plain data and pure functions: no sockets, no async runtime, no clock and
//! no RNG of its own. Time (`now`) and randomness are always arguments, so every rule can be
//! tested deterministically and reused by the server, the client and the fuzzers alike.
#![forbid(unsafe_code)]

pub mod call;
pub mod challenge;
pub mod codes;
pub mod consent;
pub mod ids;
pub mod limits;
pub mod phone;
pub mod ratelimit;
pub mod session;
pub mod username;

pub use codes::{DeviceSecret, LinkCode, SecretHash, VerificationCode};
pub use ids::{AccountId, DeviceId, GroupId, MessageId, ServerMessageId};
pub use phone::PhoneNumber;
pub use ratelimit::{RetryAfter, TokenBucket};
pub use username::Username;
