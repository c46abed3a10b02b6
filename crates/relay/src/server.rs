//! The relay server: TURN (RFC 8656) over UDP, TCP and TLS with coturn's REST credentials.
//!
//! One task owns the listening socket and the table of allocations: it answers STUN requests
//! and relays Send indications and ChannelData from clients, whether they came as UDP
//! datagrams or as frames of a TCP or TLS connection ([`crate::stream`]). Each allocation has
//! its own relayed socket (always UDP) and a task reading it, which relays permitted peer
//! datagrams to the client the way the client came: through the listening socket, or into its
//! connection's write queue. The two share the allocation's [`AllocationState`] behind a lock
//! that is never held across an await. Only the listening task adds or removes allocations, so
//! quota checks need no further locking.
//!
//! Nothing a client or peer sends can stop the relay: every datagram is decoded by
//! `rampart-turn` (which bounds every field), anything unexpected is dropped and counted, and
//! no payload bytes, passwords or keys are ever logged.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_turn::attribute::{AddressFamily, Data, ErrorCode, Realm, Software, UnknownAttributes};
use rampart_turn::channel::{self, CHANNEL_DATA_HEADER_LEN, ChannelData, Transport, TurnPacket};
use rampart_turn::credentials;
use rampart_turn::integrity::{IntegrityKey, encode_protected, verify_fingerprint, verify_message_integrity};
use rampart_turn::limits::MAX_DATA_LEN;
use rampart_turn::media_shape;
use rampart_turn::{Attribute, AttributeType, Class, Header, Message, Method, TransportProtocol};
use thiserror::Error;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::allocation::{AllocationState, BindError, ToClient, ToPeer};
use crate::config::RelayConfig;
use crate::nonce::{NonceCheck, Nonces};
use crate::stats::{Counters, RelayStats, bump};
use crate::stream::{Admission, StreamEvent, accept_loop};

/// Random ports tried before an Allocate gets 508 (Insufficient Capacity).
const PORT_ATTEMPTS: usize = 40;
/// How often expired allocations, permissions and channels are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Receive buffer: a whole UDP datagram, so an oversized one is seen whole and refused rather
/// than silently truncated into something that decodes.
const RECV_BUFFER: usize = 65_536;

/// Why the relay cannot start.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error("cannot bind the listening socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on TCP {addr}: {source}")]
    BindStream {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

/// A running relay. Dropping it leaves the relay running until its runtime stops; call
/// [`RelayHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// The address the relay listens on (with the actual port if the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address TURN over TCP is accepted on, when it is.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The address TURN over TLS is accepted on, when it is.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// A reader of the counters that outlives this handle (for a metrics task).
    pub fn stats_reader(&self) -> RelayStatsReader {
        RelayStatsReader { counters: Arc::clone(&self.counters) }
    }

    /// Stops the relay: every allocation is released and every socket closed.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(error) = self.task.await {
            warn!(%error, "relay task ended abnormally");
        }
    }
}

/// Reads a running relay's counters; cheap to clone and to keep.
#[derive(Debug, Clone)]
pub struct RelayStatsReader {
    counters: Arc<Counters>,
}

impl RelayStatsReader {
    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }
}

/// Starts the relay on the current tokio runtime.
pub async fn start(config: RelayConfig) -> Result<RelayHandle, RelayError> {
    let realm = Realm::new(config.realm.clone()).map_err(|_| RelayError::InvalidConfig("realm too long"))?;
    if config.realm.is_empty() {
        return Err(RelayError::InvalidConfig("empty realm"));
    }
    if config.port_range.is_empty() || *config.port_range.start() == 0 {
        return Err(RelayError::InvalidConfig("the relay port range must be a non-empty range of 1..=65535"));
    }
    let advertised_ip = config.advertised_ip.unwrap_or(config.relay_ip);
    if advertised_ip.is_unspecified() {
        return Err(RelayError::InvalidConfig("relay_ip is unspecified: set advertised_ip"));
    }
    if advertised_ip.is_ipv4() != config.relay_ip.is_ipv4() {
        return Err(RelayError::InvalidConfig("advertised_ip and relay_ip are of different families"));
    }
    if config.max_lifetime.is_zero() || config.default_lifetime.is_zero() {
        return Err(RelayError::InvalidConfig("lifetimes must be positive"));
    }
    let socket = UdpSocket::bind(config.listen)
        .await
        .map_err(|source| RelayError::Bind { addr: config.listen, source })?;
    let local_addr =
        socket.local_addr().map_err(|source| RelayError::Bind { addr: config.listen, source })?;
    let counters = Arc::new(Counters::default());
    let cancel = CancellationToken::new();
    // TCP and TLS connections feed the listening task through one queue; bounded, so a client
    // that floods its connection waits on its own reads.
    let (events, stream_events) = mpsc::channel(1024);
    let admission =
        Arc::new(Admission::new(config.max_stream_connections, config.max_stream_connections_per_ip));
    let mut stream_listeners = Vec::new();
    if let Some(addr) = config.tcp_listen {
        stream_listeners.push((addr, None));
    }
    if let Some(tls) = &config.tls {
        stream_listeners.push((tls.listen, Some(tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config)))));
    }
    // Every listener is bound before any accept loop starts, so a failure leaves none running.
    let mut bound_listeners = Vec::new();
    for (addr, tls) in stream_listeners {
        let listener =
            TcpListener::bind(addr).await.map_err(|source| RelayError::BindStream { addr, source })?;
        let bound = listener.local_addr().map_err(|source| RelayError::BindStream { addr, source })?;
        bound_listeners.push((listener, bound, tls));
    }
    let mut stream_addrs = Vec::new();
    for (listener, bound, tls) in bound_listeners {
        stream_addrs.push((bound, tls.is_some()));
        tokio::spawn(accept_loop(
            listener,
            tls,
            events.clone(),
            Arc::clone(&admission),
            Arc::clone(&counters),
            cancel.clone(),
        ));
    }
    drop(events);
    // Without TCP or TLS listeners nothing will ever arrive: no queue to watch.
    let stream_events = (!stream_addrs.is_empty()).then_some(stream_events);
    let tcp_addr = stream_addrs.iter().find(|(_, tls)| !tls).map(|(addr, _)| *addr);
    let tls_addr = stream_addrs.iter().find(|(_, tls)| *tls).map(|(addr, _)| *addr);
    let nonces = Nonces::new(rand::random(), config.nonce_lifetime);
    let software = Software::new(crate::SOFTWARE).map_err(|_| RelayError::InvalidConfig("software"))?;
    let shared = Arc::new(Shared {
        socket: Arc::new(socket),
        counters: Arc::clone(&counters),
        media_check: config.media_check.then_some(config.max_media_datagram),
        software,
        config,
        realm,
        advertised_ip,
        nonces,
    });
    let relay =
        Relay { shared, allocations: HashMap::new(), per_user: HashMap::new(), streams: HashMap::new() };
    let task = tokio::spawn(relay.run(stream_events, cancel.clone()));
    info!(%local_addr, tcp = ?tcp_addr, tls = ?tls_addr, "TURN relay listening");
    Ok(RelayHandle { local_addr, tcp_addr, tls_addr, counters, cancel, task })
}

/// What the listening task and the allocation tasks share.
#[derive(Debug)]
struct Shared {
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
    config: RelayConfig,
    realm: Realm,
    software: Software,
    advertised_ip: IpAddr,
    nonces: Nonces,
    /// The media check's size cap, `None` when the check is off.
    media_check: Option<usize>,
}

/// One allocation, shared by the listening task and the task reading its relayed socket.
#[derive(Debug)]
struct Allocation {
    /// The full REST username the allocation was made with: later requests must use it
    /// (RFC 8656 §5, 441 otherwise).
    username: String,
    /// The user the quota and the malformed-media counter apply to.
    user: String,
    relayed: SocketAddr,
    relay_socket: Arc<UdpSocket>,
    state: Mutex<AllocationState>,
}

impl Allocation {
    fn state(&self) -> MutexGuard<'_, AllocationState> {
        // The state's invariants hold between method calls, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Entry {
    allocation: Arc<Allocation>,
    /// The transaction id of the Allocate that made it, to answer a retransmission with
    /// success rather than 437 (RFC 8656 §7.2).
    allocate_transaction: rampart_turn::TransactionId,
    peer_task: AbortHandle,
}

/// A client of the relay: over UDP its address (on one listening socket, that is the
/// 5-tuple); over TCP or TLS its connection, which is a 5-tuple of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientId {
    Udp(SocketAddr),
    Stream { connection: u64, addr: SocketAddr },
}

impl ClientId {
    /// The client's address as the relay sees it (XOR-MAPPED-ADDRESS).
    fn addr(self) -> SocketAddr {
        match self {
            Self::Udp(addr) | Self::Stream { addr, .. } => addr,
        }
    }

    fn transport(self) -> Transport {
        match self {
            Self::Udp(_) => Transport::Datagram,
            Self::Stream { .. } => Transport::Stream,
        }
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Udp(addr) => write!(f, "udp/{addr}"),
            Self::Stream { connection, addr } => write!(f, "stream#{connection}/{addr}"),
        }
    }
}

/// How to send to a client, for the tasks that do.
#[derive(Debug, Clone)]
enum ClientLink {
    Udp {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
    },
    /// The write queue of the client's connection. Full: the frame is dropped, as a full UDP
    /// buffer would drop it; closed: the connection is going.
    Stream(mpsc::Sender<Vec<u8>>),
}

impl ClientLink {
    /// Sends one message (for a stream, a whole frame, padded as RFC 8656 §12.5 asks).
    async fn send(&self, bytes: &[u8]) -> bool {
        match self {
            Self::Udp { socket, addr } => match socket.send_to(bytes, *addr).await {
                Ok(_) => true,
                Err(error) => {
                    debug!(%error, to = %addr, "send to client failed");
                    false
                }
            },
            Self::Stream(queue) => {
                let mut frame = bytes.to_vec();
                frame.resize(frame.len().next_multiple_of(4), 0);
                queue.try_send(frame).is_ok()
            }
        }
    }
}

/// A TCP or TLS connection, as the listening task knows it. Dropping it closes the connection.
#[derive(Debug)]
struct StreamClient {
    addr: SocketAddr,
    writer: mpsc::Sender<Vec<u8>>,
    /// When it opened, or when its allocation went: connections without one are closed after
    /// `stream_idle`.
    idle_since: Instant,
    /// Ends the connection's task, whatever it is waiting on.
    close: CancellationToken,
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        self.close.cancel();
    }
}

/// The listening task's state.
#[derive(Debug)]
struct Relay {
    shared: Arc<Shared>,
    allocations: HashMap<ClientId, Entry>,
    per_user: HashMap<String, u32>,
    /// Open TCP and TLS connections by number.
    streams: HashMap<u64, StreamClient>,
}

/// The user a REST username stands for: the id part up to its first '.', so one account's
/// devices (`account.device`) share one quota and one counter.
fn user_of(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An error response without integrity: those sent before the client is authenticated, or
/// the body of one that [`Relay::send_reply`] protects.
fn error_response(request: &Message, code: u16, reason: &'static str) -> Message {
    let reply = Message::new(Class::ErrorResponse, request.method, request.transaction_id);
    // Every code used here is in 300..=699 with a short reason, so `new` cannot fail.
    match ErrorCode::new(code, reason) {
        Ok(error) => reply.with(Attribute::ErrorCode(error)),
        Err(_) => reply,
    }
}

/// Whether a peer address may be relayed to.
fn peer_allowed(config: &RelayConfig, peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        IpAddr::V4(_) => peer,
    };
    let broadcast = matches!(peer, IpAddr::V4(v4) if v4.is_broadcast());
    if let Some(only) = &config.peer_ips
        && !only.contains(&peer)
    {
        return false;
    }
    !(peer.is_unspecified()
        || peer.is_multicast()
        || broadcast
        || (peer.is_loopback() && !config.allow_loopback_peers))
}

/// The outcome of authenticating a request.
enum Auth {
    Ok {
        username: String,
        user: String,
        key: IntegrityKey,
    },
    /// Answer with this (401, 438 or 400) and stop.
    Reply(Message),
}

impl Relay {
    async fn run(
        mut self,
        mut stream_events: Option<mpsc::Receiver<StreamEvent>>,
        cancel: CancellationToken,
    ) {
        let socket = Arc::clone(&self.shared.socket);
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = sweep.tick() => self.sweep(Instant::now()),
                // Watched only while connections can still come (a closed queue would be ready at
                // every turn of the loop).
                event = next_stream_event(&mut stream_events), if stream_events.is_some() => match event {
                    Some(event) => self.on_stream_event(event).await,
                    None => stream_events = None,
                },
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        if let Some(datagram) = buf.get(..len) {
                            self.on_datagram(datagram, ClientId::Udp(from)).await;
                        }
                    }
                    // ICMP errors from earlier sends surface here on some systems; they concern
                    // one client, not the socket.
                    Err(error) => debug!(%error, "receive error on the listening socket"),
                },
            }
        }
        for (_, entry) in self.allocations.drain() {
            entry.peer_task.abort();
        }
        self.streams.clear();
        self.count_streams();
        self.shared.counters.allocations.store(0, std::sync::atomic::Ordering::Relaxed);
        info!("TURN relay stopped");
    }

    async fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Opened { connection, peer, writer, close } => {
                self.streams.insert(
                    connection,
                    StreamClient { addr: peer, writer, idle_since: Instant::now(), close },
                );
                self.count_streams();
            }
            StreamEvent::Frame { connection, frame } => {
                if let Some(client) = self.streams.get(&connection) {
                    let from = ClientId::Stream { connection, addr: client.addr };
                    self.on_datagram(&frame, from).await;
                }
            }
            StreamEvent::Closed { connection } => {
                if let Some(client) = self.streams.remove(&connection) {
                    self.count_streams();
                    // The allocation lives as long as its connection (RFC 8656 §3.1).
                    self.remove(ClientId::Stream { connection, addr: client.addr }, "connection closed");
                }
            }
        }
    }

    fn count_streams(&self) {
        let open = u64::try_from(self.streams.len()).unwrap_or(u64::MAX);
        self.shared.counters.stream_connections.store(open, std::sync::atomic::Ordering::Relaxed);
    }

    /// How to reach a client; `None` for a connection that is gone.
    fn link(&self, client: ClientId) -> Option<ClientLink> {
        match client {
            ClientId::Udp(addr) => Some(ClientLink::Udp { socket: Arc::clone(&self.shared.socket), addr }),
            ClientId::Stream { connection, .. } => {
                self.streams.get(&connection).map(|stream| ClientLink::Stream(stream.writer.clone()))
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        // Connections that hold no allocation for too long are closed: dropping the writer
        // ends the connection's task.
        let idle = self.shared.config.stream_idle;
        let allocations = &self.allocations;
        self.streams.retain(|connection, client| {
            let key = ClientId::Stream { connection: *connection, addr: client.addr };
            if allocations.contains_key(&key) {
                client.idle_since = now;
            }
            now.saturating_duration_since(client.idle_since) < idle
        });
        self.count_streams();
        let expired: Vec<ClientId> = self
            .allocations
            .iter()
            .filter_map(|(client, entry)| {
                let mut state = entry.allocation.state();
                state.prune(now);
                state.is_expired(now).then_some(*client)
            })
            .collect();
        for client in expired {
            self.remove(client, "expired");
        }
    }

    fn remove(&mut self, client: ClientId, why: &'static str) {
        let Some(entry) = self.allocations.remove(&client) else { return };
        entry.peer_task.abort();
        let user = &entry.allocation.user;
        if let Some(count) = self.per_user.get_mut(user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_user.remove(user);
            }
        }
        self.shared.counters.allocations.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        debug!(%client, relayed = %entry.allocation.relayed, user = %user, why, "allocation removed");
    }

    async fn on_datagram(&mut self, datagram: &[u8], from: ClientId) {
        match datagram.first().and_then(|first| channel::demultiplex(*first)) {
            Some(TurnPacket::ChannelData) => self.on_channel_data(datagram, from).await,
            Some(TurnPacket::Stun) => self.on_stun(datagram, from).await,
            None => bump(&self.shared.counters.dropped_garbage),
        }
    }

    async fn on_channel_data(&mut self, datagram: &[u8], from: ClientId) {
        let counters = &self.shared.counters;
        let (Ok(message), Some(entry)) =
            (ChannelData::decode(datagram, from.transport()), self.allocations.get(&from))
        else {
            bump(&counters.dropped_garbage);
            return;
        };
        let allocation = Arc::clone(&entry.allocation);
        let decision =
            allocation.state().channel_to_peer(message.channel, message.data.len(), Instant::now());
        self.relay_to_peer(&allocation, decision, message.data).await;
    }

    /// Sends `data` to the peer if `decision` says so, after the media check.
    async fn relay_to_peer(&self, allocation: &Allocation, decision: ToPeer, data: &[u8]) {
        let counters = &self.shared.counters;
        let peer = match decision {
            ToPeer::Relay(peer) => peer,
            ToPeer::NoPermission => return bump(&counters.dropped_no_permission),
            ToPeer::OverBandwidth => return bump(&counters.dropped_over_bandwidth),
        };
        if let Some(max) = self.shared.media_check
            && media_shape::check(data, max).is_err()
        {
            counters.malformed(&allocation.user);
            return;
        }
        match allocation.relay_socket.send_to(data, peer).await {
            Ok(_) => bump(&counters.relayed_to_peer),
            Err(error) => debug!(%error, %peer, "send to peer failed"),
        }
    }

    async fn on_stun(&mut self, datagram: &[u8], from: ClientId) {
        let counters = Arc::clone(&self.shared.counters);
        let Ok(header) = Header::decode(datagram) else {
            // Not STUN at all (or oversized): silently dropped (RFC 8489 §6.3).
            bump(&counters.dropped_garbage);
            return;
        };
        let decoded = match Message::decode(datagram) {
            Ok(decoded) => decoded,
            Err(error) => {
                bump(&counters.dropped_garbage);
                if header.class == Class::Request {
                    debug!(%from, %error, "malformed request");
                    let request = Message::new(Class::Request, header.method, header.transaction_id);
                    let reply = error_response(&request, ErrorCode::BAD_REQUEST, "Bad Request");
                    self.send_reply(reply, None, from).await;
                }
                return;
            }
        };
        let message = decoded.message;
        // A FINGERPRINT that is present must be right (RFC 8489 §7.3).
        if message.has(AttributeType::FINGERPRINT) && verify_fingerprint(datagram).is_err() {
            bump(&counters.dropped_garbage);
            return;
        }
        match (message.class, message.method) {
            (Class::Indication, Method::Send) if decoded.unknown_comprehension_required.is_empty() => {
                self.on_send_indication(&message, from).await;
            }
            // A keepalive (RFC 8489 §3).
            (Class::Indication, Method::Binding) => {}
            (Class::Request, _) if !decoded.unknown_comprehension_required.is_empty() => {
                let unknown = UnknownAttributes::new(decoded.unknown_comprehension_required).map_or_else(
                    |_| error_response(&message, ErrorCode::BAD_REQUEST, "Bad Request"),
                    |list| {
                        error_response(&message, ErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute")
                            .with(Attribute::UnknownAttributes(list))
                    },
                );
                self.send_reply(unknown, None, from).await;
            }
            (Class::Request, Method::Binding) => {
                let reply =
                    Message::success_response(&message).with(Attribute::XorMappedAddress(from.addr()));
                self.send_reply(reply, None, from).await;
            }
            (
                Class::Request,
                Method::Allocate | Method::Refresh | Method::CreatePermission | Method::ChannelBind,
            ) => {
                self.on_request(datagram, &message, from).await;
            }
            // Responses, Data indications and Send indications with unknown
            // comprehension-required attributes have no business here.
            _ => bump(&counters.dropped_garbage),
        }
    }

    async fn on_send_indication(&self, message: &Message, from: ClientId) {
        let counters = &self.shared.counters;
        let (Some(entry), Some(peer), Some(data)) =
            (self.allocations.get(&from), message.xor_peer_addresses().next(), message.data())
        else {
            bump(&counters.dropped_garbage);
            return;
        };
        let allocation = Arc::clone(&entry.allocation);
        let decision = if peer.port() == 0 || !peer_allowed(&self.shared.config, peer.ip()) {
            ToPeer::NoPermission
        } else {
            allocation.state().send_to_peer(peer, data.len(), Instant::now())
        };
        self.relay_to_peer(&allocation, decision, data).await;
    }

    /// Checks the long-term credentials of a request (RFC 8489 §9.2.4) against the REST
    /// scheme.
    fn authenticate(&self, datagram: &[u8], message: &Message, client: ClientId) -> Auth {
        let shared = &self.shared;
        let from = client.addr();
        let now_ms = unix_millis();
        let challenge = |code: u16, reason: &'static str| {
            let mut reply =
                error_response(message, code, reason).with(Attribute::Realm(shared.realm.clone()));
            if let Some(nonce) = shared.nonces.issue(from, now_ms) {
                reply = reply.with(Attribute::Nonce(nonce));
            }
            Auth::Reply(reply)
        };
        if !message.has(AttributeType::MESSAGE_INTEGRITY) {
            // The first attempt of every client: tell it the realm and a nonce.
            return challenge(ErrorCode::UNAUTHENTICATED, "Unauthenticated");
        }
        let (Some(username), Some(realm), Some(nonce)) =
            (message.username(), message.realm(), message.nonce())
        else {
            return Auth::Reply(error_response(message, ErrorCode::BAD_REQUEST, "Bad Request"));
        };
        match shared.nonces.check(nonce.as_str(), from, now_ms) {
            NonceCheck::Valid => {}
            NonceCheck::Stale | NonceCheck::Invalid => {
                return challenge(ErrorCode::STALE_NONCE, "Stale Nonce");
            }
        }
        let reject = |why: &str| {
            bump(&shared.counters.rejected_auth);
            debug!(%from, username = username.as_str(), why, "authentication failed");
            challenge(ErrorCode::UNAUTHENTICATED, "Unauthenticated")
        };
        if realm.as_str() != shared.realm.as_str() {
            return reject("wrong realm");
        }
        let user = match credentials::verify(&shared.config.secret, username.as_str(), now_ms / 1000) {
            Ok(user) => user,
            Err(credentials::CredentialError::Expired { .. }) => return reject("credentials expired"),
            Err(_) => return reject("malformed username"),
        };
        let key = user.integrity_key(shared.realm.as_str());
        if verify_message_integrity(datagram, &key).is_err() {
            return reject("wrong password");
        }
        Auth::Ok { username: username.as_str().to_owned(), user: user_of(user.id()).to_owned(), key }
    }

    async fn on_request(&mut self, datagram: &[u8], message: &Message, from: ClientId) {
        let (username, user, key) = match self.authenticate(datagram, message, from) {
            Auth::Ok { username, user, key } => (username, user, key),
            Auth::Reply(reply) => return self.send_reply(reply, None, from).await,
        };
        let reply = if message.method == Method::Allocate {
            self.allocate(message, from, username, user).await
        } else {
            match self.allocations.get(&from) {
                None => error_response(message, ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch"),
                Some(entry) if entry.allocation.username != username => {
                    error_response(message, ErrorCode::WRONG_CREDENTIALS, "Wrong Credentials")
                }
                Some(_) => match message.method {
                    Method::Refresh => self.refresh(message, from),
                    Method::CreatePermission => self.create_permission(message, from),
                    _ => self.channel_bind(message, from),
                },
            }
        };
        self.send_reply(reply, Some(&key), from).await;
    }

    /// The lifetime granted for a requested one: the default when none is asked for, never
    /// more than the maximum.
    fn lifetime(&self, requested: Option<u32>) -> Duration {
        let config = &self.shared.config;
        let requested = requested.map_or(config.default_lifetime, |s| Duration::from_secs(u64::from(s)));
        requested.max(config.default_lifetime).min(config.max_lifetime)
    }

    fn family_ok(&self, family: AddressFamily) -> bool {
        match family {
            AddressFamily::IPV4 => self.shared.config.relay_ip.is_ipv4(),
            AddressFamily::IPV6 => self.shared.config.relay_ip.is_ipv6(),
            _ => false,
        }
    }

    fn allocate_success(
        &self,
        message: &Message,
        relayed: SocketAddr,
        lifetime: Duration,
        from: ClientId,
    ) -> Message {
        Message::success_response(message)
            .with(Attribute::XorRelayedAddress(relayed))
            .with(Attribute::Lifetime { seconds: u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX) })
            .with(Attribute::XorMappedAddress(from.addr()))
    }

    async fn allocate(
        &mut self,
        message: &Message,
        from: ClientId,
        username: String,
        user: String,
    ) -> Message {
        let counters = Arc::clone(&self.shared.counters);
        if let Some(entry) = self.allocations.get(&from) {
            if entry.allocate_transaction == message.transaction_id && entry.allocation.username == username {
                let remaining = entry.allocation.state().expires().saturating_duration_since(Instant::now());
                return self.allocate_success(message, entry.allocation.relayed, remaining, from);
            }
            return error_response(message, ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch");
        }
        match message.requested_transport() {
            None => return error_response(message, ErrorCode::BAD_REQUEST, "Bad Request"),
            Some(TransportProtocol::UDP) => {}
            Some(_) => {
                return error_response(
                    message,
                    ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL,
                    "Unsupported Transport Protocol",
                );
            }
        }
        // The relay cannot set the DF bit through tokio's sockets, so it treats DONT-FRAGMENT
        // as an unknown comprehension-required attribute, as RFC 8656 §7.2 asks.
        if message.has(AttributeType::DONT_FRAGMENT) {
            return match UnknownAttributes::new(vec![AttributeType::DONT_FRAGMENT]) {
                Ok(list) => error_response(message, ErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute")
                    .with(Attribute::UnknownAttributes(list)),
                Err(_) => error_response(message, ErrorCode::BAD_REQUEST, "Bad Request"),
            };
        }
        let mut even_port = false;
        for attribute in &message.attributes {
            match attribute {
                Attribute::ReservationToken(_) | Attribute::EvenPort { reserve_next: true } => {
                    // No port reservations: a call needs one relayed port, RTP and RTCP muxed.
                    return error_response(
                        message,
                        ErrorCode::INSUFFICIENT_CAPACITY,
                        "Insufficient Capacity",
                    );
                }
                Attribute::EvenPort { reserve_next: false } => even_port = true,
                Attribute::RequestedAddressFamily(family) if !self.family_ok(*family) => {
                    return error_response(
                        message,
                        ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED,
                        "Address Family not Supported",
                    );
                }
                _ => {}
            }
        }
        let held = self.per_user.get(&user).copied().unwrap_or(0);
        if held >= self.shared.config.max_allocations_per_user {
            bump(&counters.rejected_quota);
            debug!(%from, user = %user, held, "allocation quota reached");
            return error_response(message, ErrorCode::ALLOCATION_QUOTA_REACHED, "Allocation Quota Reached");
        }
        let Some(link) = self.link(from) else {
            return error_response(message, ErrorCode::SERVER_ERROR, "Server Error");
        };
        let Some(relay_socket) = self.bind_relay_socket(even_port) else {
            warn!(%from, "no free relay port");
            return error_response(message, ErrorCode::INSUFFICIENT_CAPACITY, "Insufficient Capacity");
        };
        let port = match relay_socket.local_addr() {
            Ok(local) => local.port(),
            Err(_) => return error_response(message, ErrorCode::SERVER_ERROR, "Server Error"),
        };
        let relayed = SocketAddr::new(self.shared.advertised_ip, port);
        let lifetime = self.lifetime(message.lifetime());
        let now = Instant::now();
        let allocation = Arc::new(Allocation {
            username,
            user: user.clone(),
            relayed,
            relay_socket: Arc::new(relay_socket),
            state: Mutex::new(AllocationState::new(
                now,
                lifetime,
                self.shared.config.bandwidth_bytes_per_sec,
            )),
        });
        let peer_task =
            tokio::spawn(peer_loop(Arc::clone(&self.shared), Arc::clone(&allocation), link)).abort_handle();
        self.allocations
            .insert(from, Entry { allocation, allocate_transaction: message.transaction_id, peer_task });
        *self.per_user.entry(user.clone()).or_insert(0) += 1;
        counters.allocations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bump(&counters.allocations_total);
        debug!(%from, %relayed, user = %user, lifetime = lifetime.as_secs(), "allocation created");
        self.allocate_success(message, relayed, lifetime, from)
    }

    /// Binds a UDP socket on a random port of the range, or gives up after a few tries.
    fn bind_relay_socket(&self, even: bool) -> Option<UdpSocket> {
        let range = &self.shared.config.port_range;
        for _ in 0..PORT_ATTEMPTS {
            let mut port = rand::random_range(range.clone());
            if even && port % 2 == 1 {
                port = if port > *range.start() { port - 1 } else { port.saturating_add(1) };
                if !range.contains(&port) || port % 2 == 1 {
                    continue;
                }
            }
            let Ok(socket) = std::net::UdpSocket::bind(SocketAddr::new(self.shared.config.relay_ip, port))
            else {
                continue;
            };
            if socket.set_nonblocking(true).is_err() {
                continue;
            }
            if let Ok(socket) = UdpSocket::from_std(socket) {
                return Some(socket);
            }
        }
        None
    }

    fn refresh(&mut self, message: &Message, from: ClientId) -> Message {
        for attribute in &message.attributes {
            if let Attribute::RequestedAddressFamily(family) = attribute
                && !self.family_ok(*family)
            {
                return error_response(
                    message,
                    ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH,
                    "Peer Address Family Mismatch",
                );
            }
        }
        if message.lifetime() == Some(0) {
            self.remove(from, "released by the client");
            return Message::success_response(message).with(Attribute::Lifetime { seconds: 0 });
        }
        let lifetime = self.lifetime(message.lifetime());
        if let Some(entry) = self.allocations.get(&from) {
            entry.allocation.state().refresh(Instant::now(), lifetime);
        }
        Message::success_response(message)
            .with(Attribute::Lifetime { seconds: u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX) })
    }

    /// Checks one peer address of a CreatePermission or ChannelBind: its family must be the
    /// relayed address's (443), and it must be an address the relay forwards to (403).
    fn check_peer(&self, message: &Message, peer: IpAddr) -> Result<(), Message> {
        if peer.is_ipv4() != self.shared.config.relay_ip.is_ipv4() {
            return Err(error_response(
                message,
                ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH,
                "Peer Address Family Mismatch",
            ));
        }
        if !peer_allowed(&self.shared.config, peer) {
            return Err(error_response(message, ErrorCode::FORBIDDEN, "Forbidden"));
        }
        Ok(())
    }

    fn create_permission(&mut self, message: &Message, from: ClientId) -> Message {
        let peers: Vec<IpAddr> = message.xor_peer_addresses().map(|peer| peer.ip()).collect();
        if peers.is_empty() {
            return error_response(message, ErrorCode::BAD_REQUEST, "Bad Request");
        }
        for peer in &peers {
            if let Err(reply) = self.check_peer(message, *peer) {
                return reply;
            }
        }
        let Some(entry) = self.allocations.get(&from) else {
            return error_response(message, ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch");
        };
        match entry.allocation.state().permit(&peers, Instant::now()) {
            Ok(()) => Message::success_response(message),
            Err(_) => error_response(message, ErrorCode::INSUFFICIENT_CAPACITY, "Insufficient Capacity"),
        }
    }

    fn channel_bind(&mut self, message: &Message, from: ClientId) -> Message {
        let (Some(channel), Some(peer)) = (message.channel_number(), message.xor_peer_addresses().next())
        else {
            return error_response(message, ErrorCode::BAD_REQUEST, "Bad Request");
        };
        if peer.port() == 0 {
            return error_response(message, ErrorCode::BAD_REQUEST, "Bad Request");
        }
        if let Err(reply) = self.check_peer(message, peer.ip()) {
            return reply;
        }
        let Some(entry) = self.allocations.get(&from) else {
            return error_response(message, ErrorCode::ALLOCATION_MISMATCH, "Allocation Mismatch");
        };
        match entry.allocation.state().bind_channel(channel, peer, Instant::now()) {
            Ok(()) => Message::success_response(message),
            Err(BindError::Conflict) => error_response(message, ErrorCode::BAD_REQUEST, "Bad Request"),
            Err(BindError::Capacity) => {
                error_response(message, ErrorCode::INSUFFICIENT_CAPACITY, "Insufficient Capacity")
            }
        }
    }

    /// Sends a response with SOFTWARE, MESSAGE-INTEGRITY (if the request was authenticated)
    /// and FINGERPRINT, as coturn does.
    async fn send_reply(&self, reply: Message, key: Option<&IntegrityKey>, to: ClientId) {
        let reply = reply.with(Attribute::Software(self.shared.software.clone()));
        match encode_protected(&reply, key, true) {
            Ok(bytes) => {
                if let Some(link) = self.link(to)
                    && !link.send(&bytes).await
                {
                    debug!(%to, "send of a response failed");
                }
            }
            Err(error) => warn!(%error, "cannot encode a response"),
        }
    }
}

/// Reads the relayed socket of one allocation and relays what permitted peers send to the
/// client. Aborted when the allocation goes.
async fn peer_loop(shared: Arc<Shared>, allocation: Arc<Allocation>, client: ClientLink) {
    let counters = &shared.counters;
    // Room for the ChannelData header in front, so relaying over a channel copies nothing.
    let mut buf = vec![0u8; CHANNEL_DATA_HEADER_LEN + RECV_BUFFER];
    loop {
        let Some(payload) = buf.get_mut(CHANNEL_DATA_HEADER_LEN..) else { return };
        let (len, peer) = match allocation.relay_socket.recv_from(payload).await {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "receive error on a relayed socket");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if len > MAX_DATA_LEN {
            bump(&counters.dropped_garbage);
            continue;
        }
        // Media is checked both ways: what reaches a calling device from a peer must be
        // SRTP/SRTCP-shaped too (a peer could be anything the other side named).
        if let Some(max) = shared.media_check
            && buf
                .get(CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len)
                .is_none_or(|d| media_shape::check(d, max).is_err())
        {
            bump(&counters.dropped_malformed);
            continue;
        }
        let decision = allocation.state().from_peer(peer, len, Instant::now());
        match decision {
            ToClient::NoPermission => bump(&counters.dropped_no_permission),
            ToClient::OverBandwidth => bump(&counters.dropped_over_bandwidth),
            ToClient::Channel(channel) => {
                let header_len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
                let number = channel.get().to_be_bytes();
                let Some(header) = buf.get_mut(..CHANNEL_DATA_HEADER_LEN) else { continue };
                header.copy_from_slice(&[number[0], number[1], header_len[0], header_len[1]]);
                let Some(message) = buf.get(..CHANNEL_DATA_HEADER_LEN + len) else { continue };
                if client.send(message).await {
                    bump(&counters.relayed_to_client);
                }
            }
            ToClient::Indication => {
                let Some(data) = buf.get(CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len) else {
                    continue;
                };
                let Ok(data) = Data::new(data.to_vec()) else { continue };
                let indication = Message::new(Class::Indication, Method::Data, rand_transaction_id())
                    .with(Attribute::XorPeerAddress(peer))
                    .with(Attribute::Data(data));
                let Ok(bytes) = encode_protected(&indication, None, true) else { continue };
                if client.send(&bytes).await {
                    bump(&counters.relayed_to_client);
                }
            }
        }
    }
}

/// The next event of the connection tasks; never ready without a queue.
async fn next_stream_event(events: &mut Option<mpsc::Receiver<StreamEvent>>) -> Option<StreamEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

fn rand_transaction_id() -> rampart_turn::TransactionId {
    rampart_turn::TransactionId(rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_the_id_up_to_the_first_dot() {
        assert_eq!(user_of("3f2a.c0ffee"), "3f2a");
        assert_eq!(user_of("3f2a.c0ffee.x"), "3f2a");
        assert_eq!(user_of("3f2a"), "3f2a");
        assert_eq!(user_of(".x"), "");
    }

    #[test]
    fn loopback_and_special_peers() {
        let secret = credentials::SharedSecret::new(vec![1; 16]);
        let Ok(secret) = secret else { return };
        let mut config = RelayConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            IpAddr::from([127, 0, 0, 1]),
            "r",
            secret,
        );
        for (ip, allowed) in [
            ("192.0.2.1", true),
            ("2001:db8::1", true),
            ("127.0.0.1", false),
            ("::1", false),
            ("::ffff:127.0.0.1", false),
            ("0.0.0.0", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            assert_eq!(peer_allowed(&config, ip), allowed, "{ip}");
        }
        config.allow_loopback_peers = true;
        assert!(peer_allowed(&config, IpAddr::from([127, 0, 0, 1])));
        assert!(!peer_allowed(&config, IpAddr::from([0, 0, 0, 0])));
    }
}
