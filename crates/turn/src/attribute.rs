//! STUN and TURN attributes (RFC 8489 §14, RFC 8656 §18): their types, typed values that can
//! only hold what the RFCs and [`crate::limits`] allow, and the codec of one attribute value.
//!
//! Values are checked once, when they are built: by the decoder from the wire, or by the
//! `new` constructors in code. Encoding therefore cannot produce a value the decoder refuses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use crate::channel::ChannelNumber;
use crate::limits::{
    MAX_ATTRIBUTES, MAX_DATA_LEN, MAX_SHA256_TAG_LEN, MAX_TEXT_CHARS, MAX_TEXT_LEN, MAX_USERNAME_LEN,
    MIN_SHA256_TAG_LEN,
};
use crate::message::{MAGIC_COOKIE, TransactionId};

/// What is wrong with one attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttributeError {
    /// The value's length is not one this attribute can have.
    #[error("invalid value length {len}")]
    InvalidLength { len: usize },
    /// The value is longer than its limit.
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    /// A text value has too many characters.
    #[error("text of {chars} characters exceeds the {max}-character limit")]
    TooManyCharacters { chars: usize, max: usize },
    /// A text value is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// An address family other than IPv4 (0x01) or IPv6 (0x02).
    #[error("unknown address family {0:#04x}")]
    UnknownAddressFamily(u8),
    /// An ERROR-CODE outside 300..=699 (RFC 8489 §14.8).
    #[error("invalid error code class {class}, number {number}")]
    InvalidErrorCode { class: u8, number: u8 },
    /// A CHANNEL-NUMBER outside 0x4000..=0x4FFF (RFC 8656 §12).
    #[error("channel number {0:#06x} is outside 0x4000..=0x4FFF")]
    InvalidChannelNumber(u16),
    /// A list with too many entries.
    #[error("{count} entries exceed the limit of {max}")]
    TooManyEntries { count: usize, max: usize },
}

/// A 16-bit attribute type. Types 0x0000–0x7FFF are comprehension-required: a receiver that
/// does not know one must reject the message (RFC 8489 §14, a 420 answer to a request).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(pub u16);

impl AttributeType {
    pub const MAPPED_ADDRESS: Self = Self(0x0001);
    pub const USERNAME: Self = Self(0x0006);
    pub const MESSAGE_INTEGRITY: Self = Self(0x0008);
    pub const ERROR_CODE: Self = Self(0x0009);
    pub const UNKNOWN_ATTRIBUTES: Self = Self(0x000A);
    pub const CHANNEL_NUMBER: Self = Self(0x000C);
    pub const LIFETIME: Self = Self(0x000D);
    pub const XOR_PEER_ADDRESS: Self = Self(0x0012);
    pub const DATA: Self = Self(0x0013);
    pub const REALM: Self = Self(0x0014);
    pub const NONCE: Self = Self(0x0015);
    pub const XOR_RELAYED_ADDRESS: Self = Self(0x0016);
    pub const REQUESTED_ADDRESS_FAMILY: Self = Self(0x0017);
    pub const EVEN_PORT: Self = Self(0x0018);
    pub const REQUESTED_TRANSPORT: Self = Self(0x0019);
    pub const DONT_FRAGMENT: Self = Self(0x001A);
    pub const MESSAGE_INTEGRITY_SHA256: Self = Self(0x001C);
    pub const XOR_MAPPED_ADDRESS: Self = Self(0x0020);
    pub const RESERVATION_TOKEN: Self = Self(0x0022);
    pub const ADDITIONAL_ADDRESS_FAMILY: Self = Self(0x8000);
    pub const SOFTWARE: Self = Self(0x8022);
    pub const FINGERPRINT: Self = Self(0x8028);

    /// Whether a receiver that does not understand this attribute must reject the message.
    pub const fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// The RFC name of the attributes this crate knows.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::MAPPED_ADDRESS => "MAPPED-ADDRESS",
            Self::USERNAME => "USERNAME",
            Self::MESSAGE_INTEGRITY => "MESSAGE-INTEGRITY",
            Self::ERROR_CODE => "ERROR-CODE",
            Self::UNKNOWN_ATTRIBUTES => "UNKNOWN-ATTRIBUTES",
            Self::CHANNEL_NUMBER => "CHANNEL-NUMBER",
            Self::LIFETIME => "LIFETIME",
            Self::XOR_PEER_ADDRESS => "XOR-PEER-ADDRESS",
            Self::DATA => "DATA",
            Self::REALM => "REALM",
            Self::NONCE => "NONCE",
            Self::XOR_RELAYED_ADDRESS => "XOR-RELAYED-ADDRESS",
            Self::REQUESTED_ADDRESS_FAMILY => "REQUESTED-ADDRESS-FAMILY",
            Self::EVEN_PORT => "EVEN-PORT",
            Self::REQUESTED_TRANSPORT => "REQUESTED-TRANSPORT",
            Self::DONT_FRAGMENT => "DONT-FRAGMENT",
            Self::MESSAGE_INTEGRITY_SHA256 => "MESSAGE-INTEGRITY-SHA256",
            Self::XOR_MAPPED_ADDRESS => "XOR-MAPPED-ADDRESS",
            Self::RESERVATION_TOKEN => "RESERVATION-TOKEN",
            Self::ADDITIONAL_ADDRESS_FAMILY => "ADDITIONAL-ADDRESS-FAMILY",
            Self::SOFTWARE => "SOFTWARE",
            Self::FINGERPRINT => "FINGERPRINT",
            _ => return None,
        })
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#06x})", self.0),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl fmt::Debug for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Checks a text value from the wire or from code against its limits. The byte limit is
/// checked before anything else, so an oversized value costs nothing.
fn checked_text(value: &[u8], max_bytes: usize, max_chars: usize) -> Result<&str, AttributeError> {
    if value.len() > max_bytes {
        return Err(AttributeError::TooLong { len: value.len(), max: max_bytes });
    }
    let text = std::str::from_utf8(value).map_err(|_| AttributeError::InvalidUtf8)?;
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(AttributeError::TooManyCharacters { chars, max: max_chars });
    }
    Ok(text)
}

/// A UTF-8 text attribute value with a byte and a character limit.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, max_bytes = $max_bytes:expr, max_chars = $max_chars:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Longest value, in bytes.
            pub const MAX_BYTES: usize = $max_bytes;
            /// Most characters in a value.
            pub const MAX_CHARS: usize = $max_chars;

            /// Checks `value` against the limits.
            pub fn new(value: impl Into<String>) -> Result<Self, AttributeError> {
                let value = value.into();
                checked_text(value.as_bytes(), Self::MAX_BYTES, Self::MAX_CHARS)?;
                Ok(Self(value))
            }

            fn from_wire(value: &[u8]) -> Result<Self, AttributeError> {
                checked_text(value, Self::MAX_BYTES, Self::MAX_CHARS).map(|text| Self(text.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_value!(
    /// USERNAME (RFC 8489 §14.3): at most 513 bytes of UTF-8. SASLprep/OpaqueString processing
    /// is the sender's job; the value is used as it is on the wire.
    Username,
    max_bytes = MAX_USERNAME_LEN,
    max_chars = usize::MAX
);
text_value!(
    /// REALM (RFC 8489 §14.9): fewer than 128 characters, at most 763 bytes.
    Realm,
    max_bytes = MAX_TEXT_LEN,
    max_chars = MAX_TEXT_CHARS
);
text_value!(
    /// NONCE (RFC 8489 §14.10): fewer than 128 characters, at most 763 bytes.
    Nonce,
    max_bytes = MAX_TEXT_LEN,
    max_chars = MAX_TEXT_CHARS
);
text_value!(
    /// SOFTWARE (RFC 8489 §14.14): fewer than 128 characters, at most 763 bytes.
    Software,
    max_bytes = MAX_TEXT_LEN,
    max_chars = MAX_TEXT_CHARS
);

/// ERROR-CODE (RFC 8489 §14.8): a code in 300..=699 and a reason phrase (fewer than 128
/// characters, at most 763 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    code: u16,
    reason: String,
}

impl ErrorCode {
    /// 300: the client should contact an alternate server.
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400: malformed request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401: missing or wrong credentials; carries REALM and NONCE.
    pub const UNAUTHENTICATED: u16 = 401;
    /// 403: the request is refused (RFC 8656).
    pub const FORBIDDEN: u16 = 403;
    /// 420: unknown comprehension-required attributes, listed in UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 437: the 5-tuple does not match the allocation (RFC 8656).
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 438: the nonce expired; a new one is attached.
    pub const STALE_NONCE: u16 = 438;
    /// 440: the address family is not supported (RFC 8656).
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;
    /// 441: the credentials differ from those of the allocation (RFC 8656).
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442: REQUESTED-TRANSPORT names a protocol the server does not relay (RFC 8656).
    pub const UNSUPPORTED_TRANSPORT_PROTOCOL: u16 = 442;
    /// 443: the peer's address family differs from the relayed address's (RFC 8656).
    pub const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;
    /// 486: the user has too many allocations (RFC 8656).
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 500: server error.
    pub const SERVER_ERROR: u16 = 500;
    /// 508: the server cannot allocate now (RFC 8656).
    pub const INSUFFICIENT_CAPACITY: u16 = 508;

    /// Checks the code (300..=699) and the reason phrase's limits.
    pub fn new(code: u16, reason: impl Into<String>) -> Result<Self, AttributeError> {
        let class = u8::try_from(code / 100).unwrap_or(u8::MAX);
        let number = u8::try_from(code % 100).unwrap_or(u8::MAX);
        if !(3..=6).contains(&class) {
            return Err(AttributeError::InvalidErrorCode { class, number });
        }
        let reason = reason.into();
        checked_text(reason.as_bytes(), MAX_TEXT_LEN, MAX_TEXT_CHARS)?;
        Ok(Self { code, reason })
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reason phrase.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn from_wire(value: &[u8]) -> Result<Self, AttributeError> {
        // 21 reserved bits, the class (hundreds digit) in 3 bits, the number (0..=99) in 8.
        let (&[_, _, class_byte, number], reason) =
            value.split_first_chunk::<4>().ok_or(AttributeError::InvalidLength { len: value.len() })?;
        let class = class_byte & 0x07;
        if !(3..=6).contains(&class) || number > 99 {
            return Err(AttributeError::InvalidErrorCode { class, number });
        }
        let reason = checked_text(reason, MAX_TEXT_LEN, MAX_TEXT_CHARS)?;
        Ok(Self { code: u16::from(class) * 100 + u16::from(number), reason: reason.to_owned() })
    }

    fn to_wire(&self, out: &mut Vec<u8>) {
        // `new` and `from_wire` keep the code in 300..=699, so both fit in a byte.
        let class = u8::try_from(self.code / 100).unwrap_or(0);
        let number = u8::try_from(self.code % 100).unwrap_or(0);
        out.extend_from_slice(&[0, 0, class, number]);
        out.extend_from_slice(self.reason.as_bytes());
    }
}

/// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the comprehension-required attribute types a 420
/// answer lists; at most [`MAX_ATTRIBUTES`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownAttributes(Vec<AttributeType>);

impl UnknownAttributes {
    /// Checks the number of entries.
    pub fn new(types: Vec<AttributeType>) -> Result<Self, AttributeError> {
        if types.len() > MAX_ATTRIBUTES {
            return Err(AttributeError::TooManyEntries { count: types.len(), max: MAX_ATTRIBUTES });
        }
        Ok(Self(types))
    }

    /// The listed types.
    pub fn types(&self) -> &[AttributeType] {
        &self.0
    }

    fn from_wire(value: &[u8]) -> Result<Self, AttributeError> {
        let (pairs, rest) = value.as_chunks::<2>();
        if !rest.is_empty() {
            return Err(AttributeError::InvalidLength { len: value.len() });
        }
        if pairs.len() > MAX_ATTRIBUTES {
            return Err(AttributeError::TooManyEntries { count: pairs.len(), max: MAX_ATTRIBUTES });
        }
        Ok(Self(pairs.iter().map(|pair| AttributeType(u16::from_be_bytes(*pair))).collect()))
    }
}

/// DATA (RFC 8656 §18.4): the application payload of a Send or Data indication, at most
/// [`MAX_DATA_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Data(Vec<u8>);

impl Data {
    /// Checks the length.
    pub fn new(bytes: Vec<u8>) -> Result<Self, AttributeError> {
        if bytes.len() > MAX_DATA_LEN {
            return Err(AttributeError::TooLong { len: bytes.len(), max: MAX_DATA_LEN });
        }
        Ok(Self(bytes))
    }

    /// The payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The payload, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Data {
    /// The length only: relayed payloads are end-to-end encrypted media, never worth printing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Data({} bytes)", self.0.len())
    }
}

/// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): an HMAC-SHA256 truncated to 16..=32 bytes, a
/// multiple of 4. Parsed and re-encoded; computing and checking it is not implemented yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Tag(Vec<u8>);

impl Sha256Tag {
    /// Checks the length.
    pub fn new(bytes: Vec<u8>) -> Result<Self, AttributeError> {
        let len = bytes.len();
        if !(MIN_SHA256_TAG_LEN..=MAX_SHA256_TAG_LEN).contains(&len) || !len.is_multiple_of(4) {
            return Err(AttributeError::InvalidLength { len });
        }
        Ok(Self(bytes))
    }

    /// The (possibly truncated) HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// REQUESTED-TRANSPORT's protocol number (RFC 8656 §18.7): any value can be requested; the
/// server answers 442 to those it does not relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportProtocol(pub u8);

impl TransportProtocol {
    /// UDP, the only transport RFC 8656 defines for the relayed address.
    pub const UDP: Self = Self(17);
    /// TCP (RFC 6062).
    pub const TCP: Self = Self(6);
}

/// The family in REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.10,
/// §18.11): any value can be requested; the server answers 440 to those it does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressFamily(pub u8);

impl AddressFamily {
    /// IPv4.
    pub const IPV4: Self = Self(0x01);
    /// IPv6.
    pub const IPV6: Self = Self(0x02);
}

/// RESERVATION-TOKEN (RFC 8656 §18.9): names a relayed port reserved by an earlier Allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationToken(pub [u8; 8]);

/// One attribute this crate understands. Unknown ones never become an `Attribute`: the decoder
/// reports the comprehension-required ones and skips the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// MAPPED-ADDRESS (RFC 8489 §14.1), the pre-RFC 5389 form of XOR-MAPPED-ADDRESS.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the client's reflexive transport address.
    XorMappedAddress(SocketAddr),
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3): a peer's address; may appear several times.
    XorPeerAddress(SocketAddr),
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the relayed transport address.
    XorRelayedAddress(SocketAddr),
    /// USERNAME (RFC 8489 §14.3).
    Username(Username),
    /// REALM (RFC 8489 §14.9).
    Realm(Realm),
    /// NONCE (RFC 8489 §14.10).
    Nonce(Nonce),
    /// SOFTWARE (RFC 8489 §14.14).
    Software(Software),
    /// ERROR-CODE (RFC 8489 §14.8).
    ErrorCode(ErrorCode),
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    UnknownAttributes(UnknownAttributes),
    /// LIFETIME (RFC 8656 §18.2): seconds until the allocation expires; 0 deletes it.
    Lifetime { seconds: u32 },
    /// REQUESTED-TRANSPORT (RFC 8656 §18.7).
    RequestedTransport(TransportProtocol),
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.10).
    RequestedAddressFamily(AddressFamily),
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11).
    AdditionalAddressFamily(AddressFamily),
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    ChannelNumber(ChannelNumber),
    /// DATA (RFC 8656 §18.4).
    Data(Data),
    /// DONT-FRAGMENT (RFC 8656 §18.8): no value.
    DontFragment,
    /// EVEN-PORT (RFC 8656 §18.6): ask for an even relayed port, and optionally to reserve the
    /// next (odd) one as well.
    EvenPort { reserve_next: bool },
    /// RESERVATION-TOKEN (RFC 8656 §18.9).
    ReservationToken(ReservationToken),
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1, checked by
    /// [`crate::integrity::verify_message_integrity`] on the received bytes.
    MessageIntegrity([u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    MessageIntegritySha256(Sha256Tag),
    /// FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message XOR 0x5354554e, checked by
    /// [`crate::integrity::verify_fingerprint`] on the received bytes.
    Fingerprint(u32),
}

/// Port XOR mask: the most significant 16 bits of the magic cookie (RFC 8489 §14.2).
const PORT_MASK: u16 = (MAGIC_COOKIE >> 16) as u16;

/// The XOR mask of an IPv6 address: the magic cookie then the transaction id (RFC 8489 §14.2).
fn ipv6_mask(transaction_id: &TransactionId) -> [u8; 16] {
    let mut mask = [0u8; 16];
    for (slot, byte) in
        mask.iter_mut().zip(MAGIC_COOKIE.to_be_bytes().iter().chain(transaction_id.as_bytes().iter()))
    {
        *slot = *byte;
    }
    mask
}

fn xor_in_place<const N: usize>(bytes: &mut [u8; N], mask: &[u8; N]) {
    for (byte, mask) in bytes.iter_mut().zip(mask.iter()) {
        *byte ^= mask;
    }
}

/// How an address attribute hides its value: MAPPED-ADDRESS does not, the XOR-* ones XOR it
/// with the magic cookie and the transaction id so NATs that rewrite addresses in payloads
/// leave it alone (RFC 8489 §14.2).
#[derive(Clone, Copy)]
enum AddressEncoding<'a> {
    Plain,
    Xor(&'a TransactionId),
}

fn decode_address(value: &[u8], encoding: AddressEncoding<'_>) -> Result<SocketAddr, AttributeError> {
    let invalid_length = AttributeError::InvalidLength { len: value.len() };
    // One reserved byte (ignored, RFC 8489 §14.1), the family, the port, the address.
    let (&[_, family, port_high, port_low], address) =
        value.split_first_chunk::<4>().ok_or(invalid_length.clone())?;
    let mut port = u16::from_be_bytes([port_high, port_low]);
    let ip = match family {
        0x01 => {
            let mut octets: [u8; 4] = address.try_into().map_err(|_| invalid_length)?;
            if let AddressEncoding::Xor(_) = encoding {
                xor_in_place(&mut octets, &MAGIC_COOKIE.to_be_bytes());
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        0x02 => {
            let mut octets: [u8; 16] = address.try_into().map_err(|_| invalid_length)?;
            if let AddressEncoding::Xor(transaction_id) = encoding {
                xor_in_place(&mut octets, &ipv6_mask(transaction_id));
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        other => return Err(AttributeError::UnknownAddressFamily(other)),
    };
    if let AddressEncoding::Xor(_) = encoding {
        port ^= PORT_MASK;
    }
    Ok(SocketAddr::new(ip, port))
}

fn encode_address(address: &SocketAddr, encoding: AddressEncoding<'_>, out: &mut Vec<u8>) {
    let port = match encoding {
        AddressEncoding::Plain => address.port(),
        AddressEncoding::Xor(_) => address.port() ^ PORT_MASK,
    };
    match address.ip() {
        IpAddr::V4(ip) => {
            let mut octets = ip.octets();
            if let AddressEncoding::Xor(_) = encoding {
                xor_in_place(&mut octets, &MAGIC_COOKIE.to_be_bytes());
            }
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&octets);
        }
        IpAddr::V6(ip) => {
            let mut octets = ip.octets();
            if let AddressEncoding::Xor(transaction_id) = encoding {
                xor_in_place(&mut octets, &ipv6_mask(transaction_id));
            }
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&octets);
        }
    }
}

fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], AttributeError> {
    value.try_into().map_err(|_| AttributeError::InvalidLength { len: value.len() })
}

impl Attribute {
    /// The attribute's type.
    pub fn attribute_type(&self) -> AttributeType {
        match self {
            Self::MappedAddress(_) => AttributeType::MAPPED_ADDRESS,
            Self::XorMappedAddress(_) => AttributeType::XOR_MAPPED_ADDRESS,
            Self::XorPeerAddress(_) => AttributeType::XOR_PEER_ADDRESS,
            Self::XorRelayedAddress(_) => AttributeType::XOR_RELAYED_ADDRESS,
            Self::Username(_) => AttributeType::USERNAME,
            Self::Realm(_) => AttributeType::REALM,
            Self::Nonce(_) => AttributeType::NONCE,
            Self::Software(_) => AttributeType::SOFTWARE,
            Self::ErrorCode(_) => AttributeType::ERROR_CODE,
            Self::UnknownAttributes(_) => AttributeType::UNKNOWN_ATTRIBUTES,
            Self::Lifetime { .. } => AttributeType::LIFETIME,
            Self::RequestedTransport(_) => AttributeType::REQUESTED_TRANSPORT,
            Self::RequestedAddressFamily(_) => AttributeType::REQUESTED_ADDRESS_FAMILY,
            Self::AdditionalAddressFamily(_) => AttributeType::ADDITIONAL_ADDRESS_FAMILY,
            Self::ChannelNumber(_) => AttributeType::CHANNEL_NUMBER,
            Self::Data(_) => AttributeType::DATA,
            Self::DontFragment => AttributeType::DONT_FRAGMENT,
            Self::EvenPort { .. } => AttributeType::EVEN_PORT,
            Self::ReservationToken(_) => AttributeType::RESERVATION_TOKEN,
            Self::MessageIntegrity(_) => AttributeType::MESSAGE_INTEGRITY,
            Self::MessageIntegritySha256(_) => AttributeType::MESSAGE_INTEGRITY_SHA256,
            Self::Fingerprint(_) => AttributeType::FINGERPRINT,
        }
    }

    /// Decodes one value (without its padding). `Ok(None)` for a type this crate does not know.
    pub(crate) fn decode(
        attribute_type: AttributeType,
        value: &[u8],
        transaction_id: &TransactionId,
    ) -> Result<Option<Self>, AttributeError> {
        let xor = AddressEncoding::Xor(transaction_id);
        let attribute = match attribute_type {
            AttributeType::MAPPED_ADDRESS => {
                Self::MappedAddress(decode_address(value, AddressEncoding::Plain)?)
            }
            AttributeType::XOR_MAPPED_ADDRESS => Self::XorMappedAddress(decode_address(value, xor)?),
            AttributeType::XOR_PEER_ADDRESS => Self::XorPeerAddress(decode_address(value, xor)?),
            AttributeType::XOR_RELAYED_ADDRESS => Self::XorRelayedAddress(decode_address(value, xor)?),
            AttributeType::USERNAME => Self::Username(Username::from_wire(value)?),
            AttributeType::REALM => Self::Realm(Realm::from_wire(value)?),
            AttributeType::NONCE => Self::Nonce(Nonce::from_wire(value)?),
            AttributeType::SOFTWARE => Self::Software(Software::from_wire(value)?),
            AttributeType::ERROR_CODE => Self::ErrorCode(ErrorCode::from_wire(value)?),
            AttributeType::UNKNOWN_ATTRIBUTES => {
                Self::UnknownAttributes(UnknownAttributes::from_wire(value)?)
            }
            AttributeType::LIFETIME => Self::Lifetime { seconds: u32::from_be_bytes(fixed(value)?) },
            // The protocol number, then 3 bytes reserved for future use (RFC 8656 §18.7).
            AttributeType::REQUESTED_TRANSPORT => {
                let [protocol, _, _, _] = fixed(value)?;
                Self::RequestedTransport(TransportProtocol(protocol))
            }
            // The family, then 3 reserved bytes (RFC 8656 §18.10, §18.11).
            AttributeType::REQUESTED_ADDRESS_FAMILY => {
                let [family, _, _, _] = fixed(value)?;
                Self::RequestedAddressFamily(AddressFamily(family))
            }
            AttributeType::ADDITIONAL_ADDRESS_FAMILY => {
                let [family, _, _, _] = fixed(value)?;
                Self::AdditionalAddressFamily(AddressFamily(family))
            }
            // The number, then 2 bytes reserved for future use (RFC 8656 §18.1).
            AttributeType::CHANNEL_NUMBER => {
                let [high, low, _, _] = fixed(value)?;
                let number = u16::from_be_bytes([high, low]);
                Self::ChannelNumber(
                    ChannelNumber::new(number).map_err(|_| AttributeError::InvalidChannelNumber(number))?,
                )
            }
            AttributeType::DATA => Self::Data(Data::new(value.to_vec())?),
            AttributeType::DONT_FRAGMENT => {
                if !value.is_empty() {
                    return Err(AttributeError::InvalidLength { len: value.len() });
                }
                Self::DontFragment
            }
            // One byte: the R flag in the top bit, 7 reserved bits (RFC 8656 §18.6).
            AttributeType::EVEN_PORT => {
                let [flags] = fixed(value)?;
                Self::EvenPort { reserve_next: flags & 0x80 != 0 }
            }
            AttributeType::RESERVATION_TOKEN => Self::ReservationToken(ReservationToken(fixed(value)?)),
            AttributeType::MESSAGE_INTEGRITY => Self::MessageIntegrity(fixed(value)?),
            AttributeType::MESSAGE_INTEGRITY_SHA256 => {
                Self::MessageIntegritySha256(Sha256Tag::new(value.to_vec())?)
            }
            AttributeType::FINGERPRINT => Self::Fingerprint(u32::from_be_bytes(fixed(value)?)),
            _ => return Ok(None),
        };
        Ok(Some(attribute))
    }

    /// Appends the value (without header or padding).
    pub(crate) fn encode_value(&self, transaction_id: &TransactionId, out: &mut Vec<u8>) {
        let xor = AddressEncoding::Xor(transaction_id);
        match self {
            Self::MappedAddress(address) => encode_address(address, AddressEncoding::Plain, out),
            Self::XorMappedAddress(address)
            | Self::XorPeerAddress(address)
            | Self::XorRelayedAddress(address) => {
                encode_address(address, xor, out);
            }
            Self::Username(text) => out.extend_from_slice(text.as_str().as_bytes()),
            Self::Realm(text) => out.extend_from_slice(text.as_str().as_bytes()),
            Self::Nonce(text) => out.extend_from_slice(text.as_str().as_bytes()),
            Self::Software(text) => out.extend_from_slice(text.as_str().as_bytes()),
            Self::ErrorCode(error) => error.to_wire(out),
            Self::UnknownAttributes(list) => {
                for attribute_type in list.types() {
                    out.extend_from_slice(&attribute_type.0.to_be_bytes());
                }
            }
            Self::Lifetime { seconds } => out.extend_from_slice(&seconds.to_be_bytes()),
            Self::RequestedTransport(protocol) => out.extend_from_slice(&[protocol.0, 0, 0, 0]),
            Self::RequestedAddressFamily(family) | Self::AdditionalAddressFamily(family) => {
                out.extend_from_slice(&[family.0, 0, 0, 0]);
            }
            Self::ChannelNumber(number) => {
                out.extend_from_slice(&number.get().to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Self::Data(data) => out.extend_from_slice(data.as_bytes()),
            Self::DontFragment => {}
            Self::EvenPort { reserve_next } => out.push(if *reserve_next { 0x80 } else { 0 }),
            Self::ReservationToken(token) => out.extend_from_slice(&token.0),
            Self::MessageIntegrity(tag) => out.extend_from_slice(tag),
            Self::MessageIntegritySha256(tag) => out.extend_from_slice(tag.as_bytes()),
            Self::Fingerprint(crc) => out.extend_from_slice(&crc.to_be_bytes()),
        }
    }
}
