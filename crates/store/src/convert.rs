//! Conversions between the domain's unsigned ids and timestamps and the signed 64-bit integers
//! both databases store, shared by the backends. None of them can panic.

use rampart_core::{DeviceId, SecretHash, ServerMessageId};

use crate::{StoreError, StoreResult};

pub(crate) fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} out of range")))
}

pub(crate) fn to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("stored {what} is negative")))
}

/// An id that cannot be stored cannot exist, so lookups by it simply find nothing.
pub(crate) fn key(id: u64) -> Option<i64> {
    i64::try_from(id).ok()
}

pub(crate) fn hash_from_db(bytes: Vec<u8>) -> StoreResult<SecretHash> {
    <[u8; 32]>::try_from(bytes)
        .map(SecretHash)
        .map_err(|_| StoreError::Backend("stored hash has the wrong length".into()))
}

/// The keys of a queue read: the device, and the id to read after (0 for the head). `None`
/// when either cannot exist, so the read finds nothing.
pub(crate) fn fetch_keys(device: DeviceId, after: Option<ServerMessageId>) -> Option<(i64, i64)> {
    let after = match after {
        None => 0,
        Some(id) => key(id.0)?,
    };
    Some((key(device.0)?, after))
}
