//! Time-limited TURN credentials from a shared secret: the "TURN REST API" scheme
//! (draft-uberti-behave-turn-rest-00 §2.2) that coturn checks with `--use-auth-secret` and
//! `--static-auth-secret`.
//!
//! The service that hands out credentials and the relay share a secret and nothing else:
//!
//! - username = `"<expiry>:<id>"`, the expiry in Unix seconds, the id naming the user;
//! - password = base64(HMAC-SHA1(secret, username)).
//!
//! The relay recomputes the password from the username, so it keeps no user table, and refuses
//! usernames whose expiry has passed. The password then enters the long-term credential
//! mechanism like any other: key = MD5(username ":" realm ":" password).
//!
//! Time is an argument (`now`, Unix seconds): this crate reads no clock.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::attribute::Username;
use crate::integrity::IntegrityKey;

/// Separator between expiry and id (coturn's default `--rest-api-separator`).
pub const SEPARATOR: char = ':';

/// Longest id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Most digits of the expiry: `u64::MAX` has 20.
const MAX_EXPIRY_DIGITS: usize = 20;

/// Why credentials cannot be minted or are refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error("shared secret of {len} bytes is shorter than the minimum of {min}")]
    SecretTooShort { len: usize, min: usize },
    #[error("id must be 1 to {MAX_ID_LEN} printable ASCII characters other than ':'")]
    InvalidId,
    #[error("expiry time overflows")]
    ExpiryOverflow,
    #[error("username is not \"<expiry>:<id>\"")]
    Malformed,
    #[error("credentials expired at {expired_at}, it is now {now}")]
    Expired { expired_at: u64, now: u64 },
}

/// The secret shared by the credential service and the relay. Wiped from memory when dropped;
/// never printed.
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// Shortest accepted secret: anyone who guesses it mints credentials, so it must be at
    /// least 128 bits (of random bytes; a pass phrase would need more).
    pub const MIN_LEN: usize = 16;

    /// Checks the length.
    pub fn new(secret: Vec<u8>) -> Result<Self, CredentialError> {
        let secret = Zeroizing::new(secret);
        if secret.len() < Self::MIN_LEN {
            return Err(CredentialError::SecretTooShort { len: secret.len(), min: Self::MIN_LEN });
        }
        Ok(Self(secret))
    }

    /// base64(HMAC-SHA1(secret, username)).
    fn password(&self, username: &str) -> Zeroizing<String> {
        // HMAC takes keys of any length: this never fails. If it did, the empty password
        // derived here would match nothing a client could compute.
        let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(&self.0) else {
            return Zeroizing::new(String::new());
        };
        mac.update(username.as_bytes());
        let tag = Zeroizing::new(<[u8; 20]>::from(mac.finalize().into_bytes()));
        Zeroizing::new(BASE64.encode(*tag))
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Credentials handed to a client.
pub struct RestCredential {
    username: Username,
    password: Zeroizing<String>,
    expires_at: u64,
}

impl RestCredential {
    /// The username, `"<expiry>:<id>"`.
    pub fn username(&self) -> &Username {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// When the credentials stop being accepted, in Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl fmt::Debug for RestCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestCredential")
            .field("username", &self.username)
            .field("password", &"..")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Mints credentials for `id` valid from `now` for `ttl_secs` seconds (both in Unix seconds).
/// The id is 1 to [`MAX_ID_LEN`] printable ASCII characters other than `:`.
pub fn mint(
    secret: &SharedSecret,
    id: &str,
    now: u64,
    ttl_secs: u64,
) -> Result<RestCredential, CredentialError> {
    if !valid_id(id) {
        return Err(CredentialError::InvalidId);
    }
    let expires_at = now.checked_add(ttl_secs).ok_or(CredentialError::ExpiryOverflow)?;
    // At most 20 digits, a colon and 128 bytes: far below USERNAME's 513-byte limit.
    let username =
        Username::new(format!("{expires_at}{SEPARATOR}{id}")).map_err(|_| CredentialError::InvalidId)?;
    let password = secret.password(username.as_str());
    Ok(RestCredential { username, password, expires_at })
}

/// A username the relay accepted, with the password it stands for.
pub struct RestUser {
    username: String,
    id_start: usize,
    expires_at: u64,
    password: Zeroizing<String>,
}

impl RestUser {
    /// The id the credentials were minted for.
    pub fn id(&self) -> &str {
        self.username.get(self.id_start..).unwrap_or_default()
    }

    /// When the credentials stop being accepted, in Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The long-term credential key to check the request's MESSAGE-INTEGRITY with. The
    /// password is base64, ASCII without control characters, which SASLprep leaves unchanged.
    pub fn integrity_key(&self, realm: &str) -> IntegrityKey {
        IntegrityKey::long_term_prepared(&self.username, realm, &self.password)
    }
}

impl fmt::Debug for RestUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestUser")
            .field("id", &self.id())
            .field("expires_at", &self.expires_at)
            .field("password", &"..")
            .finish()
    }
}

/// Checks a USERNAME received from a client: its form `"<expiry>:<id>"` and that `now` (Unix
/// seconds) is not past the expiry (coturn's rule: the expiry second itself is still valid).
/// Whether the client knows the password is decided by MESSAGE-INTEGRITY, checked with
/// [`RestUser::integrity_key`].
pub fn verify(secret: &SharedSecret, username: &str, now: u64) -> Result<RestUser, CredentialError> {
    let (expiry, id) = username.split_once(SEPARATOR).ok_or(CredentialError::Malformed)?;
    if expiry.is_empty() || expiry.len() > MAX_EXPIRY_DIGITS || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CredentialError::Malformed);
    }
    let expires_at: u64 = expiry.parse().map_err(|_| CredentialError::Malformed)?;
    if !valid_id(id) {
        return Err(CredentialError::Malformed);
    }
    if now > expires_at {
        return Err(CredentialError::Expired { expired_at: expires_at, now });
    }
    Ok(RestUser {
        username: username.to_owned(),
        id_start: expiry.len() + SEPARATOR.len_utf8(),
        expires_at,
        password: secret.password(username),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn secret() -> SharedSecret {
        SharedSecret::new(b"0123456789abcdef-shared-secret".to_vec()).unwrap()
    }

    #[test]
    fn password_matches_an_independent_computation() {
        // base64(HMAC-SHA1("0123456789abcdef-shared-secret", "1700000600:device-42")), computed
        // with Python's hmac and base64 modules, as coturn computes it.
        let credential = mint(&secret(), "device-42", 1_700_000_000, 600).unwrap();
        assert_eq!(credential.username().as_str(), "1700000600:device-42");
        assert_eq!(credential.password(), "7UKvHd26djT4866O9gAe6Psllbc=");
        assert_eq!(credential.expires_at(), 1_700_000_600);
    }

    #[test]
    fn minted_credentials_verify_until_expiry() {
        let credential = mint(&secret(), "device-42", 1_700_000_000, 600).unwrap();
        for now in [1_700_000_000, 1_700_000_600] {
            let user = verify(&secret(), credential.username().as_str(), now).unwrap();
            assert_eq!(user.id(), "device-42");
            assert_eq!(user.expires_at(), 1_700_000_600);
            let expected =
                IntegrityKey::long_term(credential.username().as_str(), "realm", credential.password());
            assert_eq!(format!("{:?}", user.integrity_key("realm")), "IntegrityKey(..)");
            assert_eq!(user.integrity_key("realm").as_bytes(), expected.unwrap().as_bytes());
        }
        assert_eq!(
            verify(&secret(), credential.username().as_str(), 1_700_000_601).map(|u| u.expires_at()),
            Err(CredentialError::Expired { expired_at: 1_700_000_600, now: 1_700_000_601 })
        );
    }

    #[test]
    fn another_secret_derives_another_password() {
        let credential = mint(&secret(), "device-42", 0, 60).unwrap();
        let other = SharedSecret::new(b"another-secret-of-32-bytes......".to_vec()).unwrap();
        let user = verify(&other, credential.username().as_str(), 0).unwrap();
        let expected =
            IntegrityKey::long_term(credential.username().as_str(), "realm", credential.password());
        assert_ne!(user.integrity_key("realm").as_bytes(), expected.unwrap().as_bytes());
    }

    #[test]
    fn malformed_usernames_are_refused() {
        for username in [
            "",
            "device-42",
            ":device-42",
            "1700000600:",
            "1700000600device-42",
            "-1:device-42",
            "+1700000600:device-42",
            "17000006OO:device-42",
            "18446744073709551616:device-42",  // u64::MAX + 1
            "000000000000000000001:device-42", // 21 digits
            "1700000600:device 42",
            "1700000600:device:42",
            "1700000600:d\u{e9}vice",
        ] {
            assert_eq!(
                verify(&secret(), username, 0).map(|u| u.id().to_owned()),
                Err(CredentialError::Malformed),
                "{username:?}"
            );
        }
        let long_id = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            verify(&secret(), &format!("1:{long_id}"), 0).map(|_| ()),
            Err(CredentialError::Malformed)
        );
        // The largest expiry parses.
        assert_eq!(
            verify(&secret(), "18446744073709551615:x", u64::MAX).map(|u| u.expires_at()),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn minting_checks_its_inputs() {
        for id in ["", "a:b", "a b", "caf\u{e9}", &"x".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(mint(&secret(), id, 0, 60).map(|_| ()), Err(CredentialError::InvalidId), "{id:?}");
        }
        mint(&secret(), &"x".repeat(MAX_ID_LEN), 0, 60).unwrap();
        assert_eq!(mint(&secret(), "id", u64::MAX, 1).map(|_| ()), Err(CredentialError::ExpiryOverflow));
        assert_eq!(
            SharedSecret::new(vec![1; 15]).map(|_| ()),
            Err(CredentialError::SecretTooShort { len: 15, min: 16 })
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let credential = mint(&secret(), "device-42", 0, 60).unwrap();
        let password = credential.password().to_owned();
        let printed = format!(
            "{credential:?} {:?} {:?}",
            secret(),
            verify(&secret(), credential.username().as_str(), 0)
        );
        assert!(!printed.contains(&password), "{printed}");
        assert!(!printed.contains("shared-secret"), "{printed}");
        assert!(printed.contains("device-42"), "{printed}");
    }
}
