//! Hard limits of the message layer. Decoding enforces every one of them before it allocates;
//! encoding refuses to produce anything the decoder would refuse.
//!
//! STUN over UDP is meant to fit one datagram (RFC 8489 §6.1), and Rampart's relay carries call
//! media (SRTP, DTLS records of WebRTC-style stacks stay near 1,200 bytes), so the limits are
//! sized for one Ethernet MTU of relayed payload, not for the 64 KiB a UDP datagram could hold.

use crate::message::HEADER_LEN;

/// Largest application payload relayed in one DATA attribute or ChannelData message: one
/// Ethernet MTU (1,500 bytes). A peer datagram bigger than this is not relayed.
pub const MAX_DATA_LEN: usize = 1500;

/// Largest STUN message, header included, accepted or produced. It is the largest Data or Send
/// indication (checked below at compile time): header, DATA with [`MAX_DATA_LEN`] bytes, an
/// IPv6 XOR-PEER-ADDRESS, DONT-FRAGMENT, MESSAGE-INTEGRITY and FINGERPRINT, rounded up to a
/// multiple of 4. Messages without DATA (an Allocate with a long REALM and NONCE, say) are
/// limited by the same number, whatever the sum of their per-field limits.
pub const MAX_MESSAGE_LEN: usize = 1600;

/// Most attributes in one message, skipped ones (unknown comprehension-optional, or ignored
/// after MESSAGE-INTEGRITY) included: each costs a little work, so their number is bounded too.
/// A CreatePermission with many XOR-PEER-ADDRESS attributes is the largest legitimate case.
pub const MAX_ATTRIBUTES: usize = 64;

/// Longest USERNAME value in bytes (RFC 8489 §14.3: "MUST contain a UTF-8-encoded sequence of
/// fewer than 509 bytes", but receivers accept up to 513 for RFC 5389 compatibility).
pub const MAX_USERNAME_LEN: usize = 513;

/// Longest REALM, NONCE, SOFTWARE value or ERROR-CODE reason phrase in bytes (RFC 8489 §14.9,
/// §14.10, §14.14, §14.8: fewer than 128 characters, "as long as 763 bytes when decoding").
pub const MAX_TEXT_LEN: usize = 763;

/// Most characters (Unicode scalar values) in a REALM, NONCE, SOFTWARE value or reason phrase:
/// "fewer than 128 characters".
pub const MAX_TEXT_CHARS: usize = 127;

/// Longest MESSAGE-INTEGRITY-SHA256 value (RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4).
pub const MAX_SHA256_TAG_LEN: usize = 32;

/// Shortest MESSAGE-INTEGRITY-SHA256 value.
pub const MIN_SHA256_TAG_LEN: usize = 16;

/// Size of the largest Data/Send indication, which [`MAX_MESSAGE_LEN`] must hold.
const LARGEST_DATA_INDICATION: usize = HEADER_LEN
    + (4 + MAX_DATA_LEN.next_multiple_of(4)) // DATA
    + (4 + 20) // XOR-PEER-ADDRESS, IPv6
    + 4 // DONT-FRAGMENT
    + (4 + 20) // MESSAGE-INTEGRITY
    + (4 + 4); // FINGERPRINT

const _: () = assert!(LARGEST_DATA_INDICATION <= MAX_MESSAGE_LEN);
const _: () = assert!(MAX_MESSAGE_LEN.is_multiple_of(4));
// Every attribute value fits the 16-bit length field.
const _: () = assert!(MAX_MESSAGE_LEN <= u16::MAX as usize);
