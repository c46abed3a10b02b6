//! The relay's configuration.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use rampart_turn::credentials::SharedSecret;
use rampart_turn::media_shape::DEFAULT_MAX_MEDIA_DATAGRAM;

/// Everything [`crate::server::start`] needs. Build it with [`RelayConfig::new`], which fills
/// in the defaults, and change the public fields as needed.
#[derive(Debug)]
pub struct RelayConfig {
    /// UDP address the TURN server listens on, e.g. `0.0.0.0:3478`; port 0 picks a free port
    /// (tests).
    pub listen: SocketAddr,
    /// Address the relayed sockets bind to.
    pub relay_ip: IpAddr,
    /// Address put in XOR-RELAYED-ADDRESS, for a relay behind 1:1 NAT; `relay_ip` if `None`.
    pub advertised_ip: Option<IpAddr>,
    /// Ports of the relayed sockets. Default 49152..=65535 (the dynamic range, as coturn).
    pub port_range: RangeInclusive<u16>,
    /// REALM of the long-term credential mechanism.
    pub realm: String,
    /// The secret shared with the service that mints credentials (coturn's
    /// `--static-auth-secret`).
    pub secret: SharedSecret,
    /// Most allocations one user (the id part of the REST username up to its first '.') may
    /// hold at once; a call needs one per device. Default 4.
    pub max_allocations_per_user: u32,
    /// Bytes per second one allocation may relay, both directions together; 0 = unlimited.
    /// Default 64 KiB/s: Opus voice is about 8 KiB/s each way, so this leaves room for
    /// video-less calls at high bitrate while keeping one credential from being a flood
    /// amplifier.
    pub bandwidth_bytes_per_sec: u64,
    /// Lifetime of an allocation when the client asks for none (RFC 8656 §7.2). Default 600 s.
    pub default_lifetime: Duration,
    /// Longest lifetime granted at once. Default 3600 s.
    pub max_lifetime: Duration,
    /// How long a NONCE stays valid before requests with it get 438 (Stale Nonce). Default
    /// 600 s, like coturn's `--stale-nonce`.
    pub nonce_lifetime: Duration,
    /// Drop, and count against the user, datagrams from clients to peers that are not
    /// well-formed SRTP/SRTCP (`rampart_turn::media_shape::check`). Default true; turn it off
    /// only for generic TURN traffic (interoperability tests).
    pub media_check: bool,
    /// Size cap of the media check. Default `media_shape::DEFAULT_MAX_MEDIA_DATAGRAM`.
    pub max_media_datagram: usize,
    /// Whether peers may be loopback addresses. Default false: a relay that forwards to its
    /// own host's loopback services lets anyone with credentials reach them (coturn's
    /// `--allow-loopback-peers` is off by default for the same reason). Tests on 127.0.0.1
    /// turn it on.
    pub allow_loopback_peers: bool,
    /// When set, the only peer addresses permitted: for relay-only calls, the relays' own
    /// addresses. Everything else (private networks, the relay host's services, the open
    /// internet) is refused with 403, so credentials cannot turn the relay into a proxy.
    /// Default `None` (a general-purpose TURN server, as coturn).
    pub peer_ips: Option<Vec<IpAddr>>,
}

impl RelayConfig {
    /// A configuration with the defaults described on each field.
    pub fn new(listen: SocketAddr, relay_ip: IpAddr, realm: impl Into<String>, secret: SharedSecret) -> Self {
        Self {
            listen,
            relay_ip,
            advertised_ip: None,
            port_range: 49152..=65535,
            realm: realm.into(),
            secret,
            max_allocations_per_user: 4,
            bandwidth_bytes_per_sec: 64 * 1024,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(600),
            media_check: true,
            max_media_datagram: DEFAULT_MAX_MEDIA_DATAGRAM,
            allow_loopback_peers: false,
            peer_ips: None,
        }
    }
}
