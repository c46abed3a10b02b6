//! The relay's configuration.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
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
    /// Default 768 KiB/s: a video call at its highest rate (2.5 Mbit/s of video each way, plus
    /// voice and retransmissions) fits; Opus voice alone is about 8 KiB/s each way. The cap
    /// keeps one credential from being a flood amplifier.
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
    /// Where to accept TURN over TCP (RFC 8656 §3.1), for networks that block UDP; port 0
    /// picks a free port. Default `None`: UDP only.
    pub tcp_listen: Option<SocketAddr>,
    /// Where to accept TURN over TLS, and with what certificate. Port 443 gets through
    /// firewalls and proxies that only let HTTPS out. Default `None`.
    pub tls: Option<TlsListen>,
    /// Most TCP and TLS connections open at once; more are closed on accept. Default 1024.
    pub max_stream_connections: usize,
    /// Most TCP and TLS connections open at once from one IP address. Default 64 (an office
    /// behind one NAT address calls from many devices).
    pub max_stream_connections_per_ip: u32,
    /// How long a TCP or TLS connection may stay open without an allocation. Default 30 s.
    pub stream_idle: Duration,
}

/// The TLS listener of [`RelayConfig::tls`].
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: SocketAddr,
    pub config: Arc<rustls::ServerConfig>,
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
            bandwidth_bytes_per_sec: 768 * 1024,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(600),
            media_check: true,
            max_media_datagram: DEFAULT_MAX_MEDIA_DATAGRAM,
            allow_loopback_peers: false,
            peer_ips: None,
            tcp_listen: None,
            tls: None,
            max_stream_connections: 1024,
            max_stream_connections_per_ip: 64,
            stream_idle: Duration::from_secs(30),
        }
    }
}
