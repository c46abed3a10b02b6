//! Server configuration: a TOML file, overridden by environment variables and flags (the
//! binary does the overriding; this module defines the settings and their defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rampart_core::limits;
use serde::{Deserialize, Serialize};

/// Every server setting. Missing keys take the defaults below.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for HTTPS and WebSocket.
    pub listen: SocketAddr,
    /// Where the embedded database, the TLS certificate and key live.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL instead of the embedded SQLite store.
    pub database_url: Option<String>,
    /// Operator-provided certificate chain and key (PEM). Both or neither; without them a
    /// self-signed certificate is created in the data dir on first start.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// SHA-256 (hex) of a bearer token that lets a scraper read `/metrics` from anywhere.
    /// Without it, `/metrics` answers loopback peers only: the counters are traffic data.
    pub metrics_token_sha256: Option<String>,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub timeouts: Timeouts,
    pub verifier: VerifierConfig,
    pub calls: CallConfig,
    pub sentinel: SentinelConfig,
    pub console: ConsoleConfig,
}

/// The operator console: web pages for Sentinel on a listener of their own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve it. Nobody can sign in until an operator is added with
    /// `rampart admin console add-operator NAME`.
    pub enabled: bool,
    /// Plain HTTP, so loopback by default: reach it through an SSH tunnel, or put a TLS proxy
    /// in front and set `allow_remote`.
    pub listen: SocketAddr,
    /// Allow a listen address other than loopback (behind a TLS-terminating proxy; cookies
    /// are then marked Secure).
    pub allow_remote: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { enabled: true, listen: SocketAddr::from(([127, 0, 0, 1], 8444)), allow_remote: false }
    }
}

/// Sentinel: noticing an attack campaign from metadata, acting on it, keeping the evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelConfig {
    /// Watch and act on the policy. Off, refused call set-ups are still counted and kept as
    /// evidence.
    pub enabled: bool,
    /// A policy file (docs/sentinel.md); the built-in policy when unset. A file with an error
    /// stops the server from starting, with the line and the reason.
    pub policy: Option<PathBuf>,
    /// Address ranges of hosting providers and datacenters (`203.0.113.0/24`, `2001:db8::/32`):
    /// registrations from them are watched more closely.
    pub hosting_ranges: Vec<String>,
    /// Sentinel's actions are kept this long after they ended (the signals themselves are
    /// only ever held in memory, for at most a day).
    pub metadata_retention_days: u64,
    /// Evidence log entries are kept this long, then dropped (the chain goes on from the
    /// first kept entry, under a new signed head).
    pub evidence_retention_days: u64,
    /// Software names (`Authenticate.client`) that are Rampart's own, by prefix. A device that
    /// signs in with another name (or none) has `client_is_unknown` set, and accounts sharing
    /// such a name are linked in investigations. A claim any client can copy: a signal, not a
    /// gate.
    pub known_clients: Vec<String>,
    /// The work a `require_challenge` action asks for each call, in bits: every bit doubles
    /// it. 20 is about a million hashes: 0.13 s at the median on one core of the machine in
    /// docs/benchmarks.md.
    pub challenge_bits: u8,
}

impl SentinelConfig {
    pub fn is_known_client(&self, client: &str) -> bool {
        !client.is_empty() && self.known_clients.iter().any(|prefix| client.starts_with(prefix.as_str()))
    }
}

impl Default for SentinelConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            policy: None,
            hosting_ranges: Vec::new(),
            metadata_retention_days: 30,
            evidence_retention_days: 730,
            known_clients: vec!["rampart/".to_owned()],
            challenge_bits: 20,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("rampart-data"),
            database_url: None,
            tls_cert: None,
            tls_key: None,
            metrics_token_sha256: None,
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            timeouts: Timeouts::default(),
            verifier: VerifierConfig::default(),
            calls: CallConfig::default(),
            sentinel: SentinelConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message body accepted, in bytes (at most the protocol's 96 KiB).
    pub max_message_bytes: usize,
    /// Messages queued per device before senders get "queue full".
    pub max_queue_per_device: u32,
    /// Of those, how many one other account may fill (a stranger's flood leaves room for
    /// friends); past it that sender gets "queue full". At most `max_queue_per_device`.
    pub max_queue_per_sender: u32,
    /// How long an undelivered message is kept.
    pub message_ttl_secs: u64,
    /// Devices per account.
    pub max_devices: u32,
    /// Simultaneous connections (TLS + WebSocket) before new ones are refused.
    pub max_connections: usize,
    /// Lifetime of verification and link codes.
    pub code_ttl_secs: u64,
    /// How long an attachment's ciphertext is kept in the blob store.
    pub attachment_ttl_secs: u64,
}

impl Limits {
    pub fn queue(&self) -> rampart_store::QueueLimits {
        rampart_store::QueueLimits {
            per_device: self.max_queue_per_device,
            per_sender: self.max_queue_per_sender.min(self.max_queue_per_device),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: limits::MAX_BODY_BYTES,
            max_queue_per_device: limits::DEFAULT_MAX_QUEUE,
            max_queue_per_sender: limits::DEFAULT_MAX_QUEUE_PER_SENDER,
            message_ttl_secs: limits::DEFAULT_MESSAGE_TTL_SECS,
            max_devices: limits::DEFAULT_MAX_DEVICES,
            max_connections: 100_000,
            code_ttl_secs: limits::DEFAULT_CODE_TTL_SECS,
            attachment_ttl_secs: limits::DEFAULT_MESSAGE_TTL_SECS,
        }
    }
}

/// A token bucket: `burst` at once, then `per_minute` sustained.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub burst: u32,
    pub per_minute: f64,
}

impl Bucket {
    pub fn per_second(&self) -> f64 {
        self.per_minute / 60.0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Messages sent per device.
    pub send: Bucket,
    /// Bytes uploaded per device, in KiB (message bodies and attachments).
    pub upload_kib: Bucket,
    /// Attachment bytes downloaded per device, in KiB.
    pub download_kib: Bucket,
    /// Attachment bytes an account may put in the blob store, in KiB (charged in full when an
    /// upload starts). Bounds the disk one account can fill.
    pub stored_kib_per_account: Bucket,
    /// Verification codes requested per phone number.
    pub register_per_number: Bucket,
    /// Verification codes requested per source address.
    pub register_per_address: Bucket,
    /// Code verifications and link approvals attempted per source address.
    pub verify_per_address: Bucket,
    /// Code verifications per phone number, across codes: requesting a new code does not
    /// reset it, so guessing is bounded per number per day.
    pub verify_per_number: Bucket,
    /// Link approvals per device (a link code is guessable only this often).
    pub approve_per_device: Bucket,
    /// End-to-end key operations per device, in key packages (uploads, claims, lookups).
    pub keys_per_device: Bucket,
    /// Failed authentications per source address. A valid login is never refused by it.
    pub auth_failures_per_address: Bucket,
    /// Failed authentications per device. A valid login is never refused by it.
    pub auth_failures_per_device: Bucket,
    /// Distinct accounts (numbers or usernames, found or not) an account may look up; asking
    /// again for one already looked up is free. Bounds enumeration of who is registered.
    pub lookups_per_account: Bucket,
    /// Calls placed per account.
    pub calls_per_account: Bucket,
    /// Call signals and relay credential requests per device.
    pub call_signals_per_device: Bucket,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            send: Bucket { burst: 100, per_minute: 600.0 },
            // A whole 100 MiB attachment (plus its tags) fits in one burst.
            upload_kib: Bucket { burst: 128 * 1024, per_minute: 1024.0 * 1024.0 },
            download_kib: Bucket { burst: 512 * 1024, per_minute: 4.0 * 1024.0 * 1024.0 },
            // 2 GiB at once, 2 GiB a day.
            stored_kib_per_account: Bucket {
                burst: 2 * 1024 * 1024,
                per_minute: 2.0 * 1024.0 * 1024.0 / 1440.0,
            },
            register_per_number: Bucket { burst: 3, per_minute: 0.2 },
            register_per_address: Bucket { burst: 20, per_minute: 2.0 },
            verify_per_address: Bucket { burst: 30, per_minute: 6.0 },
            verify_per_number: Bucket { burst: 10, per_minute: 10.0 / 1440.0 },
            approve_per_device: Bucket { burst: 5, per_minute: 1.0 },
            keys_per_device: Bucket { burst: 2_000, per_minute: 600.0 },
            auth_failures_per_address: Bucket { burst: 20, per_minute: 30.0 },
            auth_failures_per_device: Bucket { burst: 10, per_minute: 10.0 },
            // 200 new people at once, 200 more a day.
            lookups_per_account: Bucket { burst: 200, per_minute: 200.0 / 1440.0 },
            calls_per_account: Bucket { burst: 10, per_minute: 10.0 },
            call_signals_per_device: Bucket { burst: 200, per_minute: 600.0 },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// TLS handshake and HTTP request head must complete within this.
    pub handshake_secs: u64,
    /// A connection must authenticate (or finish registering) within this.
    pub anonymous_secs: u64,
    /// An authenticated connection that sends nothing (not even a pong) for this long is closed.
    pub idle_secs: u64,
    /// On shutdown, how long to wait for open connections to say goodbye.
    pub shutdown_grace_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { handshake_secs: 10, anonymous_secs: 120, idle_secs: 90, shutdown_grace_secs: 5 }
    }
}

impl Timeouts {
    pub fn handshake(&self) -> Duration {
        Duration::from_secs(self.handshake_secs.max(1))
    }
    pub fn anonymous(&self) -> Duration {
        Duration::from_secs(self.anonymous_secs.max(1))
    }
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_secs.max(2))
    }
}

/// How verification codes reach people.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifierConfig {
    /// Codes go to a local outbox, read with `rampart admin outbox`.
    #[default]
    Outbox,
    /// Codes are POSTed as JSON `{"phone": "...", "text": "..."}` to an SMS gateway.
    Webhook { url: String, bearer_token: Option<String> },
}

/// A configuration that parses but cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("limits.max_devices must be between 1 and {max} (clients list at most that many)")]
    MaxDevices { max: usize },
    #[error("limits.max_message_bytes must be between 1 and {max} (the protocol's ceiling)")]
    MaxMessage { max: usize },
    #[error("limits.max_queue_per_device and limits.max_queue_per_sender must be at least 1")]
    QueueLimits,
    #[error("limits.message_ttl_secs must be 1 s to 10 years and limits.code_ttl_secs 1 s to 1 day")]
    Ttl,
    #[error("metrics_token_sha256 must be 64 hex digits (the output of `printf %s TOKEN | sha256sum`)")]
    MetricsToken,
    #[error("calls.relays: {0}")]
    Relays(String),
    #[error(
        "console.listen {0} is not a loopback address: the console speaks plain HTTP; reach it through an SSH tunnel, or put a TLS proxy in front and set console.allow_remote = true"
    )]
    ConsoleRemote(SocketAddr),
    #[error("sentinel.challenge_bits must be between {min} and {max} (clients refuse more work than that)")]
    ChallengeBits { min: u8, max: u8 },
}

impl ServerConfig {
    /// Parse and check a TOML config file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        // Bounded so that deadlines computed from them can never overflow.
        const TEN_YEARS: u64 = 10 * 365 * 24 * 3600;
        if !(1..=TEN_YEARS).contains(&self.limits.message_ttl_secs)
            || !(1..=86_400).contains(&self.limits.code_ttl_secs)
        {
            return Err(ConfigError::Ttl);
        }
        let max = limits::MAX_LISTED_DEVICES;
        if !(1..=max as u32).contains(&self.limits.max_devices) {
            return Err(ConfigError::MaxDevices { max });
        }
        if !(1..=limits::MAX_BODY_BYTES).contains(&self.limits.max_message_bytes) {
            return Err(ConfigError::MaxMessage { max: limits::MAX_BODY_BYTES });
        }
        if self.limits.max_queue_per_device == 0 || self.limits.max_queue_per_sender == 0 {
            return Err(ConfigError::QueueLimits);
        }
        // A malformed hash would never match: say so at start-up rather than refuse every scrape.
        if let Some(hash) = &self.metrics_token_sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::MetricsToken);
        }
        // Clients refuse relay credentials they cannot read, which would break every call:
        // the list must be what they accept.
        if self.calls.relays.len() > limits::MAX_RELAYS {
            return Err(ConfigError::Relays(format!(
                "{} entries, clients accept at most {} (UDP, TCP and TLS of one relay are three)",
                self.calls.relays.len(),
                limits::MAX_RELAYS
            )));
        }
        for relay in &self.calls.relays {
            if let Err(e) = relay.parse::<rampart_turn::uri::TurnUri>() {
                return Err(ConfigError::Relays(format!("{relay:?}: {e}")));
            }
        }
        let bits =
            rampart_core::challenge::MIN_DIFFICULTY_BITS..=rampart_core::challenge::MAX_DIFFICULTY_BITS;
        if !bits.contains(&self.sentinel.challenge_bits) {
            return Err(ConfigError::ChallengeBits { min: *bits.start(), max: *bits.end() });
        }
        if self.console.enabled && !self.console.allow_remote && !self.console.listen.ip().is_loopback() {
            return Err(ConfigError::ConsoleRemote(self.console.listen));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_metrics_token_hash_is_refused() {
        let bad = ServerConfig::from_toml("metrics_token_sha256 = \"secret\"\n");
        assert!(matches!(bad, Err(ConfigError::MetricsToken)), "{bad:?}");
        let good = format!("metrics_token_sha256 = \"{}\"\n", "ab".repeat(32));
        assert!(ServerConfig::from_toml(&good).is_ok());
    }

    #[test]
    fn partial_toml_keeps_defaults() {
        let c = ServerConfig::from_toml(
            "listen = \"127.0.0.1:9000\"\n[limits]\nmax_devices = 3\n[verifier]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/sms\"\n",
        );
        let c = c.ok();
        assert_eq!(c.as_ref().map(|c| c.limits.max_devices), Some(3));
        assert_eq!(c.as_ref().map(|c| c.limits.max_queue_per_device), Some(limits::DEFAULT_MAX_QUEUE));
        assert!(matches!(c.map(|c| c.verifier), Some(VerifierConfig::Webhook { .. })));
    }

    #[test]
    fn relay_lists_clients_cannot_read_are_refused() {
        let five = "[calls]\nrelays = [\"a:1\", \"b:1\", \"c:1\", \"d:1\", \"e:1\"]\n";
        assert!(matches!(ServerConfig::from_toml(five), Err(ConfigError::Relays(_))));
        let bad = "[calls]\nrelays = [\"turn:relay?transport=sctp\"]\n";
        assert!(matches!(ServerConfig::from_toml(bad), Err(ConfigError::Relays(_))));
        let good = "[calls]\nrelays = [\"192.0.2.7:3478\", \"turn:r?transport=tcp\", \"turns:r:443\"]\n";
        assert!(ServerConfig::from_toml(good).is_ok());
    }

    #[test]
    fn impossible_limits_are_errors() {
        assert!(ServerConfig::from_toml("[limits]\nmax_devices = 65").is_err());
        assert!(ServerConfig::from_toml("[limits]\nmax_message_bytes = 200000").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(ServerConfig::from_toml("lisen = \"x\"").is_err());
    }
}

/// Voice calls: the TURN relays handed to callers and, for `rampart serve`, the relay it starts
/// beside itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallConfig {
    /// TURN relays handed out with call credentials, e.g. a coturn or a `rampart relay` on
    /// another host: `host:port` (UDP) or TURN URIs (`turn:host:port?transport=tcp`,
    /// `turns:host:443`). Clients try UDP first, then TCP, then TLS. Empty: the embedded
    /// relay below.
    pub relays: Vec<String>,
    /// The secret shared with the relays (coturn's `static-auth-secret`). Default:
    /// DATA_DIR/relay.secret, created on first start.
    pub relay_secret_file: Option<PathBuf>,
    /// How long relay credentials stay valid. Relays re-check the expiry when an allocation is
    /// refreshed, so this is also the longest a call can last.
    pub credential_ttl_secs: u64,
    pub relay: RelaySettings,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            relay_secret_file: None,
            credential_ttl_secs: 4 * 60 * 60,
            relay: RelaySettings::default(),
        }
    }
}

/// The TURN relay's own settings (embedded in `serve`, or `rampart relay`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Start the relay beside the server (`serve` only).
    pub enabled: bool,
    /// UDP address of the TURN listener.
    pub listen: SocketAddr,
    /// Also accept TURN over TCP on the listen address, for networks that block UDP. With
    /// port 0 in `listen`, TCP takes a free port of its own.
    pub tcp: bool,
    /// Also accept TURN over TLS, with the server's certificate, on `tls_port` of the listen
    /// address: for networks that only let TLS out (443 passes almost every firewall).
    pub tls: bool,
    /// Port of the TLS listener; with port 0 in `listen`, a free port instead.
    pub tls_port: u16,
    /// The address clients and peers reach relayed ports on, when not the listen address
    /// (behind NAT, or listening on 0.0.0.0).
    pub advertised_ip: Option<std::net::IpAddr>,
    /// Relayed ports are taken from this range.
    pub min_port: u16,
    pub max_port: u16,
    /// Allocations one account may hold at once.
    pub allocations_per_user: u32,
    /// Bandwidth per allocation, both directions, KiB/s (Opus voice needs about 8 each way, a
    /// video call up to about 700 in all); 0 = unlimited.
    pub bandwidth_kib_per_sec: u64,
    /// Drop (and count per caller) datagrams that are not well-formed SRTP/SRTCP.
    pub media_check: bool,
    /// Other relays of the deployment whose relayed addresses may be peers of this one (calls
    /// are relay-only: no other peer is permitted).
    pub peer_relays: Vec<std::net::IpAddr>,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 3478)),
            tcp: true,
            tls: true,
            tls_port: 5349,
            advertised_ip: None,
            min_port: 49152,
            max_port: 65535,
            allocations_per_user: 4,
            bandwidth_kib_per_sec: 768,
            media_check: true,
            peer_relays: Vec::new(),
        }
    }
}
