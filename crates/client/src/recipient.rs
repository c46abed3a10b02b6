//! Reading who the user means: a phone number or a username.

use rampart_core::{PhoneNumber, Username};
use rampart_proto::Recipient;

use crate::error::ClientError;

/// Parse `+14155550123` or `@name` / `name` as a recipient.
pub fn parse_recipient(to: &str) -> Result<Recipient, ClientError> {
    let to = to.trim();
    if to.starts_with('+') {
        PhoneNumber::parse(to).map(Recipient::Phone).map_err(|e| ClientError::Input(e.to_string()))
    } else {
        Username::parse(to).map(Recipient::Username).map_err(|e| ClientError::Input(e.to_string()))
    }
}
