//! The rules of one allocation (RFC 8656 §9, §11, §12): permissions, channel bindings and the
//! bandwidth cap. Time is an argument, so every expiry is tested without sleeping; the server
//! holds one [`AllocationState`] per allocation behind a lock shared by the task reading the
//! listening port and the task reading the relayed port.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rampart_core::ratelimit::TokenBucket;
use rampart_turn::ChannelNumber;

/// How long a permission lasts after it was installed or refreshed (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// How long a channel binding lasts after it was made or refreshed (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// After a binding expires, neither its number nor its peer may be bound to anything else for
/// this long (RFC 8656 §12: "for a period of 5 minutes"), so late packets are not misdelivered.
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);
/// Most peer addresses one allocation may permit at once. A call needs one or two; the cap
/// bounds the memory one credential can make the relay hold.
pub const MAX_PERMISSIONS: usize = 64;
/// Most channel bindings (cooling ones included) per allocation, for the same reason.
pub const MAX_CHANNELS: usize = 64;

/// Why a ChannelBind is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The number is bound to another peer, or the peer to another number (400).
    #[error("channel number or peer already bound to something else")]
    Conflict,
    /// The allocation has [`MAX_CHANNELS`] bindings (508).
    #[error("too many channels")]
    Capacity,
}

/// The allocation has [`MAX_PERMISSIONS`] permissions (508).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many permissions")]
pub struct PermissionCapacity;

#[derive(Debug, Clone, Copy)]
struct Binding {
    peer: SocketAddr,
    expires: Instant,
}

/// What to do with a datagram a peer sent to the relayed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToClient {
    /// Relay it in ChannelData on this channel.
    Channel(ChannelNumber),
    /// Relay it in a Data indication (no channel is bound to the peer).
    Indication,
    /// Drop it: no permission for the peer's IP address.
    NoPermission,
    /// Drop it: over the allocation's bandwidth.
    OverBandwidth,
}

/// What to do with a datagram the client sent towards a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToPeer {
    /// Send it to this peer.
    Relay(SocketAddr),
    /// Drop it: no permission for the peer (or no binding for the channel).
    NoPermission,
    /// Drop it: over the allocation's bandwidth.
    OverBandwidth,
}

/// The mutable state of one allocation.
#[derive(Debug)]
pub struct AllocationState {
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    /// Active and cooling bindings by number; `by_peer` is its inverse.
    channels: HashMap<ChannelNumber, Binding>,
    by_peer: HashMap<SocketAddr, ChannelNumber>,
    /// `None` when the relay runs without a bandwidth cap.
    bucket: Option<TokenBucket>,
}

impl AllocationState {
    /// A fresh allocation living `lifetime` from `now`, capped at `bandwidth_bytes_per_sec`
    /// (0 = no cap). The bucket holds one second of traffic, and at least a few maximal
    /// datagrams so that a low cap still passes whole packets.
    pub fn new(now: Instant, lifetime: Duration, bandwidth_bytes_per_sec: u64) -> Self {
        let bucket = (bandwidth_bytes_per_sec > 0).then(|| {
            let burst = bandwidth_bytes_per_sec.max(4 * rampart_turn::limits::MAX_DATA_LEN as u64);
            let burst = u32::try_from(burst).unwrap_or(u32::MAX);
            TokenBucket::new(burst, bandwidth_bytes_per_sec as f64, now)
        });
        Self {
            expires: now + lifetime,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            by_peer: HashMap::new(),
            bucket,
        }
    }

    /// When the allocation expires unless refreshed.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// Sets the allocation to live `lifetime` from `now` (a Refresh).
    pub fn refresh(&mut self, now: Instant, lifetime: Duration) {
        self.expires = now + lifetime;
    }

    /// Whether the allocation has expired.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires
    }

    /// Installs or refreshes permissions for all of `peers`, or for none if that would exceed
    /// [`MAX_PERMISSIONS`] (RFC 8656 §9.2: a CreatePermission succeeds or fails as a whole).
    pub fn permit(&mut self, peers: &[IpAddr], now: Instant) -> Result<(), PermissionCapacity> {
        self.prune(now);
        let new = peers
            .iter()
            .enumerate()
            .filter(|(i, ip)| {
                !self.permissions.contains_key(ip) && !peers.get(..*i).unwrap_or_default().contains(ip)
            })
            .count();
        if self.permissions.len() + new > MAX_PERMISSIONS {
            return Err(PermissionCapacity);
        }
        for ip in peers {
            self.permissions.insert(*ip, now + PERMISSION_LIFETIME);
        }
        Ok(())
    }

    /// Whether a permission covers `ip` at `now`.
    pub fn is_permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|expires| now < *expires)
    }

    /// Binds `channel` to `peer` or refreshes that binding, and installs or refreshes the
    /// permission for the peer's IP (RFC 8656 §12.2). Refused if the number is bound to another
    /// peer or the peer to another number, including bindings expired less than
    /// [`CHANNEL_COOLDOWN`] ago.
    pub fn bind_channel(
        &mut self,
        channel: ChannelNumber,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<(), BindError> {
        self.prune(now);
        if self.channels.get(&channel).is_some_and(|b| b.peer != peer)
            || self.by_peer.get(&peer).is_some_and(|c| *c != channel)
        {
            return Err(BindError::Conflict);
        }
        let new_channel = !self.channels.contains_key(&channel);
        if new_channel && self.channels.len() >= MAX_CHANNELS {
            return Err(BindError::Capacity);
        }
        let new_permission = !self.permissions.contains_key(&peer.ip());
        if new_permission && self.permissions.len() >= MAX_PERMISSIONS {
            return Err(BindError::Capacity);
        }
        self.channels.insert(channel, Binding { peer, expires: now + CHANNEL_LIFETIME });
        self.by_peer.insert(peer, channel);
        self.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(())
    }

    fn active_channel_peer(&self, channel: ChannelNumber, now: Instant) -> Option<SocketAddr> {
        self.channels.get(&channel).filter(|b| now < b.expires).map(|b| b.peer)
    }

    fn take_bandwidth(&mut self, bytes: usize, now: Instant) -> bool {
        match &mut self.bucket {
            None => true,
            Some(bucket) => bucket.try_take(u32::try_from(bytes).unwrap_or(u32::MAX), now).is_ok(),
        }
    }

    /// A Send indication's data for `peer`, `bytes` long.
    pub fn send_to_peer(&mut self, peer: SocketAddr, bytes: usize, now: Instant) -> ToPeer {
        if !self.is_permitted(peer.ip(), now) {
            return ToPeer::NoPermission;
        }
        if !self.take_bandwidth(bytes, now) {
            return ToPeer::OverBandwidth;
        }
        ToPeer::Relay(peer)
    }

    /// ChannelData on `channel`, `bytes` long: relayed only over an active binding whose peer
    /// still has a permission.
    pub fn channel_to_peer(&mut self, channel: ChannelNumber, bytes: usize, now: Instant) -> ToPeer {
        match self.active_channel_peer(channel, now) {
            Some(peer) => self.send_to_peer(peer, bytes, now),
            None => ToPeer::NoPermission,
        }
    }

    /// A datagram of `bytes` from `peer` to the relayed address (RFC 8656 §10.3, §12.7).
    pub fn from_peer(&mut self, peer: SocketAddr, bytes: usize, now: Instant) -> ToClient {
        if !self.is_permitted(peer.ip(), now) {
            return ToClient::NoPermission;
        }
        if !self.take_bandwidth(bytes, now) {
            return ToClient::OverBandwidth;
        }
        let channel = self
            .by_peer
            .get(&peer)
            .copied()
            .filter(|channel| self.active_channel_peer(*channel, now).is_some());
        match channel {
            Some(channel) => ToClient::Channel(channel),
            None => ToClient::Indication,
        }
    }

    /// Forgets expired permissions and bindings whose cool-down is over.
    pub fn prune(&mut self, now: Instant) {
        self.permissions.retain(|_, expires| now < *expires);
        let by_peer = &mut self.by_peer;
        self.channels.retain(|_, binding| {
            let keep = now < binding.expires + CHANNEL_COOLDOWN;
            if !keep {
                by_peer.remove(&binding.peer);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn channel(number: u16) -> ChannelNumber {
        ChannelNumber::new(number).unwrap()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn permissions_expire_after_300_seconds_and_refresh() {
        let t0 = Instant::now();
        let mut state = AllocationState::new(t0, 600 * SEC, 0);
        let a = peer("192.0.2.1:4000");
        assert_eq!(state.from_peer(a, 10, t0), ToClient::NoPermission);
        assert_eq!(state.send_to_peer(a, 10, t0), ToPeer::NoPermission);
        state.permit(&[a.ip()], t0).unwrap();
        // Any port of the permitted IP.
        assert_eq!(state.from_peer(peer("192.0.2.1:9"), 10, t0), ToClient::Indication);
        assert_eq!(state.send_to_peer(a, 10, t0 + 299 * SEC), ToPeer::Relay(a));
        assert_eq!(state.send_to_peer(a, 10, t0 + 300 * SEC), ToPeer::NoPermission);
        state.permit(&[a.ip()], t0 + 200 * SEC).unwrap();
        assert_eq!(state.send_to_peer(a, 10, t0 + 499 * SEC), ToPeer::Relay(a));
        assert_eq!(state.from_peer(a, 10, t0 + 500 * SEC), ToClient::NoPermission);
    }

    #[test]
    fn permission_capacity_is_all_or_nothing() {
        let t0 = Instant::now();
        let mut state = AllocationState::new(t0, 600 * SEC, 0);
        let ips: Vec<IpAddr> =
            (0..MAX_PERMISSIONS as u32).map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes())).collect();
        // Duplicates in one request count once.
        let mut doubled = ips.clone();
        doubled.extend_from_slice(&ips);
        state.permit(&doubled, t0).unwrap();
        state.permit(&ips, t0).unwrap();
        let extra = [ips[0], IpAddr::from([192, 0, 2, 9])];
        assert_eq!(state.permit(&extra, t0), Err(PermissionCapacity));
        assert!(!state.is_permitted(extra[1], t0));
        // Once they expire there is room again.
        state.permit(&extra, t0 + 300 * SEC).unwrap();
        assert!(state.is_permitted(extra[1], t0 + 300 * SEC));
    }

    #[test]
    fn channel_rules() {
        let t0 = Instant::now();
        let mut state = AllocationState::new(t0, 3600 * SEC, 0);
        let (a, b) = (peer("192.0.2.1:4000"), peer("192.0.2.2:4000"));
        state.bind_channel(channel(0x4000), a, t0).unwrap();
        // Binding installs the permission.
        assert!(state.is_permitted(a.ip(), t0));
        assert_eq!(state.channel_to_peer(channel(0x4000), 10, t0), ToPeer::Relay(a));
        assert_eq!(state.from_peer(a, 10, t0), ToClient::Channel(channel(0x4000)));
        // Another port of the same IP is permitted but not on the channel.
        assert_eq!(state.from_peer(peer("192.0.2.1:4001"), 10, t0), ToClient::Indication);
        assert_eq!(state.channel_to_peer(channel(0x4001), 10, t0), ToPeer::NoPermission);
        // Refreshing the same pair is fine, rebinding either side is not.
        state.bind_channel(channel(0x4000), a, t0 + SEC).unwrap();
        assert_eq!(state.bind_channel(channel(0x4000), b, t0), Err(BindError::Conflict));
        assert_eq!(state.bind_channel(channel(0x4001), a, t0), Err(BindError::Conflict));
        state.bind_channel(channel(0x4001), b, t0).unwrap();

        // The binding (refreshed at t0 + 1 s) lasts 600 s; the permission (refreshed at the same
        // time) 300 s, so at 400 s the channel is bound but the peer no longer permitted.
        assert_eq!(state.channel_to_peer(channel(0x4000), 10, t0 + 400 * SEC), ToPeer::NoPermission);
        state.permit(&[a.ip()], t0 + 400 * SEC).unwrap();
        assert_eq!(state.channel_to_peer(channel(0x4000), 10, t0 + 400 * SEC), ToPeer::Relay(a));
        // Expired binding: data goes by indication, and the pair stays reserved for 5 minutes.
        let expired = t0 + 601 * SEC;
        assert_eq!(state.channel_to_peer(channel(0x4000), 10, expired), ToPeer::NoPermission);
        assert_eq!(state.from_peer(a, 10, expired), ToClient::Indication);
        assert_eq!(state.bind_channel(channel(0x4000), b, expired), Err(BindError::Conflict));
        assert_eq!(state.bind_channel(channel(0x4002), a, expired), Err(BindError::Conflict));
        // After the cool-down both are free.
        let later = t0 + (601 + 300) * SEC;
        state.bind_channel(channel(0x4002), a, later).unwrap();
        assert_eq!(state.channel_to_peer(channel(0x4002), 10, later), ToPeer::Relay(a));
    }

    #[test]
    fn channel_capacity() {
        let t0 = Instant::now();
        let mut state = AllocationState::new(t0, 600 * SEC, 0);
        for i in 0..MAX_CHANNELS as u16 {
            state
                .bind_channel(channel(0x4000 + i), SocketAddr::from(([192, 0, 2, 1], 1000 + i)), t0)
                .unwrap();
        }
        let over = SocketAddr::from(([192, 0, 2, 1], 999));
        assert_eq!(state.bind_channel(channel(0x4FFF), over, t0), Err(BindError::Capacity));
    }

    #[test]
    fn bandwidth_cap_drops_excess_and_refills() {
        let t0 = Instant::now();
        let rate = 10_000;
        let mut state = AllocationState::new(t0, 600 * SEC, rate);
        let a = peer("192.0.2.1:4000");
        state.permit(&[a.ip()], t0).unwrap();
        let mut passed = 0;
        for _ in 0..100 {
            if state.send_to_peer(a, 200, t0) == ToPeer::Relay(a) {
                passed += 1;
            }
        }
        assert_eq!(passed, 50, "one second of burst");
        assert_eq!(state.from_peer(a, 200, t0), ToClient::OverBandwidth);
        assert_eq!(state.from_peer(a, 200, t0 + SEC), ToClient::Indication);
        // Unlimited.
        let mut free = AllocationState::new(t0, 600 * SEC, 0);
        free.permit(&[a.ip()], t0).unwrap();
        assert!((0..10_000).all(|_| free.send_to_peer(a, 1500, t0) == ToPeer::Relay(a)));
    }

    #[test]
    fn lifetime() {
        let t0 = Instant::now();
        let mut state = AllocationState::new(t0, 10 * SEC, 0);
        assert!(!state.is_expired(t0 + 9 * SEC));
        assert!(state.is_expired(t0 + 10 * SEC));
        state.refresh(t0 + 9 * SEC, 10 * SEC);
        assert!(!state.is_expired(t0 + 18 * SEC));
        assert_eq!(state.expires(), t0 + 19 * SEC);
    }
}
