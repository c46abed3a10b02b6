//! Conversions between the domain's unsigned ids and timestamps and the signed 64-bit integers
//! both databases store, shared by the backends. None of them can panic.

use rampart_core::call::CallId;
use rampart_core::{DeviceId, SecretHash, ServerMessageId};

use crate::{CALL_KEEP_AFTER_EXPIRY_MS, MAX_MISFIT_REASON, StoreError, StoreResult, UnixMillis};

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

pub(crate) fn call_id_from_db(bytes: Vec<u8>) -> StoreResult<CallId> {
    <[u8; 16]>::try_from(bytes)
        .map(CallId)
        .map_err(|_| StoreError::Backend("stored call id has the wrong length".into()))
}

pub(crate) fn check_sentinel_fields(fields: &[&str]) -> StoreResult<()> {
    if fields.iter().any(|f| f.len() > crate::MAX_SENTINEL_FIELD) {
        return Err(StoreError::Forbidden(format!(
            "a Sentinel action's fields are at most {} bytes",
            crate::MAX_SENTINEL_FIELD
        )));
    }
    Ok(())
}

pub(crate) fn check_sightings(sightings: &[crate::SentinelSighting]) -> StoreResult<()> {
    let long = |f: &Option<String>| f.as_ref().is_some_and(|f| f.len() > crate::MAX_SIGHTING_FIELD);
    if sightings.iter().any(|s| long(&s.network) || long(&s.address) || long(&s.client)) {
        return Err(StoreError::Forbidden(format!(
            "a sighting's network, address and client are at most {} bytes",
            crate::MAX_SIGHTING_FIELD
        )));
    }
    Ok(())
}

pub(crate) fn check_sighting_query(query: &crate::SightingQuery) -> StoreResult<()> {
    if query.accounts.len() > crate::MAX_SIGHTING_KEYS
        || query.networks.len() > crate::MAX_SIGHTING_KEYS
        || query.clients.len() > crate::MAX_SIGHTING_KEYS
    {
        return Err(StoreError::Forbidden(format!(
            "a sighting query names at most {} accounts, networks and clients each",
            crate::MAX_SIGHTING_KEYS
        )));
    }
    Ok(())
}

/// A sighting's kind as the store keeps it, or a corrupt row.
pub(crate) fn sighting_kind(text: &str) -> StoreResult<crate::SightingKind> {
    crate::SightingKind::parse(text)
        .ok_or_else(|| StoreError::Backend(format!("stored sighting kind {text:?} is unknown")))
}

pub(crate) fn check_misfit_reason(reason: &str) -> StoreResult<()> {
    if reason.len() > MAX_MISFIT_REASON {
        return Err(StoreError::Forbidden(format!("a misfit reason is at most {MAX_MISFIT_REASON} bytes")));
    }
    Ok(())
}

/// Calls with `expires_at` below this are purged at `now`; `None` when none can be yet.
pub(crate) fn call_purge_cutoff(now: UnixMillis) -> StoreResult<Option<i64>> {
    now.checked_sub(CALL_KEEP_AFTER_EXPIRY_MS).map(|cutoff| to_i64(cutoff, "time")).transpose()
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

/// The migrations a database still needs, oldest first, given the versions it has applied. A
/// database newer than this build is an error: running old code on it could corrupt it.
pub(crate) fn pending_migrations<'a, V>(
    applied: &[V],
    all: &'a [(V, &'a str)],
) -> StoreResult<Vec<(V, &'a str)>>
where
    V: Copy + Ord + std::fmt::Display,
{
    if let (Some(&newest), Some(&(known, _))) = (applied.iter().max(), all.last())
        && newest > known
    {
        return Err(StoreError::Backend(format!(
            "the database has schema version {newest}, newer than this build knows ({known})"
        )));
    }
    Ok(all.iter().filter(|(v, _)| !applied.contains(v)).copied().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{QueueLimits, StoreError, WhenFull, room_for};

    #[test]
    fn one_room_rule_for_every_backend() {
        let l = QueueLimits { per_device: 10, per_sender: 3 };
        assert!(room_for(WhenFull::Fail(l), 9, Some(2)).unwrap());
        assert!(matches!(room_for(WhenFull::Fail(l), 10, Some(0)), Err(StoreError::QueueFull { max: 10 })));
        assert!(matches!(
            room_for(WhenFull::Fail(l), 5, Some(3)),
            Err(StoreError::SenderShareFull { max: 3 })
        ));
        // The device's own account has no share.
        assert!(room_for(WhenFull::Fail(l), 5, None).unwrap());
        assert!(!room_for(WhenFull::Skip(l), 10, None).unwrap());
        assert!(!room_for(WhenFull::Skip(l), 5, Some(3)).unwrap());
        assert!(room_for(WhenFull::Ignore, 1_000, Some(1_000)).unwrap());
    }

    use super::*;

    #[test]
    fn plans_missing_migrations_and_refuses_newer_databases() {
        let all: &[(i64, &str)] = &[(1, "a"), (2, "b"), (3, "c")];
        let versions =
            |p: StoreResult<Vec<(i64, &str)>>| p.map(|v| v.iter().map(|m| m.0).collect::<Vec<_>>()).ok();
        assert_eq!(versions(pending_migrations(&[], all)), Some(vec![1, 2, 3]));
        assert_eq!(versions(pending_migrations(&[1, 2], all)), Some(vec![3]));
        assert_eq!(versions(pending_migrations(&[1, 2, 3], all)), Some(vec![]));
        assert!(pending_migrations(&[1, 2, 3, 4], all).is_err());
    }
}
