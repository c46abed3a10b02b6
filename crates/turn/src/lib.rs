//! The message layer of Rampart's relay: STUN (RFC 8489) and TURN (RFC 8656) over UDP, TCP
//! and TLS.
//!
//! Sans-IO like `rampart-core`: no sockets, no async runtime, no clock and no RNG of its own.
//! Time (`now`, in Unix seconds) and random bytes (transaction ids) are always arguments, so
//! the relay's rules can be tested deterministically and every decoder can be fuzzed.
//!
//! - [`message`]: STUN messages: header, classes, the TURN methods, typed attributes
//!   ([`attribute`]), decoding that never panics and says what is wrong.
//! - [`integrity`]: MESSAGE-INTEGRITY (HMAC-SHA1), FINGERPRINT (CRC-32), short- and long-term
//!   credential keys, constant-time verification, and encoding that adds both in order.
//! - [`credentials`]: the TURN REST API scheme of coturn's `--use-auth-secret` (time-limited
//!   usernames, passwords derived from a shared secret).
//! - [`channel`]: ChannelData framing and the demultiplexing of what arrives on a port.
//! - [`stream`]: cutting a TCP or TLS byte stream into STUN and ChannelData frames.
//! - [`uri`]: `turn:` and `turns:` URIs, which tell a client where a relay is and over what.
//! - [`media_shape`]: the SRTP/SRTCP shape check the relay applies to call media.
//! - [`limits`]: the size limit of every message and field.
//! - [`rfc5769`]: the RFC 5769 test vectors, for tests and fuzz seeds.
#![forbid(unsafe_code)]

pub mod attribute;
pub mod channel;
pub mod credentials;
pub mod integrity;
pub mod limits;
pub mod media_shape;
pub mod message;
pub mod rfc5769;
pub mod stream;
pub mod uri;

pub use attribute::{
    AddressFamily, Attribute, AttributeError, AttributeType, Data, ErrorCode, Nonce, Realm, ReservationToken,
    Sha256Tag, Software, TransportProtocol, UnknownAttributes, Username,
};
pub use channel::{ChannelData, ChannelDataError, ChannelNumber, PacketClass, Transport, TurnPacket};
pub use credentials::{CredentialError, RestCredential, RestUser, SharedSecret};
pub use integrity::{IntegrityError, IntegrityKey, KeyError};
pub use message::{Class, DecodeError, Decoded, EncodeError, Header, Message, Method, TransactionId};
pub use stream::{StreamDecoder, StreamError};
pub use uri::{RelayTransport, TurnUri, UriError};
