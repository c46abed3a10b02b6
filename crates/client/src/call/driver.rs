//! Voice calls: the typed call machines of `rampart-core` driven over a server connection, a
//! TURN allocation on the relay, and the audio pipeline of `rampart-media`.
//!
//! The order of things is the security argument (docs/calls.md):
//! - a received ring notice or call signal is only queued here ([`CallInput`]); nothing is
//!   decrypted while receiving;
//! - the machine decides what may be opened: a callee's machine releases the caller's offer
//!   only after the local accept, and only then is it MLS-decrypted and parsed;
//! - relay credentials are fetched, and a socket opened, only on the machine's
//!   `FetchRelayCredentials`, which a callee's machine emits only after accept;
//! - the audio pipeline needs the machine's `MediaPermit` to exist at all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rampart_core::call::{
    CallEvent, CallId, CalleeCall, MediaKind, MediaPermit, RING_TIMEOUT_MS, RingNotice, SealedSignal,
    SignalKind,
};
use rampart_core::{AccountId, DeviceId, GroupId, MessageId};
use rampart_media::video::{SendStream, VideoReceiver, VideoSendConfig, VideoSender};
use rampart_media::{AudioReceiver, AudioSender, CallDirection, Frame, SrtpKeys};
use rampart_mls::Processed;
use rampart_proto::{
    CallMessage, ChallengeAnswer, ClientRequest, Content, ContentBody, ErrorBody, ErrorCode, MediaSession,
    ResponseBody, decode_content, encode_content,
};
use rampart_relay::TurnClient;
use rampart_turn::uri::{RelayTransport, fallback_order};
use serde::Serialize;
use zeroize::Zeroizing;

use super::CallControls;
use super::audio_device::{DeviceChoice, Microphone, Speaker};
use super::video::{self as call_video, CallVideo, VideoParts, VideoReport, VideoSource};
use crate::call_inbox::CallInput;
use crate::call_session::{CallProgress, CallRefusal, CallSession, NotTaken, reason_outcome};
use crate::client::Client;
use crate::clock::now_ms;
use crate::e2e::Until;
use crate::error::ClientError;
use crate::net::{Connection, pinned_tls_config};
use crate::recipient::parse_recipient;

/// The MLS exporter label that keys call media (docs/calls.md).
const EXPORTER_LABEL: &str = "rampart call";
const EXPORTER_BYTES: usize = 64;
/// Inputs kept for a call driver when none is running (e.g. while only receiving messages).
const MAX_CALL_INPUTS: usize = 256;
/// The longest the driver waits on the connection per turn of its loop: a signal ends the
/// wait at once; the turn comes round anyway this often for hang-up keys, limits, the media
/// task's health and the window's own work.
pub const SIGNAL_POLL: Duration = Duration::from_millis(40);
/// Opus frame length.
const FRAME_MS: u64 = 20;
/// A call whose media stopped arriving this long ago has failed (the relay or the network
/// dropped it); it is hung up rather than left "connected" in silence.
const NO_MEDIA_TIMEOUT: Duration = Duration::from_secs(15);
/// `--record` keeps at most an hour (about 330 MiB of samples in memory).
const MAX_RECORDED_FRAMES: usize = 3600 * 50;

/// Where a call's outgoing audio comes from and where incoming audio goes.
#[derive(Debug, Clone, Default)]
pub struct CallMedia {
    /// Frames to send (48 kHz mono, 20 ms each); silence after they run out. Takes the place
    /// of the microphone.
    pub play: Option<Vec<Frame>>,
    /// Write what is received here as a WAV file when the call ends.
    pub record: Option<PathBuf>,
    /// Send what this input device (a microphone) captures, unless `play` is set. `None`, or no
    /// sound server: silence.
    pub input: Option<DeviceChoice>,
    /// Play what is received on this output device (a speaker or headset).
    pub output: Option<DeviceChoice>,
    /// Send the microphone as it is: no echo cancellation, noise suppression or gain control
    /// (for a headset or an external processor that already does them).
    pub raw_microphone: bool,
    /// Video: `Some` makes a caller's offer ask for it. A callee receives the video its caller
    /// offers in any case; it sends video only with a clip here.
    pub video: Option<CallVideo>,
    /// Mute, and the other side's latest picture, for whoever shows the call.
    pub controls: CallControls,
}

impl CallMedia {
    /// The default microphone and speaker, when the machine has a sound server.
    pub fn devices() -> Self {
        Self { input: Some(DeviceChoice::Default), output: Some(DeviceChoice::Default), ..Self::default() }
    }
}

/// How a call went, for the terminal and `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallReport {
    pub call: String,
    pub peer: String,
    pub outgoing: bool,
    pub outcome: String,
    pub detail: String,
    pub media_ms: u64,
    pub frames_sent: u64,
    pub packets_received: u64,
    pub packets_rejected: u64,
    pub frames_decoded: u64,
    pub frames_concealed: u64,
    pub frames_recorded: u64,
    /// Of the caller's signals: dropped before accept, dropped out of place, released.
    pub signals_dropped_before_accept: u64,
    pub signals_dropped_out_of_place: u64,
    pub signals_released: u64,
    /// Released signals that did not decrypt or parse (dropped).
    pub signals_unusable: u64,
    pub relay: String,
    /// Where the audio came from and went: devices, files, or why a device could not be used.
    pub audio: String,
    /// Our relayed address on the relay (what our offer or answer named), and our media SSRC:
    /// for diagnosing a call, and for tests that check the server never learns either.
    pub relayed_address: String,
    pub ssrc: u32,
    /// The video, when the call had any.
    pub video: Option<VideoReport>,
}

/// What ringing calls did while nobody picked up ([`Client::watch_rings`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RingWatch {
    pub ring_notices: u64,
    /// Calls that rang (their caller may ring this device).
    pub rang: u64,
    pub signals_received: u64,
    pub dropped_before_accept: u64,
    pub dropped_out_of_place: u64,
    /// Signals released for decryption and parsing: offers parsed included.
    pub released: u64,
    /// Offer or relay-credential fetches (each would open something).
    pub fetches: u64,
    pub media_enabled: u64,
}

impl std::fmt::Display for CallProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallProgress::Calling { peer } => write!(f, "calling {peer}…"),
            CallProgress::Ringing { devices } => write!(f, "ringing ({devices} device(s))"),
            CallProgress::Accepting { peer } => write!(f, "{peer} is calling; accepting"),
            CallProgress::Connected { peer, relay } => write!(f, "connected with {peer} (relay {relay})"),
            CallProgress::ProvingWork { bits } => {
                write!(f, "the server asks for proof of work before this call ({bits} bits)…")
            }
            CallProgress::HangingUp => write!(f, "hanging up"),
            CallProgress::Waiting { peer } => {
                write!(f, "{peer} is calling too: busy, it rings out as missed")
            }
            CallProgress::Ended { outcome } => write!(f, "call ended: {outcome}"),
        }
    }
}

/// Answer a call challenge, off the async workers, in slices: between two the user may hang up
/// (then `None`: nothing is placed), and the work stops when the challenge can no longer be
/// answered in time.
async fn prove_work(
    challenge: rampart_proto::Challenge,
    limits: &CallLimits,
) -> Result<Option<ChallengeAnswer>, ClientError> {
    use rampart_core::challenge::{CHALLENGE_LIFETIME_MS, ChallengeError, SOLVE_BUDGET, solve_range};
    /// About 10 ms of hashing.
    const SLICE: u64 = 1 << 16;
    let token = challenge.token;
    let bits = challenge.difficulty_bits;
    let flag = limits.hangup_flag.clone();
    let file = limits.hangup_file.clone();
    let deadline = Instant::now() + Duration::from_millis(CHALLENGE_LIFETIME_MS);
    let solved = tokio::task::spawn_blocking(move || {
        let mut from = 0u64;
        while from < SOLVE_BUDGET {
            // Only looked at: the call's own loop takes the hang-up and ends the call.
            let hung_up = flag.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire))
                || file.as_ref().is_some_and(|f| f.exists());
            if hung_up {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(ChallengeError::Expired);
            }
            if let Some(nonce) = solve_range(&token, bits, from, SLICE)? {
                return Ok(Some(ChallengeAnswer { token: token.into(), nonce }));
            }
            from += SLICE;
        }
        Err(ChallengeError::OutOfBudget)
    })
    .await
    .map_err(|e| call_error(format!("proof of work stopped: {e}")))?;
    solved.map_err(|e| call_error(format!("cannot prove the work the server asks for: {e}")))
}

/// When a call stops without the other side's doing.
#[derive(Debug, Clone, Default)]
pub struct CallLimits {
    /// Hang up after this long with media.
    pub duration: Option<Duration>,
    /// Hang up when this file appears (what `rampart hangup` creates); it is removed.
    pub hangup_file: Option<PathBuf>,
    /// Hang up when this turns true (the chat window's hang-up key).
    pub hangup_flag: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// A call in progress, driven by its owner's loop, quinn style: the owner receives (handing
/// call signals to the client's queue), then calls [`Client::step_call`], which takes those
/// signals, checks the limits and carries out what the session decided; when the step says the
/// call is over, [`Client::end_call`] closes it and says how it went. `rampart call` and
/// `rampart answer` drive one on their own connection; the chat window drives one beside
/// everything else on its [`crate::online::Online`] connection.
#[derive(Debug)]
pub struct OngoingCall {
    active: Active,
    media: CallMedia,
    limits: CallLimits,
    media_started: Option<Instant>,
}

impl OngoingCall {
    fn new(session: CallSession, media: CallMedia, limits: CallLimits) -> Self {
        Self { active: Active::new(session), media, limits, media_started: None }
    }

    /// The connection to the server is gone: no signal can be sent or received, so the call
    /// fails (media, the relay allocation and the call log are still closed by `end_call`).
    pub fn connection_lost(&mut self, why: &dyn std::fmt::Display) {
        if self.active.session.ended().is_none() {
            self.active.session.fail(format!("lost the connection to the server: {why}"));
        }
        while self.active.session.poll_event().is_some() {}
    }

    /// Whether the call is over (`end_call` is what is left to do).
    pub fn is_over(&self) -> bool {
        self.active.session.ended().is_some()
    }

    /// The call's id in hex, as the call log shows it.
    pub fn id(&self) -> String {
        hex::encode(self.active.session.call.0)
    }
}

/// One call in progress: its session (the decisions) and what carries it out.
struct Active {
    session: CallSession,
    turn: Option<Arc<TurnClient>>,
    /// The relay in use, as a TURN URI (which says the transport too).
    relay_server: Option<String>,
    media: Option<MediaTask>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("call", &hex::encode(self.session.call.0))
            .field("relay_server", &self.relay_server)
            .field("media", &self.media.is_some())
            .finish_non_exhaustive()
    }
}

impl Active {
    fn new(session: CallSession) -> Self {
        Self { session, turn: None, relay_server: None, media: None }
    }
}

fn call_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Call(e.to_string())
}

impl Client {
    /// Queue a received ring notice for a call driver and log it: as missed until a driver
    /// answers, or as a call request when the caller may not ring this device.
    pub(crate) fn on_ring_notice(&mut self, notice: RingNotice, label: &str) -> Result<bool, ClientError> {
        let policy = self.profile.ring_policy()?;
        let contact = self.profile.is_contact(notice.caller)?;
        let may_ring = policy.may_ring(contact);
        let stale = now_ms().saturating_sub(notice.sent_at_ms) > RING_TIMEOUT_MS;
        let outcome = if !may_ring { "request" } else { "missed" };
        self.profile.log_call(&notice.call, notice.caller, label, false, outcome, notice.sent_at_ms)?;
        let may_ring = may_ring && !stale;
        self.push_call_input(CallInput::Ring { notice, label: label.to_owned(), may_ring });
        Ok(may_ring)
    }

    /// Save `who` (+E164 or @username) as a contact; returns how they are shown. A request
    /// they sent earlier opens now.
    pub async fn add_contact(&mut self, who: &str) -> Result<String, ClientError> {
        let mut conn = self.connect().await?;
        let result = async {
            let found = self.lookup(&mut conn, parse_recipient(who)?).await?;
            self.profile.save_contact(found.account, &found.label)?;
            self.profile.accept_requests_from(found.account)?;
            self.release_requests(&mut conn).await?;
            self.share_contacts(&mut conn, vec![(found.account, found.label.clone())]).await;
            Ok(found.label)
        }
        .await;
        conn.close().await;
        result
    }

    pub(crate) fn push_call_input(&mut self, input: CallInput) {
        if self.call_inputs.len() >= MAX_CALL_INPUTS {
            self.call_inputs.pop_front();
        }
        self.call_inputs.push_back(input);
    }

    /// Call `to` (+E164, @username or a 1:1 conversation) and stay in the call until either
    /// side hangs up or `limits` say so.
    pub async fn call(
        &mut self,
        to: &str,
        media: CallMedia,
        limits: CallLimits,
        progress: &mut (dyn FnMut(&CallProgress) + Send),
    ) -> Result<CallReport, ClientError> {
        let mut conn = self.connect().await?;
        let result = async {
            let call = self.start_call(&mut conn, to, media, limits, progress).await?;
            self.drive(&mut conn, call, progress).await
        }
        .await;
        conn.close().await;
        result
    }

    /// Start calling `to` on an open connection: the call is logged and the session made; the
    /// first [`Client::step_call`] places it.
    pub async fn start_call(
        &mut self,
        conn: &mut Connection,
        to: &str,
        media: CallMedia,
        limits: CallLimits,
        progress: &mut (dyn FnMut(&CallProgress) + Send),
    ) -> Result<OngoingCall, ClientError> {
        let group = self.conversation_for(conn, to).await?;
        let peer = self
            .profile
            .conversation_peer(&group)?
            .ok_or_else(|| ClientError::Input("calls are 1:1: name a person, not a group".into()))?;
        let label = self.conversation_name(&group)?;
        // Calling someone is writing to them: they become a contact.
        self.profile.save_contact(peer, &label)?;
        let call = CallId(rand::random());
        let now = now_ms();
        self.profile.log_call(&call, peer, &label, true, "dialing", now)?;
        progress(&CallProgress::Calling { peer: label.clone() });
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        let local_ssrc = rand::random();
        let video_ssrc = media.video.as_ref().map(|_| other_ssrc(local_ssrc));
        let session =
            CallSession::dial(call, group, peer, label, (me.account, me.device), local_ssrc, video_ssrc, now);
        Ok(OngoingCall::new(session, media, limits))
    }

    /// Ring notices that arrived (and may ring this device), oldest first; other call inputs
    /// stay queued.
    pub fn take_rings(&mut self) -> Vec<(RingNotice, String)> {
        let mut rings = Vec::new();
        self.call_inputs.retain(|input| match input {
            CallInput::Ring { notice, label, may_ring } => {
                if *may_ring {
                    rings.push((*notice, label.clone()));
                }
                false
            }
            CallInput::Signal { .. } => true,
        });
        rings
    }

    /// The queued signals for `call`, oldest first, taken out of the queue (still sealed).
    fn take_call_signals(&mut self, call: &CallId) -> Vec<(SignalKind, Bytes, (AccountId, DeviceId))> {
        let mut taken = Vec::new();
        self.call_inputs.retain(|input| match input {
            CallInput::Signal { call: c, kind, payload, from, .. } if c == call => {
                taken.push((*kind, payload.clone(), *from));
                false
            }
            _ => true,
        });
        taken
    }

    /// Whether the caller of `call` gave up (hung up) while it rang; consumes that signal.
    /// Only the caller's own device, or another device of this account (which took or
    /// declined the call), can end a ring this way.
    pub fn caller_gave_up(&mut self, notice: &RingNotice) -> bool {
        let me = self.profile.credentials().ok().flatten().map(|c| (c.account, c.device));
        let before = self.call_inputs.len();
        self.call_inputs.retain(|input| match input {
            CallInput::Signal { call, kind: SignalKind::Hangup, from, .. } if *call == notice.call => {
                let from_caller = *from == (notice.caller, notice.caller_device);
                let my_other_device =
                    me.is_some_and(|(account, device)| from.0 == account && from.1 != device);
                !(from_caller || my_other_device)
            }
            _ => true,
        });
        self.call_inputs.len() != before
    }

    /// Wait up to `wait` for an incoming call that may ring this device, accept it, and stay
    /// in it until either side hangs up or `limits` say so.
    pub async fn answer(
        &mut self,
        wait: Duration,
        media: CallMedia,
        limits: CallLimits,
        progress: &mut (dyn FnMut(&CallProgress) + Send),
    ) -> Result<CallReport, ClientError> {
        let mut conn = self.connect().await?;
        let result = async {
            let started = Instant::now();
            let (notice, label) = loop {
                let left = wait.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(ClientError::Call(format!(
                        "no call rang this device within {} s",
                        wait.as_secs()
                    )));
                }
                // `rampart hangup` while waiting stops the wait (it must not end the next call).
                if let Some(path) = &limits.hangup_file
                    && path.exists()
                {
                    let _ = std::fs::remove_file(path);
                    return Err(ClientError::Call("stopped waiting for a call".into()));
                }
                self.drain(&mut conn, left.min(Duration::from_millis(500)), &mut |_| {}).await?;
                if let Some(ring) = self.take_rings().pop() {
                    break ring;
                }
            };
            progress(&CallProgress::Accepting { peer: label.clone() });
            let call = self.accept_call(notice, &label, media, limits)?;
            self.drive(&mut conn, call, progress).await
        }
        .await;
        conn.close().await;
        result
    }

    /// The user accepted a ringing call: the session is made with what arrived for it while it
    /// rang; the first [`Client::step_call`] fetches the offer and connects.
    pub fn accept_call(
        &mut self,
        notice: RingNotice,
        label: &str,
        media: CallMedia,
        limits: CallLimits,
    ) -> Result<OngoingCall, ClientError> {
        let policy = self.profile.ring_policy()?;
        let contact = self.profile.is_contact(notice.caller)?;
        let group = self.profile.direct_conversation(notice.caller)?.ok_or_else(|| {
            ClientError::Call("a call from someone without a 1:1 conversation with this device".into())
        })?;
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        let early: Vec<_> = self
            .take_call_signals(&notice.call)
            .into_iter()
            .map(|(kind, payload, from)| (kind, payload.to_vec(), from))
            .collect();
        let call = notice.call;
        let accepted = CallSession::accept(
            notice,
            policy,
            contact,
            group,
            label.to_owned(),
            (me.account, me.device),
            early,
            rand::random(),
            now_ms(),
        );
        let session = match accepted {
            Ok(session) => session,
            Err(NotTaken { outcome, why, counters }) => {
                // Too late: the log says how it ended and keeps what the ring dropped.
                self.profile.update_call(&call, outcome, why, None, Some(now_ms()))?;
                self.profile.record_call_signals(&call, counters.dropped_before_accept, counters.released)?;
                return Err(ClientError::Call(why.into()));
            }
        };
        self.profile.update_call(&call, "answered", "", session.answered_at, None)?;
        Ok(OngoingCall::new(session, media, limits))
    }

    /// Let calls ring for `duration` without ever accepting, feeding everything that arrives
    /// for them to their callee machines, and say what the machines did with it. What a device
    /// does while it rings and nobody picks up (and what the hostile-caller test checks).
    pub async fn watch_rings(
        &mut self,
        conn: &mut Connection,
        duration: Duration,
    ) -> Result<RingWatch, ClientError> {
        let policy = self.profile.ring_policy()?;
        let started = Instant::now();
        let mut machines: std::collections::HashMap<CallId, CalleeCall> = Default::default();
        let mut watch = RingWatch::default();
        while started.elapsed() < duration {
            self.drain(conn, SIGNAL_POLL, &mut |_| {}).await?;
            // Rings first: a signal that came in the same batch as (even ahead of) its ring
            // still finds the ringing machine.
            let mut inputs: Vec<CallInput> = std::mem::take(&mut self.call_inputs).into();
            inputs.sort_by_key(|input| matches!(input, CallInput::Signal { .. }));
            for input in inputs {
                match input {
                    CallInput::Ring { notice, .. } => {
                        watch.ring_notices += 1;
                        let contact = self.profile.is_contact(notice.caller)?;
                        machines
                            .entry(notice.call)
                            .or_insert_with(|| CalleeCall::on_ring(notice, policy, contact, now_ms()));
                    }
                    CallInput::Signal { call, kind, payload, .. } => {
                        watch.signals_received += 1;
                        if let Some(m) = machines.get_mut(&call) {
                            m.handle_signal(SealedSignal::new(kind, payload.to_vec()));
                        }
                    }
                }
            }
            for m in machines.values_mut() {
                m.handle_timeout(now_ms());
                while let Some(event) = m.poll_event() {
                    match event {
                        CallEvent::Ring(_) => watch.rang += 1,
                        CallEvent::Released(_) => watch.released += 1,
                        CallEvent::FetchOffer | CallEvent::FetchRelayCredentials => watch.fetches += 1,
                        CallEvent::EnableMedia(_) => watch.media_enabled += 1,
                        CallEvent::Send(_) | CallEvent::Ended(_) => {}
                    }
                }
            }
        }
        let mut released_by_machines = 0;
        for m in machines.values() {
            let c = m.counters();
            watch.dropped_before_accept += c.dropped_before_accept;
            watch.dropped_out_of_place += c.dropped_out_of_place;
            released_by_machines += c.released;
        }
        // Released events were counted as they came out; keep the larger count if a machine
        // saw more than it emitted (it cannot, but the watch must not under-report).
        watch.released = watch.released.max(released_by_machines);
        Ok(watch)
    }

    /// The user declined a ringing call: the caller hears "rejected".
    pub async fn decline_on(&mut self, conn: &mut Connection, call: CallId) -> Result<(), ClientError> {
        self.profile.update_call(&call, "declined", "", None, Some(now_ms()))?;
        conn.request(ClientRequest::CallSignal { call, kind: SignalKind::Reject, body: Bytes::new() })
            .await?;
        Ok(())
    }

    fn conversation_name(&self, group: &GroupId) -> Result<String, ClientError> {
        Ok(self
            .profile
            .conversations()?
            .into_iter()
            .find(|c| GroupId::from_hex(&c.id).as_ref() == Some(group))
            .map(|c| c.name)
            .unwrap_or_else(|| "?".into()))
    }

    /// The call loop of `rampart call` and `rampart answer`: steps, and between them receives
    /// on the call's own connection until a signal or the poll interval comes.
    async fn drive(
        &mut self,
        conn: &mut Connection,
        mut call: OngoingCall,
        progress: &mut (dyn FnMut(&CallProgress) + Send),
    ) -> Result<CallReport, ClientError> {
        while self.step_call(&mut call, conn, progress).await {
            if let Err(e) = self.drain_until(conn, SIGNAL_POLL, Until::News, &mut |_| {}).await {
                call.connection_lost(&e);
            }
        }
        self.end_call(call).await
    }

    /// One step of a call: the signals and rings received since the last step go to the
    /// session, the limits (duration, hang-up file or key) and the media task are checked, and
    /// what the session decided is carried out on `conn`. Returns whether the call goes on;
    /// once it does not, [`Client::end_call`] is what is left. The owner receives between
    /// steps, stopping early when a call signal comes ([`crate::online::Online::receive_in_call`]),
    /// and steps at least every few tens of milliseconds.
    pub async fn step_call(
        &mut self,
        call: &mut OngoingCall,
        conn: &mut Connection,
        progress: &mut (dyn FnMut(&CallProgress) + Send),
    ) -> bool {
        let OngoingCall { active, media, limits, media_started } = call;
        while let Some(input) = self.call_inputs.pop_front() {
            if let Some(told) = active.session.handle_input(input) {
                progress(&told);
            }
        }
        if active.session.ended().is_none() {
            if let (Some(d), Some(started)) = (limits.duration, *media_started)
                && started.elapsed() >= d
            {
                active.session.hang_up();
            } else if let Some(path) = &limits.hangup_file
                && path.exists()
            {
                let _ = std::fs::remove_file(path);
                progress(&CallProgress::HangingUp);
                active.session.hang_up();
            } else if limits
                .hangup_flag
                .as_ref()
                .is_some_and(|f| f.swap(false, std::sync::atomic::Ordering::AcqRel))
            {
                progress(&CallProgress::HangingUp);
                active.session.hang_up();
            } else if active.media.as_ref().is_some_and(|m| m.handle.is_finished()) {
                active.session.fail("the media path failed");
            }
        }
        active.session.handle_timeout(now_ms());
        while let Some(event) = active.session.poll_event() {
            if let Err(e) = self.on_call_event(conn, active, media, limits, event, progress).await {
                active.session.fail(e.to_string());
            }
            if active.media.is_some() && media_started.is_none() {
                *media_started = Some(Instant::now());
            }
        }
        active.session.ended().is_none()
    }

    /// Close a call that is over (one that is not yet is failed first): media stops, the relay
    /// allocation is released, the recording is written and the call log says how it ended.
    pub async fn end_call(&mut self, call: OngoingCall) -> Result<CallReport, ClientError> {
        let OngoingCall { mut active, .. } = call;
        if active.session.ended().is_none() {
            active.session.fail("stopped before it ended");
            while active.session.poll_event().is_some() {}
        }
        let mut report = self.finish(&mut active).await;
        report.outcome = active.session.outcome().into();
        let counters = active.session.counters();
        report.signals_dropped_before_accept = counters.dropped_before_accept;
        report.signals_dropped_out_of_place = counters.dropped_out_of_place;
        report.signals_released = counters.released;
        report.signals_unusable = active.session.unusable_signals();
        self.profile.update_call(
            &active.session.call,
            &report.outcome,
            &report.detail,
            None,
            Some(now_ms()),
        )?;
        self.profile.record_call_signals(
            &active.session.call,
            counters.dropped_before_accept,
            counters.released,
        )?;
        Ok(report)
    }

    /// Stop media, release the allocation, write the recording.
    async fn finish(&mut self, active: &mut Active) -> CallReport {
        let mut report = CallReport {
            call: hex::encode(active.session.call.0),
            peer: active.session.peer_label.clone(),
            outgoing: active.session.is_caller(),
            detail: active.session.detail(),
            relay: active.relay_server.clone().unwrap_or_default(),
            relayed_address: active
                .turn
                .as_ref()
                .map(|t| t.relayed_address().to_string())
                .unwrap_or_default(),
            ssrc: active.session.local_ssrc,
            ..CallReport::default()
        };
        if let Some(task) = active.media.take() {
            let _ = task.stop.send(());
            // The media task stops within a turn; one stuck on a device or a relay that stopped
            // reading must not keep the call from ending.
            let handle = task.handle;
            let abort = handle.abort_handle();
            let outcome = match tokio::time::timeout(Duration::from_secs(5), handle).await {
                Ok(joined) => joined.ok(),
                Err(_) => {
                    abort.abort();
                    report.detail = "the media path did not stop in time".into();
                    None
                }
            };
            if let Some(outcome) = outcome {
                report.media_ms = outcome.media_ms;
                report.frames_sent = outcome.frames_sent;
                let stats = outcome.receiver;
                report.packets_received = stats.packets_received;
                report.packets_rejected = stats.packets_rejected;
                report.frames_decoded = stats.frames_decoded;
                report.frames_concealed = stats.frames_concealed;
                report.frames_recorded = outcome.recorded.len() as u64;
                report.audio = outcome.audio;
                report.video = outcome.video;
                if let Some(path) = &task.record
                    && let Err(e) = rampart_media::wav::write_wav(path, &outcome.recorded)
                {
                    report.detail = format!("cannot write {}: {e}", path.display());
                }
                if let Some(e) = outcome.error {
                    report.detail = e;
                }
            }
        }
        if let Some(turn) = active.turn.take() {
            let _ = turn.close().await;
        }
        report
    }

    async fn on_call_event(
        &mut self,
        conn: &mut Connection,
        active: &mut Active,
        media: &CallMedia,
        limits: &CallLimits,
        event: CallEvent,
        progress: &mut (dyn FnMut(&CallProgress) + Send),
    ) -> Result<(), ClientError> {
        match event {
            CallEvent::Ring(_) => {}
            CallEvent::FetchOffer => {
                let answer = conn.request(ClientRequest::FetchOffer { call: active.session.call }).await?;
                match answer {
                    ResponseBody::CallOffer { group, offer } => {
                        active.session.offer_fetched(&group, offer.to_vec())?;
                    }
                    _ => return Err(ClientError::Unexpected("fetch offer")),
                }
            }
            CallEvent::FetchRelayCredentials => {
                let answer =
                    conn.request(ClientRequest::FetchRelayCredentials { call: active.session.call }).await?;
                let ResponseBody::RelayCredentials(creds) = answer else {
                    return Err(ClientError::Unexpected("relay credentials"));
                };
                let password = Zeroizing::new(creds.password.clone());
                // UDP first; where a network blocks it, TCP, then TLS (RFC 8656 §3.1).
                let (order, refused) = fallback_order(creds.relays.iter().map(String::as_str));
                let mut last_error = refused.first().map_or_else(
                    || String::from("no relay offered"),
                    |(entry, e)| format!("relay {entry}: {e}"),
                );
                for uri in order {
                    let Some(addr) =
                        tokio::net::lookup_host(uri.authority()).await.ok().and_then(|mut a| a.next())
                    else {
                        last_error = format!("cannot resolve relay {uri}");
                        continue;
                    };
                    active.session.relay_resolved(addr.ip());
                    if active.turn.is_some() {
                        continue;
                    }
                    let (username, password) = (creds.username.as_str(), password.as_str());
                    let allocated = match uri.transport {
                        RelayTransport::Udp => TurnClient::allocate(addr, username, password).await,
                        RelayTransport::Tcp => TurnClient::allocate_tcp(addr, username, password).await,
                        RelayTransport::Tls => {
                            // A `turns:` relay must present the certificate pinned for the server.
                            // Never without a pin: an unpinned verifier would learn (accept)
                            // whatever certificate it is shown.
                            let (Ok(name), Some(pinned)) = (
                                rustls::pki_types::ServerName::try_from(uri.host.clone()),
                                self.profile.get("fingerprint")?,
                            ) else {
                                last_error = format!("relay {uri}: no pinned certificate or an invalid name");
                                continue;
                            };
                            let (tls, _) = pinned_tls_config(Some(pinned))?;
                            TurnClient::allocate_tls(addr, name, tls, username, password).await
                        }
                    };
                    match allocated {
                        Ok(turn) => {
                            active.relay_server = Some(uri.to_string());
                            active.turn = Some(Arc::new(turn));
                        }
                        Err(e) => {
                            tracing::info!(relay = %uri, error = %e, "relay unreachable, trying the next");
                            last_error = format!("relay {uri}: {e}");
                        }
                    }
                }
                if active.turn.is_none() {
                    return Err(call_error(last_error));
                }
            }
            CallEvent::Send(SignalKind::Offer) => {
                let session = self.local_session(active)?;
                let offer = self.seal_call_message(active, SignalKind::Offer, Some(session))?;
                let place = |answer| ClientRequest::PlaceCall {
                    call: active.session.call,
                    callee: active.session.peer,
                    group: active.session.group.clone(),
                    media: MediaKind::Audio,
                    offer: offer.clone(),
                    answer,
                };
                let mut placed = conn.request(place(None)).await;
                // The server may price the call in work (Sentinel's require_challenge). A new
                // challenge after an answer means the answer came too late or was spent: one
                // more try, then the refusal stands.
                for _ in 0..2 {
                    let Err(ClientError::Server(ErrorBody {
                        code: ErrorCode::ChallengeRequired,
                        challenge: Some(challenge),
                        ..
                    })) = &placed
                    else {
                        break;
                    };
                    progress(&CallProgress::ProvingWork { bits: challenge.difficulty_bits });
                    let Some(answer) = prove_work(challenge.clone(), limits).await? else {
                        // Hung up while working: nothing was placed, so nothing rings. The next
                        // step sees the hang-up and ends the call.
                        return Ok(());
                    };
                    placed = conn.request(place(Some(answer))).await;
                }
                let answer = placed?;
                active.session.placed();
                if let ResponseBody::CallPlaced { ringing_devices } = answer {
                    progress(&CallProgress::Ringing { devices: ringing_devices });
                    self.profile.update_call(&active.session.call, "ringing", "", None, None)?;
                }
            }
            CallEvent::Send(kind) if !active.session.tells_server(kind) => {
                // Never placed: nobody to tell.
            }
            CallEvent::Send(kind) => {
                let body = match kind {
                    SignalKind::Hangup | SignalKind::Busy | SignalKind::Reject => Bytes::new(),
                    _ => {
                        let session = self.local_session(active)?;
                        self.seal_call_message(active, kind, Some(session))?
                    }
                };
                // Ending signals are best effort: the call is over for us either way.
                let sent =
                    conn.request(ClientRequest::CallSignal { call: active.session.call, kind, body }).await;
                if let Err(e) = sent
                    && !matches!(kind, SignalKind::Hangup | SignalKind::Reject | SignalKind::Busy)
                {
                    return Err(e);
                }
            }
            CallEvent::Released(signal) => self.on_released(conn, active, signal).await?,
            CallEvent::EnableMedia(permit) => {
                self.start_media(active, permit, media)?;
                progress(&CallProgress::Connected {
                    peer: active.session.peer_label.clone(),
                    relay: display_relay(active),
                });
                if active.session.media_started(now_ms()) {
                    self.profile.update_call(
                        &active.session.call,
                        "active",
                        "",
                        active.session.answered_at,
                        None,
                    )?;
                }
            }
            CallEvent::Ended(reason) => {
                progress(&CallProgress::Ended { outcome: reason_outcome(reason) });
            }
        }
        Ok(())
    }

    /// A released signal: now, and only now, decrypt and parse it.
    async fn on_released(
        &mut self,
        conn: &mut Connection,
        active: &mut Active,
        signal: rampart_core::call::ReleasedSignal,
    ) -> Result<(), ClientError> {
        let kind = signal.kind;
        match self.open_released(conn, active, signal).await {
            // Offer and answer make the call: without them there is none. A later signal
            // that does not open or parse is dropped, so a bad one cannot end a call.
            Err(e) if !matches!(kind, SignalKind::Offer | SignalKind::Answer) => {
                active.session.signal_unusable();
                tracing::debug!(error = %e, "dropped an unusable call signal");
                Ok(())
            }
            other => other,
        }
    }

    async fn open_released(
        &mut self,
        conn: &mut Connection,
        active: &mut Active,
        signal: rampart_core::call::ReleasedSignal,
    ) -> Result<(), ClientError> {
        let (sender, plaintext) = match self.engine()?.process(&active.session.group, &signal.bytes)? {
            Processed::Application { sender, plaintext } => (sender, plaintext),
            _ => return Err(call_error("a call signal that is not an application message")),
        };
        active.session.check_sender(sender.account)?;
        let content = decode_content(&plaintext).map_err(call_error)?;
        let ContentBody::Call(CallMessage { call, kind, session }) = content.body else {
            return Err(call_error("a call signal without call content"));
        };
        active.session.check_content(call, kind, signal.kind)?;
        if matches!(kind, SignalKind::Offer | SignalKind::Answer) {
            let epoch = self.engine()?.epoch(&active.session.group)?;
            active.session.check_peer_session(session.as_ref(), epoch)?;
            let Some(session) = session else { return Err(CallRefusal::NoMediaSession.into()) };
            let turn = active.turn.clone().ok_or_else(|| call_error("no relay allocation"))?;
            turn.create_permission(session.relay_address).await.map_err(call_error)?;
            turn.channel_bind(session.relay_address).await.map_err(call_error)?;
            let video_ssrc = other_ssrc(active.session.local_ssrc);
            if active.session.peer_session_applied(session, video_ssrc) {
                let session = self.local_session(active)?;
                let body = self.seal_call_message(active, SignalKind::Answer, Some(session))?;
                conn.request(ClientRequest::CallSignal { call, kind: SignalKind::Answer, body }).await?;
                active.session.answer_sent();
            }
        }
        // Relay-only media: no new candidates to act on; updates are accepted and ignored.
        Ok(())
    }

    /// The MLS exporter secret that keys a call's media in the 1:1 conversation `group`: both
    /// devices derive the SRTP keys of each direction from it (docs/calls.md). It never leaves
    /// the device: this exists only for tests that check exactly that (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub fn call_media_secret(
        &mut self,
        group: &GroupId,
        call: &CallId,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        Ok(Zeroizing::new(self.engine()?.export_secret(group, EXPORTER_LABEL, &call.0, EXPORTER_BYTES)?))
    }

    fn local_session(&mut self, active: &Active) -> Result<MediaSession, ClientError> {
        let turn = active.turn.as_ref().ok_or_else(|| call_error("no relay allocation"))?;
        Ok(active.session.local_session(turn.relayed_address(), self.engine()?.epoch(&active.session.group)?))
    }

    fn seal_call_message(
        &mut self,
        active: &Active,
        kind: SignalKind,
        session: Option<MediaSession>,
    ) -> Result<Bytes, ClientError> {
        let content = Content {
            message_id: MessageId::random(&mut rand::rng()),
            sent_at_ms: now_ms(),
            seq: 0,
            body: ContentBody::Call(CallMessage { call: active.session.call, kind, session }),
        };
        Ok(Bytes::from(self.engine()?.encrypt(&active.session.group, &encode_content(&content))?))
    }

    fn start_media(
        &mut self,
        active: &mut Active,
        permit: MediaPermit,
        media: &CallMedia,
    ) -> Result<(), ClientError> {
        let turn = active.turn.clone().ok_or_else(|| call_error("no relay allocation"))?;
        let peer =
            active.session.peer_session.as_ref().ok_or_else(|| call_error("no media session"))?.relay_address;
        let secret = Zeroizing::new(self.engine()?.export_secret(
            &active.session.group,
            EXPORTER_LABEL,
            &active.session.call.0,
            EXPORTER_BYTES,
        )?);
        let (send_dir, recv_dir) = if active.session.is_caller() {
            (CallDirection::CallerToCallee, CallDirection::CalleeToCaller)
        } else {
            (CallDirection::CalleeToCaller, CallDirection::CallerToCallee)
        };
        let send_keys = SrtpKeys::from_exporter_secret(&secret, send_dir).map_err(call_error)?;
        let recv_keys = SrtpKeys::from_exporter_secret(&secret, recv_dir).map_err(call_error)?;
        let peer_video = active.session.peer_session.as_ref().and_then(|s| s.video_ssrc);
        let video = match (active.session.local_video_ssrc, peer_video) {
            (Some(own), Some(peer_ssrc)) => {
                let receiver =
                    VideoReceiver::new(permit, &recv_keys, &send_keys, own, peer_ssrc).map_err(call_error)?;
                let source = media.video.as_ref().and_then(|v| v.send.clone());
                // A camera that cannot be opened leaves the call with audio and received video.
                let (pictures, not_sending) = match source.map(VideoSource::open) {
                    Some(Ok(pictures)) => (Some(pictures), None),
                    Some(Err(e)) => (None, Some(e.to_string())),
                    None => (None, None),
                };
                let sender = match pictures {
                    Some(pictures) => {
                        let stream = SendStream {
                            ssrc: own,
                            peer_ssrc,
                            initial_seq: rand::random(),
                            timestamp_base: rand::random(),
                        };
                        let config =
                            VideoSendConfig { fps: pictures.fps() as f32, ..VideoSendConfig::default() };
                        let sender = VideoSender::new(permit, &send_keys, &recv_keys, stream, config)
                            .map_err(call_error)?;
                        Some((sender, pictures))
                    }
                    None => None,
                };
                let record = media.video.as_ref().and_then(|v| v.record.clone());
                let controls = media.controls.clone();
                Some(VideoParts { sender, receiver, peer_ssrc, record, controls, not_sending })
            }
            _ => None,
        };
        let sender =
            AudioSender::new(permit, send_keys, active.session.local_ssrc, rand::random(), rand::random())
                .map_err(call_error)?;
        let receiver = AudioReceiver::new(permit, recv_keys).map_err(call_error)?;
        active.media = Some(MediaTask::spawn(turn, peer, sender, receiver, media.clone(), video));
        Ok(())
    }
}

/// A random SSRC other than `taken` (a call's audio and video streams share the direction's
/// SRTP key; distinct SSRCs keep their nonces apart).
fn other_ssrc(taken: u32) -> u32 {
    loop {
        let ssrc = rand::random();
        if ssrc != taken {
            return ssrc;
        }
    }
}

fn display_relay(active: &Active) -> String {
    active.relay_server.clone().unwrap_or_else(|| "?".into())
}

/// What the media task hands back when it stops.
struct MediaOutcome {
    media_ms: u64,
    frames_sent: u64,
    receiver: rampart_media::ReceiverStats,
    recorded: Vec<Frame>,
    error: Option<String>,
    audio: String,
    video: Option<VideoReport>,
}

struct MediaTask {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<MediaOutcome>,
    record: Option<PathBuf>,
}

impl MediaTask {
    fn spawn(
        turn: Arc<TurnClient>,
        peer: SocketAddr,
        sender: AudioSender,
        receiver: AudioReceiver,
        media: CallMedia,
        video: Option<VideoParts>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let record = media.record.clone();
        let handle = tokio::spawn(run_media(turn, peer, sender, receiver, media, video, stopped));
        MediaTask { stop, handle, record }
    }
}

/// Send one frame every 20 ms, receive whatever arrives, and play out (record) at 20 ms.
async fn run_media(
    turn: Arc<TurnClient>,
    peer: SocketAddr,
    mut sender: AudioSender,
    mut receiver: AudioReceiver,
    media: CallMedia,
    video: Option<VideoParts>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> MediaOutcome {
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let silence: Frame = [0; rampart_media::FRAME_SAMPLES];
    // Devices open once media may flow (the permit exists): a device that cannot be used is
    // said in the report and the call goes on without it.
    let mut audio = Vec::new();
    let mut microphone = match (&media.play, &media.input) {
        (Some(_), _) => {
            audio.push("sending a file".to_owned());
            None
        }
        (None, Some(choice)) => match Microphone::open(choice).await {
            Ok(microphone) => {
                audio.push(format!("microphone {}", describe(choice)));
                Some(microphone)
            }
            Err(e) => {
                audio.push(format!("no microphone ({e}): sending silence"));
                None
            }
        },
        (None, None) => {
            audio.push("sending silence".to_owned());
            None
        }
    };
    let speaker = match &media.output {
        Some(choice) => match Speaker::open(choice).await {
            Ok(speaker) => {
                audio.push(format!("speaker {}", describe(choice)));
                Some(speaker)
            }
            Err(e) => {
                audio.push(format!("no speaker ({e})"));
                None
            }
        },
        None => None,
    };
    if media.record.is_some() {
        audio.push("recording to a file".to_owned());
    }
    // A microphone's signal is cleaned before it is sent: the echo of what the speaker plays
    // removed, noise suppressed, the level evened out.
    let mut voice =
        microphone.as_ref().filter(|_| !media.raw_microphone).map(|_| rampart_media::VoiceProcessor::new());
    if microphone.is_some() && media.raw_microphone {
        audio.push("unprocessed".to_owned());
    }
    let source = media.play.unwrap_or_default();
    let mut next = source.iter();
    let mut last_captured = Instant::now();
    let mut recorded = Vec::new();
    let mut frames_sent = 0u64;
    let mut error = None;
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(FRAME_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Receiving runs on its own task so a slow send never delays reading the socket. The
    // other side's video (by its SSRC) goes to the video task, the rest to the audio.
    let (datagrams_tx, mut datagrams) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let (video_tx, video_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let peer_video_ssrc = video.as_ref().map(|v| v.peer_ssrc);
    let reader_turn = turn.clone();
    let reader = tokio::spawn(async move {
        while let Ok((from, data)) = reader_turn.recv_from().await {
            // Only the peer's relayed address may feed the pipeline (the relay enforces the
            // permission too).
            if from != peer {
                continue;
            }
            let to_video = peer_video_ssrc.is_some_and(|ssrc| call_video::is_video(&data, ssrc));
            if to_video {
                // A full queue drops video (NACKs and keyframes recover it) rather than stall
                // the audio behind it.
                let _ = video_tx.try_send(data);
            } else if datagrams_tx.send(data).await.is_err() {
                break;
            }
        }
    });
    let (stop_video, video_stopped) = tokio::sync::oneshot::channel();
    let video_task = video
        .map(|parts| tokio::spawn(call_video::run_video(turn.clone(), peer, parts, video_rx, video_stopped)));
    loop {
        // With a microphone, its frames pace the sending (the device's clock); otherwise the
        // 20 ms tick does.
        let outgoing = tokio::select! {
            _ = &mut stopped => break,
            captured = next_captured(&mut microphone) => match captured {
                Some(frame) => {
                    last_captured = Instant::now();
                    Some(voice.as_mut().map_or(frame, |voice| voice.captured(&frame)))
                }
                None => {
                    // The device went away (unplugged, the sound server restarted): silence
                    // from here on, and the report says so.
                    microphone = None;
                    voice = None;
                    audio.push("the microphone stopped".to_owned());
                    None
                }
            },
            _ = tick.tick() => {
                while let Some(frame) = receiver.poll_frame(now()) {
                    if let Some(speaker) = &speaker {
                        speaker.play(&frame);
                        if let Some(voice) = &mut voice {
                            voice.played(&frame);
                        }
                    }
                    if media.record.is_some() && recorded.len() < MAX_RECORDED_FRAMES {
                        recorded.push(frame);
                    }
                }
                if last_heard.elapsed() > NO_MEDIA_TIMEOUT {
                    error = Some(format!("nothing heard from the other side for {} s", NO_MEDIA_TIMEOUT.as_secs()));
                    break;
                }
                // Without a microphone, the file or silence; with one that has gone quiet for
                // longer than a few frames (a stalled device), silence, so media keeps flowing.
                if microphone.is_none() {
                    Some(*next.next().unwrap_or(&silence))
                } else if last_captured.elapsed() > MICROPHONE_STALL {
                    Some(silence)
                } else {
                    None
                }
            }
            got = datagrams.recv() => match got {
                Some(d) => {
                    if matches!(receiver.handle_datagram(&d, now()), rampart_media::DatagramOutcome::Audio) {
                        last_heard = Instant::now();
                    }
                    None
                }
                None => {
                    error = Some("the relay socket closed".into());
                    break;
                }
            },
        };
        let Some(frame) = outgoing else { continue };
        let frame = if media.controls.is_muted() { silence } else { frame };
        match sender.encode_frame(&frame) {
            Ok(datagram) => {
                if let Err(e) = turn.send_to(peer, &datagram).await {
                    error = Some(format!("sending media: {e}"));
                    break;
                }
                frames_sent += 1;
            }
            Err(e) => {
                error = Some(format!("encoding: {e}"));
                break;
            }
        }
    }
    reader.abort();
    let _ = stop_video.send(());
    let video = match video_task {
        Some(task) => {
            let abort = task.abort_handle();
            match tokio::time::timeout(Duration::from_secs(3), task).await {
                Ok(Ok(report)) => Some(report),
                _ => {
                    abort.abort();
                    Some(VideoReport {
                        summary: "the video did not stop in time".into(),
                        ..VideoReport::default()
                    })
                }
            }
        }
        None if media.video.is_some() => Some(VideoReport {
            summary: "the other side did not take video (its app does not do video)".into(),
            ..VideoReport::default()
        }),
        None => None,
    };
    MediaOutcome {
        media_ms: now(),
        frames_sent,
        receiver: receiver.stats(),
        recorded,
        error,
        audio: audio.join(", "),
        video,
    }
}

/// How long a microphone may deliver nothing before silence is sent in its place.
const MICROPHONE_STALL: Duration = Duration::from_millis(100);

/// The next frame the microphone captured (`None` once it is gone); never, without one.
async fn next_captured(microphone: &mut Option<Microphone>) -> Option<Frame> {
    match microphone {
        Some(microphone) => microphone.next().await,
        None => std::future::pending().await,
    }
}

fn describe(choice: &DeviceChoice) -> String {
    match choice {
        DeviceChoice::Default => "(default)".to_owned(),
        DeviceChoice::Named(name) => name.clone(),
    }
}
