//! STUN messages (RFC 8489 §5–6) with the TURN methods (RFC 8656 §17).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Magic Cookie (0x2112A442)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                Transaction ID (96 bits)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! then attributes, each a 16-bit type, a 16-bit value length and the value padded to 4 bytes.
//!
//! A server acts on a datagram in two steps, as RFC 8489 §6.3 asks: [`Header::decode`] checks
//! that it is STUN at all (anything it refuses is dropped silently, it may not be STUN), then
//! [`Message::decode`] reads the attributes (a request it refuses gets a 400, and one with
//! unknown comprehension-required attributes a 420 listing
//! [`Decoded::unknown_comprehension_required`]).

use std::fmt;
use std::net::SocketAddr;

use thiserror::Error;

use crate::attribute::{
    Attribute, AttributeError, AttributeType, ErrorCode, Nonce, Realm, Software, TransportProtocol, Username,
};
use crate::channel::ChannelNumber;
use crate::limits::{MAX_ATTRIBUTES, MAX_MESSAGE_LEN};

/// The fixed value of the header's second word (RFC 8489 §6).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the message header.
pub const HEADER_LEN: usize = 20;
/// Length of an attribute's type and length fields.
pub(crate) const ATTRIBUTE_HEADER_LEN: usize = 4;

/// The 96-bit transaction id. The caller supplies the random bytes (RFC 8489 §6: chosen
/// uniformly at random by a cryptographically secure generator); this crate has no RNG.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// The transaction id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransactionId(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// The message class (RFC 8489 §5), two bits of the message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    SuccessResponse,
    ErrorResponse,
}

impl Class {
    const fn bits(self) -> u16 {
        match self {
            Self::Request => 0b00,
            Self::Indication => 0b01,
            Self::SuccessResponse => 0b10,
            Self::ErrorResponse => 0b11,
        }
    }

    const fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Self::Request,
            0b01 => Self::Indication,
            0b10 => Self::SuccessResponse,
            _ => Self::ErrorResponse,
        }
    }
}

/// The methods of STUN (RFC 8489 §18.2) and TURN (RFC 8656 §17) this relay speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Binding,
    Allocate,
    Refresh,
    Send,
    Data,
    CreatePermission,
    ChannelBind,
}

impl Method {
    /// All methods, for tests and generators.
    pub const ALL: [Self; 7] = [
        Self::Binding,
        Self::Allocate,
        Self::Refresh,
        Self::Send,
        Self::Data,
        Self::CreatePermission,
        Self::ChannelBind,
    ];

    /// The 12-bit method number.
    pub const fn code(self) -> u16 {
        match self {
            Self::Binding => 0x001,
            Self::Allocate => 0x003,
            Self::Refresh => 0x004,
            Self::Send => 0x006,
            Self::Data => 0x007,
            Self::CreatePermission => 0x008,
            Self::ChannelBind => 0x009,
        }
    }

    /// The method with this number, if this crate knows it.
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0x001 => Self::Binding,
            0x003 => Self::Allocate,
            0x004 => Self::Refresh,
            0x006 => Self::Send,
            0x007 => Self::Data,
            0x008 => Self::CreatePermission,
            0x009 => Self::ChannelBind,
            _ => return None,
        })
    }

    /// Whether messages of this method exist in `class`. Send and Data are indications only
    /// (RFC 8656 §10.1, §10.3); the other TURN methods are requests and their responses only
    /// (§7–§11); Binding has all four classes (an indication is a keepalive, RFC 8489 §3).
    pub const fn allows(self, class: Class) -> bool {
        match self {
            Self::Binding => true,
            Self::Send | Self::Data => matches!(class, Class::Indication),
            Self::Allocate | Self::Refresh | Self::CreatePermission | Self::ChannelBind => {
                !matches!(class, Class::Indication)
            }
        }
    }
}

/// The 14-bit message type: the method's 12 bits with the class's two bits interleaved at
/// bits 4 and 8 (RFC 8489 §5, figure 3).
const fn message_type(class: Class, method: Method) -> u16 {
    let m = method.code();
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a message type into class and method number.
const fn split_message_type(message_type: u16) -> (Class, u16) {
    let class = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10);
    let method = (message_type & 0x000F) | ((message_type >> 1) & 0x0070) | ((message_type >> 2) & 0x0F80);
    (Class::from_bits(class), method)
}

/// Why bytes are not a STUN message this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{len} bytes is shorter than the 20-byte STUN header")]
    TooShort { len: usize },
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("the first two bits are not zero: not a STUN message")]
    NotStun,
    #[error("magic cookie {0:#010x} is not 0x2112a442")]
    BadMagicCookie(u32),
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(u16),
    #[error("header announces {declared} bytes of attributes, {actual} follow it")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unknown method {0:#05x}")]
    UnknownMethod(u16),
    #[error("{method:?} has no {class:?} messages")]
    ClassNotAllowed { method: Method, class: Class },
    #[error("more than {max} attributes")]
    TooManyAttributes { max: usize },
    #[error("attribute {attribute} runs past the end of the message")]
    TruncatedAttribute { attribute: AttributeType },
    #[error("attribute header runs past the end of the message")]
    TruncatedAttributeHeader,
    #[error("attribute {attribute}: {error}")]
    InvalidAttribute {
        attribute: AttributeType,
        #[source]
        error: AttributeError,
    },
    #[error("attribute {attribute} follows FINGERPRINT, which must be last")]
    AttributeAfterFingerprint { attribute: AttributeType },
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("{method:?} has no {class:?} messages")]
    ClassNotAllowed { method: Method, class: Class },
    #[error("{count} attributes exceed the limit of {max}")]
    TooManyAttributes { count: usize, max: usize },
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("attribute {attribute} follows FINGERPRINT, which must be last")]
    AttributeAfterFingerprint { attribute: AttributeType },
    /// Receivers ignore everything after MESSAGE-INTEGRITY but MESSAGE-INTEGRITY-SHA256 and
    /// FINGERPRINT, and everything after MESSAGE-INTEGRITY-SHA256 but FINGERPRINT (RFC 8489
    /// §14.5, §14.6), so such an attribute would be lost.
    #[error("attribute {attribute} follows MESSAGE-INTEGRITY and would be ignored")]
    AttributeAfterIntegrity { attribute: AttributeType },
    /// [`crate::integrity::encode_protected`] computes these itself.
    #[error("attribute {attribute} is computed by the encoder and must not be given")]
    IntegrityAttributeGiven { attribute: AttributeType },
}

/// Where an attribute stands relative to the integrity attributes, which decides whether a
/// receiver reads it (RFC 8489 §14.5–§14.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// Before any integrity attribute: everything is read.
    Body,
    /// After MESSAGE-INTEGRITY: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are read.
    AfterIntegrity,
    /// After MESSAGE-INTEGRITY-SHA256: only FINGERPRINT is read.
    AfterIntegritySha256,
    /// After FINGERPRINT: nothing may follow.
    AfterFingerprint,
}

/// What a receiver does with the next attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    Read,
    Ignore,
    AfterFingerprint,
}

impl Section {
    /// Places the next attribute and moves past it.
    pub(crate) fn place(&mut self, attribute: AttributeType) -> Placement {
        if *self == Self::AfterFingerprint {
            return Placement::AfterFingerprint;
        }
        if attribute == AttributeType::FINGERPRINT {
            *self = Self::AfterFingerprint;
            return Placement::Read;
        }
        match (*self, attribute) {
            (Self::Body, AttributeType::MESSAGE_INTEGRITY) => {
                *self = Self::AfterIntegrity;
                Placement::Read
            }
            (Self::Body | Self::AfterIntegrity, AttributeType::MESSAGE_INTEGRITY_SHA256) => {
                *self = Self::AfterIntegritySha256;
                Placement::Read
            }
            (Self::Body, _) => Placement::Read,
            _ => Placement::Ignore,
        }
    }
}

/// One attribute as it lies in the message: its type, where its header starts, its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawAttribute<'a> {
    pub(crate) attribute_type: AttributeType,
    pub(crate) start: usize,
    pub(crate) value: &'a [u8],
}

/// Walks the attributes of a message whose header [`Header::decode`] accepted. Stops at the
/// first error.
#[derive(Debug)]
pub(crate) struct RawAttributes<'a> {
    message: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> RawAttributes<'a> {
    pub(crate) fn new(message: &'a [u8]) -> Self {
        Self { message, position: HEADER_LEN, failed: false }
    }

    fn next_attribute(&mut self) -> Result<RawAttribute<'a>, DecodeError> {
        let start = self.position;
        let header = self
            .message
            .get(start..)
            .and_then(|rest| rest.first_chunk::<ATTRIBUTE_HEADER_LEN>())
            .ok_or(DecodeError::TruncatedAttributeHeader)?;
        let [type_high, type_low, len_high, len_low] = *header;
        let attribute_type = AttributeType(u16::from_be_bytes([type_high, type_low]));
        let len = usize::from(u16::from_be_bytes([len_high, len_low]));
        let value_start = start + ATTRIBUTE_HEADER_LEN;
        // Values are padded to a multiple of 4; the padding's content is ignored (RFC 8489
        // §14: RFC 5769's vectors pad with spaces).
        let padded_end = value_start + len.next_multiple_of(4);
        let value = self
            .message
            .get(value_start..value_start + len)
            .filter(|_| padded_end <= self.message.len())
            .ok_or(DecodeError::TruncatedAttribute { attribute: attribute_type })?;
        self.position = padded_end;
        Ok(RawAttribute { attribute_type, start, value })
    }
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = Result<RawAttribute<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.message.len() {
            return None;
        }
        let next = self.next_attribute();
        self.failed = next.is_err();
        Some(next)
    }
}

/// A checked message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub class: Class,
    pub method: Method,
    pub transaction_id: TransactionId,
    /// Length of the attributes that follow the header, in bytes.
    pub attributes_len: usize,
}

impl Header {
    /// Checks that `message` is one whole STUN message (RFC 8489 §6.3): at most
    /// [`MAX_MESSAGE_LEN`] bytes, the two top bits zero, the magic cookie, a length that is a
    /// multiple of 4 and matches the bytes, a known method in a class it has. Attributes are
    /// not looked at.
    pub fn decode(message: &[u8]) -> Result<Self, DecodeError> {
        let header =
            message.first_chunk::<HEADER_LEN>().ok_or(DecodeError::TooShort { len: message.len() })?;
        if message.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len: message.len(), max: MAX_MESSAGE_LEN });
        }
        let [type_high, type_low, len_high, len_low, c0, c1, c2, c3, transaction_id @ ..] = *header;
        if type_high & 0xC0 != 0 {
            return Err(DecodeError::NotStun);
        }
        let cookie = u32::from_be_bytes([c0, c1, c2, c3]);
        if cookie != MAGIC_COOKIE {
            return Err(DecodeError::BadMagicCookie(cookie));
        }
        let declared = u16::from_be_bytes([len_high, len_low]);
        if !declared.is_multiple_of(4) {
            return Err(DecodeError::UnalignedLength(declared));
        }
        let actual = message.len() - HEADER_LEN;
        if usize::from(declared) != actual {
            return Err(DecodeError::LengthMismatch { declared: declared.into(), actual });
        }
        let (class, method_code) = split_message_type(u16::from_be_bytes([type_high, type_low]));
        let method = Method::from_code(method_code).ok_or(DecodeError::UnknownMethod(method_code))?;
        if !method.allows(class) {
            return Err(DecodeError::ClassNotAllowed { method, class });
        }
        Ok(Self { class, method, transaction_id: TransactionId(transaction_id), attributes_len: actual })
    }
}

/// A decoded message and what a server needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub message: Message,
    /// Unknown comprehension-required attribute types, each once, in order of appearance: a
    /// server answers a request that has any with 420 and an UNKNOWN-ATTRIBUTES listing them,
    /// and ignores such an indication (RFC 8489 §6.3.1–§6.3.2). Unknown comprehension-optional
    /// attributes are skipped silently.
    pub unknown_comprehension_required: Vec<AttributeType>,
}

/// A STUN message: class, method, transaction id and the attributes this crate understands,
/// in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    pub method: Method,
    pub transaction_id: TransactionId,
    pub attributes: Vec<Attribute>,
}

impl Message {
    /// A message without attributes.
    pub fn new(class: Class, method: Method, transaction_id: TransactionId) -> Self {
        Self { class, method, transaction_id, attributes: Vec::new() }
    }

    /// A success response to `request`: same method and transaction id (RFC 8489 §6.3.1.1).
    pub fn success_response(request: &Message) -> Self {
        Self::new(Class::SuccessResponse, request.method, request.transaction_id)
    }

    /// An error response to `request` with its ERROR-CODE.
    pub fn error_response(request: &Message, error: ErrorCode) -> Self {
        Self::new(Class::ErrorResponse, request.method, request.transaction_id)
            .with(Attribute::ErrorCode(error))
    }

    /// The message with one more attribute.
    #[must_use]
    pub fn with(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// Decodes one whole message: the header checks of [`Header::decode`], then every
    /// attribute. Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
    /// FINGERPRINT are ignored (RFC 8489 §14.5), as is anything but FINGERPRINT after
    /// MESSAGE-INTEGRITY-SHA256 (§14.6); anything after FINGERPRINT is an error (§14.7).
    /// Integrity and fingerprint are not checked here: see [`crate::integrity`].
    pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
        let header = Header::decode(bytes)?;
        let mut attributes = Vec::new();
        let mut unknown_comprehension_required = Vec::new();
        let mut section = Section::Body;
        for (index, raw) in RawAttributes::new(bytes).enumerate() {
            let raw = raw?;
            if index >= MAX_ATTRIBUTES {
                return Err(DecodeError::TooManyAttributes { max: MAX_ATTRIBUTES });
            }
            match section.place(raw.attribute_type) {
                Placement::Read => {}
                Placement::Ignore => continue,
                Placement::AfterFingerprint => {
                    return Err(DecodeError::AttributeAfterFingerprint { attribute: raw.attribute_type });
                }
            }
            let attribute = Attribute::decode(raw.attribute_type, raw.value, &header.transaction_id)
                .map_err(|error| DecodeError::InvalidAttribute { attribute: raw.attribute_type, error })?;
            match attribute {
                Some(attribute) => attributes.push(attribute),
                None if raw.attribute_type.is_comprehension_required()
                    && !unknown_comprehension_required.contains(&raw.attribute_type) =>
                {
                    unknown_comprehension_required.push(raw.attribute_type);
                }
                None => {}
            }
        }
        Ok(Decoded {
            message: Message {
                class: header.class,
                method: header.method,
                transaction_id: header.transaction_id,
                attributes,
            },
            unknown_comprehension_required,
        })
    }

    /// Encodes the message with its attributes as they are, integrity attributes included
    /// verbatim (to compute them, use [`crate::integrity::encode_protected`]). Refuses what the
    /// decoder would refuse or silently drop, so `decode(encode(m)) == m`.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        self.encode_into(&mut out, 0)?;
        Ok(out)
    }

    /// Encodes into `out` (cleared first), leaving room in the limits for `reserved_attributes`
    /// more attributes appended by the caller.
    pub(crate) fn encode_into(
        &self,
        out: &mut Vec<u8>,
        reserved_attributes: usize,
    ) -> Result<(), EncodeError> {
        if !self.method.allows(self.class) {
            return Err(EncodeError::ClassNotAllowed { method: self.method, class: self.class });
        }
        let count = self.attributes.len() + reserved_attributes;
        if count > MAX_ATTRIBUTES {
            return Err(EncodeError::TooManyAttributes { count, max: MAX_ATTRIBUTES });
        }
        let mut section = Section::Body;
        for attribute in &self.attributes {
            let attribute_type = attribute.attribute_type();
            match section.place(attribute_type) {
                Placement::Read => {}
                Placement::Ignore => {
                    return Err(EncodeError::AttributeAfterIntegrity { attribute: attribute_type });
                }
                Placement::AfterFingerprint => {
                    return Err(EncodeError::AttributeAfterFingerprint { attribute: attribute_type });
                }
            }
        }

        out.clear();
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]); // length, set below
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(self.transaction_id.as_bytes());
        for attribute in &self.attributes {
            let start = out.len();
            out.extend_from_slice(&attribute.attribute_type().0.to_be_bytes());
            out.extend_from_slice(&[0, 0]); // value length, set below
            attribute.encode_value(&self.transaction_id, out);
            let value_len = out.len() - start - ATTRIBUTE_HEADER_LEN;
            set_u16(out, start + 2, value_len);
            out.resize(out.len().next_multiple_of(4), 0);
            // Checked as the message grows, so a long list stops early. Typed values are far
            // below 64 KiB, so `value_len` always fitted its 16 bits.
            if out.len() > MAX_MESSAGE_LEN {
                return Err(EncodeError::TooLong { len: out.len(), max: MAX_MESSAGE_LEN });
            }
        }
        let attributes_len = out.len() - HEADER_LEN;
        set_attributes_len(out, attributes_len);
        Ok(())
    }

    fn find<'a, T>(&'a self, pick: impl Fn(&'a Attribute) -> Option<T>) -> Option<T> {
        self.attributes.iter().find_map(pick)
    }

    /// The first USERNAME.
    pub fn username(&self) -> Option<&Username> {
        self.find(|a| if let Attribute::Username(v) = a { Some(v) } else { None })
    }

    /// The first REALM.
    pub fn realm(&self) -> Option<&Realm> {
        self.find(|a| if let Attribute::Realm(v) = a { Some(v) } else { None })
    }

    /// The first NONCE.
    pub fn nonce(&self) -> Option<&Nonce> {
        self.find(|a| if let Attribute::Nonce(v) = a { Some(v) } else { None })
    }

    /// The first SOFTWARE.
    pub fn software(&self) -> Option<&Software> {
        self.find(|a| if let Attribute::Software(v) = a { Some(v) } else { None })
    }

    /// The first ERROR-CODE.
    pub fn error_code(&self) -> Option<&ErrorCode> {
        self.find(|a| if let Attribute::ErrorCode(v) = a { Some(v) } else { None })
    }

    /// The first LIFETIME, in seconds.
    pub fn lifetime(&self) -> Option<u32> {
        self.find(|a| if let Attribute::Lifetime { seconds } = a { Some(*seconds) } else { None })
    }

    /// The first XOR-MAPPED-ADDRESS.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.find(|a| if let Attribute::XorMappedAddress(v) = a { Some(*v) } else { None })
    }

    /// The first XOR-RELAYED-ADDRESS.
    pub fn xor_relayed_address(&self) -> Option<SocketAddr> {
        self.find(|a| if let Attribute::XorRelayedAddress(v) = a { Some(*v) } else { None })
    }

    /// Every XOR-PEER-ADDRESS, in order (a CreatePermission may carry several, RFC 8656 §9.1).
    pub fn xor_peer_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.attributes
            .iter()
            .filter_map(|a| if let Attribute::XorPeerAddress(v) = a { Some(*v) } else { None })
    }

    /// The first CHANNEL-NUMBER.
    pub fn channel_number(&self) -> Option<ChannelNumber> {
        self.find(|a| if let Attribute::ChannelNumber(v) = a { Some(*v) } else { None })
    }

    /// The first REQUESTED-TRANSPORT.
    pub fn requested_transport(&self) -> Option<TransportProtocol> {
        self.find(|a| if let Attribute::RequestedTransport(v) = a { Some(*v) } else { None })
    }

    /// The first DATA.
    pub fn data(&self) -> Option<&[u8]> {
        self.find(|a| if let Attribute::Data(v) = a { Some(v.as_bytes()) } else { None })
    }

    /// Whether the message has an attribute of this type.
    pub fn has(&self, attribute_type: AttributeType) -> bool {
        self.attributes.iter().any(|a| a.attribute_type() == attribute_type)
    }
}

/// Writes `value` as a big-endian u16 at `at`. Callers keep `value` below [`MAX_MESSAGE_LEN`],
/// which fits in 16 bits (checked at compile time in [`crate::limits`]).
fn set_u16(out: &mut [u8], at: usize, value: usize) {
    let value = u16::try_from(value).unwrap_or(u16::MAX);
    if let Some(slot) = out.get_mut(at..at + 2) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

/// Sets the header's message length: the bytes after the header (RFC 8489 §6), or, while
/// computing MESSAGE-INTEGRITY or FINGERPRINT, the length up to the end of that attribute.
pub(crate) fn set_attributes_len(message: &mut [u8], attributes_len: usize) {
    set_u16(message, 2, attributes_len);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[test]
    fn message_type_interleaves_class_bits() {
        // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111, indication 0x0011.
        assert_eq!(message_type(Class::Request, Method::Binding), 0x0001);
        assert_eq!(message_type(Class::SuccessResponse, Method::Binding), 0x0101);
        assert_eq!(message_type(Class::ErrorResponse, Method::Binding), 0x0111);
        assert_eq!(message_type(Class::Indication, Method::Binding), 0x0011);
        // RFC 8656: Allocate request 0x0003, Send indication 0x0016, Data indication 0x0017,
        // ChannelBind success 0x0109.
        assert_eq!(message_type(Class::Request, Method::Allocate), 0x0003);
        assert_eq!(message_type(Class::Indication, Method::Send), 0x0016);
        assert_eq!(message_type(Class::Indication, Method::Data), 0x0017);
        assert_eq!(message_type(Class::SuccessResponse, Method::ChannelBind), 0x0109);
        for method in Method::ALL {
            for class in [Class::Request, Class::Indication, Class::SuccessResponse, Class::ErrorResponse] {
                assert_eq!(split_message_type(message_type(class, method)), (class, method.code()));
            }
        }
        // The highest method number keeps every bit in place.
        assert_eq!(split_message_type(0x3EEF), (Class::Request, 0x0FFF));
        assert_eq!(split_message_type(0x3FFF), (Class::ErrorResponse, 0x0FFF));
    }

    #[test]
    fn section_rules() {
        let mut section = Section::Body;
        assert_eq!(section.place(AttributeType::USERNAME), Placement::Read);
        assert_eq!(section.place(AttributeType::MESSAGE_INTEGRITY), Placement::Read);
        assert_eq!(section.place(AttributeType::USERNAME), Placement::Ignore);
        assert_eq!(section.place(AttributeType::MESSAGE_INTEGRITY), Placement::Ignore);
        assert_eq!(section.place(AttributeType::MESSAGE_INTEGRITY_SHA256), Placement::Read);
        assert_eq!(section.place(AttributeType::MESSAGE_INTEGRITY), Placement::Ignore);
        assert_eq!(section.place(AttributeType::MESSAGE_INTEGRITY_SHA256), Placement::Ignore);
        assert_eq!(section.place(AttributeType::FINGERPRINT), Placement::Read);
        assert_eq!(section.place(AttributeType::SOFTWARE), Placement::AfterFingerprint);
        assert_eq!(section.place(AttributeType::FINGERPRINT), Placement::AfterFingerprint);
    }
}
