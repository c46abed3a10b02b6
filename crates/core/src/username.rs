//! Optional public usernames, so people can be reached without sharing a phone number.

use std::fmt;

/// A username: 3–32 characters, lowercase ASCII letters, digits and `_`, starting with a letter.
/// Input may carry a leading `@` and uppercase letters; both are normalised away.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Username(String);

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("a username has 3 to 32 characters")]
    Length,
    #[error("a username starts with a letter and has only letters, digits and '_'")]
    Characters,
}

impl Username {
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        let name = input.trim();
        let name = name.strip_prefix('@').unwrap_or(name);
        if !(3..=32).contains(&name.len()) {
            return Err(UsernameError::Length);
        }
        let name = name.to_ascii_lowercase();
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(UsernameError::Characters);
        }
        Ok(Self(name))
    }

    /// The normalised name without `@`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(Username::parse("@Alice_1").map(|u| u.to_string()), Ok("@alice_1".into()));
    }

    #[test]
    fn refuses() {
        assert_eq!(Username::parse("ab"), Err(UsernameError::Length));
        assert_eq!(Username::parse("1abc"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("ab-c"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("abcé"), Err(UsernameError::Characters));
    }
}
