//! TURN over TCP and over TLS (RFC 8656 §3.1): the listeners and one task per connection.
//!
//! A connection task cuts its byte stream into frames (`rampart_turn::stream`) and hands each
//! to the relay's listening task, which treats it as it treats a UDP datagram; what the relay
//! sends back (responses, and peer data relayed to the client) comes through a bounded queue
//! that the same task writes out. The allocation made over a connection lives as long as the
//! connection: when the client closes it, the relay removes the allocation (RFC 8656 §3.1).
//!
//! Limits: at most `max_stream_connections` connections at once and
//! `max_stream_connections_per_ip` from one address (more are closed on accept), a TLS
//! handshake must finish within [`HANDSHAKE_TIMEOUT`], a connection without an allocation is
//! closed after `stream_idle`, and a frame longer than a datagram could be ends the connection.
//! So a stranger who opens connections without credentials holds each for seconds, and holds
//! few of them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rampart_turn::stream::StreamDecoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::stats::{Counters, bump};

/// How long a TLS client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting to be written to one connection. Beyond this the relay drops what it would
/// send, as a full UDP socket buffer would, so one slow client never stalls the relay.
pub const WRITE_QUEUE: usize = 64;
/// Bytes read from a connection at once.
const READ_CHUNK: usize = 16 * 1024;
/// How long one frame's write (or the closing shutdown) may take: a peer that stops reading
/// must not hold its connection, and its place, forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What connection tasks tell the relay's listening task.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// `close` ends the connection's task: the relay cancels it when it lets the connection go.
    Opened {
        connection: u64,
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        close: CancellationToken,
    },
    Frame {
        connection: u64,
        frame: Vec<u8>,
    },
    Closed {
        connection: u64,
    },
}

/// What the accept loops of one relay share: connection numbers and the connection limits.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    per_ip_limit: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Admission {
    pub(crate) fn new(max_connections: usize, per_ip_limit: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            per_ip_limit,
            per_ip: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Takes a place for a connection from `ip`, or `None` when a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let ip = network_of(ip);
        let slot = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.get(&ip).copied().unwrap_or(0);
        if count >= self.per_ip_limit {
            return None;
        }
        per_ip.insert(ip, count + 1);
        Some(Admitted { _slot: slot, ip, admission: Arc::clone(self) })
    }
}

/// What the per-address limit counts: an IPv4 address (IPv4-mapped ones included), or an IPv6
/// /64, since one IPv6 host usually holds a whole /64 and could otherwise open connections from
/// as many addresses as it likes.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                for segment in segments.iter_mut().skip(4) {
                    *segment = 0;
                }
                IpAddr::V6(std::net::Ipv6Addr::from(segments))
            }
        },
    }
}

/// A connection's place; given back when dropped.
struct Admitted {
    _slot: tokio::sync::OwnedSemaphorePermit,
    ip: IpAddr,
    admission: Arc<Admission>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections on `listener` (TLS on top when `tls` is set) until `cancel`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    events: mpsc::Sender<StreamEvent>,
    admission: Arc<Admission>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait a little rather than spin.
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(place) = admission.admit(peer.ip()) else {
            bump(&counters.rejected_connections);
            debug!(%peer, "too many TURN connections: closed");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let connection = admission.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let events = events.clone();
        let tls = tls.clone();
        let counters = Arc::clone(&counters);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _place = place;
            // Cancelled when the relay stops, and when it lets this connection go.
            let close = cancel.child_token();
            tokio::select! {
                () = close.cancelled() => {}
                () = serve(socket, peer, tls, connection, events.clone(), &counters, close.clone()) => {}
            }
            let _ = events.send(StreamEvent::Closed { connection }).await;
        });
    }
}

/// One connection, TLS or not, until either side closes it.
async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    connection: u64,
    events: mpsc::Sender<StreamEvent>,
    counters: &Counters,
    close: CancellationToken,
) {
    match tls {
        None => run(socket, peer, connection, events, counters, close).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
            Ok(Ok(stream)) => run(stream, peer, connection, events, counters, close).await,
            Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn run<S>(
    stream: S,
    peer: SocketAddr,
    connection: u64,
    events: mpsc::Sender<StreamEvent>,
    counters: &Counters,
    close: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (sender, mut outgoing) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if events.send(StreamEvent::Opened { connection, peer, writer: sender, close }).await.is_err() {
        return;
    }
    let write = async move {
        // Ends when the relay drops the sender (the connection is to close) or a write fails.
        while let Some(frame) = outgoing.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&frame)).await {
                Ok(Ok(())) => {}
                // A write error, or a peer that stopped reading.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, writer.shutdown()).await;
    };
    let read = async {
        let mut decoder = StreamDecoder::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let len = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(len) => len,
            };
            decoder.push(chunk.get(..len).unwrap_or_default());
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        let frame = frame.to_vec();
                        if events.send(StreamEvent::Frame { connection, frame }).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        bump(&counters.dropped_garbage);
                        debug!(%peer, %error, "not a TURN stream: closed");
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = write => {}
        () = read => {}
    }
}
