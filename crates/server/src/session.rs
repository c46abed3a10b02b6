//! One client connection: a WebSocket carrying Rampart frames.
//!
//! The task owns the socket, answers requests in order, pushes queued messages to an
//! authenticated device and enforces the timeouts. What a request may do depends on the
//! connection's [`Session`] state (from the sans-IO core); the identity used for every
//! device-level request comes out of that state, never from the request.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use rampart_core::limits::{MAX_CODE_ATTEMPTS, MAX_IN_FLIGHT};
use rampart_core::session::{RequestClass, Session, SessionError};
use rampart_core::{
    AccountId, DeviceId, LinkCode, RetryAfter, SecretHash, ServerMessageId, VerificationCode,
};
use rampart_proto::{
    ClientRequest, DecodeError, Delivery, DeviceInfo, ErrorBody, ErrorCode, GoodbyeReason, Recipient,
    ResponseBody, ServerFrame, decode_client_frame, encode_server_frame,
};
use rampart_store::{NewDevice, NewMessage, PendingLink, PendingRegistration, StoreError, StoredMessage};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::state::{Peer, Push, Shared, now_ms};

/// Pushes buffered per connection before the hub marks it lagged (it then re-reads the store).
const PUSH_CHANNEL: usize = 512;
/// Malformed frames tolerated on one connection before it is closed.
const MAX_BAD_FRAMES: u32 = 16;
/// Recipients remembered per connection, to spare the store a lookup per message.
const RECIPIENT_CACHE: usize = 256;

pub(crate) type Answer = Result<ResponseBody, ErrorBody>;

pub(crate) fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody { code, message: message.into(), retry_after_ms: 0, challenge: None }
}

fn slow_down(what: &str, retry: RetryAfter) -> ErrorBody {
    let ms = u32::try_from(retry.0.as_millis()).unwrap_or(u32::MAX).max(1);
    ErrorBody {
        code: ErrorCode::RateLimited,
        message: format!("slow down: too many {what}; retry in {:.1} s", f64::from(ms) / 1000.0),
        retry_after_ms: ms,
        challenge: None,
    }
}

pub(crate) fn store_error(e: StoreError) -> ErrorBody {
    let code = match &e {
        StoreError::NoPendingCode => ErrorCode::NoPendingCode,
        StoreError::CodeExpired => ErrorCode::CodeExpired,
        StoreError::WrongCode { .. } => ErrorCode::WrongCode,
        StoreError::UsernameTaken => ErrorCode::UsernameTaken,
        StoreError::NoSuchLink => ErrorCode::NoSuchLink,
        StoreError::TooManyDevices { .. } => ErrorCode::TooManyDevices,
        StoreError::QueueFull { .. } | StoreError::SenderShareFull { .. } => ErrorCode::QueueFull,
        StoreError::NoSuchAccount => ErrorCode::NoSuchRecipient,
        StoreError::NoSuchDevice => ErrorCode::NoSuchDevice,
        StoreError::StaleEpoch { .. } => ErrorCode::StaleEpoch,
        StoreError::NoSuchGroup => ErrorCode::NoSuchGroup,
        StoreError::NotMember => ErrorCode::NotAMember,
        StoreError::TooManyMembers { .. } => ErrorCode::Forbidden,
        StoreError::NoKeyPackage(_) => ErrorCode::NoKeyPackage,
        StoreError::Forbidden(_) => ErrorCode::Forbidden,
        StoreError::Backend(detail) => {
            warn!(%detail, "storage failure");
            return ErrorBody {
                code: ErrorCode::Unavailable,
                message: "storage is temporarily unavailable; try again".into(),
                retry_after_ms: 1000,
                challenge: None,
            };
        }
    };
    err(code, e.to_string())
}

/// What the loop should do after handling something.
enum Flow {
    Continue,
    /// The peer closed the connection: nothing more to say.
    Ended,
    /// Say goodbye with this reason, then close.
    Close(GoodbyeReason, String),
}

/// A send whose storage is under way; yields the request id and the answer.
type PendingSend = Pin<Box<dyn Future<Output = (u64, Answer)> + Send>>;

/// Sends one connection may have in storage at once. More concurrent sends make bigger group
/// commits; past this the connection stops reading until some complete.
const MAX_PENDING_SENDS: usize = 64;

/// Something for the connection loop to handle.
enum Event {
    Shutdown,
    SendDone((u64, Answer)),
    Push(Push),
    Incoming(Option<Result<Message, axum::Error>>),
    Tick,
}

/// Most events handled between two flushes.
const MAX_BATCH: usize = 64;

pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) ip: IpAddr,
    id: u64,
    session: Session,
    /// How others see this account (`@username` or the number), set on authentication.
    label: String,
    push_tx: mpsc::Sender<Push>,
    lagged: Arc<AtomicBool>,
    revoked: Arc<AtomicBool>,
    /// Pushed to the device and not yet acknowledged.
    in_flight: HashSet<ServerMessageId>,
    /// True once everything queued before (re)reading the store has been pushed.
    backlog_done: bool,
    /// A live push was skipped (window full or channel overflow): re-read the store.
    refetch: bool,
    /// Every message of this device with an id up to here has been read by `fill`.
    cursor: Option<ServerMessageId>,
    waiting_link: Option<SecretHash>,
    /// The attachment upload under way on this connection.
    pub(crate) upload: Option<crate::blobs::Upload>,
    /// Sends being stored; answered as they complete.
    sends: FuturesUnordered<PendingSend>,
    recipients: HashMap<Recipient, AccountId>,
    bad_frames: u32,
    /// The software name the device gave at sign-in ("" for none): half of its behaviour
    /// fingerprint in investigations.
    pub(crate) client: String,
    /// Calls this device asked relay credentials for, the latest few: Rampart's client always
    /// asks before it places a call, a look-alike may not.
    pub(crate) relay_asked: std::collections::VecDeque<rampart_core::call::CallId>,
    opened: Instant,
    last_heard: Instant,
    link_deadline: Option<Instant>,
}

/// Drive one WebSocket until it closes.
pub async fn run(mut ws: WebSocket, shared: Arc<Shared>, ip: IpAddr) {
    let (push_tx, mut push_rx) = mpsc::channel(PUSH_CHANNEL);
    let now = Instant::now();
    let mut conn = Connection {
        id: shared.next_conn_id(),
        shared,
        ip: crate::state::address_key(ip),
        session: Session::Anonymous,
        label: String::new(),
        push_tx,
        lagged: Arc::new(AtomicBool::new(false)),
        revoked: Arc::new(AtomicBool::new(false)),
        in_flight: HashSet::new(),
        backlog_done: false,
        refetch: false,
        cursor: None,
        waiting_link: None,
        upload: None,
        sends: FuturesUnordered::new(),
        recipients: HashMap::new(),
        bad_frames: 0,
        client: String::new(),
        relay_asked: std::collections::VecDeque::new(),
        opened: now,
        last_heard: now,
        link_deadline: None,
    };
    conn.shared.metrics.connections.inc();
    let shutdown = conn.shared.shutdown.clone();
    let idle = conn.shared.config.timeouts.idle();
    let mut ticker = tokio::time::interval(idle / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let outcome = loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Event::Shutdown,
            push = push_rx.recv() => match push {
                Some(push) => Event::Push(push),
                None => continue,
            },
            Some(done) = conn.sends.next(), if !conn.sends.is_empty() => Event::SendDone(done),
            // Before incoming frames, so a client that never stops talking still meets its
            // deadlines.
            _ = ticker.tick() => Event::Tick,
            incoming = ws.recv(), if conn.sends.len() < MAX_PENDING_SENDS => Event::Incoming(incoming),
        };
        // Boxed: the handlers' futures are large and only live while they run, so an idle
        // connection's task does not carry their space around.
        let mut flow = Box::pin(conn.on_event(&mut ws, first)).await;
        // Handle what else has already arrived before flushing, so a burst of requests or
        // pushes costs one TLS record and one write, not one per frame.
        let mut handled = 1;
        while matches!(flow, Flow::Continue) && handled < MAX_BATCH {
            let next = if let Ok(push) = push_rx.try_recv() {
                Event::Push(push)
            } else if let Some(Some(done)) = conn.sends.next().now_or_never() {
                Event::SendDone(done)
            } else if conn.sends.len() >= MAX_PENDING_SENDS {
                break;
            } else if let Some(incoming) = ws.recv().now_or_never() {
                Event::Incoming(incoming)
            } else {
                break;
            };
            flow = Box::pin(conn.on_event(&mut ws, next)).await;
            handled += 1;
        }
        if matches!(flow, Flow::Continue) && conn.lagged.swap(false, Ordering::AcqRel) {
            conn.refetch = true;
            flow = Box::pin(conn.fill(&mut ws)).await;
        }
        if matches!(flow, Flow::Continue) && conn.revoked.load(Ordering::Acquire) {
            flow = Flow::Close(GoodbyeReason::DeviceRevoked, "this device was revoked".into());
        }
        if matches!(flow, Flow::Continue) {
            flow = write_within(idle, ws.flush()).await;
        }
        match flow {
            Flow::Continue => {}
            Flow::Ended => break None,
            Flow::Close(reason, message) => break Some((reason, message)),
        }
    };

    // Sends already in storage complete anyway; tell their senders, so a shutdown does not
    // leave them guessing (a sender that misses the answer retries, which is idempotent).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some((request_id, result)) = conn.sends.next().await {
            let reply = ServerFrame::Response { request_id, result };
            let _ = ws.feed(Message::Binary(encode_server_frame(&reply).into())).await;
        }
        let _ = ws.flush().await;
    })
    .await;
    // Whatever is still being stored must still be pushed to its recipients when it commits.
    let unfinished = std::mem::take(&mut conn.sends);
    if !unfinished.is_empty() {
        tokio::spawn(unfinished.for_each(|_| async {}));
    }
    if let Some((reason, message)) = outcome {
        debug!(conn = conn.id, ?reason, "closing connection");
        let frame = ServerFrame::Goodbye { reason, message };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = ws.send(Message::Binary(encode_server_frame(&frame).into())).await;
            let _ = ws.send(Message::Close(None)).await;
        })
        .await;
    }
    conn.cleanup();
}

impl Connection {
    async fn on_event(&mut self, ws: &mut WebSocket, event: Event) -> Flow {
        match event {
            Event::Shutdown => Flow::Close(
                GoodbyeReason::ShuttingDown,
                "the server is shutting down; reconnect shortly".into(),
            ),
            Event::Push(push) => self.on_push(ws, push).await,
            Event::SendDone((request_id, answer)) => self.answer(ws, request_id, "send", answer).await,
            Event::Tick => self.on_tick(ws).await,
            Event::Incoming(None) => Flow::Ended,
            Event::Incoming(Some(Err(e))) => {
                // tungstenite refuses frames over the size cap here, before buffering them.
                debug!(conn = self.id, error = %e, "websocket read error");
                Flow::Close(GoodbyeReason::ProtocolViolation, format!("connection error: {e}"))
            }
            Event::Incoming(Some(Ok(msg))) => {
                self.last_heard = Instant::now();
                match msg {
                    Message::Binary(bytes) => self.on_frame(ws, bytes).await,
                    Message::Text(_) => Flow::Close(
                        GoodbyeReason::ProtocolViolation,
                        "text frames are not part of the protocol; send binary frames".into(),
                    ),
                    Message::Close(_) => Flow::Ended,
                    Message::Ping(_) | Message::Pong(_) => Flow::Continue,
                }
            }
        }
    }

    fn cleanup(&mut self) {
        if let Some((_, device)) = self.session.device() {
            self.shared.hub.detach(device, self.id);
            self.shared.metrics.authenticated_devices.dec();
        }
        if let Some(hash) = self.waiting_link.take() {
            self.shared.hub.forget_link(hash, self.id);
        }
        if let Some(upload) = self.upload.take() {
            upload.abandon();
        }
        self.shared.metrics.connections.dec();
    }

    fn peer(&self) -> Peer {
        Peer {
            conn: self.id,
            tx: self.push_tx.clone(),
            lagged: self.lagged.clone(),
            revoked: self.revoked.clone(),
        }
    }

    /// Queue a frame; the connection loop flushes once it has handled what is ready, so a
    /// burst costs one TLS record and one write. A peer that stops reading is closed once a
    /// write has waited `idle` (the buffer only blocks when it is full).
    async fn send(&mut self, ws: &mut WebSocket, frame: &ServerFrame) -> Flow {
        let idle = self.shared.config.timeouts.idle();
        write_within(idle, ws.feed(Message::Binary(encode_server_frame(frame).into()))).await
    }

    async fn on_tick(&mut self, ws: &mut WebSocket) -> Flow {
        let now = Instant::now();
        let timeouts = &self.shared.config.timeouts;
        match &self.session {
            Session::Anonymous if now.duration_since(self.opened) > timeouts.anonymous() => {
                return Flow::Close(
                    GoodbyeReason::IdleTimeout,
                    "authenticate or register sooner: time is up".into(),
                );
            }
            Session::AwaitingLink if self.link_deadline.is_some_and(|d| now > d) => {
                return Flow::Close(
                    GoodbyeReason::IdleTimeout,
                    "the link code expired before it was approved".into(),
                );
            }
            _ => {}
        }
        if now.duration_since(self.last_heard) > timeouts.idle() {
            return Flow::Close(GoodbyeReason::IdleTimeout, "no traffic for too long".into());
        }
        write_within(timeouts.idle(), ws.feed(Message::Ping(Bytes::new()))).await
    }

    async fn on_push(&mut self, ws: &mut WebSocket, push: Push) -> Flow {
        match push {
            Push::Nudge => {
                self.refetch = true;
                self.fill(ws).await
            }
            Push::Revoked => Flow::Close(GoodbyeReason::DeviceRevoked, "this device was revoked".into()),
            Push::LinkCompleted { account, device } => {
                self.waiting_link = None;
                self.link_deadline = None;
                self.session = Session::Anonymous;
                self.opened = Instant::now();
                self.send(ws, &ServerFrame::LinkCompleted { account, device }).await
            }
            Push::Message(msg) => {
                if !self.backlog_done || self.refetch || self.in_flight.contains(&msg.id) {
                    // Already delivered, or the next store read will pick it up.
                    return Flow::Continue;
                }
                if self.in_flight.len() >= MAX_IN_FLIGHT {
                    self.refetch = true;
                    return Flow::Continue;
                }
                self.deliver(ws, *msg).await
            }
        }
    }

    async fn deliver(&mut self, ws: &mut WebSocket, msg: StoredMessage) -> Flow {
        self.in_flight.insert(msg.id);
        self.shared.metrics.messages_delivered.inc();
        let frame = ServerFrame::Delivery(Delivery {
            server_id: msg.id,
            message_id: msg.message_id,
            sender_account: msg.sender_account,
            sender_device: msg.sender_device,
            sender_label: msg.sender_label,
            server_timestamp_ms: msg.received_at,
            body: Bytes::from(msg.body),
        });
        self.send(ws, &frame).await
    }

    /// Push what the store holds for this device, up to the in-flight window.
    async fn fill(&mut self, ws: &mut WebSocket) -> Flow {
        let Some((_, device)) = self.session.device() else {
            return Flow::Continue;
        };
        if self.backlog_done && !self.refetch {
            return Flow::Continue;
        }
        let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight.len());
        if room == 0 {
            return Flow::Continue;
        }
        // Read on from the cursor, not from the head: re-reading the head would fetch every
        // in-flight message (bodies included) again on each acknowledgement. Safe because both
        // backends commit one device's messages in id order (one writer; a row lock on the
        // device in PostgreSQL), so nothing can appear behind the cursor later. Live pushes
        // above the cursor that are in flight come back and are skipped; the limit allows
        // for them.
        let above = self.in_flight.iter().filter(|id| Some(**id) > self.cursor).count();
        let limit = room + above;
        let batch = match self.shared.store.fetch_queue(device, self.cursor, now_ms(), limit as u32).await {
            Ok(b) => b,
            Err(e) => {
                warn!(conn = self.id, error = %e, "queue read failed");
                return Flow::Close(
                    GoodbyeReason::Unspecified,
                    "storage unavailable; reconnect later".into(),
                );
            }
        };
        let complete = batch.len() < limit;
        for msg in batch {
            self.cursor = self.cursor.max(Some(msg.id));
            if self.in_flight.contains(&msg.id) {
                continue;
            }
            if let Flow::Close(r, m) = self.deliver(ws, msg).await {
                return Flow::Close(r, m);
            }
        }
        if complete {
            self.refetch = false;
            if !self.backlog_done {
                self.backlog_done = true;
                return self.send(ws, &ServerFrame::QueueDrained).await;
            }
        }
        Flow::Continue
    }

    async fn on_frame(&mut self, ws: &mut WebSocket, bytes: Bytes) -> Flow {
        if self.session.device().is_none() && bytes.len() > rampart_core::limits::MAX_ANONYMOUS_FRAME_BYTES {
            return Flow::Close(
                GoodbyeReason::ProtocolViolation,
                format!(
                    "frames before authentication are limited to {} bytes",
                    rampart_core::limits::MAX_ANONYMOUS_FRAME_BYTES
                ),
            );
        }
        let frame = match decode_client_frame(&bytes) {
            Ok(f) => f,
            Err(e) => return self.on_bad_frame(ws, e).await,
        };
        if self.revoked.load(Ordering::Acquire) {
            return Flow::Close(GoodbyeReason::DeviceRevoked, "this device was revoked".into());
        }
        let kind = frame.request.kind();
        self.shared.metrics.request(kind);
        let class = request_class(&frame.request);
        let answer = match self.session.admit(class) {
            Ok(()) => match frame.request {
                ClientRequest::Send { to, message_id, body } => {
                    match self.start_send(frame.request_id, to, message_id, body).await {
                        // Answered when the message is stored.
                        Ok(()) => return Flow::Continue,
                        Err(e) => Err(e),
                    }
                }
                other => self.handle(other).await,
            },
            Err(e) => {
                let code = match e {
                    SessionError::NotAuthenticated => ErrorCode::NotAuthenticated,
                    SessionError::AlreadyAuthenticated | SessionError::AwaitingLink => ErrorCode::WrongState,
                };
                Err(err(code, e.to_string()))
            }
        };
        self.answer(ws, frame.request_id, kind, answer).await
    }

    async fn answer(
        &mut self,
        ws: &mut WebSocket,
        request_id: u64,
        kind: &'static str,
        answer: Answer,
    ) -> Flow {
        if let Err(e) = &answer {
            self.shared.metrics.error(e.code.as_str());
            debug!(conn = self.id, request = kind, code = e.code.as_str(), "request refused");
        }
        let just_authenticated = kind == "authenticate" && answer.is_ok();
        let acked = kind == "ack" && answer.is_ok();
        let reply = ServerFrame::Response { request_id, result: answer };
        if let Flow::Close(r, m) = self.send(ws, &reply).await {
            return Flow::Close(r, m);
        }
        if just_authenticated || acked {
            return self.fill(ws).await;
        }
        Flow::Continue
    }

    async fn on_bad_frame(&mut self, ws: &mut WebSocket, e: DecodeError) -> Flow {
        self.bad_frames += 1;
        self.shared.metrics.error(e.code().as_str());
        if e.is_call_envelope()
            && let Some((account, _)) = self.session.device()
        {
            let shared = self.shared.clone();
            crate::call_service::count_misfit(&shared, account, crate::call_service::Misfit::Schema);
        }
        debug!(conn = self.id, error = %e, "undecodable frame");
        let fatal = matches!(e, DecodeError::UnsupportedVersion { .. }) || self.bad_frames >= MAX_BAD_FRAMES;
        let reply = ServerFrame::Response { request_id: 0, result: Err(err(e.code(), e.to_string())) };
        if let Flow::Close(r, m) = self.send(ws, &reply).await {
            return Flow::Close(r, m);
        }
        if fatal {
            return Flow::Close(GoodbyeReason::ProtocolViolation, e.to_string());
        }
        Flow::Continue
    }

    async fn handle(&mut self, request: ClientRequest) -> Answer {
        match request {
            ClientRequest::Ping => Ok(ResponseBody::Pong { server_time_ms: now_ms() }),
            ClientRequest::Register { phone, username } => {
                let answer = self.register(phone, username).await;
                // Registering is progress: the anonymous deadline restarts for the verification.
                if answer.is_ok() {
                    self.opened = Instant::now();
                }
                answer
            }
            ClientRequest::Verify { phone, code, device_name, secret } => {
                self.verify(phone, code, device_name, secret.hash()).await
            }
            ClientRequest::Authenticate { device, secret, client } => {
                self.authenticate(device, secret.hash(), client).await
            }
            ClientRequest::BeginLink { device_name, secret } => {
                self.begin_link(device_name, secret.hash()).await
            }
            ClientRequest::ApproveLink { code } => self.approve_link(code).await,
            // Started by `on_frame`, answered when stored; never routed here.
            ClientRequest::Send { .. } => Err(err(ErrorCode::Internal, "send routed wrongly")),
            ClientRequest::Ack { ids } => self.ack(ids).await,
            ClientRequest::ListDevices => self.list_devices().await,
            ClientRequest::RevokeDevice { device } => self.revoke(device).await,
            ClientRequest::SetUsername { username } => self.set_username(username).await,
            ClientRequest::PublishKeys { certificate, key_packages, last_resort } => {
                self.publish_keys(certificate, key_packages, last_resort).await
            }
            ClientRequest::CertifyDevice { device, certificate } => {
                self.certify_device(device, certificate).await
            }
            ClientRequest::LookupAccount { who } => self.lookup_account(who).await,
            ClientRequest::FetchKeys { accounts } => self.fetch_keys(accounts).await,
            ClientRequest::ClaimKeyPackages { devices } => self.claim_key_packages(devices).await,
            ClientRequest::GroupCommit(commit) => self.group_commit(commit).await,
            ClientRequest::GroupSend { group, message_id, body } => {
                self.group_send(group, message_id, body).await
            }
            ClientRequest::LeaveGroup { group } => self.leave_group(group).await,
            ClientRequest::StartUpload { size } => self.start_upload(size).await,
            ClientRequest::UploadChunk { blob, offset, data } => self.upload_chunk(blob, offset, data).await,
            ClientRequest::Download { blob, offset, length } => self.download(blob, offset, length).await,
            ClientRequest::PlaceCall { call, callee, group, media, offer, answer } => {
                self.place_call(call, callee, group, media, offer, answer).await
            }
            ClientRequest::FetchOffer { call } => self.fetch_offer(call).await,
            ClientRequest::CallSignal { call, kind, body } => self.call_signal(call, kind, body).await,
            ClientRequest::FetchRelayCredentials { call } => self.fetch_relay_credentials(call).await,
            ClientRequest::Block { account } => self.set_block(account, true).await,
            ClientRequest::Unblock { account } => self.set_block(account, false).await,
        }
    }

    pub(crate) fn identity(&self) -> Result<(AccountId, DeviceId), ErrorBody> {
        self.session.device().ok_or_else(|| err(ErrorCode::NotAuthenticated, "authenticate first"))
    }

    pub(crate) fn limit<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &crate::limiter::Limiter<K>,
        key: &K,
        cost: u32,
        what: &str,
    ) -> Result<(), ErrorBody> {
        limiter.check(key, cost, Instant::now()).map_err(|retry| {
            self.shared.metrics.limited(limiter.name);
            slow_down(what, retry)
        })
    }

    async fn register(
        &mut self,
        phone: rampart_core::PhoneNumber,
        username: Option<rampart_core::Username>,
    ) -> Answer {
        let shared = self.shared.clone();
        let tag = shared.phone_tag(&phone);
        self.limit(&shared.limits.register_per_address, &self.ip, 1, "registrations from this address")?;
        self.limit(&shared.limits.register_per_number, &tag, 1, "codes requested for this number")?;
        if shared.sentinel.is_some() {
            crate::sentinel_service::check_registration(&shared, self.ip).await?;
        }
        if let Some(name) = &username {
            let owner = shared.store.account_by_username(name).await.map_err(store_error)?;
            let mine = shared.store.account_by_phone(&phone).await.map_err(store_error)?;
            if owner.is_some() && owner != mine {
                return Err(err(ErrorCode::UsernameTaken, "the username is already taken"));
            }
        }
        let ttl = Duration::from_secs(shared.config.limits.code_ttl_secs);
        let code = VerificationCode::generate(&mut rand::rng());
        let now = now_ms();
        let pending = PendingRegistration {
            code_hash: code.hash_for(phone.as_e164()),
            phone: phone.clone(),
            username,
            expires_at: now + ttl.as_millis() as u64,
        };
        shared.store.begin_registration(pending).await.map_err(store_error)?;
        if let Err(e) = shared.verifier.deliver(&phone, &code, ttl, now).await {
            warn!(phone = %tag, error = %e, "verification code not delivered");
            return Err(err(ErrorCode::Unavailable, "could not send the verification code; try again later"));
        }
        info!(phone = %tag, "verification code issued");
        Ok(ResponseBody::RegistrationStarted { expires_in_secs: ttl.as_secs() as u32 })
    }

    async fn verify(
        &mut self,
        phone: rampart_core::PhoneNumber,
        code: VerificationCode,
        device_name: String,
        secret_hash: SecretHash,
    ) -> Answer {
        let shared = self.shared.clone();
        self.limit(
            &shared.limits.verify_per_address,
            &self.ip,
            1,
            "verification attempts from this address",
        )?;
        let tag = shared.phone_tag(&phone);
        // The per-number budget bounds guessing, so only wrong guesses against a pending code
        // spend it: attempts while no code is pending cannot lock the number's owner out.
        let per_number = &shared.limits.verify_per_number;
        if !per_number.would_allow(&tag, Instant::now()) {
            shared.metrics.limited(per_number.name);
            return Err(slow_down("wrong codes for this number", RetryAfter(Duration::from_secs(600))));
        }
        let device = NewDevice { name: default_name(device_name, "primary"), secret_hash };
        let done = shared
            .store
            .complete_registration(
                &phone,
                code.hash_for(phone.as_e164()),
                device,
                now_ms(),
                MAX_CODE_ATTEMPTS,
            )
            .await;
        if matches!(done, Err(StoreError::WrongCode { .. })) {
            let _ = per_number.check(&tag, 1, Instant::now());
        }
        let done = done.map_err(store_error)?;
        for removed in &done.removed_devices {
            shared.hub.revoke(*removed);
        }
        // The country code and the first digits: enough to see a burst of one carrier's
        // numbers, not enough to name anyone.
        let number_prefix: String = phone.as_e164().chars().take(5).collect();
        crate::sentinel_service::observe(
            &shared,
            rampart_sentinel::Observation::Registered {
                account: done.account.0,
                addr: self.ip,
                number_prefix,
            },
        );
        info!(phone = %shared.phone_tag(&phone), account = %done.account, device = %done.device, replaced = done.replaced_existing, "registered");
        Ok(ResponseBody::Registered {
            account: done.account,
            device: done.device,
            replaced_existing: done.replaced_existing,
        })
    }

    async fn authenticate(&mut self, device: DeviceId, presented: SecretHash, client: String) -> Answer {
        let shared = self.shared.clone();
        // Failures are limited per address and per device, and only failures: a valid login is
        // never refused because someone else (behind the same NAT, or guessing at this device)
        // failed. A device secret is 256 random bits, so the limits shape floods, not guessing.
        let (by_address, by_device) =
            (&shared.limits.auth_failures_per_address, &shared.limits.auth_failures_per_device);
        let now = Instant::now();
        let flooding = !by_address.would_allow(&self.ip, now) || !by_device.would_allow(&device, now);
        let record = shared.store.device_auth(device).await.map_err(store_error)?;
        let Some(record) = record.filter(|r| r.secret_hash.matches(&presented)) else {
            let _ = by_address.check(&self.ip, 1, now);
            let _ = by_device.check(&device, 1, now);
            if flooding {
                shared.metrics.limited(by_address.name);
                return Err(slow_down("failed authentications", RetryAfter(Duration::from_secs(2))));
            }
            return Err(err(
                ErrorCode::InvalidCredentials,
                "unknown device or wrong credentials (was this device revoked or the account registered again?)",
            ));
        };
        if shared.sentinel.is_some() {
            crate::sentinel_service::check_sign_in(&shared, record.account).await?;
        }
        crate::sentinel_service::observe(
            &shared,
            rampart_sentinel::Observation::Connected {
                account: record.account.0,
                addr: self.ip,
                registered_at_ms: Some(record.account_created_at),
                device_registered_at_ms: Some(record.device_created_at),
                unknown_client: (!shared.config.sentinel.is_known_client(&client)).then(|| client.clone()),
            },
        );
        self.client = client;
        let label =
            shared.store.account_label(record.account).await.map_err(store_error)?.unwrap_or_default();
        shared.store.touch_device(device, now_ms()).await.map_err(store_error)?;
        if !shared.hub.attach(device, self.peer()) {
            shared.metrics.limited("connections_per_device");
            return Err(err(
                ErrorCode::RateLimited,
                "slow down: this device already has the most connections allowed; close one first",
            ));
        }
        // A revocation that committed after the check above but before the attach found no
        // session to flag. Look again now that this one is attached: a revocation from here on
        // finds and flags it, and one before this read shows here.
        let still = shared.store.device_auth(device).await.map_err(store_error)?;
        if !still.is_some_and(|r| r.secret_hash.matches(&presented)) {
            shared.hub.detach(device, self.id);
            return Err(err(ErrorCode::InvalidCredentials, "this device was revoked while it logged in"));
        }
        self.session = Session::Authenticated { account: record.account, device };
        self.label = label.clone();
        shared.metrics.authenticated_devices.inc();
        debug!(conn = self.id, account = %record.account, device = %device, "authenticated");
        Ok(ResponseBody::Authenticated { account: record.account, device, label })
    }

    async fn begin_link(&mut self, device_name: String, secret_hash: SecretHash) -> Answer {
        let shared = self.shared.clone();
        self.limit(&shared.limits.verify_per_address, &self.ip, 1, "link attempts from this address")?;
        let code = LinkCode::generate(&mut rand::rng());
        let ttl = Duration::from_secs(shared.config.limits.code_ttl_secs);
        let pending = PendingLink {
            code_hash: code.hash(),
            device: NewDevice { name: default_name(device_name, "linked device"), secret_hash },
            expires_at: now_ms() + ttl.as_millis() as u64,
        };
        shared.store.begin_link(pending).await.map_err(store_error)?;
        shared.hub.wait_link(code.hash(), self.peer());
        self.waiting_link = Some(code.hash());
        self.link_deadline = Some(Instant::now() + ttl);
        self.session = Session::AwaitingLink;
        Ok(ResponseBody::LinkStarted { code, expires_in_secs: ttl.as_secs() as u32 })
    }

    async fn approve_link(&mut self, code: LinkCode) -> Answer {
        let (account, _) = self.identity()?;
        let shared = self.shared.clone();
        self.limit(&shared.limits.verify_per_address, &self.ip, 1, "link approvals from this address")?;
        let (_, device) = self.identity()?;
        self.limit(&shared.limits.approve_per_device, &device, 1, "link approvals from this device")?;
        let device = shared
            .store
            .complete_link(code.hash(), device, account, now_ms(), shared.config.limits.max_devices)
            .await
            .map_err(store_error)?;
        let notified = shared.hub.complete_link(code.hash(), account, device);
        info!(account = %account, device = %device, notified, "device linked");
        Ok(ResponseBody::LinkApproved { device })
    }

    /// Check a send and start storing it. The answer comes later, as an `Event::SendDone`,
    /// so one connection can have many sends in one group commit.
    async fn start_send(
        &mut self,
        request_id: u64,
        to: Recipient,
        message_id: rampart_core::MessageId,
        body: Bytes,
    ) -> Result<(), ErrorBody> {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        self.admit_message(device, body.len())?;
        let recipient = self.resolve(&to).await?;
        let now = now_ms();
        let msg = NewMessage {
            recipient,
            only_device: None,
            sender_account: account,
            sender_device: device,
            message_id,
            received_at: now,
            expires_at: now + shared.config.limits.message_ttl_secs * 1000,
            body: rampart_proto::encode_envelope(&rampart_proto::Envelope::Direct(body)),
        };
        self.sends.push(Box::pin(async move {
            let stored = shared.store.enqueue(msg, shared.config.limits.queue()).await;
            let answer = stored.map_err(store_error).map(|copies| {
                shared.metrics.messages_received.inc();
                let count = copies.len() as u32;
                for copy in copies {
                    shared.hub.push_message(copy);
                }
                ResponseBody::Sent { server_timestamp_ms: now, recipient_devices: count, skipped_devices: 0 }
            });
            (request_id, answer)
        }));
        Ok(())
    }

    /// The server's size limit and the sender's message and upload rate limits, for any
    /// message that will be queued.
    pub(crate) fn admit_message(&self, device: DeviceId, len: usize) -> Result<(), ErrorBody> {
        let limits = &self.shared.limits;
        let max = self.shared.config.limits.max_message_bytes;
        if len > max {
            return Err(err(
                ErrorCode::MessageTooLarge,
                format!("message of {len} bytes exceeds this server's limit of {max} bytes"),
            ));
        }
        self.limit(&limits.send, &device, 1, "messages")?;
        let kib = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
        self.limit(&limits.upload_kib, &device, kib, "bytes uploaded")
    }

    pub(crate) async fn resolve(&mut self, to: &Recipient) -> Result<AccountId, ErrorBody> {
        if let Some(a) = self.recipients.get(to) {
            return Ok(*a);
        }
        // Every new person asked about costs, found or not: a miss says "not registered" as
        // clearly as a hit says "registered".
        let (me, _) = self.identity()?;
        let target = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            match to {
                Recipient::Phone(p) => ("phone", self.shared.phone_tag(p)).hash(&mut h),
                Recipient::Username(u) => ("username", u.as_str().to_lowercase()).hash(&mut h),
            }
            h.finish()
        };
        let lookups = &self.shared.limits.lookups_per_account;
        lookups.check(&me, target, Instant::now()).map_err(|retry| {
            self.shared.metrics.limited(lookups.name);
            slow_down("new people looked up", retry)
        })?;
        let store = &self.shared.store;
        let found = match to {
            Recipient::Phone(p) => store.account_by_phone(p).await,
            Recipient::Username(u) => store.account_by_username(u).await,
        }
        .map_err(store_error)?;
        let account = found.ok_or_else(|| match to {
            Recipient::Phone(_) => {
                err(ErrorCode::NoSuchRecipient, "no Rampart account has this phone number")
            }
            Recipient::Username(_) => err(ErrorCode::NoSuchRecipient, "no Rampart account has this username"),
        })?;
        // Only numbers are remembered: an account keeps its number's id across
        // re-registrations, while a username can pass to someone else at any time.
        if matches!(to, Recipient::Phone(_)) {
            if self.recipients.len() >= RECIPIENT_CACHE {
                self.recipients.clear();
            }
            self.recipients.insert(to.clone(), account);
        }
        Ok(account)
    }

    async fn ack(&mut self, ids: Vec<ServerMessageId>) -> Answer {
        let (_, device) = self.identity()?;
        let deleted = self.shared.store.ack(device, &ids).await.map_err(store_error)?;
        for id in &ids {
            self.in_flight.remove(id);
        }
        self.shared.metrics.messages_acked.inc_by(deleted);
        Ok(ResponseBody::Ok)
    }

    async fn list_devices(&mut self) -> Answer {
        let (account, _) = self.identity()?;
        let list = self.shared.store.list_devices(account).await.map_err(store_error)?;
        Ok(ResponseBody::Devices(
            list.into_iter()
                .map(|d| DeviceInfo {
                    device: d.id,
                    name: d.name,
                    created_at_ms: d.created_at,
                    last_seen_at_ms: d.last_seen_at,
                })
                .collect(),
        ))
    }

    async fn revoke(&mut self, target: DeviceId) -> Answer {
        let (account, device) = self.identity()?;
        self.shared.store.revoke_device(account, target).await.map_err(store_error)?;
        self.shared.hub.revoke(target);
        info!(account = %account, by = %device, revoked = %target, "device revoked");
        Ok(ResponseBody::Ok)
    }

    async fn set_username(&mut self, username: Option<rampart_core::Username>) -> Answer {
        let (account, _) = self.identity()?;
        let store = &self.shared.store;
        store.set_username(account, username.as_ref()).await.map_err(store_error)?;
        self.label = store.account_label(account).await.map_err(store_error)?.unwrap_or_default();
        Ok(ResponseBody::Ok)
    }
}

/// A write that does not finish in time means the peer stopped reading: close rather than
/// wait forever with its pushes piling up.
async fn write_within(limit: Duration, write: impl Future<Output = Result<(), axum::Error>>) -> Flow {
    // Most writes complete at once (into the buffer); only arm a timer for one that waits.
    let mut write = std::pin::pin!(write);
    let done = match (&mut write).now_or_never() {
        Some(result) => Ok(result),
        None => tokio::time::timeout(limit, write).await,
    };
    match done {
        Ok(Ok(())) => Flow::Continue,
        Ok(Err(e)) => Flow::Close(GoodbyeReason::Unspecified, format!("write failed: {e}")),
        Err(_) => Flow::Close(GoodbyeReason::IdleTimeout, "the connection stopped reading".into()),
    }
}

fn default_name(name: String, fallback: &str) -> String {
    if name.trim().is_empty() { fallback.to_owned() } else { name }
}

fn request_class(request: &ClientRequest) -> RequestClass {
    match request {
        ClientRequest::Ping => RequestClass::Always,
        ClientRequest::Register { .. } | ClientRequest::Verify { .. } | ClientRequest::BeginLink { .. } => {
            RequestClass::Anonymous
        }
        ClientRequest::Authenticate { .. } => RequestClass::Authenticate,
        ClientRequest::ApproveLink { .. }
        | ClientRequest::Send { .. }
        | ClientRequest::Ack { .. }
        | ClientRequest::ListDevices
        | ClientRequest::RevokeDevice { .. }
        | ClientRequest::SetUsername { .. }
        | ClientRequest::PublishKeys { .. }
        | ClientRequest::CertifyDevice { .. }
        | ClientRequest::LookupAccount { .. }
        | ClientRequest::FetchKeys { .. }
        | ClientRequest::ClaimKeyPackages { .. }
        | ClientRequest::GroupCommit(_)
        | ClientRequest::GroupSend { .. }
        | ClientRequest::LeaveGroup { .. }
        | ClientRequest::StartUpload { .. }
        | ClientRequest::UploadChunk { .. }
        | ClientRequest::Download { .. }
        | ClientRequest::PlaceCall { .. }
        | ClientRequest::FetchOffer { .. }
        | ClientRequest::CallSignal { .. }
        | ClientRequest::FetchRelayCredentials { .. }
        | ClientRequest::Block { .. }
        | ClientRequest::Unblock { .. } => RequestClass::Device,
    }
}
