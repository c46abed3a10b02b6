//! State shared by every connection: configuration, storage, the hub of connected devices,
//! rate limits and metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rampart_core::{AccountId, DeviceId, PhoneNumber, SecretHash};
use rampart_store::{Store, StoredMessage, UnixMillis};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::verifier::Verifier;

/// Wall-clock milliseconds. The only place the server reads the clock for stored timestamps.
pub fn now_ms() -> UnixMillis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Something for one connection to do, sent by another task.
#[derive(Debug)]
pub enum Push {
    /// A message just queued for this device. Boxed so that an idle connection's channel
    /// (whose first block of slots is allocated up front) stays small.
    Message(Box<StoredMessage>),
    /// The device was revoked (or replaced by a re-registration): close at once.
    Revoked,
    /// Another node queued messages for this device: re-read the queue.
    Nudge,
    /// The link this connection waits for was approved.
    LinkCompleted { account: AccountId, device: DeviceId },
}

/// How to reach one connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub conn: u64,
    pub tx: mpsc::Sender<Push>,
    /// Set when a push was dropped because the connection's channel was full; the connection
    /// then re-reads its queue from the store, so nothing is lost, only delayed.
    pub lagged: Arc<AtomicBool>,
    /// Set when the device is revoked. Checked by the session before every request, so a
    /// revocation takes effect even when the `Revoked` notice cannot be queued.
    pub revoked: Arc<AtomicBool>,
}

/// Connections one device may hold open at once (a client normally needs one).
pub const MAX_CONNECTIONS_PER_DEVICE: usize = 4;

/// Connected devices and connections waiting for a link approval, on this node.
#[derive(Debug, Default)]
pub struct Hub {
    devices: Mutex<HashMap<DeviceId, Vec<Peer>>>,
    links: Mutex<HashMap<[u8; 32], Peer>>,
}

impl Hub {
    /// Register a connection of `device`; false when it already has the most allowed.
    pub fn attach(&self, device: DeviceId, peer: Peer) -> bool {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let peers = map.entry(device).or_default();
        if peers.len() >= MAX_CONNECTIONS_PER_DEVICE {
            return false;
        }
        peers.push(peer);
        true
    }

    /// The devices with a connection here.
    pub fn attached_devices(&self) -> Vec<DeviceId> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect()
    }

    pub fn detach(&self, device: DeviceId, conn: u64) {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(peers) = map.get_mut(&device) {
            peers.retain(|p| p.conn != conn);
            if peers.is_empty() {
                map.remove(&device);
            }
        }
    }

    /// Offer a freshly queued message to the device's live connections, if any.
    pub fn push_message(&self, msg: StoredMessage) {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let Some(peers) = map.get(&msg.device) else {
            return;
        };
        for peer in peers {
            if peer.tx.try_send(Push::Message(Box::new(msg.clone()))).is_err() {
                peer.lagged.store(true, Ordering::Release);
            }
        }
    }

    /// Make a device's connections re-read their queue (messages queued by another node).
    pub fn nudge(&self, device: DeviceId) {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        for peer in map.get(&device).into_iter().flatten() {
            if peer.tx.try_send(Push::Nudge).is_err() {
                peer.lagged.store(true, Ordering::Release);
            }
        }
    }

    /// Make every connection re-read its queue (events from other nodes may have been lost).
    pub fn nudge_all(&self) {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        for peer in map.values().flatten() {
            if peer.tx.try_send(Push::Nudge).is_err() {
                peer.lagged.store(true, Ordering::Release);
            }
        }
    }

    /// Cut off every connection of a device.
    pub fn revoke(&self, device: DeviceId) {
        let peers = {
            let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(&device).unwrap_or_default()
        };
        for peer in peers {
            peer.revoked.store(true, Ordering::Release);
            // The notice wakes an idle session; if its channel is full the session is busy and
            // sees the flag before its next request.
            let _ = peer.tx.try_send(Push::Revoked);
        }
    }

    pub fn wait_link(&self, code_hash: SecretHash, peer: Peer) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).insert(code_hash.0, peer);
    }

    pub fn forget_link(&self, code_hash: SecretHash, conn: u64) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.get(&code_hash.0).is_some_and(|p| p.conn == conn) {
            links.remove(&code_hash.0);
        }
    }

    /// Tell the waiting new device it was approved. False if it is no longer connected here.
    pub fn complete_link(&self, code_hash: SecretHash, account: AccountId, device: DeviceId) -> bool {
        let peer = self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(&code_hash.0);
        peer.is_some_and(|p| p.tx.try_send(Push::LinkCompleted { account, device }).is_ok())
    }
}

/// Every rate limit the server applies.
#[derive(Debug)]
pub struct Limiters {
    pub send: Limiter<DeviceId>,
    pub upload_kib: Limiter<DeviceId>,
    pub download_kib: Limiter<DeviceId>,
    pub stored_kib_per_account: Limiter<AccountId>,
    pub register_per_number: Limiter<String>,
    pub register_per_address: Limiter<IpAddr>,
    pub verify_per_address: Limiter<IpAddr>,
    pub verify_per_number: Limiter<String>,
    pub approve_per_device: Limiter<DeviceId>,
    pub keys_per_device: Limiter<DeviceId>,
    pub auth_failures_per_address: Limiter<IpAddr>,
    pub auth_failures_per_device: Limiter<DeviceId>,
    pub lookups_per_account: crate::limiter::DistinctLimiter<AccountId>,
    pub calls_per_account: Limiter<AccountId>,
    pub call_signals_per_device: Limiter<DeviceId>,
}

/// The key a source address is rate-limited under: IPv4 addresses as they are, IPv6 addresses
/// by their /64, since one host commonly holds a whole /64 and could rotate through it.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Limiters {
    pub fn new(config: &ServerConfig) -> Self {
        let r = &config.rate_limits;
        Self {
            send: Limiter::new("send", r.send),
            upload_kib: Limiter::new("upload", r.upload_kib),
            download_kib: Limiter::new("download", r.download_kib),
            stored_kib_per_account: Limiter::new("stored_per_account", r.stored_kib_per_account),
            register_per_number: Limiter::new("register_per_number", r.register_per_number),
            register_per_address: Limiter::new("register_per_address", r.register_per_address),
            verify_per_address: Limiter::new("verify_per_address", r.verify_per_address),
            verify_per_number: Limiter::new("verify_per_number", r.verify_per_number),
            approve_per_device: Limiter::new("approve_per_device", r.approve_per_device),
            keys_per_device: Limiter::new("keys_per_device", r.keys_per_device),
            auth_failures_per_address: Limiter::new("auth_failures_per_address", r.auth_failures_per_address),
            auth_failures_per_device: Limiter::new("auth_failures_per_device", r.auth_failures_per_device),
            lookups_per_account: crate::limiter::DistinctLimiter::new(
                "lookups_per_account",
                r.lookups_per_account,
            ),
            calls_per_account: Limiter::new("calls_per_account", r.calls_per_account),
            call_signals_per_device: Limiter::new("call_signals_per_device", r.call_signals_per_device),
        }
    }

    pub fn sweep(&self, now: Instant) {
        self.send.sweep(now);
        self.upload_kib.sweep(now);
        self.download_kib.sweep(now);
        self.stored_kib_per_account.sweep(now);
        self.register_per_number.sweep(now);
        self.register_per_address.sweep(now);
        self.verify_per_address.sweep(now);
        self.verify_per_number.sweep(now);
        self.approve_per_device.sweep(now);
        self.keys_per_device.sweep(now);
        self.auth_failures_per_address.sweep(now);
        self.auth_failures_per_device.sweep(now);
        self.lookups_per_account.sweep(now);
        self.calls_per_account.sweep(now);
        self.call_signals_per_device.sweep(now);
    }
}

/// How the signaling server hands out relay credentials (coturn's `--use-auth-secret` scheme).
pub struct RelayAccess {
    pub secret: rampart_turn::credentials::SharedSecret,
    /// `host:port` of each TURN relay (UDP).
    pub relays: Vec<String>,
    pub ttl_secs: u64,
}

impl std::fmt::Debug for RelayAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayAccess").field("relays", &self.relays).field("ttl_secs", &self.ttl_secs).finish()
    }
}

/// What every connection task holds a reference to.
pub struct Shared {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub blobs: crate::blobs::BlobStore,
    pub verifier: Arc<dyn Verifier>,
    pub metrics: Arc<Metrics>,
    /// Call misfits counted since the last flush to the store, per account and reason.
    pub misfit_tally: Mutex<HashMap<(AccountId, &'static str), u64>>,
    /// Where the server's decisions against accounts are kept as evidence (`None` in tests
    /// that build a bare `Shared`).
    pub evidence: Option<Arc<Mutex<crate::evidence_log::EvidenceLog>>>,
    /// Sentinel, when on (`[sentinel] enabled`).
    pub sentinel: Option<crate::sentinel_service::SentinelService>,
    /// Per-minute counts of what this node saw, for the console's charts.
    pub activity: crate::console::activity::Activity,
    pub hub: Hub,
    pub limits: Limiters,
    /// The TURN relays calls use and the secret shared with them; `None`: no calls.
    pub relay: Option<RelayAccess>,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for their goodbyes.
    pub tasks: TaskTracker,
    next_conn: AtomicU64,
    log_key: [u8; 32],
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("store", &self.store.backend_name()).finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        blobs: crate::blobs::BlobStore,
        verifier: Arc<dyn Verifier>,
        log_key: [u8; 32],
    ) -> Self {
        let limits = Limiters::new(&config);
        Self {
            config,
            store,
            blobs,
            verifier,
            metrics: Arc::new(Metrics::default()),
            misfit_tally: Mutex::new(HashMap::new()),
            evidence: None,
            sentinel: None,
            activity: Default::default(),
            hub: Hub::default(),
            limits,
            relay: None,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
            log_key,
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A stable, keyed pseudonym for a phone number, for logs and rate-limit keys: lets an
    /// operator correlate events about one number without the logs ever holding it.
    pub fn phone_tag(&self, phone: &PhoneNumber) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.log_key) else {
            return String::new();
        };
        mac.update(phone.as_e164().as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("p{}", hex::encode(tag.get(..6).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        assert_eq!(address_key(mapped), IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));
    }
}
