//! What the server, as MLS delivery service, checks on bytes it cannot decrypt: the clear
//! header of group messages (group, epoch, content type), the shape of Welcomes, and key
//! packages (signed by the device that uploads them, for the key its certificate names).

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ContentType, MlsMessageBodyIn, MlsMessageIn};
use openmls_rust_crypto::RustCrypto;
use rampart_core::{AccountId, DeviceId, GroupId};

use crate::engine::validate_key_package;
use crate::{CIPHERSUITE, MlsError};

/// The kind of group message a request claims to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Application,
    Commit,
}

/// Check a group message's clear header; returns its epoch.
pub fn check_group_message(bytes: &[u8], group: &GroupId, expect: Expect) -> Result<u64, MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Malformed(e.to_string()))?;
    let (group_id, epoch, content_type) = match msg.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => {
            let p: openmls::prelude::ProtocolMessage = m.into();
            (p.group_id().clone(), p.epoch().as_u64(), p.content_type())
        }
        MlsMessageBodyIn::PublicMessage(m) => {
            if expect == Expect::Application {
                return Err(MlsError::Malformed("application messages must be encrypted".into()));
            }
            let p: openmls::prelude::ProtocolMessage = m.into();
            (p.group_id().clone(), p.epoch().as_u64(), p.content_type())
        }
        _ => return Err(MlsError::Malformed("not a group message".into())),
    };
    if group_id.as_slice() != group.as_bytes() {
        return Err(MlsError::Malformed("message names another group".into()));
    }
    let ok = match expect {
        Expect::Application => content_type == ContentType::Application,
        Expect::Commit => content_type == ContentType::Commit,
    };
    if !ok {
        return Err(MlsError::Malformed(format!("expected {expect:?}, got {content_type:?}")));
    }
    Ok(epoch)
}

/// Check that bytes are an MLS Welcome in our ciphersuite.
pub fn check_welcome(bytes: &[u8]) -> Result<(), MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Malformed(e.to_string()))?;
    match msg.extract() {
        MlsMessageBodyIn::Welcome(w) if w.ciphersuite() == CIPHERSUITE => Ok(()),
        MlsMessageBodyIn::Welcome(_) => Err(MlsError::Malformed("wrong ciphersuite".into())),
        _ => Err(MlsError::Malformed("not a Welcome".into())),
    }
}

/// Check a key package a device uploads: valid, ours, and for exactly the uploading device and
/// the key its certificate names. `last_resort` says which slot it is uploaded to.
pub fn check_key_package(
    bytes: &[u8],
    account: AccountId,
    device: DeviceId,
    signature_key: &[u8; 32],
    last_resort: bool,
) -> Result<(), MlsError> {
    let (kp, member) = validate_key_package(&RustCrypto::default(), bytes)?;
    if member.account != account || member.device != device || &member.signature_key != signature_key {
        return Err(MlsError::BadKeyPackage("signed by another device".into()));
    }
    if kp.last_resort() != last_resort {
        return Err(MlsError::BadKeyPackage(if last_resort {
            "not marked last-resort".into()
        } else {
            "a last-resort package among one-time ones".into()
        }));
    }
    Ok(())
}
