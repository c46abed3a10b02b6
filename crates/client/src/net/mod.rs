//! The network: one TLS WebSocket to the server, with its certificate pinned on first use.

mod address;
mod connection;
mod pin;

pub use address::ServerAddress;
pub use connection::Connection;
pub(crate) use connection::pinned_tls_config;
pub use pin::PinnedCertificate;
