//! E.164 phone numbers. `Debug` never prints the number: phone numbers must not reach logs.

use std::fmt;

/// A phone number in E.164 form: `+`, a country code not starting with 0, 8 to 15 digits in all.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a phone number must start with '+' and the country code, e.g. +14155550123")]
    MissingPlus,
    #[error("a phone number may contain only digits after '+' (spaces and dashes are allowed and ignored)")]
    NotDigits,
    #[error("a phone number has 8 to 15 digits in E.164 form; this one has {0}")]
    WrongLength(usize),
    #[error("a country code never starts with 0")]
    LeadingZero,
}

impl PhoneNumber {
    /// Parse user input: `+` then digits; spaces, dashes, dots and parentheses are ignored.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let input = input.trim();
        // Bound the work before anything else: nothing longer than this can be a phone number.
        if input.len() > 32 {
            return Err(PhoneError::WrongLength(input.len()));
        }
        let rest = input.strip_prefix('+').ok_or(PhoneError::MissingPlus)?;
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneError::NotDigits),
            }
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneError::WrongLength(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero);
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The canonical E.164 text, e.g. `+14155550123`. Never log it.
    pub fn as_e164(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_canonicalises() {
        let p = PhoneNumber::parse(" +1 (415) 555-0123 ").map(|p| p.as_e164().to_owned());
        assert_eq!(p, Ok("+14155550123".to_owned()));
    }

    #[test]
    fn refuses_bad_numbers() {
        assert_eq!(PhoneNumber::parse("14155550123"), Err(PhoneError::MissingPlus));
        assert_eq!(PhoneNumber::parse("+1415x550123"), Err(PhoneError::NotDigits));
        assert_eq!(PhoneNumber::parse("+1234"), Err(PhoneError::WrongLength(4)));
        assert_eq!(PhoneNumber::parse("+0123456789"), Err(PhoneError::LeadingZero));
        assert!(PhoneNumber::parse("+1234567890123456").is_err());
    }

    #[test]
    fn debug_never_shows_the_number() {
        let p = PhoneNumber::parse("+14155550123").map(|p| format!("{p:?}"));
        assert_eq!(p.as_deref(), Ok("PhoneNumber(<redacted>)"));
    }
}
