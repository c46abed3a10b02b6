//! An async TURN client (RFC 8656, over UDP, TCP or TLS) for one allocation.
//!
//! Every method takes `&self`, so a call's sender and receiver tasks can share one client in
//! an `Arc`. A background task reads the socket or the connection: responses go to the request
//! waiting for them
//! (matched by transaction id), Data indications and ChannelData from peers to
//! [`TurnClient::recv_from`]. A second task refreshes the allocation before it expires and the
//! permissions and channels before theirs expire.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rampart_turn::channel::{self, ChannelData, ChannelNumber, Transport, TurnPacket};
use rampart_turn::integrity::{IntegrityKey, encode_protected, verify_message_integrity};
use rampart_turn::limits::MAX_DATA_LEN;
use rampart_turn::stream::StreamDecoder;
use rampart_turn::{
    Attribute, Class, Data, EncodeError, ErrorCode, Header, Message, Method, Nonce, Realm, Software,
    TransactionId, TransportProtocol, Username,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Waits between (re)transmissions of a request: RFC 8489 §6.2.1's doubling, from a shorter
/// RTO than its 500 ms default and cut at 3 s in all, since calls would rather fail fast and
/// try again than hang.
const RETRANSMIT_WAITS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1250),
];
/// Permissions last 300 s on the server (RFC 8656 §9); refreshed with a minute to spare.
/// Channel bindings (600 s) are refreshed with them.
const PEER_REFRESH: Duration = Duration::from_secs(240);
/// How soon a failed refresh is tried again.
const RETRY_REFRESH: Duration = Duration::from_secs(5);
/// Received datagrams waiting for [`TurnClient::recv_from`]; beyond this they are dropped, as
/// a full socket buffer would drop them, so the reader never stops routing responses.
const RECEIVE_QUEUE: usize = 4096;
/// Most XOR-PEER-ADDRESS attributes in one refreshing CreatePermission.
const PEERS_PER_REQUEST: usize = 32;
/// Requests retried after 401/438 before giving up.
const AUTH_ATTEMPTS: usize = 3;
/// How long a TCP connection to the server may take to open: a firewall that drops the SYN
/// shows up as this timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write to a TCP or TLS relay may take.
const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a TURN operation failed.
#[derive(Debug, Error)]
pub enum TurnClientError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("no response from the TURN server")]
    Timeout,
    #[error("the TURN server answered {code} {reason}")]
    Rejected { code: u16, reason: String },
    #[error("invalid response from the TURN server: {0}")]
    Protocol(&'static str),
    #[error("the password is not valid under SASLprep")]
    InvalidPassword,
    #[error("invalid username")]
    InvalidUsername,
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
    #[error("{len} bytes exceed the {max}-byte relay limit")]
    TooLarge { len: usize, max: usize },
    #[error("every channel number is in use")]
    NoChannels,
    #[error("the client is closed")]
    Closed,
    #[error("TLS: {0}")]
    Tls(String),
}

type Result<T, E = TurnClientError> = std::result::Result<T, E>;

#[derive(Clone)]
struct AuthState {
    realm: Realm,
    nonce: Nonce,
    key: Arc<IntegrityKey>,
}

#[derive(Debug, Default)]
struct Peers {
    permissions: HashSet<IpAddr>,
    /// Bindings confirmed by the server: what `send_to` uses.
    channels: HashMap<SocketAddr, ChannelNumber>,
    /// Bindings requested or confirmed: what the reader accepts ChannelData on (entered
    /// before the request goes out, since the server may relay on the channel as soon as it
    /// bound it).
    by_channel: HashMap<ChannelNumber, SocketAddr>,
    next_channel: u16,
}

/// How requests and data reach the server.
enum Link {
    Datagram(UdpSocket),
    /// TCP or TLS. Each frame is written whole under the lock, so concurrent senders never
    /// interleave bytes of two frames.
    Stream(tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>),
}

type StreamReader = Box<dyn AsyncRead + Send + Unpin>;

struct Inner {
    link: Link,
    server: SocketAddr,
    username: Username,
    software: Option<Software>,
    auth: Mutex<Option<AuthState>>,
    pending: Mutex<HashMap<TransactionId, oneshot::Sender<Vec<u8>>>>,
    /// The TCP or TLS connection to the server is closed: a request made now would wait for
    /// an answer that cannot come.
    closed: std::sync::atomic::AtomicBool,
    peers: Mutex<Peers>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section leaves the data consistent, so a poisoned lock is usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One TURN allocation and the socket it was made from.
pub struct TurnClient {
    inner: Arc<Inner>,
    relayed: SocketAddr,
    mapped: Option<SocketAddr>,
    local: SocketAddr,
    received: tokio::sync::Mutex<mpsc::Receiver<(SocketAddr, Vec<u8>)>>,
    reader: AbortHandle,
    refresher: AbortHandle,
}

impl std::fmt::Debug for TurnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnClient")
            .field("server", &self.inner.server)
            .field("local", &self.local)
            .field("relayed", &self.relayed)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn transport(&self) -> Transport {
        match self.link {
            Link::Datagram(_) => Transport::Datagram,
            Link::Stream(_) => Transport::Stream,
        }
    }

    /// Sends one message or ChannelData frame to the server.
    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.link {
            Link::Datagram(socket) => socket.send_to(bytes, self.server).await.map(|_| ()),
            Link::Stream(writer) => {
                // A relay that stops reading must not stall the call: the write gives up.
                let write = async {
                    let mut writer = writer.lock().await;
                    writer.write_all(bytes).await?;
                    writer.flush().await
                };
                tokio::time::timeout(STREAM_WRITE_TIMEOUT, write).await.unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "the relay stopped reading"))
                })
            }
        }
    }
}

impl Drop for TurnClient {
    fn drop(&mut self) {
        self.refresher.abort();
        self.reader.abort();
    }
}

/// When to refresh something that lives `lifetime`: a minute early, or halfway for short ones.
fn refresh_after(lifetime: Duration) -> Duration {
    (lifetime / 2).max(lifetime.saturating_sub(Duration::from_secs(60)))
}

impl TurnClient {
    /// Makes an allocation on `server` with long-term credentials (for Rampart, REST
    /// credentials minted by the server): the first Allocate learns the realm and nonce from
    /// the 401, the second authenticates; a 438 (stale nonce) is retried with the new nonce.
    /// The client's socket is bound to the loopback address if the server is on loopback,
    /// else to the unspecified address, of the server's family.
    pub async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<TurnClient> {
        let local_ip = match (server.ip(), server.ip().is_loopback()) {
            (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
        let local = socket.local_addr()?;
        Self::allocate_over(Link::Datagram(socket), None, server, local, username, password).await
    }

    /// [`TurnClient::allocate`] over TCP (RFC 8656 §3.1), for networks that block UDP. The
    /// allocation lives as long as the connection.
    pub async fn allocate_tcp(server: SocketAddr, username: &str, password: &str) -> Result<TurnClient> {
        let stream = connect(server).await?;
        let local = stream.local_addr()?;
        let (reader, writer) = tokio::io::split(stream);
        let link = Link::Stream(tokio::sync::Mutex::new(Box::new(writer)));
        Self::allocate_over(link, Some(Box::new(reader)), server, local, username, password).await
    }

    /// [`TurnClient::allocate`] over TLS (`turns:`), for networks that only let TLS out. The
    /// caller's `tls` configuration decides which certificates are trusted; `name` is the
    /// server name sent and checked.
    pub async fn allocate_tls(
        server: SocketAddr,
        name: rustls::pki_types::ServerName<'static>,
        tls: Arc<rustls::ClientConfig>,
        username: &str,
        password: &str,
    ) -> Result<TurnClient> {
        let stream = connect(server).await?;
        let local = stream.local_addr()?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| TurnClientError::Timeout)?
            .map_err(|error| TurnClientError::Tls(error.to_string()))?;
        let (reader, writer) = tokio::io::split(stream);
        let link = Link::Stream(tokio::sync::Mutex::new(Box::new(writer)));
        Self::allocate_over(link, Some(Box::new(reader)), server, local, username, password).await
    }

    async fn allocate_over(
        link: Link,
        stream_reader: Option<StreamReader>,
        server: SocketAddr,
        local: SocketAddr,
        username: &str,
        password: &str,
    ) -> Result<TurnClient> {
        let inner = Arc::new(Inner {
            link,
            server,
            username: Username::new(username).map_err(|_| TurnClientError::InvalidUsername)?,
            software: Software::new(crate::SOFTWARE).ok(),
            auth: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            peers: Mutex::new(Peers { next_channel: ChannelNumber::MIN.get(), ..Peers::default() }),
        });
        let (sender, receiver) = mpsc::channel(RECEIVE_QUEUE);
        let reader = match stream_reader {
            None => tokio::spawn(read_loop(Arc::clone(&inner), sender)).abort_handle(),
            Some(reader) => tokio::spawn(read_stream(Arc::clone(&inner), reader, sender)).abort_handle(),
        };
        let response = inner
            .request(
                Method::Allocate,
                vec![Attribute::RequestedTransport(TransportProtocol::UDP)],
                Some(password),
            )
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                reader.abort();
                return Err(error);
            }
        };
        let (Some(relayed), Some(lifetime)) = (response.xor_relayed_address(), response.lifetime()) else {
            reader.abort();
            return Err(TurnClientError::Protocol(
                "Allocate success without XOR-RELAYED-ADDRESS or LIFETIME",
            ));
        };
        let lifetime = Duration::from_secs(u64::from(lifetime));
        let refresher = tokio::spawn(refresh_loop(Arc::clone(&inner), lifetime)).abort_handle();
        debug!(%server, %relayed, transport = ?inner.transport(), "TURN allocation made");
        Ok(TurnClient {
            inner,
            relayed,
            mapped: response.xor_mapped_address(),
            local,
            received: tokio::sync::Mutex::new(receiver),
            reader,
            refresher,
        })
    }

    /// The relayed transport address: where peers send to reach this client.
    pub fn relayed_address(&self) -> SocketAddr {
        self.relayed
    }

    /// This client's address as the server saw it (XOR-MAPPED-ADDRESS), if it said.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// Whether the client reaches the server by datagrams (UDP) or over a stream (TCP, TLS).
    pub fn transport(&self) -> Transport {
        self.inner.transport()
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Lets `peer`'s IP address send to the relayed address, and this client send to it
    /// (RFC 8656 §9). Kept alive until [`TurnClient::close`].
    pub async fn create_permission(&self, peer: SocketAddr) -> Result<()> {
        self.inner.request(Method::CreatePermission, vec![Attribute::XorPeerAddress(peer)], None).await?;
        lock(&self.inner.peers).permissions.insert(peer.ip());
        Ok(())
    }

    /// Binds a channel to `peer` (which also permits its IP): from now on data to and from
    /// `peer` travels as ChannelData, 4 bytes of overhead instead of 36 or more.
    pub async fn channel_bind(&self, peer: SocketAddr) -> Result<()> {
        let channel = {
            let mut peers = lock(&self.inner.peers);
            match peers.by_channel.iter().find(|(_, bound)| **bound == peer) {
                Some((channel, _)) => *channel,
                None => {
                    let channel =
                        ChannelNumber::new(peers.next_channel).map_err(|_| TurnClientError::NoChannels)?;
                    peers.next_channel = peers.next_channel.saturating_add(1);
                    peers.by_channel.insert(channel, peer);
                    channel
                }
            }
        };
        let result = self.inner.bind(channel, peer).await;
        if result.is_err() && !lock(&self.inner.peers).channels.contains_key(&peer) {
            lock(&self.inner.peers).by_channel.remove(&channel);
        }
        result
    }

    /// Sends `data` to `peer` through the relay: as ChannelData if a channel is bound to the
    /// peer, else in a Send indication. The peer must be permitted for the relay to pass it.
    pub async fn send_to(&self, peer: SocketAddr, data: &[u8]) -> Result<()> {
        if data.len() > MAX_DATA_LEN {
            return Err(TurnClientError::TooLarge { len: data.len(), max: MAX_DATA_LEN });
        }
        let channel = lock(&self.inner.peers).channels.get(&peer).copied();
        let bytes = match channel {
            Some(channel) => ChannelData { channel, data }
                .encode(self.inner.transport())
                .map_err(|_| TurnClientError::TooLarge { len: data.len(), max: MAX_DATA_LEN })?,
            None => {
                let data = Data::new(data.to_vec())
                    .map_err(|_| TurnClientError::TooLarge { len: data.len(), max: MAX_DATA_LEN })?;
                Message::new(Class::Indication, Method::Send, TransactionId(rand::random()))
                    .with(Attribute::XorPeerAddress(peer))
                    .with(Attribute::Data(data))
                    .encode()?
            }
        };
        self.inner.send(&bytes).await?;
        Ok(())
    }

    /// The next datagram a peer sent to the relayed address, with the peer's address.
    /// [`TurnClientError::Closed`] once the client is closed.
    pub async fn recv_from(&self) -> Result<(SocketAddr, Vec<u8>)> {
        self.received.lock().await.recv().await.ok_or(TurnClientError::Closed)
    }

    /// Releases the allocation (Refresh with LIFETIME 0) and stops the client's tasks; the
    /// client is unusable afterwards. A 437 means the allocation was already gone, which is
    /// what was wanted.
    pub async fn close(&self) -> Result<()> {
        self.refresher.abort();
        let result = self
            .inner
            .request(Method::Refresh, vec![Attribute::Lifetime { seconds: 0 }], None)
            .await
            .map(|_| ());
        self.reader.abort();
        match result {
            Err(TurnClientError::Rejected { code: ErrorCode::ALLOCATION_MISMATCH, .. }) => Ok(()),
            other => other,
        }
    }
}

impl Inner {
    async fn bind(&self, channel: ChannelNumber, peer: SocketAddr) -> Result<()> {
        self.request(
            Method::ChannelBind,
            vec![Attribute::ChannelNumber(channel), Attribute::XorPeerAddress(peer)],
            None,
        )
        .await?;
        let mut peers = lock(&self.peers);
        peers.channels.insert(peer, channel);
        peers.permissions.insert(peer.ip());
        Ok(())
    }

    /// One request, authenticated once the realm and nonce are known, retried on 401 (first
    /// time only, and only with a password) and 438.
    async fn request(
        &self,
        method: Method,
        attributes: Vec<Attribute>,
        password: Option<&str>,
    ) -> Result<Message> {
        let mut challenged = false;
        for _ in 0..AUTH_ATTEMPTS {
            let transaction_id = TransactionId(rand::random());
            let auth = lock(&self.auth).clone();
            let mut message = Message::new(Class::Request, method, transaction_id);
            message.attributes.extend(attributes.iter().cloned());
            if let Some(software) = &self.software {
                message = message.with(Attribute::Software(software.clone()));
            }
            if let Some(auth) = &auth {
                message = message
                    .with(Attribute::Username(self.username.clone()))
                    .with(Attribute::Realm(auth.realm.clone()))
                    .with(Attribute::Nonce(auth.nonce.clone()));
            }
            let bytes = encode_protected(&message, auth.as_ref().map(|a| a.key.as_ref()), true)?;
            let response_bytes = self.exchange(transaction_id, &bytes).await?;
            let response = Message::decode(&response_bytes)
                .map_err(|_| TurnClientError::Protocol("undecodable response"))?
                .message;
            if response.method != method {
                return Err(TurnClientError::Protocol("response of another method"));
            }
            if response.class == Class::SuccessResponse {
                // A success to an authenticated request must carry the server's proof that it
                // knows the key (RFC 8489 §9.2.5); otherwise it may be forged.
                if let Some(auth) = &auth {
                    verify_message_integrity(&response_bytes, &auth.key)
                        .map_err(|_| TurnClientError::Protocol("response integrity check failed"))?;
                }
                return Ok(response);
            }
            let (code, reason) = response
                .error_code()
                .map(|e| (e.code(), e.reason().to_owned()))
                .ok_or(TurnClientError::Protocol("error response without ERROR-CODE"))?;
            match (code, response.nonce(), password) {
                (ErrorCode::STALE_NONCE, Some(nonce), _) if auth.is_some() => {
                    let mut auth_guard = lock(&self.auth);
                    if let Some(state) = auth_guard.as_mut() {
                        state.nonce = nonce.clone();
                    }
                }
                (ErrorCode::UNAUTHENTICATED, Some(nonce), Some(password)) if !challenged => {
                    challenged = true;
                    let realm =
                        response.realm().cloned().ok_or(TurnClientError::Protocol("401 without REALM"))?;
                    let key = IntegrityKey::long_term(self.username.as_str(), realm.as_str(), password)
                        .map_err(|_| TurnClientError::InvalidPassword)?;
                    *lock(&self.auth) = Some(AuthState { realm, nonce: nonce.clone(), key: Arc::new(key) });
                }
                _ => return Err(TurnClientError::Rejected { code, reason }),
            }
        }
        Err(TurnClientError::Rejected {
            code: ErrorCode::UNAUTHENTICATED,
            reason: "too many challenges".into(),
        })
    }

    /// Sends a request and waits for its response, retransmitting on the schedule of
    /// [`RETRANSMIT_WAITS`].
    async fn exchange(&self, transaction_id: TransactionId, bytes: &[u8]) -> Result<Vec<u8>> {
        let (sender, mut receiver) = oneshot::channel();
        lock(&self.pending).insert(transaction_id, sender);
        // Removes the entry however this future ends, cancellation included.
        struct Pending<'a>(&'a Mutex<HashMap<TransactionId, oneshot::Sender<Vec<u8>>>>, TransactionId);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                lock(self.0).remove(&self.1);
            }
        }
        let _pending = Pending(&self.pending, transaction_id);
        // The server may have closed the connection before this request was entered (it closes
        // one over its limit at once): the reader has then failed every request it knew of.
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(TurnClientError::Closed);
        }
        if let Link::Stream(_) = self.link {
            // A reliable transport is not retransmitted on (RFC 8489 §6.2.2); the response
            // gets the whole time a datagram request would.
            self.send(bytes).await?;
            let total: Duration = RETRANSMIT_WAITS.iter().sum();
            return match tokio::time::timeout(total, receiver).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(_)) => Err(TurnClientError::Closed),
                Err(_) => Err(TurnClientError::Timeout),
            };
        }
        for wait in RETRANSMIT_WAITS {
            self.send(bytes).await?;
            match tokio::time::timeout(wait, &mut receiver).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) => return Err(TurnClientError::Closed),
                Err(_) => {}
            }
        }
        Err(TurnClientError::Timeout)
    }

    /// Refreshes every permission and channel binding this client made.
    async fn refresh_peers(&self) -> Result<()> {
        let (ips, channels) = {
            let peers = lock(&self.peers);
            let bound: HashSet<IpAddr> = peers.channels.keys().map(SocketAddr::ip).collect();
            let ips: Vec<IpAddr> =
                peers.permissions.iter().filter(|ip| !bound.contains(ip)).copied().collect();
            let channels: Vec<(SocketAddr, ChannelNumber)> =
                peers.channels.iter().map(|(peer, channel)| (*peer, *channel)).collect();
            (ips, channels)
        };
        for chunk in ips.chunks(PEERS_PER_REQUEST) {
            // The port of XOR-PEER-ADDRESS is ignored for permissions (RFC 8656 §9).
            let attributes =
                chunk.iter().map(|ip| Attribute::XorPeerAddress(SocketAddr::new(*ip, 9))).collect();
            self.request(Method::CreatePermission, attributes, None).await?;
        }
        for (peer, channel) in channels {
            self.bind(channel, peer).await?;
        }
        Ok(())
    }
}

/// Routes what arrives on the socket: responses to their waiting request, peer data to the
/// receive queue. Anything not from the server, or undecodable, is dropped.
async fn read_loop(inner: Arc<Inner>, sender: mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    let Link::Datagram(socket) = &inner.link else { return };
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "TURN client receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let Some(datagram) = buf.get(..len) else { continue };
        if from != inner.server {
            continue;
        }
        route(&inner, datagram, Transport::Datagram, &sender);
    }
}

/// Reads a TCP or TLS connection to the server, frame by frame. When the server closes it (or
/// sends what is not TURN), the allocation is gone: waiting requests fail and
/// [`TurnClient::recv_from`] ends.
async fn read_stream(
    inner: Arc<Inner>,
    mut reader: StreamReader,
    sender: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) {
    let mut decoder = StreamDecoder::new();
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let len = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(len) => len,
            Err(error) => {
                debug!(%error, "TURN connection read error");
                break;
            }
        };
        decoder.push(chunk.get(..len).unwrap_or_default());
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => route(&inner, frame, Transport::Stream, &sender),
                Ok(None) => break,
                Err(error) => {
                    warn!(%error, "the TURN server sent what is not TURN");
                    break 'read;
                }
            }
        }
    }
    // Dropping the waiting requests' senders fails them with `Closed`; a request entered after
    // this sees the flag (set first) instead.
    inner.closed.store(true, std::sync::atomic::Ordering::Release);
    lock(&inner.pending).clear();
}

/// Routes one message from the server: a response to its waiting request, peer data to the
/// receive queue; anything else is dropped.
fn route(inner: &Inner, packet: &[u8], transport: Transport, sender: &mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    match packet.first().and_then(|first| channel::demultiplex(*first)) {
        Some(TurnPacket::ChannelData) => {
            let Ok(message) = ChannelData::decode(packet, transport) else { return };
            let peer = lock(&inner.peers).by_channel.get(&message.channel).copied();
            if let Some(peer) = peer {
                // Full queue: drop, as a full socket buffer would.
                let _ = sender.try_send((peer, message.data.to_vec()));
            }
        }
        Some(TurnPacket::Stun) => {
            let Ok(header) = Header::decode(packet) else { return };
            match header.class {
                Class::SuccessResponse | Class::ErrorResponse => {
                    let waiting = lock(&inner.pending).remove(&header.transaction_id);
                    if let Some(waiting) = waiting {
                        let _ = waiting.send(packet.to_vec());
                    }
                }
                Class::Indication if header.method == Method::Data => {
                    let Ok(decoded) = Message::decode(packet) else { return };
                    let message = decoded.message;
                    if let (Some(peer), Some(data)) = (message.xor_peer_addresses().next(), message.data()) {
                        let _ = sender.try_send((peer, data.to_vec()));
                    }
                }
                _ => {}
            }
        }
        None => {}
    }
}

/// Opens a TCP connection to the server within [`CONNECT_TIMEOUT`].
async fn connect(server: SocketAddr) -> Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server))
        .await
        .map_err(|_| TurnClientError::Timeout)??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Refreshes the allocation a minute before it expires, and permissions and channels every
/// [`PEER_REFRESH`].
async fn refresh_loop(inner: Arc<Inner>, mut lifetime: Duration) {
    let start = Instant::now();
    let mut next_allocation = start + refresh_after(lifetime);
    let mut next_peers = start + PEER_REFRESH;
    loop {
        tokio::time::sleep_until(next_allocation.min(next_peers)).await;
        let now = Instant::now();
        if now >= next_allocation {
            let seconds = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
            match inner.request(Method::Refresh, vec![Attribute::Lifetime { seconds }], None).await {
                Ok(response) => {
                    if let Some(granted) = response.lifetime() {
                        lifetime = Duration::from_secs(u64::from(granted));
                    }
                    next_allocation = Instant::now() + refresh_after(lifetime);
                }
                Err(error) => {
                    warn!(%error, "TURN allocation refresh failed");
                    next_allocation = Instant::now() + RETRY_REFRESH;
                }
            }
        }
        if now >= next_peers {
            match inner.refresh_peers().await {
                Ok(()) => next_peers = Instant::now() + PEER_REFRESH,
                Err(error) => {
                    warn!(%error, "TURN permission refresh failed");
                    next_peers = Instant::now() + RETRY_REFRESH;
                }
            }
        }
    }
}
