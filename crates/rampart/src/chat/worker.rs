//! The network side of the chat window: owns the client and its connection, carries out the
//! window's actions, keeps receiving, and sends the window what changed.
//!
//! It runs on the command's async task while the window runs on its own thread, so a slow
//! server (a connection attempt that hangs, a send that waits on a commit) never freezes the
//! keyboard. `Client::pump` is never cancelled: it is only ever called with a short wait and
//! awaited to the end, and actions queue up in the meantime.
//!
//! A call runs in the same loop, on the same connection ([`WindowCall`]): each turn receives
//! (stopping early when a call signal comes), steps the call, and carries out the window's
//! actions, so messages that arrive are shown and messages, reactions and conversation
//! switches go out while it runs. What needs the connection for longer (files, new
//! conversations, requests, another call) waits until the call is over, and the window says so.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rampart_client::Event;
use rampart_client::call::{
    CallControls, CallLimits, CallMedia, CallProgress, CallVideo, CameraSpec, OngoingCall, SIGNAL_POLL,
    VideoSource,
};
use rampart_client::clock::now_ms;
use rampart_client::online::{self, Happening, Online, breaks_connection};
use rampart_client::{Client, ClientError, Connection};
use rampart_core::call::RingNotice;
use rampart_core::{GroupId, MessageId};
use rampart_proto::ContentBody;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;

use super::app::{Action, HISTORY_PAGE, Link, RequestAnswer, Update, VideoPreview, initial_conversation};

/// How long one receive turn waits for pushed messages before actions are looked at again:
/// the worst added latency of a key's effect.
const PUMP_WAIT: Duration = Duration::from_millis(100);
/// Where the profile keeps when the chat window's call log was last looked at, so missed
/// calls are counted until the user has seen them, across restarts.
const CALLS_SEEN_KEY: &str = "chat.calls_seen_ms";
/// How many calls the window's call log shows.
const CALL_LOG_LEN: u32 = 50;

/// What happened online, as the window shows it: messages themselves come from the profile
/// (`refresh`), so of the events only refusals and the server's notices are told.
fn tell(updates: &Sender<Update>) -> impl FnMut(Happening) + '_ {
    move |happening| {
        let update = match happening {
            Happening::Link(link) => Update::Link(link),
            Happening::Event(Event::Refused { reason }) => {
                Update::Error(format!("A message was refused: {reason}"))
            }
            // Its text is the decoder's: bounded, no control characters but newlines.
            Happening::Event(Event::ServerNotice { text, .. }) => {
                Update::Info(format!("Notice from your server's operators: {}", text.replace('\n', " ")))
            }
            Happening::Event(_) => return,
            Happening::Ring { notice, label } => {
                Update::Ring { call: hex::encode(notice.call.0), from: label }
            }
            Happening::RingEnded { call } => Update::RingEnded { call: hex::encode(call.0) },
            Happening::Error(text) => Update::Error(text),
        };
        // The window may be gone already (quitting): nothing to tell then.
        let _ = updates.send(update);
    }
}

/// A progress callback for a transfer: one update per percent is plenty for the status bar.
fn progress_reporter(updates: Sender<Update>, what: String) -> impl FnMut(u64, u64) + Send {
    let mut last_percent = None;
    move |done, total| {
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        if last_percent != Some(percent) {
            last_percent = Some(percent);
            let _ = updates.send(Update::Progress { what: what.clone(), done, total });
        }
    }
}

/// One line for the status bar.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A video call's media: the first usable camera, if there is one; the other side's pictures
/// are asked for either way.
fn with_camera(media: CallMedia, updates: &Sender<Update>) -> CallMedia {
    let camera = rampart_client::call::camera::cameras().into_iter().any(|c| c.usable);
    if !camera {
        let _ = updates.send(Update::Info("No camera found: you see them, they do not see you".into()));
    }
    let send = camera.then(|| VideoSource::Camera(CameraSpec::default()));
    CallMedia { video: Some(CallVideo { send, record: None }), ..media }
}

/// The call the user started or accepted.
enum CallStart {
    Dial { to: String, video: bool },
    Accept(RingNotice, String),
}

struct Worker<'c> {
    client: &'c mut Client,
    online: Online,
    /// The call in progress, if any.
    call: Option<WindowCall>,
    /// The window quit during a call: the call is hung up, and the worker ends with it.
    quitting: bool,
    updates: Sender<Update>,
    selected: Option<GroupId>,
    limit: u32,
    /// The profile's change counter when the window was last brought up to date.
    seen: Option<u64>,
    download_dir: PathBuf,
}

/// Run until the window quits (or goes away).
pub async fn run(
    client: &mut Client,
    mut actions: UnboundedReceiver<Action>,
    updates: Sender<Update>,
    wanted: Option<String>,
    download_dir: PathBuf,
) {
    let mut w = Worker {
        client,
        online: Online::new(),
        call: None,
        quitting: false,
        updates,
        selected: None,
        limit: HISTORY_PAGE,
        seen: None,
        download_dir,
    };
    // Show what the profile holds at once, before the network: the window opens on the same
    // conversation it will pick from this list.
    if let Ok(list) = w.client.profile().conversations() {
        w.selected = initial_conversation(&list, wanted.as_deref()).and_then(|id| GroupId::from_hex(&id));
    }
    w.refresh(true).await;

    let mut deferred: VecDeque<Action> = VecDeque::new();
    loop {
        loop {
            // What was kept for after a call waits until then.
            let kept = if w.call.is_none() { deferred.pop_front() } else { None };
            let action = match kept {
                Some(a) => a,
                None => match actions.try_recv() {
                    Ok(a) => a,
                    Err(TryRecvError::Empty) => break,
                    // The window went away: as if it quit.
                    Err(TryRecvError::Disconnected) => Action::Quit,
                },
            };
            if w.call.is_some() {
                w.during_call(action, &mut deferred).await;
                if w.quitting {
                    break;
                }
                continue;
            }
            match action {
                Action::Quit => return w.close().await,
                Action::AcceptCall { call } => match w.take_ring(&call) {
                    Some((notice, label)) => w.start_call(CallStart::Accept(notice, label)).await,
                    None => w.send(Update::CallEnded {
                        outcome: "missed".into(),
                        detail: "it stopped ringing".into(),
                        failed: true,
                    }),
                },
                Action::Call { to, video } => w.start_call(CallStart::Dial { to, video }).await,
                other => w.execute(other).await,
            }
        }

        if w.call.is_some() {
            w.call_turn().await;
            if w.call.is_none() && w.quitting {
                return w.close().await;
            }
            w.refresh(false).await;
            continue;
        }
        if w.online.is_connected() {
            w.pump().await;
        } else if w.online.connect_due() {
            w.send(Update::Link(Link::Connecting));
            // A connection attempt may hang until its timeout: let Quit interrupt it
            // (dropping a half-open connection is harmless), and keep other actions for later.
            let result = {
                let connect = w.client.connect();
                tokio::pin!(connect);
                loop {
                    tokio::select! {
                        r = &mut connect => break Some(r),
                        a = actions.recv() => match a {
                            None | Some(Action::Quit) => break None,
                            Some(a) => deferred.push_back(a),
                        },
                    }
                }
            };
            match result {
                None => return w.close().await,
                Some(Ok(conn)) => w.connected(conn).await,
                Some(Err(e)) => w.offline(&e),
            }
        } else {
            // Offline: wait for the next attempt, taking actions as they come.
            let wait = w.online.until_retry().min(Duration::from_millis(250));
            match tokio::time::timeout(wait, actions.recv()).await {
                Ok(Some(a)) => deferred.push_back(a),
                Ok(None) => return w.close().await,
                Err(_) => {}
            }
            // Disappearing messages go on time even offline.
            if let Ok(files) = w.client.profile().purge_expired(now_ms()) {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
        w.check_rings();
        w.refresh(false).await;
    }
}

impl Worker<'_> {
    fn send(&self, update: Update) {
        // The window may be gone already (quitting): nothing to tell then.
        let _ = self.updates.send(update);
    }

    fn error(&self, text: String) {
        self.send(Update::Error(text));
    }

    async fn close(&mut self) {
        self.online.close().await;
    }

    async fn connected(&mut self, conn: Connection) {
        self.online.connected(self.client, conn, &mut tell(&self.updates)).await;
        // What arrived while offline was not read yet: mark what is shown.
        self.refresh(true).await;
    }

    /// The connection is lost (or could not be made): retry later, backing off.
    fn offline(&mut self, e: &ClientError) {
        self.online.offline(e, &mut tell(&self.updates));
    }

    /// A failed operation: shown, and if the connection is the cause, dropped for a new one.
    fn failed(&mut self, what: &str, e: &ClientError) {
        self.error(format!("{what}: {}", one_line(e)));
        if breaks_connection(e) {
            self.offline(e);
        }
    }

    async fn pump(&mut self) {
        self.online.receive(self.client, PUMP_WAIT, &mut tell(&self.updates)).await;
    }

    /// New rings go to the window; rings whose caller gave up, or that rang too long, stop.
    fn check_rings(&mut self) {
        self.online.check_rings(self.client, &mut tell(&self.updates));
    }

    /// The ringing call the user answered. The others are left as missed: this device can
    /// be in one call at a time.
    fn take_ring(&mut self, call: &str) -> Option<(RingNotice, String)> {
        let call = self.online.ringing(call)?;
        self.online.take_ring(&call, &mut tell(&self.updates))
    }

    /// Start the call the user asked for; the main loop carries it on ([`Worker::call_turn`]).
    async fn start_call(&mut self, start: CallStart) {
        let Worker { client, online, updates, .. } = self;
        let Some(conn) = online.connection() else {
            let _ = updates.send(Update::CallEnded {
                outcome: "failed".into(),
                detail: "offline, reconnecting: try again once online".into(),
                failed: true,
            });
            return;
        };
        let hangup = Arc::new(AtomicBool::new(false));
        let limits = CallLimits { duration: None, hangup_file: None, hangup_flag: Some(hangup.clone()) };
        if let Err(e) = rampart_client::call::audio_device::list().await {
            let _ = updates.send(Update::Info(format!("{}: the call sends silence", one_line(&e))));
        }
        let progress_updates = updates.clone();
        let mut progress: Box<dyn FnMut(&CallProgress) + Send> = Box::new(move |step: &CallProgress| {
            let update = match step {
                // Another call rang: a note, not the state of this one.
                CallProgress::Waiting { .. } => Update::Info(step.to_string()),
                // Connected means audio flows, which starts the window's call timer.
                _ => Update::CallProgress {
                    text: step.to_string(),
                    connected: matches!(step, CallProgress::Connected { .. }),
                },
            };
            let _ = progress_updates.send(update);
        });
        let controls = CallControls::default();
        // The default microphone and speaker; a caller's video is received and shown.
        let media = CallMedia { controls: controls.clone(), ..CallMedia::devices() };
        let started = match start {
            CallStart::Accept(notice, label) => client.accept_call(notice, &label, media, limits),
            CallStart::Dial { to, video } => {
                let media = if video { with_camera(media, updates) } else { media };
                client.start_call(conn, &to, media, limits, &mut *progress).await
            }
        };
        match started {
            Ok(call) => {
                self.call = Some(WindowCall { call, progress, hangup, controls, last_preview: None });
            }
            Err(e) => {
                self.send(Update::CallEnded { outcome: "failed".into(), detail: one_line(&e), failed: true });
                if breaks_connection(&e) {
                    self.offline(&e);
                }
                self.refresh(true).await;
            }
        }
    }

    /// One turn of the call in progress: receive until a signal comes (or the step interval
    /// passes), step the call, show its picture; once it is over, close it and say how it went.
    async fn call_turn(&mut self) {
        let Worker { client, online, updates, call, .. } = self;
        let Some(current) = call.as_mut() else { return };
        let mut lost = None;
        {
            let mut tell_window = tell(updates);
            online
                .receive_in_call(client, SIGNAL_POLL, &mut |happening| {
                    if let Happening::Link(online::Link::Offline { error, .. }) = &happening {
                        lost = Some(error.clone());
                    }
                    tell_window(happening);
                })
                .await;
        }
        match online.connection() {
            Some(conn) => {
                client.step_call(&mut current.call, conn, &mut *current.progress).await;
            }
            None => current.call.connection_lost(&lost.unwrap_or_else(|| "offline".to_owned())),
        }
        if current.last_preview.is_none_or(|at| at.elapsed() >= PREVIEW_INTERVAL)
            && let Some(picture) = current.controls.take_picture()
        {
            current.last_preview = Some(Instant::now());
            let _ = updates.send(Update::VideoPicture(VideoPreview::of(&picture, PREVIEW_COLUMNS)));
        }
        if !current.call.is_over() {
            return;
        }
        let Some(ended) = call.take() else { return };
        let update = match client.end_call(ended.call).await {
            Ok(report) => {
                Update::CallEnded { outcome: report.outcome, detail: one_line(&report.detail), failed: false }
            }
            Err(e) => Update::CallEnded { outcome: "failed".into(), detail: one_line(&e), failed: true },
        };
        self.send(update);
        self.refresh(true).await;
    }

    /// An action of the window's during a call: the call's own keys, and what is quick
    /// (messages, reactions, switching conversations); the rest is kept for after the call.
    async fn during_call(&mut self, action: Action, deferred: &mut VecDeque<Action>) {
        let Some(current) = self.call.as_ref() else { return };
        match action {
            Action::Quit => {
                self.quitting = true;
                current.hangup.store(true, Ordering::Release);
            }
            Action::HangUp => current.hangup.store(true, Ordering::Release),
            Action::SetMuted { muted } => current.controls.set_muted(muted),
            quick @ (Action::Send { .. }
            | Action::React { .. }
            | Action::Show { .. }
            | Action::CallsSeen { .. }) => self.execute(quick).await,
            // The rest needs the connection for longer, or is another call: after this one.
            other => {
                self.send(Update::Info("In a call: that happens when the call ends".to_owned()));
                deferred.push_back(other);
            }
        }
    }

    async fn decline(&mut self, call: &str) {
        let Some(call) = self.online.ringing(call) else { return };
        self.online.stop_ringing(&call);
        let Some(conn) = self.online.connection() else {
            return self.error("Offline: the call could not be declined; it rings out".to_owned());
        };
        if let Err(e) = self.client.decline_on(conn, call).await {
            self.failed("Declining the call failed", &e);
        }
    }

    async fn execute(&mut self, action: Action) {
        match action {
            // Quit and the calls themselves are the main loop's.
            Action::Quit | Action::AcceptCall { .. } | Action::Call { .. } => {}
            // Nothing to hang up or mute outside a call (it ended as the key was pressed).
            Action::HangUp | Action::SetMuted { .. } => {}
            Action::DeclineCall { call } => self.decline(&call).await,
            Action::CallsSeen { at_ms } => {
                if let Err(e) = self.client.profile().set(CALLS_SEEN_KEY, &at_ms.to_string()) {
                    self.error(format!("Cannot save that the calls were seen: {}", one_line(&e)));
                }
            }
            Action::Show { conversation, limit } => {
                self.selected = GroupId::from_hex(&conversation);
                self.limit = limit;
                self.refresh(true).await;
            }
            Action::Send { conversation, text } => {
                let body = ContentBody::Text { text: text.clone(), reply_to: None };
                if let Err(error) = self.send_body(&conversation, body).await {
                    self.send(Update::SendFailed { conversation: Some(conversation), text, error });
                }
            }
            Action::React { conversation, target, emoji } => {
                let Some(target) = hex::decode(&target).ok().and_then(|b| MessageId::from_slice(&b)) else {
                    return self.error("That message cannot be reacted to".to_owned());
                };
                if let Err(e) = self.send_body(&conversation, ContentBody::Reaction { target, emoji }).await {
                    self.error(format!("Reaction not sent: {e}"));
                }
            }
            Action::SendTo { to, text } => self.send_to(&to, &text).await,
            Action::Download { seq, name } => self.download(seq, &name).await,
            Action::SendFile { conversation, path } => self.send_file(&conversation, &path).await,
            Action::AnswerRequest { conversation, answer } => {
                self.answer_request(&conversation, answer).await
            }
        }
    }

    /// Accept, decline or block a message request; an accepted one is shown.
    async fn answer_request(&mut self, conversation: &str, answer: RequestAnswer) {
        // A decline is this device's alone: it needs no connection.
        if answer == RequestAnswer::Decline {
            match self.client.decline_request(conversation) {
                Ok(r) => self.send(Update::Info(format!(
                    "Declined the request from {}; nothing of it was opened",
                    r.from
                ))),
                Err(e) => self.failed("Declining the request failed", &e),
            }
            return self.refresh(true).await;
        }
        let Some(conn) = self.online.connection() else {
            return self.error("Offline: answer the request once reconnected".to_owned());
        };
        let result = match answer {
            RequestAnswer::Accept => self
                .client
                .accept_request_on(conn, conversation)
                .await
                .map(|_| "Accepted: the conversation is open and its sender is a contact".to_owned()),
            // Handled above, without the connection.
            RequestAnswer::Decline => return,
            RequestAnswer::Block => self
                .client
                .block_on(conn, conversation)
                .await
                .map(|label| format!("Blocked {label}: nothing more from them reaches you")),
        };
        match result {
            Ok(text) => {
                self.send(Update::Info(text));
                if answer == RequestAnswer::Accept {
                    // Open the accepted conversation (or the 1:1 it merged into).
                    let shown = GroupId::from_hex(conversation)
                        .and_then(|g| self.client.profile().shown_conversation(&g).ok());
                    if let Some(group) = shown {
                        self.send(Update::Opened(group.to_hex()));
                    }
                }
                self.refresh(true).await;
            }
            Err(e) => self.failed("Answering the request failed", &e),
        }
    }

    /// Send content to a conversation; the error is returned as text for the window.
    async fn send_body(&mut self, conversation: &str, body: ContentBody) -> Result<(), String> {
        let Some(conn) = self.online.connection() else {
            return Err("offline, reconnecting".to_owned());
        };
        match send_content(self.client, conn, conversation, body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = one_line(&e);
                if breaks_connection(&e) {
                    self.offline(&e);
                }
                Err(text)
            }
        }
    }

    /// `/msg @someone text`: the 1:1 conversation is created on first use; then shown.
    async fn send_to(&mut self, to: &str, text: &str) {
        let recipient = match rampart_client::parse_recipient(to) {
            Ok(r) => r,
            Err(e) => return self.error(one_line(&e)),
        };
        let Some(conn) = self.online.connection() else {
            return self.send(Update::SendFailed {
                conversation: None,
                text: format!("/msg {to} {text}"),
                error: "offline, reconnecting".to_owned(),
            });
        };
        match self.client.send_text_on(conn, recipient, text).await {
            Ok(receipt) => {
                // The message is in the history now: its line says which conversation it went to.
                let opened = self.client.profile().history(None, 50).ok().and_then(|items| {
                    items.into_iter().rev().find(|m| m.message_id == receipt.message_id)?.conversation
                });
                self.refresh(false).await;
                if let Some(id) = opened {
                    self.send(Update::Opened(id));
                }
            }
            Err(e) => {
                self.send(Update::SendFailed {
                    conversation: None,
                    text: format!("/msg {to} {text}"),
                    error: one_line(&e),
                });
                if breaks_connection(&e) {
                    self.offline(&e);
                }
            }
        }
    }

    async fn download(&mut self, seq: i64, name: &str) {
        let Some(conn) = self.online.connection() else {
            return self.error("Offline: try again once connected".to_owned());
        };
        let mut progress = progress_reporter(self.updates.clone(), format!("Downloading {name}"));
        match self.client.download_attachment_on(conn, seq, &self.download_dir, &mut progress).await {
            Ok(path) => self.send(Update::Info(format!("Saved {name} to {}", path.display()))),
            Err(e) => self.failed(&format!("Download of {name} failed"), &e),
        }
    }

    /// `/file PATH`: encrypt, upload and send a file to the shown conversation.
    async fn send_file(&mut self, conversation: &str, path: &Path) {
        let Some(group) = GroupId::from_hex(conversation) else { return };
        let Some(conn) = self.online.connection() else {
            return self.error("Offline: try again once connected".to_owned());
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut progress = progress_reporter(self.updates.clone(), format!("Sending {name}"));
        match self.client.send_file_on(conn, &group, path, "", &mut progress).await {
            Ok(_) => self.send(Update::Info(format!("Sent {name}"))),
            Err(e) => self.failed(&format!("{name} not sent"), &e),
        }
    }

    /// Bring the window up to date if the profile changed (or if `force`): the conversation
    /// list, and the shown conversation's history, marked read first since it is on screen.
    async fn refresh(&mut self, force: bool) {
        let changes = self.client.profile().change_counter();
        if !force && self.seen == Some(changes) {
            return;
        }
        if let Err(e) = self.snapshot().await {
            self.error(format!("Cannot read the profile: {}", one_line(&e)));
        }
        self.seen = Some(self.client.profile().change_counter());
    }

    async fn snapshot(&mut self) -> Result<(), ClientError> {
        let shown = Shown { selected: self.selected.as_ref(), limit: self.limit };
        if let Some(e) = show(self.client, self.online.connection(), &self.updates, shown).await? {
            self.failed("Marking as read failed", &e);
        }
        Ok(())
    }
}

/// What the window shows: the selected conversation and how much of its history.
#[derive(Clone, Copy)]
struct Shown<'a> {
    selected: Option<&'a GroupId>,
    limit: u32,
}

/// Send the window the conversation list, the shown conversation's history (marked read first,
/// since it is on screen, when a connection is at hand), the requests and the call log. A
/// failure to mark read is returned after everything was sent.
async fn show(
    client: &mut Client,
    conn: Option<&mut Connection>,
    updates: &Sender<Update>,
    shown: Shown<'_>,
) -> Result<Option<ClientError>, ClientError> {
    let send = |update| {
        let _ = updates.send(update);
    };
    let mut list = client.profile().conversations()?;
    let mut failure = None;
    if let Some(group) = shown.selected {
        let id = group.to_hex();
        let unread = list.iter().any(|c| c.id == id && c.unread > 0);
        // Read receipts need the connection; offline, the messages stay unread until it is back.
        if unread && let Some(conn) = conn {
            match client.mark_read_on(conn, group).await {
                Ok(_) => list = client.profile().conversations()?,
                Err(e) => failure = Some(e),
            }
        }
        let items = client.profile().history(Some(group), shown.limit)?;
        send(Update::Conversations(list));
        send(Update::History { conversation: id, items });
    } else {
        send(Update::Conversations(list));
    }
    send(Update::Requests(client.requests()?));
    let entries = client.profile().call_log(CALL_LOG_LEN)?;
    let seen_ms = client.profile().get(CALLS_SEEN_KEY)?.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    send(Update::CallLog { entries, seen_ms });
    Ok(failure)
}

/// Send content to a conversation given by its hex id.
async fn send_content(
    client: &mut Client,
    conn: &mut Connection,
    conversation: &str,
    body: ContentBody,
) -> Result<(), ClientError> {
    let group =
        GroupId::from_hex(conversation).ok_or_else(|| ClientError::Input("unknown conversation".into()))?;
    client.send_to_group_on(conn, &group, body).await.map(|_| ())
}

/// The call in progress in the window, and what the window keeps for it.
struct WindowCall {
    call: OngoingCall,
    /// Tells the window how the call goes.
    progress: Box<dyn FnMut(&CallProgress) + Send>,
    /// Set by the hang-up key (and by quitting); the call's next step hangs up.
    hangup: Arc<AtomicBool>,
    controls: CallControls,
    /// When the last picture went to the window.
    last_preview: Option<Instant>,
}

/// How wide the picture of a video call is in the window, in cells, and how often it changes
/// (a terminal redraws slowly; five pictures a second is enough to see someone).
const PREVIEW_COLUMNS: usize = 32;
const PREVIEW_INTERVAL: Duration = Duration::from_millis(200);
