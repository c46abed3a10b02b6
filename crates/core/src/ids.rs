//! Identifiers. Newtypes so that an account id can never be passed where a device id is expected.

use std::fmt;

/// A Rampart account (one person), assigned by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u64);

/// One device of an account (phone, desktop, tablet), assigned by the server. Globally unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

/// The server's sequence number of a queued message, unique per server database, increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerMessageId(pub u64);

/// A sender-chosen 128-bit message id. Recipients deduplicate on it, which turns the server's
/// at-least-once delivery into exactly-once for the user.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes);
        Self(bytes)
    }

    /// Exactly 16 bytes, or `None`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self)
    }

    /// Parse what `Display` printed (32 hex digits).
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// An MLS group (a conversation). 16 to 32 bytes; the first 8 are the creating account's id,
/// big-endian, so every member (and the server) can tell who administers the group without
/// trusting anyone's word for it. The rest is random.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(Vec<u8>);

impl GroupId {
    pub const MIN_BYTES: usize = 16;
    pub const MAX_BYTES: usize = 32;

    /// A fresh id for a group created by `creator`.
    pub fn new<R: rand::Rng + ?Sized>(creator: AccountId, rng: &mut R) -> Self {
        let mut bytes = [0u8; 24];
        let (head, tail) = bytes.split_at_mut(8);
        head.copy_from_slice(&creator.0.to_be_bytes());
        rng.fill(tail);
        Self(bytes.to_vec())
    }

    /// 16 to 32 bytes, or `None`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        (Self::MIN_BYTES..=Self::MAX_BYTES).contains(&bytes.len()).then(|| Self(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The account that created, and administers, the group.
    pub fn creator(&self) -> AccountId {
        let mut head = [0u8; 8];
        if let Some(bytes) = self.0.get(..8) {
            head.copy_from_slice(bytes);
        }
        AccountId(u64::from_be_bytes(head))
    }

    /// Lower-case hex, for logs and the command line.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse what [`GroupId::to_hex`] printed.
    pub fn from_hex(s: &str) -> Option<Self> {
        if !s.len().is_multiple_of(2) || !s.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        Self::from_slice(&bytes?)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.to_hex())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_id_names_its_creator_and_round_trips_hex() {
        let id = GroupId::new(AccountId(0x0102_0304_0506_0708), &mut rand::rng());
        assert_eq!(id.creator(), AccountId(0x0102_0304_0506_0708));
        assert_eq!(GroupId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(GroupId::from_slice(&[0; 15]), None);
        assert_eq!(GroupId::from_slice(&[0; 33]), None);
        assert_eq!(GroupId::from_hex("zz"), None);
        assert_eq!(GroupId::from_hex("abc"), None);
    }
}
