//! Counters of the relay, read as a plain snapshot ([`RelayStats`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most users with their own malformed-media counter; further users are counted under
/// [`OTHER_USERS`], so a stream of fresh credentials cannot grow the table without bound.
pub const MAX_COUNTED_USERS: usize = 4096;
/// The key that collects the malformed-media counts of users beyond [`MAX_COUNTED_USERS`].
pub const OTHER_USERS: &str = "(other)";

/// A snapshot of the relay's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Allocations alive now.
    pub allocations: u64,
    /// Allocations made since start.
    pub allocations_total: u64,
    /// Datagrams relayed from clients to peers.
    pub relayed_to_peer: u64,
    /// Datagrams relayed from peers to clients.
    pub relayed_to_client: u64,
    /// Client datagrams to peers dropped because they are not well-formed SRTP/SRTCP.
    pub dropped_malformed: u64,
    /// Datagrams dropped because their allocation was over its bandwidth.
    pub dropped_over_bandwidth: u64,
    /// Datagrams dropped because no permission (or channel) covered the peer.
    pub dropped_no_permission: u64,
    /// Datagrams on the listening port that are neither valid STUN nor ChannelData, or that
    /// belong to no allocation, and oversized peer datagrams.
    pub dropped_garbage: u64,
    /// Requests refused for bad or expired credentials (401 after a first attempt).
    pub rejected_auth: u64,
    /// Allocate requests refused by the per-user quota (486).
    pub rejected_quota: u64,
    /// TCP and TLS connections alive now.
    pub stream_connections: u64,
    /// TCP and TLS connections closed on accept because `max_stream_connections` (in all, or
    /// `max_stream_connections_per_ip` from one address) were open.
    pub rejected_connections: u64,
    /// Malformed-media drops per user.
    pub per_user_malformed: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) allocations: AtomicU64,
    pub(crate) allocations_total: AtomicU64,
    pub(crate) relayed_to_peer: AtomicU64,
    pub(crate) relayed_to_client: AtomicU64,
    pub(crate) dropped_malformed: AtomicU64,
    pub(crate) dropped_over_bandwidth: AtomicU64,
    pub(crate) dropped_no_permission: AtomicU64,
    pub(crate) dropped_garbage: AtomicU64,
    pub(crate) rejected_auth: AtomicU64,
    pub(crate) rejected_quota: AtomicU64,
    pub(crate) stream_connections: AtomicU64,
    pub(crate) rejected_connections: AtomicU64,
    per_user_malformed: Mutex<BTreeMap<String, u64>>,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn malformed(&self, user: &str) {
        bump(&self.dropped_malformed);
        // A poisoned lock only means another thread panicked while counting; the map is
        // still a valid map, so keep counting.
        let mut map = self.per_user_malformed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if map.contains_key(user) || map.len() < MAX_COUNTED_USERS { user } else { OTHER_USERS };
        *map.entry(key.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> RelayStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStats {
            allocations: get(&self.allocations),
            allocations_total: get(&self.allocations_total),
            relayed_to_peer: get(&self.relayed_to_peer),
            relayed_to_client: get(&self.relayed_to_client),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_over_bandwidth: get(&self.dropped_over_bandwidth),
            dropped_no_permission: get(&self.dropped_no_permission),
            dropped_garbage: get(&self.dropped_garbage),
            rejected_auth: get(&self.rejected_auth),
            rejected_quota: get(&self.rejected_quota),
            stream_connections: get(&self.stream_connections),
            rejected_connections: get(&self.rejected_connections),
            per_user_malformed: self
                .per_user_malformed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}
