//! The server side of one client connection, as a state machine.
//!
//! A connection starts `Anonymous`. The only ways out are a successful authentication
//! (`Authenticated`) or starting a device link (`AwaitingLink`, which then waits for the push
//! that carries the new device's credentials). Each request kind is allowed in exactly the
//! states listed in [`Session::admit`]; everything else is refused with a reason the client can
//! show. The state carries the identity, so code that needs "the authenticated device" can only
//! get it from the `Authenticated` variant.

use crate::ids::{AccountId, DeviceId};

/// What a request needs of the connection it arrives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// Allowed before authentication: register, verify, begin-link.
    Anonymous,
    /// Authenticate with device credentials.
    Authenticate,
    /// Needs an authenticated device: send, ack, devices, approve-link.
    Device,
    /// Allowed in every open state.
    Always,
}

/// Where a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    Anonymous,
    AwaitingLink,
    Authenticated { account: AccountId, device: DeviceId },
}

/// Why a request is refused in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("authenticate first: this request needs device credentials")]
    NotAuthenticated,
    #[error("this connection is already authenticated")]
    AlreadyAuthenticated,
    #[error("this connection is waiting for a device link approval and accepts nothing else")]
    AwaitingLink,
}

impl Session {
    /// May a request of this class run now?
    pub fn admit(&self, class: RequestClass) -> Result<(), SessionError> {
        match (self, class) {
            (_, RequestClass::Always) => Ok(()),
            (Session::AwaitingLink, _) => Err(SessionError::AwaitingLink),
            (Session::Anonymous, RequestClass::Anonymous | RequestClass::Authenticate) => Ok(()),
            (Session::Anonymous, RequestClass::Device) => Err(SessionError::NotAuthenticated),
            (Session::Authenticated { .. }, RequestClass::Device) => Ok(()),
            (Session::Authenticated { .. }, RequestClass::Anonymous | RequestClass::Authenticate) => {
                Err(SessionError::AlreadyAuthenticated)
            }
        }
    }

    /// The authenticated identity, if any.
    pub fn device(&self) -> Option<(AccountId, DeviceId)> {
        match self {
            Session::Authenticated { account, device } => Some((*account, *device)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_cannot_send() {
        assert_eq!(Session::Anonymous.admit(RequestClass::Device), Err(SessionError::NotAuthenticated));
    }

    #[test]
    fn authenticated_cannot_reauthenticate_or_register() {
        let s = Session::Authenticated { account: AccountId(1), device: DeviceId(2) };
        assert!(s.admit(RequestClass::Authenticate).is_err());
        assert!(s.admit(RequestClass::Anonymous).is_err());
        assert!(s.admit(RequestClass::Device).is_ok());
    }

    #[test]
    fn awaiting_link_accepts_only_always() {
        assert!(Session::AwaitingLink.admit(RequestClass::Always).is_ok());
        assert!(Session::AwaitingLink.admit(RequestClass::Device).is_err());
        assert!(Session::AwaitingLink.admit(RequestClass::Anonymous).is_err());
    }
}
