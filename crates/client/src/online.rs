//! Staying online: one connection kept open for as long as its owner runs, and what happens on
//! it handed to whoever listens — the chat window, `rampart receive --follow`, an app.
//!
//! [`Online`] connects when it is due, tops up this device's key packages on every connect,
//! receives all the while, and after a failure goes offline and tries again after a backoff
//! that doubles up to [`MAX_BACKOFF`] (with jitter, so clients cut off together do not all
//! return together; a connection that stayed up [`HEALTHY`] starts it over). Ring notices are
//! kept until the call is taken, its caller gives up, or it has rung its minute. Nothing here
//! is cancelled half-way: a receive is only ever started with a short wait and awaited to the
//! end, so a delivery is never left handled but unacknowledged by a dropped future.

use std::time::{Duration, Instant};

use rampart_core::call::{CallId, RING_TIMEOUT_MS, RingNotice};

use crate::client::Client;
use crate::clock::now_ms;
use crate::error::ClientError;
use crate::event::Event;
use crate::net::Connection;

/// The first wait after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that stayed up this long was healthy: the next failure starts the backoff over.
pub const HEALTHY: Duration = Duration::from_secs(30);
/// Rings kept at once, at most (a device is in one call at a time; the rest are missed).
const MAX_RINGS: usize = 32;

/// The state of the connection, for a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Connected,
    /// Down; the next attempt is at `retry_at_ms` (Unix milliseconds).
    Offline {
        retry_at_ms: u64,
        error: String,
    },
}

/// What happened while online, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    Link(Link),
    /// A delivery was handled: a message, a join, a refusal...
    Event(Event),
    /// A call rings this device (the notice the server wrote; nothing of the caller's).
    Ring {
        notice: RingNotice,
        label: String,
    },
    /// A ringing call stopped: its caller gave up, it rang out, or another was taken.
    RingEnded {
        call: CallId,
    },
    /// Something failed without taking the connection down (a refusal, a rate limit).
    Error(String),
}

#[derive(Debug)]
struct PendingRing {
    notice: RingNotice,
    label: String,
    deadline: Instant,
}

/// Errors after which a connection cannot be trusted to carry on.
pub fn breaks_connection(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Io(_)
            | ClientError::Tls(_)
            | ClientError::Timeout(_)
            | ClientError::Closed { .. }
            | ClientError::Protocol(_)
            | ClientError::Unexpected(_)
    )
}

/// One connection kept open, and the rings waiting on it.
#[derive(Debug)]
pub struct Online {
    conn: Option<Connection>,
    backoff: Duration,
    retry_at: Instant,
    connected_at: Option<Instant>,
    rings: Vec<PendingRing>,
}

impl Default for Online {
    fn default() -> Self {
        Self::new()
    }
}

impl Online {
    /// Offline, with the first attempt due now.
    pub fn new() -> Self {
        Self {
            conn: None,
            backoff: FIRST_BACKOFF,
            retry_at: Instant::now(),
            connected_at: None,
            rings: Vec::new(),
        }
    }

    /// The open connection, for an operation (send, call...) between turns.
    pub fn connection(&mut self) -> Option<&mut Connection> {
        self.conn.as_mut()
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Offline and the next attempt is due.
    pub fn connect_due(&self) -> bool {
        self.conn.is_none() && Instant::now() >= self.retry_at
    }

    /// How long until the next attempt (zero when connected or due).
    pub fn until_retry(&self) -> Duration {
        if self.conn.is_some() {
            return Duration::ZERO;
        }
        self.retry_at.saturating_duration_since(Instant::now())
    }

    /// A connection was made (by [`Client::connect`], which the owner may race against its
    /// own input: dropping a half-open connection is harmless). Keys are topped up so others
    /// can keep adding this device to conversations however long it stays online.
    pub async fn connected(
        &mut self,
        client: &mut Client,
        mut conn: Connection,
        on: &mut dyn FnMut(Happening),
    ) {
        if let Err(e) = client.top_up_keys(&mut conn).await {
            on(Happening::Error(format!("could not top up end-to-end keys: {e}")));
        }
        self.conn = Some(conn);
        self.connected_at = Some(Instant::now());
        on(Happening::Link(Link::Connected));
    }

    /// Connect now (when due), reporting how it went.
    pub async fn connect(&mut self, client: &mut Client, on: &mut dyn FnMut(Happening)) {
        on(Happening::Link(Link::Connecting));
        match client.connect().await {
            Ok(conn) => self.connected(client, conn, on).await,
            Err(e) => self.offline(&e, on),
        }
    }

    /// The connection is lost (or could not be made): try again later, backing off.
    pub fn offline(&mut self, e: &ClientError, on: &mut dyn FnMut(Happening)) {
        self.conn = None;
        if self.connected_at.take().is_some_and(|t| t.elapsed() >= HEALTHY) {
            self.backoff = FIRST_BACKOFF;
        }
        // Up to a fifth more, so that clients cut off together do not all return together.
        let wait = self.backoff + self.backoff.mul_f64(rand::random::<f64>() / 5.0);
        self.retry_at = Instant::now() + wait;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let retry_at_ms = now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        on(Happening::Link(Link::Offline { retry_at_ms, error: one_line(e) }));
    }

    /// An operation on the connection failed: reported, and if the connection is the cause,
    /// dropped for a new one. Returns whether it was.
    pub fn failed(&mut self, e: &ClientError, on: &mut dyn FnMut(Happening)) -> bool {
        if breaks_connection(e) {
            self.offline(e, on);
            true
        } else {
            on(Happening::Error(one_line(e)));
            false
        }
    }

    /// Receive for up to `wait` (or until the queue is drained), then look at the rings.
    pub async fn receive(&mut self, client: &mut Client, wait: Duration, on: &mut dyn FnMut(Happening)) {
        self.take_deliveries(client, wait, false, on).await;
        self.check_rings(client, on);
    }

    /// Receive during a call, for up to `wait` or until something arrives. Rings are left to
    /// the call ([`Client::step_call`] shows them as waiting: a device is in one call at a
    /// time), so they are not looked at here.
    pub async fn receive_in_call(
        &mut self,
        client: &mut Client,
        wait: Duration,
        on: &mut dyn FnMut(Happening),
    ) {
        self.take_deliveries(client, wait, true, on).await;
    }

    /// Receive when connected: everything for up to `wait` ([`Client::pump_with`]), or in a
    /// call only until something arrives ([`Client::receive_news`]).
    async fn take_deliveries(
        &mut self,
        client: &mut Client,
        wait: Duration,
        in_call: bool,
        on: &mut dyn FnMut(Happening),
    ) {
        let Some(conn) = self.conn.as_mut() else { return };
        let mut received = Vec::new();
        let mut keep = |e: &Event| received.push(e.clone());
        let result = if in_call {
            client.receive_news(conn, wait, &mut keep).await
        } else {
            client.pump_with(conn, wait, &mut keep).await
        };
        // Told even when a later step failed: these were stored and acknowledged.
        received.into_iter().for_each(|e| on(Happening::Event(e)));
        if let Err(e) = result {
            self.failed(&e, on);
        }
    }

    /// One turn of staying online: receive when connected, connect when due, else wait (at
    /// most `wait`) for the next attempt. Disappearing messages go on time even offline.
    pub async fn turn(&mut self, client: &mut Client, wait: Duration, on: &mut dyn FnMut(Happening)) {
        if self.conn.is_some() {
            self.receive(client, wait, on).await;
        } else if self.connect_due() {
            self.connect(client, on).await;
        } else {
            tokio::time::sleep(self.until_retry().min(wait)).await;
            if let Ok(files) = client.profile().purge_expired(now_ms()) {
                files.into_iter().for_each(|f| drop(std::fs::remove_file(f)));
            }
            self.check_rings(client, on);
        }
    }

    /// New rings are told; rings whose caller gave up, or that rang their minute, stop.
    pub fn check_rings(&mut self, client: &mut Client, on: &mut dyn FnMut(Happening)) {
        for (notice, label) in client.take_rings() {
            if self.rings.len() >= MAX_RINGS || self.rings.iter().any(|r| r.notice.call == notice.call) {
                continue;
            }
            // The notice may have waited in the server's queue: it rings for what is left of
            // the caller's minute.
            let age = now_ms().saturating_sub(notice.sent_at_ms).min(RING_TIMEOUT_MS);
            let deadline = Instant::now() + Duration::from_millis(RING_TIMEOUT_MS - age);
            on(Happening::Ring { notice, label: label.clone() });
            self.rings.push(PendingRing { notice, label, deadline });
        }
        let now = Instant::now();
        let mut i = 0;
        while let Some(ring) = self.rings.get(i) {
            // Asked even past the deadline, to consume the caller's hang-up signal.
            let gave_up = client.caller_gave_up(&ring.notice);
            if gave_up || now >= ring.deadline {
                on(Happening::RingEnded { call: ring.notice.call });
                self.rings.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The ringing call the user answered, with its caller's label. The others stop ringing:
    /// a device is in one call at a time.
    pub fn take_ring(
        &mut self,
        call: &CallId,
        on: &mut dyn FnMut(Happening),
    ) -> Option<(RingNotice, String)> {
        let at = self.rings.iter().position(|r| r.notice.call == *call)?;
        let ring = self.rings.remove(at);
        for other in self.rings.drain(..) {
            on(Happening::RingEnded { call: other.notice.call });
        }
        Some((ring.notice, ring.label))
    }

    /// A ringing call the user declined: it stops ringing here; the others ring on.
    pub fn stop_ringing(&mut self, call: &CallId) {
        self.rings.retain(|r| r.notice.call != *call);
    }

    /// A ringing call, looked up by its id in hex (as windows show it).
    pub fn ringing(&self, call_hex: &str) -> Option<CallId> {
        self.rings.iter().map(|r| r.notice.call).find(|c| hex::encode(c.0) == call_hex)
    }

    /// Close the connection, waiting at most two seconds for the server to hear it.
    pub async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        }
    }
}

/// An error on one line, for a status line or a log of happenings.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
