//! The chat window's state and what each key does. No terminal and no network here: keys and
//! updates go in, [`Action`]s come out for the event loop to carry out, so all of it is tested
//! directly.

use std::collections::HashMap;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use rampart_client::CallLogEntry;
use rampart_client::MessageRequest;
use rampart_client::{ConversationInfo, HistoryItem, MessageKind};

/// How many history lines are loaded at first, and how many more each time the reader
/// scrolls past the top of what is loaded.
pub const HISTORY_PAGE: u32 = 200;

/// Something for the event loop to do on the user's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Show this conversation (hex id) with its latest `limit` history lines, marking it read.
    Show {
        conversation: String,
        limit: u32,
    },
    Send {
        conversation: String,
        text: String,
    },
    /// Send to a person (+E164 or @username), starting the 1:1 conversation if need be.
    SendTo {
        to: String,
        text: String,
    },
    React {
        conversation: String,
        target: String,
        emoji: String,
    },
    Download {
        seq: i64,
        name: String,
    },
    SendFile {
        conversation: String,
        path: PathBuf,
    },
    /// Answer the ringing call (hex call id).
    AcceptCall {
        call: String,
    },
    DeclineCall {
        call: String,
    },
    /// Call a person: +E164, @username, or a 1:1 conversation's id; with `video`, a video call
    /// (the camera, when there is one, and the other side's pictures).
    Call {
        to: String,
        video: bool,
    },
    HangUp,
    /// Mute or unmute the microphone in the call in progress.
    SetMuted {
        muted: bool,
    },
    /// The call log was looked at: missed calls up to then are no longer counted.
    CallsSeen {
        at_ms: u64,
    },
    /// Answer a message request (its conversation's hex id).
    AnswerRequest {
        conversation: String,
        answer: RequestAnswer,
    },
    Quit,
}

/// What the user says to a message request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAnswer {
    Accept,
    Decline,
    Block,
}

/// The connection's state, for the status line.
pub use rampart_client::online::Link;

/// What the network side tells the window.
#[derive(Debug, Clone)]
pub enum Update {
    Conversations(Vec<ConversationInfo>),
    History {
        conversation: String,
        items: Vec<HistoryItem>,
    },
    Link(Link),
    /// A conversation now exists (after `/msg`): switch to it.
    Opened(String),
    Info(String),
    Error(String),
    /// A message could not be sent: its text goes back into the compose box.
    SendFailed {
        conversation: Option<String>,
        text: String,
        error: String,
    },
    /// A transfer going on: what ("Downloading menu.pdf"), bytes done, bytes in all.
    Progress {
        what: String,
        done: u64,
        total: u64,
    },
    /// A call rings this device (hex call id, who calls).
    Ring {
        call: String,
        from: String,
    },
    /// It stopped ringing without an answer here: the caller gave up, another device of
    /// this account answered, or it rang too long.
    RingEnded {
        call: String,
    },
    /// The other side's latest picture in the call in progress.
    VideoPicture(VideoPreview),
    /// A step of the call in progress ("ringing (1 device(s))"); `connected` once audio flows.
    CallProgress {
        text: String,
        connected: bool,
    },
    /// The call is over: how it ended ("ended", "rejected"...), or why it failed.
    CallEnded {
        outcome: String,
        detail: String,
        failed: bool,
    },
    /// The latest calls, newest first, and when the log was last looked at.
    CallLog {
        entries: Vec<CallLogEntry>,
        seen_ms: u64,
    },
    /// Open message requests, oldest first.
    Requests(Vec<MessageRequest>),
}

/// A call ringing this device, not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// Hex call id.
    pub call: String,
    pub from: String,
    /// When it started ringing here (the window's clock).
    pub since_ms: u64,
}

/// The call in progress, from dialing or accepting until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub peer: String,
    pub outgoing: bool,
    /// The latest step reported ("calling @bob…", "ringing (1 device(s))").
    pub state: String,
    /// When audio started flowing (the window's clock): the shown duration counts from here.
    pub connected_at_ms: Option<u64>,
    pub hanging_up: bool,
    /// The microphone is muted (Ctrl-O).
    pub muted: bool,
    /// The other side's latest picture, when it sends video.
    pub video: Option<VideoPreview>,
}

/// A picture drawn with half blocks: each cell shows two pixels, the top one in the
/// foreground colour of '▀' and the bottom one in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPreview {
    /// Rows of cells, each (top, bottom) RGB.
    pub cells: Vec<Vec<([u8; 3], [u8; 3])>>,
    /// The picture's size in pixels.
    pub width: usize,
    pub height: usize,
}

impl VideoPreview {
    /// `frame` scaled to `columns` cells wide (and as many rows as its shape needs, counting
    /// two pixels per cell and cells twice as tall as wide).
    pub fn of(frame: &rampart_media::video::VideoFrame, columns: usize) -> Self {
        let (width, height) = (frame.width(), frame.height());
        let columns = columns.clamp(1, width.max(1));
        let pixel_rows = (height * columns / width.max(1)).max(2);
        let rows = pixel_rows / 2;
        let sample = |column: usize, pixel_row: usize| {
            frame.rgb_at(column * width / columns, pixel_row * height / pixel_rows)
        };
        let cells = (0..rows)
            .map(|row| {
                (0..columns).map(|column| (sample(column, 2 * row), sample(column, 2 * row + 1))).collect()
            })
            .collect();
        Self { cells, width, height }
    }
}

/// "01:23", or "1:02:03" past an hour.
pub fn call_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m:02}:{s:02}") }
}

/// Whether a call log entry is a call the user has not answered: one that rang unanswered, or
/// a stranger's call request that did not ring.
pub fn is_missed(entry: &CallLogEntry) -> bool {
    !entry.outgoing && matches!(entry.outcome.as_str(), "missed" | "request")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Typing in the compose box (the usual state).
    Compose,
    /// Picking a message in the history with the arrow keys.
    Select,
    Help,
    /// The call log, over the window; any key closes it.
    Calls,
    /// The message requests, over the window; any key closes it.
    Requests,
}

/// The line being typed, with its cursor (counted in chars).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compose {
    text: String,
    cursor: usize,
}

impl Compose {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text.char_indices().nth(chars).map_or(self.text.len(), |(b, _)| b)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn insert_str(&mut self, s: &str) {
        let at = self.byte_at(self.cursor);
        self.text.insert_str(at, s);
        self.cursor += s.chars().count();
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.len() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn kill_to_start(&mut self) {
        let at = self.byte_at(self.cursor);
        self.text.replace_range(..at, "");
        self.cursor = 0;
    }

    fn kill_to_end(&mut self) {
        let at = self.byte_at(self.cursor);
        self.text.truncate(at);
    }

    /// Ctrl-W: the word before the cursor, and the spaces after it.
    fn delete_word(&mut self) {
        let chars: Vec<char> = self.text.chars().take(self.cursor).collect();
        let mut start = chars.len();
        while start > 0 && chars.get(start - 1).is_some_and(|c| c.is_whitespace()) {
            start -= 1;
        }
        while start > 0 && chars.get(start - 1).is_some_and(|c| !c.is_whitespace()) {
            start -= 1;
        }
        let (from, to) = (self.byte_at(start), self.byte_at(self.cursor));
        self.text.replace_range(from..to, "");
        self.cursor = start;
    }

    fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.len();
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }
}

/// A line in the status bar: what just happened, or what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// What the last frame found out about the history pane, for scrolling by pages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Rows the history pane shows.
    pub rows: usize,
    /// Rows the loaded history takes once wrapped.
    pub total: usize,
    /// The scroll position actually used (clamped, and moved to keep a picked message in view).
    pub scroll: usize,
}

/// The whole state of the chat window.
#[derive(Debug)]
pub struct App {
    /// Who this device is, for the status bar.
    pub me: String,
    /// Most recently active first.
    pub conversations: Vec<ConversationInfo>,
    /// The conversation shown (hex id).
    pub selected: Option<String>,
    /// Which conversation `history` belongs to (it lags `selected` until the update arrives).
    pub history_for: Option<String>,
    pub history: Vec<HistoryItem>,
    /// History lines asked for.
    pub limit: u32,
    /// Rows scrolled up from the bottom (0: the latest messages are in view).
    pub scroll: usize,
    pub metrics: Metrics,
    pub compose: Compose,
    /// Unsent text of the conversations not shown.
    drafts: HashMap<String, Compose>,
    pub mode: Mode,
    /// The picked message (its `seq`): highlighted while selecting, then the target of
    /// `/react` and `/download`.
    pub picked: Option<i64>,
    pub link: Link,
    pub status: Option<Status>,
    /// A transfer in progress: what, bytes done, bytes in all.
    pub progress: Option<(String, u64, u64)>,
    /// The conversation last asked for, so the loop is not asked twice.
    requested: Option<String>,
    /// The wall clock (ms since the epoch), set by the loop: rendering reads it, never the clock.
    pub now_ms: u64,
    /// The home directory, for `~/` in `/file ~/notes.txt`.
    pub home: Option<PathBuf>,
    /// Calls ringing this device, oldest first: the banner offers the first.
    pub rings: Vec<Ring>,
    pub call: Option<Call>,
    pub call_log: Vec<CallLogEntry>,
    /// When the call log was last looked at (ms since the epoch): older missed calls are not
    /// counted in the status bar.
    pub calls_seen_ms: u64,
    /// Conversations started by people who are not contacts, waiting unopened.
    pub requests: Vec<MessageRequest>,
}

/// Most recently active first; conversations without messages keep their creation order.
pub fn sort_conversations(list: &mut [ConversationInfo]) {
    list.sort_by_key(|c| std::cmp::Reverse(c.last_activity_ms));
}

/// The conversation a fresh window opens on: the wanted one if it exists, else the most
/// recently active.
pub fn initial_conversation(list: &[ConversationInfo], wanted: Option<&str>) -> Option<String> {
    if let Some(w) = wanted
        && list.iter().any(|c| c.id == w)
    {
        return Some(w.to_owned());
    }
    let mut sorted = list.to_vec();
    sort_conversations(&mut sorted);
    sorted.first().map(|c| c.id.clone())
}

/// `~/x` is `x` in the home directory, as in a shell.
fn expand_home(path: &str, home: Option<&std::path::Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

fn is_selectable(m: &HistoryItem) -> bool {
    m.kind != MessageKind::Notice
}

impl App {
    pub fn new(me: String, wanted: Option<String>, now_ms: u64) -> Self {
        App {
            me,
            conversations: Vec::new(),
            selected: wanted,
            history_for: None,
            history: Vec::new(),
            limit: HISTORY_PAGE,
            scroll: 0,
            metrics: Metrics::default(),
            compose: Compose::default(),
            drafts: HashMap::new(),
            mode: Mode::Compose,
            picked: None,
            link: Link::Connecting,
            status: None,
            progress: None,
            requested: None,
            now_ms,
            home: None,
            rings: Vec::new(),
            call: None,
            call_log: Vec::new(),
            calls_seen_ms: 0,
            requests: Vec::new(),
        }
    }

    /// Missed calls and call requests since the log was last looked at (not the one ringing).
    pub fn missed_calls(&self) -> usize {
        self.call_log
            .iter()
            .filter(|e| is_missed(e) && e.started_at_ms > self.calls_seen_ms)
            .filter(|e| !self.rings.iter().any(|r| r.call == e.call))
            .count()
    }

    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// What the last frame measured; keeps the scroll position within the history.
    pub fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = metrics;
        self.scroll = metrics.scroll;
    }

    pub fn selected_conversation(&self) -> Option<&ConversationInfo> {
        let id = self.selected.as_deref()?;
        self.conversations.iter().find(|c| c.id == id)
    }

    /// The loaded history of the shown conversation (empty while it loads).
    pub fn shown_history(&self) -> &[HistoryItem] {
        if self.history_for.is_some() && self.history_for == self.selected { &self.history } else { &[] }
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status { text: text.into(), error: true });
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status { text: text.into(), error: false });
    }

    /// Apply what the network side reports; may ask for the history of a conversation.
    pub fn apply(&mut self, update: Update) -> Option<Action> {
        match update {
            Update::Requests(list) => {
                self.requests = list;
                None
            }
            Update::Conversations(mut list) => {
                sort_conversations(&mut list);
                self.conversations = list;
                let known =
                    self.selected.as_deref().is_some_and(|s| self.conversations.iter().any(|c| c.id == s));
                if !known {
                    self.selected = self.conversations.first().map(|c| c.id.clone());
                }
                self.request()
            }
            Update::History { conversation, items } => {
                if self.selected.as_deref() == Some(conversation.as_str()) {
                    self.history = items;
                    self.history_for = Some(conversation);
                    if let Some(seq) = self.picked
                        && !self.history.iter().any(|m| m.seq == seq)
                    {
                        // The picked message is gone (deleted for everyone, or expired).
                        self.picked = None;
                        if self.mode == Mode::Select {
                            self.mode = Mode::Compose;
                        }
                    }
                }
                None
            }
            Update::Link(link) => {
                self.link = link;
                None
            }
            Update::Opened(id) => self.switch_to(id),
            Update::Info(text) => {
                self.progress = None;
                self.info(text);
                None
            }
            Update::Error(text) => {
                self.progress = None;
                self.error(text);
                None
            }
            Update::SendFailed { conversation, text, error } => {
                let shown = conversation.is_none() || conversation == self.selected;
                if shown && self.compose.is_empty() {
                    self.compose.set(&text);
                    self.error(format!("Not sent: {error} (the text is back in the box: Enter to retry)"));
                } else if let Some(c) =
                    conversation.filter(|c| self.drafts.get(c).is_none_or(Compose::is_empty))
                {
                    let mut draft = Compose::default();
                    draft.set(&text);
                    self.drafts.insert(c, draft);
                    self.error(format!("Not sent: {error} (the text is kept as that conversation's draft)"));
                } else {
                    self.error(format!("Not sent: {error}: {text}"));
                }
                None
            }
            Update::Progress { what, done, total } => {
                self.progress = Some((what, done, total));
                None
            }
            Update::Ring { call, from } => {
                if !self.rings.iter().any(|r| r.call == call) {
                    self.rings.push(Ring { call, from, since_ms: self.now_ms });
                }
                None
            }
            Update::RingEnded { call } => {
                if let Some(at) = self.rings.iter().position(|r| r.call == call) {
                    let ring = self.rings.remove(at);
                    self.info(format!("Missed call from {}", ring.from));
                }
                None
            }
            Update::VideoPicture(preview) => {
                if let Some(call) = &mut self.call {
                    call.video = Some(preview);
                }
                None
            }
            Update::CallProgress { text, connected } => {
                if let Some(call) = &mut self.call {
                    call.state = text;
                    if connected && call.connected_at_ms.is_none() {
                        call.connected_at_ms = Some(self.now_ms);
                    }
                }
                None
            }
            Update::CallEnded { outcome, detail, failed } => {
                let call = self.call.take();
                let peer = call.as_ref().map_or("?", |c| c.peer.as_str());
                let length = call
                    .as_ref()
                    .and_then(|c| c.connected_at_ms)
                    .map(|t| format!(" after {}", call_duration(self.now_ms.saturating_sub(t) / 1000)))
                    .unwrap_or_default();
                if failed {
                    self.error(format!("Call with {peer} failed: {detail}"));
                } else {
                    let how = match outcome.as_str() {
                        "rejected" => "declined by them".to_owned(),
                        "unanswered" => "no answer".to_owned(),
                        "failed" => format!("failed ({detail})"),
                        other => other.to_owned(),
                    };
                    self.info(format!("Call with {peer}: {how}{length}"));
                }
                None
            }
            Update::CallLog { entries, seen_ms } => {
                self.call_log = entries;
                self.calls_seen_ms = self.calls_seen_ms.max(seen_ms);
                None
            }
        }
    }

    /// Ctrl-Y: answer the ringing call. Any other ringing call is left to ring out as missed,
    /// since the network side is busy with this one.
    fn accept_call(&mut self) -> Option<Action> {
        if self.rings.is_empty() {
            self.error("No call is ringing");
            return None;
        }
        let ring = self.rings.remove(0);
        self.rings.clear();
        self.call = Some(Call {
            peer: ring.from,
            outgoing: false,
            state: "connecting…".to_owned(),
            connected_at_ms: None,
            hanging_up: false,
            muted: false,
            video: None,
        });
        Some(Action::AcceptCall { call: ring.call })
    }

    /// Ctrl-X: decline the ringing call, else hang up (or cancel) the call in progress.
    fn decline_or_hang_up(&mut self) -> Option<Action> {
        if !self.rings.is_empty() {
            let ring = self.rings.remove(0);
            self.info(format!("Declined the call from {}", ring.from));
            return Some(Action::DeclineCall { call: ring.call });
        }
        match &mut self.call {
            Some(call) if !call.hanging_up => {
                call.hanging_up = true;
                call.state = "hanging up…".to_owned();
                Some(Action::HangUp)
            }
            Some(_) => None,
            None => {
                self.error("No call to hang up");
                None
            }
        }
    }

    /// Ctrl-O: mute or unmute the microphone in the call in progress.
    fn toggle_mute(&mut self) -> Option<Action> {
        match &mut self.call {
            Some(call) if !call.hanging_up => {
                call.muted = !call.muted;
                Some(Action::SetMuted { muted: call.muted })
            }
            _ => {
                self.error("No call to mute");
                None
            }
        }
    }

    /// `/call` (the person of the shown 1:1) or `/call @someone`; `/video` likewise.
    fn start_call(&mut self, arg: &str, video: bool) -> Option<Action> {
        if self.call.is_some() {
            self.error("Already in a call: Ctrl-X hangs up");
            return None;
        }
        if !self.rings.is_empty() {
            self.error("A call is ringing: Ctrl-Y accepts, Ctrl-X declines");
            return None;
        }
        let (to, peer) = if arg.is_empty() {
            let Some(c) = self.selected_conversation() else {
                self.error("Usage: /call @username (or /call in a 1:1 conversation)");
                return None;
            };
            if !c.direct || c.closed {
                self.error("Calls are 1:1: /call @username, or /call in a 1:1 conversation");
                return None;
            }
            (c.id.clone(), c.name.clone())
        } else {
            (arg.to_owned(), arg.to_owned())
        };
        self.call = Some(Call {
            peer: peer.clone(),
            outgoing: true,
            state: format!("calling {peer}…"),
            connected_at_ms: None,
            hanging_up: false,
            muted: false,
            video: None,
        });
        Some(Action::Call { to, video })
    }

    /// Ask for the selected conversation's history if it was not asked for yet.
    fn request(&mut self) -> Option<Action> {
        let id = self.selected.clone()?;
        if self.requested.as_deref() == Some(id.as_str()) {
            return None;
        }
        self.requested = Some(id.clone());
        Some(Action::Show { conversation: id, limit: self.limit })
    }

    fn switch_to(&mut self, id: String) -> Option<Action> {
        if self.selected.as_deref() == Some(id.as_str()) {
            return self.request();
        }
        if let Some(old) = self.selected.take() {
            let draft = std::mem::take(&mut self.compose);
            if !draft.is_empty() {
                self.drafts.insert(old, draft);
            }
        }
        self.compose = self.drafts.remove(&id).unwrap_or_default();
        self.selected = Some(id);
        self.scroll = 0;
        self.limit = HISTORY_PAGE;
        self.picked = None;
        if self.mode == Mode::Select {
            self.mode = Mode::Compose;
        }
        self.requested = None;
        self.request()
    }

    /// Tab / Shift-Tab: the next or previous conversation in the list, wrapping around.
    fn cycle(&mut self, forward: bool) -> Option<Action> {
        let n = self.conversations.len();
        if n == 0 {
            self.error("No conversations yet: /msg @someone hello starts one");
            return None;
        }
        let at = self.selected.as_deref().and_then(|s| self.conversations.iter().position(|c| c.id == s));
        let next = match at {
            Some(i) if forward => (i + 1) % n,
            Some(i) => (i + n - 1) % n,
            None => 0,
        };
        let id = self.conversations.get(next).map(|c| c.id.clone())?;
        self.switch_to(id)
    }

    fn page(&self) -> usize {
        self.metrics.rows.saturating_sub(2).max(1)
    }

    fn scroll_up(&mut self) -> Option<Action> {
        let top = self.metrics.total.saturating_sub(self.metrics.rows);
        self.scroll = (self.scroll + self.page()).min(top);
        // At the top of what is loaded, and there may be more: load another page.
        let more = self.shown_history().len() >= self.limit as usize;
        if self.scroll >= top && more {
            let conversation = self.selected.clone()?;
            self.limit = self.limit.saturating_add(HISTORY_PAGE);
            return Some(Action::Show { conversation, limit: self.limit });
        }
        None
    }

    fn scroll_down(&mut self) {
        self.scroll = self.scroll.saturating_sub(self.page());
    }

    /// Pasted text goes into the compose box as it is (bracketed paste: newlines do not send).
    pub fn paste(&mut self, text: &str) {
        if self.mode != Mode::Compose {
            self.mode = Mode::Compose;
        }
        let text = text.replace("\r\n", "\n").replace('\r', "\n").replace('\t', "    ");
        self.compose.insert_str(&text);
    }

    /// What a key does. Keys that change only the window return `None`.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c' | 'd')
                if ctrl && (key.code == KeyCode::Char('c') || self.compose.is_empty()) =>
            {
                return Some(Action::Quit);
            }
            KeyCode::F(1) => {
                self.mode = if self.mode == Mode::Help { Mode::Compose } else { Mode::Help };
                return None;
            }
            // Call keys work whatever else is on screen: a ringing call does not wait. Ctrl-Y
            // and Ctrl-X, not letters, since a call may ring in the middle of typing a word.
            KeyCode::Char('y') if ctrl => return self.accept_call(),
            KeyCode::Char('x') if ctrl => return self.decline_or_hang_up(),
            KeyCode::Char('o') if ctrl => return self.toggle_mute(),
            _ => {}
        }
        if matches!(self.mode, Mode::Help | Mode::Calls | Mode::Requests) {
            // Any key closes the help, the call log and the requests.
            self.mode = Mode::Compose;
            return None;
        }
        // Keys that work the same while typing and while picking a message.
        match key.code {
            KeyCode::Tab => return self.cycle(true),
            KeyCode::BackTab => return self.cycle(false),
            KeyCode::Down if ctrl || alt => return self.cycle(true),
            KeyCode::Up if ctrl || alt => return self.cycle(false),
            KeyCode::Char('n') if ctrl => return self.cycle(true),
            KeyCode::Char('p') if ctrl => return self.cycle(false),
            KeyCode::PageUp => return self.scroll_up(),
            KeyCode::PageDown => {
                self.scroll_down();
                return None;
            }
            _ => {}
        }
        match self.mode {
            Mode::Select => self.select_key(key),
            _ => self.compose_key(key, ctrl, alt),
        }
    }

    fn compose_key(&mut self, key: KeyEvent, ctrl: bool, alt: bool) -> Option<Action> {
        match key.code {
            KeyCode::Enter => return self.submit(),
            KeyCode::Esc => {
                self.compose.take();
                self.picked = None;
                self.status = None;
            }
            KeyCode::Up if self.compose.is_empty() => self.pick_last(),
            KeyCode::Char('?') if self.compose.is_empty() && !ctrl && !alt => self.mode = Mode::Help,
            KeyCode::Char('a') if ctrl => self.compose.cursor = 0,
            KeyCode::Char('e') if ctrl => self.compose.cursor = self.compose.len(),
            KeyCode::Char('u') if ctrl => self.compose.kill_to_start(),
            KeyCode::Char('k') if ctrl => self.compose.kill_to_end(),
            KeyCode::Char('w') if ctrl => self.compose.delete_word(),
            KeyCode::Char('h') if ctrl => self.compose.backspace(),
            KeyCode::Char(c) if !ctrl && !alt => self.compose.insert(c),
            KeyCode::Backspace if ctrl || alt => self.compose.delete_word(),
            KeyCode::Backspace => self.compose.backspace(),
            KeyCode::Delete => self.compose.delete(),
            KeyCode::Left => self.compose.cursor = self.compose.cursor.saturating_sub(1),
            KeyCode::Right => self.compose.cursor = (self.compose.cursor + 1).min(self.compose.len()),
            KeyCode::Home => self.compose.cursor = 0,
            KeyCode::End => self.compose.cursor = self.compose.len(),
            _ => {}
        }
        None
    }

    /// ↑ on an empty line: pick the latest message, to download or react to it.
    fn pick_last(&mut self) {
        match self.shown_history().iter().rev().find(|m| is_selectable(m)) {
            Some(m) => {
                self.picked = Some(m.seq);
                self.mode = Mode::Select;
            }
            None => self.error("No message to pick here yet"),
        }
    }

    fn picked_item(&self) -> Option<&HistoryItem> {
        let seq = self.picked?;
        self.shown_history().iter().find(|m| m.seq == seq)
    }

    fn select_key(&mut self, key: KeyEvent) -> Option<Action> {
        let items: Vec<i64> =
            self.shown_history().iter().filter(|m| is_selectable(m)).map(|m| m.seq).collect();
        let at = self.picked.and_then(|p| items.iter().position(|s| *s == p));
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                if let Some(seq) = at.and_then(|i| i.checked_sub(1)).and_then(|i| items.get(i)) {
                    self.picked = Some(*seq);
                }
            }
            KeyCode::Down | KeyCode::Char('j') => match at.and_then(|i| items.get(i + 1)) {
                Some(seq) => self.picked = Some(*seq),
                None => self.leave_select(),
            },
            KeyCode::Home | KeyCode::Char('g') => self.picked = items.first().copied().or(self.picked),
            KeyCode::End | KeyCode::Char('G') => self.picked = items.last().copied().or(self.picked),
            KeyCode::Esc | KeyCode::Char('i' | 'q') => self.leave_select(),
            KeyCode::Char('d') | KeyCode::Enter => return self.download(),
            KeyCode::Char('r') => {
                // Keep the pick as the target and let the user type the emoji.
                self.mode = Mode::Compose;
                self.compose.set("/react ");
            }
            KeyCode::Char(c) if !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                // Typing goes back to the compose box, keeping the character.
                self.leave_select();
                self.compose.insert(c);
            }
            _ => {}
        }
        None
    }

    fn leave_select(&mut self) {
        self.mode = Mode::Compose;
        self.picked = None;
    }

    fn download(&mut self) -> Option<Action> {
        let target = match self.picked_item() {
            Some(m) if m.attachment.is_some() => Some(m),
            Some(_) => {
                self.error("That message has no attachment to download");
                return None;
            }
            None => self.shown_history().iter().rev().find(|m| m.attachment.is_some() && !m.deleted),
        };
        let Some((seq, name)) = target.and_then(|m| Some((m.seq, m.attachment.as_ref()?.name.clone())))
        else {
            self.error("No attachment in this conversation to download");
            return None;
        };
        self.info(format!("Downloading {name}…"));
        Some(Action::Download { seq, name })
    }

    /// Enter: send the line, or run it if it is a /command.
    fn submit(&mut self) -> Option<Action> {
        let line = self.compose.text().trim().to_owned();
        if line.is_empty() {
            return None;
        }
        let Some(command) = line.strip_prefix('/') else { return self.send(line) };
        if command.starts_with('/') {
            // `//text` sends `/text`.
            return self.send(command.to_owned());
        }
        let (name, arg) = match command.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (command, ""),
        };
        let action = match name {
            "quit" | "q" | "exit" => Some(Action::Quit),
            "help" | "h" | "?" => {
                self.mode = Mode::Help;
                None
            }
            "react" | "r" => {
                if arg.is_empty() {
                    self.error("Usage: /react EMOJI, e.g. /react 👍 (↑ first to pick the message)");
                    return None;
                }
                // `?`: when there is nothing to react to, the line stays for fixing.
                Some(self.react(arg)?)
            }
            "download" | "save" | "d" => Some(self.download()?),
            "call" => Some(self.start_call(arg, false)?),
            "video" => Some(self.start_call(arg, true)?),
            "calls" => {
                self.mode = Mode::Calls;
                self.calls_seen_ms = self.now_ms;
                Some(Action::CallsSeen { at_ms: self.now_ms })
            }
            "requests" => {
                self.mode = Mode::Requests;
                None
            }
            "request" => Some(self.answer_request(arg)?),
            "accept" | "answer" => Some(self.accept_call()?),
            "decline" | "hangup" => Some(self.decline_or_hang_up()?),
            "file" | "f" => {
                if arg.is_empty() {
                    self.error("Usage: /file PATH (sends the file to this conversation)");
                    return None;
                }
                let conversation = self.writable_conversation()?;
                Some(Action::SendFile { conversation, path: expand_home(arg, self.home.as_deref()) })
            }
            "msg" | "m" => {
                let Some((to, text)) = arg.split_once(char::is_whitespace).map(|(t, x)| (t, x.trim())) else {
                    self.error("Usage: /msg @username TEXT  or  /msg +15551234567 TEXT");
                    return None;
                };
                if text.is_empty() {
                    self.error("Usage: /msg @username TEXT  or  /msg +15551234567 TEXT");
                    return None;
                }
                Some(Action::SendTo { to: to.to_owned(), text: text.to_owned() })
            }
            other => {
                self.error(format!("Unknown command /{other}: /help lists them (start with // to send a /)"));
                return None;
            }
        };
        self.compose.take();
        self.picked = None;
        action
    }

    /// `/request accept|decline|block N`: N as numbered in `/requests`, or the sender.
    fn answer_request(&mut self, arg: &str) -> Option<Action> {
        const USAGE: &str =
            "Usage: /request accept|decline|block N (N as /requests numbers them, or the sender)";
        let Some((verb, which)) = arg.split_once(char::is_whitespace).map(|(v, w)| (v, w.trim())) else {
            self.error(USAGE);
            return None;
        };
        let answer = match verb {
            "accept" => RequestAnswer::Accept,
            "decline" => RequestAnswer::Decline,
            "block" => RequestAnswer::Block,
            _ => {
                self.error(USAGE);
                return None;
            }
        };
        let found = match which.parse::<usize>() {
            Ok(n) => n.checked_sub(1).and_then(|i| self.requests.get(i)),
            Err(_) => {
                let mut by_sender = self.requests.iter().filter(|r| r.from.eq_ignore_ascii_case(which));
                match (by_sender.next(), by_sender.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            }
        };
        let Some(request) = found else {
            self.error(format!("No request {which}: /requests lists them"));
            return None;
        };
        Some(Action::AnswerRequest { conversation: request.conversation.clone(), answer })
    }

    /// The shown conversation if it can take messages; else why not, in the status bar.
    fn writable_conversation(&mut self) -> Option<String> {
        let Some(conversation) = self.selected_conversation() else {
            self.error("No conversation open: /msg @someone hello starts one");
            return None;
        };
        if conversation.closed {
            self.error("You left this conversation: it can be read, not written to");
            return None;
        }
        Some(conversation.id.clone())
    }

    fn send(&mut self, text: String) -> Option<Action> {
        let conversation = self.writable_conversation()?;
        self.compose.take();
        self.picked = None;
        if self.call.is_some() {
            // The connection is the call's until it ends (see worker.rs).
            self.info("In a call: the message goes out when the call ends");
        }
        Some(Action::Send { conversation, text })
    }

    /// `/react EMOJI`: to the picked message, or else to the latest message from someone else.
    fn react(&mut self, emoji: &str) -> Option<Action> {
        let conversation = self.selected.clone()?;
        let target = match self.picked_item() {
            Some(m) => Some(m),
            None => self.shown_history().iter().rev().find(|m| !m.from_me && is_selectable(m) && !m.deleted),
        };
        let Some(target) = target.map(|m| m.message_id.clone()) else {
            self.error("Nothing to react to yet");
            return None;
        };
        Some(Action::React { conversation, target, emoji: emoji.to_owned() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use rampart_client::{AttachmentInfo, DeliveryStatus};

    pub(crate) fn conversation(id: &str, name: &str, unread: u64, last: u64) -> ConversationInfo {
        ConversationInfo {
            id: id.to_owned(),
            name: name.to_owned(),
            direct: true,
            closed: false,
            messages: 3,
            unread,
            timer_secs: 0,
            last_activity_ms: last,
        }
    }

    pub(crate) fn message(seq: i64, from_me: bool, text: &str) -> HistoryItem {
        HistoryItem {
            seq,
            conversation: Some("aa".into()),
            from_me,
            sender_account: if from_me { 1 } else { 2 },
            sender_label: if from_me { "@alice".into() } else { "@bob".into() },
            message_id: format!("{seq:032x}"),
            sent_at_ms: 1_700_000_000_000,
            received_at_ms: 1_700_000_000_000,
            kind: MessageKind::Text,
            text: text.to_owned(),
            status: DeliveryStatus::Delivered,
            edited: false,
            deleted: false,
            reply_to: None,
            reactions: Vec::new(),
            attachment: None,
            expires_at_ms: None,
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            assert_eq!(app.handle_key(key(KeyCode::Char(c))), None);
        }
    }

    /// An app showing conversation "aa" (bob) with two messages, and "bb" (the team).
    fn app() -> App {
        let mut app = App::new("@alice".into(), None, 0);
        let show = app.apply(Update::Conversations(vec![
            conversation("bb", "team", 0, 10),
            conversation("aa", "@bob", 2, 20),
        ]));
        assert_eq!(show, Some(Action::Show { conversation: "aa".into(), limit: HISTORY_PAGE }));
        app.apply(Update::History {
            conversation: "aa".into(),
            items: vec![message(1, false, "hi alice"), message(2, true, "hi bob")],
        });
        app
    }

    #[test]
    fn opens_on_the_most_recent_conversation_and_asks_once() {
        let mut app = app();
        assert_eq!(app.conversations[0].name, "@bob");
        assert_eq!(app.apply(Update::Conversations(app.conversations.clone())), None);
        assert_eq!(app.shown_history().len(), 2);
    }

    #[test]
    fn a_wanted_conversation_is_opened_first() {
        let mut app = App::new("me".into(), Some("bb".into()), 0);
        let list = vec![conversation("aa", "@bob", 0, 20), conversation("bb", "team", 0, 10)];
        assert_eq!(initial_conversation(&list, Some("bb")).as_deref(), Some("bb"));
        assert_eq!(initial_conversation(&list, Some("zz")).as_deref(), Some("aa"));
        assert_eq!(
            app.apply(Update::Conversations(list)),
            Some(Action::Show { conversation: "bb".into(), limit: HISTORY_PAGE })
        );
    }

    #[test]
    fn typing_and_enter_send_to_the_shown_conversation() {
        let mut app = app();
        typed(&mut app, "hello there");
        assert_eq!(app.compose.text(), "hello there");
        let sent = app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent, Some(Action::Send { conversation: "aa".into(), text: "hello there".into() }));
        assert!(app.compose.is_empty());
        // An empty line sends nothing.
        typed(&mut app, "   ");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
    }

    #[test]
    fn editing_keys_move_the_cursor_and_esc_clears() {
        let mut app = app();
        typed(&mut app, "helo wrld");
        app.handle_key(key(KeyCode::Home));
        for _ in 0..3 {
            app.handle_key(key(KeyCode::Right));
        }
        typed(&mut app, "l");
        assert_eq!(app.compose.text(), "hello wrld");
        app.handle_key(key(KeyCode::End));
        app.handle_key(ctrl('w'));
        assert_eq!(app.compose.text(), "hello ");
        typed(&mut app, "wörld");
        app.handle_key(key(KeyCode::Left));
        app.handle_key(key(KeyCode::Backspace));
        assert_eq!(app.compose.text(), "hello wörd");
        assert_eq!(app.compose.cursor(), 9);
        app.handle_key(key(KeyCode::Delete));
        assert_eq!(app.compose.text(), "hello wör");
        app.handle_key(key(KeyCode::Esc));
        assert!(app.compose.is_empty());
    }

    #[test]
    fn tab_switches_conversation_keeping_drafts() {
        let mut app = app();
        typed(&mut app, "draft for bob");
        let show = app.handle_key(key(KeyCode::Tab));
        assert_eq!(show, Some(Action::Show { conversation: "bb".into(), limit: HISTORY_PAGE }));
        assert!(app.compose.is_empty(), "the draft stays with its conversation");
        assert!(app.shown_history().is_empty(), "bob's messages are not shown under the team's name");
        let back = app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
        assert_eq!(back, Some(Action::Show { conversation: "aa".into(), limit: HISTORY_PAGE }));
        assert_eq!(app.compose.text(), "draft for bob");
        // Ctrl-Down and Ctrl-Up too, wrapping around.
        let down = KeyEvent::new(KeyCode::Down, KeyModifiers::CONTROL);
        assert!(
            matches!(app.handle_key(down), Some(Action::Show { conversation, .. }) if conversation == "bb")
        );
        assert!(
            matches!(app.handle_key(down), Some(Action::Show { conversation, .. }) if conversation == "aa")
        );
    }

    #[test]
    fn quit_by_command_or_ctrl_c() {
        let mut app = app();
        assert_eq!(app.handle_key(ctrl('c')), Some(Action::Quit));
        typed(&mut app, "/quit");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), Some(Action::Quit));
    }

    #[test]
    fn react_targets_the_last_message_of_others_or_the_picked_one() {
        let mut app = app();
        typed(&mut app, "/react 👍");
        let a = app.handle_key(key(KeyCode::Enter));
        assert_eq!(
            a,
            Some(Action::React {
                conversation: "aa".into(),
                target: format!("{:032x}", 1),
                emoji: "👍".into()
            })
        );
        // ↑ picks my own last message; r starts a reaction to it.
        assert_eq!(app.handle_key(key(KeyCode::Up)), None);
        assert_eq!(app.mode, Mode::Select);
        assert_eq!(app.picked, Some(2));
        app.handle_key(key(KeyCode::Char('r')));
        assert_eq!(app.compose.text(), "/react ");
        typed(&mut app, "🎉");
        let a = app.handle_key(key(KeyCode::Enter));
        assert!(matches!(a, Some(Action::React { target, .. }) if target == format!("{:032x}", 2)));
        // Without an emoji it explains itself.
        typed(&mut app, "/react");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert!(app.status.as_ref().unwrap().error);
    }

    #[test]
    fn requests_are_listed_and_answered_by_number_or_sender() {
        let mut app = app();
        let request = |id: &str, from: &str| MessageRequest {
            conversation: id.into(),
            from: from.into(),
            from_account: 9,
            started_by_sender: true,
            opened_at_ms: 0,
            held: 2,
        };
        assert_eq!(app.apply(Update::Requests(vec![request("c1", "@mallory"), request("c2", "@eve")])), None);
        typed(&mut app, "/requests");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert_eq!(app.mode, Mode::Requests);
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Compose);
        typed(&mut app, "/request accept 2");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::AnswerRequest { conversation: "c2".into(), answer: RequestAnswer::Accept })
        );
        typed(&mut app, "/request block @MALLORY");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::AnswerRequest { conversation: "c1".into(), answer: RequestAnswer::Block })
        );
        for wrong in ["/request accept 3", "/request open 1", "/request accept @nobody"] {
            typed(&mut app, wrong);
            assert_eq!(app.handle_key(key(KeyCode::Enter)), None, "{wrong}");
            assert!(app.status.as_ref().unwrap().error, "{wrong}");
            app.compose.take();
        }
    }

    #[test]
    fn commands_and_slashes() {
        let mut app = app();
        typed(&mut app, "/nope");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert!(app.status.as_ref().unwrap().text.contains("Unknown command /nope"));
        assert_eq!(app.compose.text(), "/nope", "the line stays for fixing");
        app.handle_key(key(KeyCode::Esc));
        typed(&mut app, "//shrug");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::Send { conversation: "aa".into(), text: "/shrug".into() })
        );
        typed(&mut app, "/msg @carol hi carol");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::SendTo { to: "@carol".into(), text: "hi carol".into() })
        );
    }

    #[test]
    fn help_opens_with_question_mark_on_an_empty_line_and_any_key_closes_it() {
        let mut app = app();
        app.handle_key(key(KeyCode::Char('?')));
        assert_eq!(app.mode, Mode::Help);
        app.handle_key(key(KeyCode::Char('x')));
        assert_eq!(app.mode, Mode::Compose);
        assert!(app.compose.is_empty(), "the key that closed the help is not typed");
        typed(&mut app, "why?");
        assert_eq!(app.compose.text(), "why?");
        app.handle_key(key(KeyCode::F(1)));
        assert_eq!(app.mode, Mode::Help);
    }

    #[test]
    fn download_picks_the_attachment() {
        let mut app = app();
        let mut file = message(3, false, "the report");
        file.kind = MessageKind::Attachment;
        file.attachment = Some(AttachmentInfo {
            name: "report.pdf".into(),
            mime: "application/pdf".into(),
            size: 10,
            saved_path: None,
        });
        let mut items = app.history.clone();
        items.push(file);
        items.push(message(4, false, "did you see it?"));
        app.apply(Update::History { conversation: "aa".into(), items });
        app.handle_key(key(KeyCode::Up));
        assert_eq!(app.picked, Some(4));
        assert_eq!(app.handle_key(key(KeyCode::Char('d'))), None, "no attachment on that one");
        app.handle_key(key(KeyCode::Up));
        assert_eq!(
            app.handle_key(key(KeyCode::Char('d'))),
            Some(Action::Download { seq: 3, name: "report.pdf".into() })
        );
        // Down past the last message goes back to typing.
        app.handle_key(key(KeyCode::Down));
        app.handle_key(key(KeyCode::Down));
        assert_eq!(app.mode, Mode::Compose);
        typed(&mut app, "/download");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::Download { seq: 3, name: "report.pdf".into() })
        );
    }

    #[test]
    fn page_up_scrolls_and_loads_more_at_the_top() {
        let mut app = app();
        app.set_metrics(Metrics { rows: 10, total: 25, scroll: 0 });
        assert_eq!(app.handle_key(key(KeyCode::PageUp)), None);
        assert_eq!(app.scroll, 8);
        // Everything loaded is in view at the top; fewer lines than the limit: nothing more.
        assert_eq!(app.handle_key(key(KeyCode::PageUp)), None);
        assert_eq!(app.scroll, 15);
        app.handle_key(key(KeyCode::PageDown));
        assert_eq!(app.scroll, 7);
        // A full page loaded: reaching the top asks for more.
        app.limit = 2;
        assert_eq!(
            app.handle_key(key(KeyCode::PageUp)),
            Some(Action::Show { conversation: "aa".into(), limit: 2 + HISTORY_PAGE })
        );
    }

    #[test]
    fn file_sends_a_path_with_the_home_expanded() {
        let mut app = app();
        app.home = Some(PathBuf::from("/home/alice"));
        typed(&mut app, "/file ~/notes 2.txt");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::SendFile {
                conversation: "aa".into(),
                path: PathBuf::from("/home/alice/notes 2.txt")
            })
        );
    }

    #[test]
    fn a_failed_send_gives_the_text_back() {
        let mut app = app();
        typed(&mut app, "important");
        let a = app.handle_key(key(KeyCode::Enter));
        assert!(matches!(a, Some(Action::Send { .. })));
        app.apply(Update::SendFailed {
            conversation: Some("aa".into()),
            text: "important".into(),
            error: "offline".into(),
        });
        assert_eq!(app.compose.text(), "important");
        assert!(app.status.as_ref().unwrap().error);
    }

    #[test]
    fn a_pasted_text_keeps_its_lines() {
        let mut app = app();
        app.paste("line one\r\nline two");
        assert_eq!(app.compose.text(), "line one\nline two");
        assert!(
            matches!(app.handle_key(key(KeyCode::Enter)), Some(Action::Send { text, .. }) if text == "line one\nline two")
        );
    }

    #[test]
    fn sending_needs_an_open_conversation() {
        let mut app = App::new("me".into(), None, 0);
        app.apply(Update::Conversations(Vec::new()));
        typed(&mut app, "hello");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert!(app.status.as_ref().unwrap().text.contains("/msg"));
    }

    pub(crate) fn log_entry(call: &str, peer: &str, outgoing: bool, outcome: &str, at: u64) -> CallLogEntry {
        CallLogEntry {
            call: call.to_owned(),
            peer: peer.to_owned(),
            peer_account: 2,
            outgoing,
            started_at_ms: at,
            answered_at_ms: None,
            ended_at_ms: None,
            outcome: outcome.to_owned(),
            detail: String::new(),
            signals_dropped_before_accept: 0,
            signals_released: 0,
        }
    }

    #[test]
    fn a_ringing_call_is_accepted_with_ctrl_y_and_hung_up_with_ctrl_x() {
        let mut app = app();
        typed(&mut app, "half a wo");
        app.apply(Update::Ring { call: "c1".into(), from: "@bob".into() });
        assert_eq!(app.rings.len(), 1);
        // Typing goes on into the box: letters never answer a call.
        typed(&mut app, "rd");
        assert_eq!(app.compose.text(), "half a word");
        assert_eq!(app.handle_key(ctrl('y')), Some(Action::AcceptCall { call: "c1".into() }));
        assert!(app.rings.is_empty());
        let call = app.call.clone().unwrap();
        assert_eq!((call.peer.as_str(), call.outgoing, call.connected_at_ms), ("@bob", false, None));

        // Audio flows: the duration counts from then.
        app.tick(5_000);
        app.apply(Update::CallProgress {
            text: "connected with @bob (relay 1.2.3.4:3478)".into(),
            connected: true,
        });
        assert_eq!(app.call.as_ref().unwrap().connected_at_ms, Some(5_000));
        app.apply(Update::CallProgress { text: "later".into(), connected: true });
        assert_eq!(app.call.as_ref().unwrap().connected_at_ms, Some(5_000), "the first one counts");

        assert_eq!(app.handle_key(ctrl('x')), Some(Action::HangUp));
        assert!(app.call.as_ref().unwrap().hanging_up);
        assert_eq!(app.handle_key(ctrl('x')), None, "asked once");
        app.tick(68_000);
        app.apply(Update::CallEnded {
            outcome: "ended".into(),
            detail: "HungUpLocally".into(),
            failed: false,
        });
        assert!(app.call.is_none());
        assert_eq!(app.status.as_ref().unwrap().text, "Call with @bob: ended after 01:03");
        // Nothing left to hang up.
        assert_eq!(app.handle_key(ctrl('x')), None);
        assert!(app.status.as_ref().unwrap().error);
    }

    #[test]
    fn ctrl_x_declines_and_a_ring_can_end_by_itself() {
        let mut app = app();
        app.apply(Update::Ring { call: "c1".into(), from: "@bob".into() });
        app.apply(Update::Ring { call: "c1".into(), from: "@bob".into() });
        app.apply(Update::Ring { call: "c2".into(), from: "@carol".into() });
        assert_eq!(app.rings.len(), 2, "the same ring twice is one");
        // Call keys work over the help too.
        app.handle_key(key(KeyCode::F(1)));
        assert_eq!(app.handle_key(ctrl('x')), Some(Action::DeclineCall { call: "c1".into() }));
        assert_eq!(app.rings[0].from, "@carol");
        app.apply(Update::RingEnded { call: "c2".into() });
        assert!(app.rings.is_empty());
        assert_eq!(app.status.as_ref().unwrap().text, "Missed call from @carol");
        assert_eq!(app.handle_key(ctrl('y')), None, "nothing rings any more");
        assert!(app.call.is_none());
    }

    #[test]
    fn slash_call_calls_the_person_of_the_one_to_one_or_someone_named() {
        let mut app = app();
        typed(&mut app, "/call");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), Some(Action::Call { to: "aa".into(), video: false }));
        let call = app.call.clone().unwrap();
        assert_eq!((call.peer.as_str(), call.outgoing), ("@bob", true));
        // One call at a time.
        typed(&mut app, "/call @carol");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert!(app.status.as_ref().unwrap().text.contains("Already in a call"));
        // Messages typed meanwhile still go (once the call is over).
        app.handle_key(key(KeyCode::Esc));
        typed(&mut app, "brb");
        assert!(matches!(app.handle_key(key(KeyCode::Enter)), Some(Action::Send { .. })));
        assert!(app.status.as_ref().unwrap().text.contains("when the call ends"));
        // Ctrl-X before an answer cancels; a failure says why.
        assert_eq!(app.handle_key(ctrl('x')), Some(Action::HangUp));
        app.apply(Update::CallEnded { outcome: "failed".into(), detail: "no relay".into(), failed: true });
        assert!(app.call.is_none());
        assert_eq!(app.status.as_ref().unwrap().text, "Call with @bob failed: no relay");

        typed(&mut app, "/call @carol");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::Call { to: "@carol".into(), video: false })
        );
        app.apply(Update::CallEnded { outcome: "rejected".into(), detail: String::new(), failed: false });
        assert_eq!(app.status.as_ref().unwrap().text, "Call with @carol: declined by them");
        typed(&mut app, "/video @carol");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Some(Action::Call { to: "@carol".into(), video: true })
        );
        app.apply(Update::CallEnded { outcome: "ended".into(), detail: String::new(), failed: false });

        // Not in a group.
        app.handle_key(key(KeyCode::Tab));
        typed(&mut app, "/call");
        app.conversations.iter_mut().find(|c| c.id == "bb").unwrap().direct = false;
        assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
        assert!(app.status.as_ref().unwrap().text.contains("Calls are 1:1"));
    }

    #[test]
    fn missed_calls_are_counted_until_the_log_is_seen() {
        let mut app = app();
        app.tick(1_000_000);
        app.apply(Update::CallLog {
            entries: vec![
                log_entry("c4", "@bob", false, "missed", 900_000),
                log_entry("c3", "@eve", false, "request", 800_000),
                log_entry("c2", "@bob", true, "unanswered", 700_000),
                log_entry("c1", "@bob", false, "missed", 100),
            ],
            seen_ms: 500,
        });
        assert_eq!(app.missed_calls(), 2, "older than the last look: not counted");
        // The one ringing now is not missed (yet).
        app.apply(Update::Ring { call: "c4".into(), from: "@bob".into() });
        assert_eq!(app.missed_calls(), 1);
        app.apply(Update::RingEnded { call: "c4".into() });
        assert_eq!(app.missed_calls(), 2);

        typed(&mut app, "/calls");
        assert_eq!(app.handle_key(key(KeyCode::Enter)), Some(Action::CallsSeen { at_ms: 1_000_000 }));
        assert_eq!(app.mode, Mode::Calls);
        assert_eq!(app.missed_calls(), 0);
        // An older "seen" from the profile does not bring them back.
        let entries = app.call_log.clone();
        app.apply(Update::CallLog { entries, seen_ms: 500 });
        assert_eq!(app.missed_calls(), 0);
        // Any key closes the log, and is not typed.
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), None);
        assert_eq!(app.mode, Mode::Compose);
        assert!(app.compose.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(call_duration(0), "00:00");
        assert_eq!(call_duration(83), "01:23");
        assert_eq!(call_duration(3_723), "1:02:03");
    }
}
