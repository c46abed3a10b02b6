#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `rampart chat` in a real terminal: the binary runs inside tmux, Alice writes from the client
//! library, and what Bob sees and types goes through his actual screen and keyboard.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rampart_client::call::{CallLimits, CallMedia};
use rampart_client::{Client, DeliveryStatus};
use support::*;

/// How long anything in this test may take to show: generous, for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// A tmux server of its own (private socket) running one window of a fixed size.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        // -u: the pane speaks UTF-8 whatever the locale here, so ✓ shows as ✓.
        c.arg("-u").arg("-S").arg(&self.socket);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out =
            self.command().args(args).output().unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): this test needs it (apt-get install tmux)")
            });
        assert!(out.status.success(), "tmux {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start `rampart chat` for the profile in a 120x36 window, with `home` as its home
    /// directory. After it exits, the pane stays open showing its exit status, for the test
    /// (and for whoever debugs it).
    fn start(dir: &Path, profile: &Path, home: &Path) -> Tmux {
        let tmux = Tmux { socket: dir.join("tmux.sock") };
        let script = format!(
            "HOME='{home}' XDG_CONFIG_HOME='{home}/.config' '{BIN}' --profile '{}' chat 2>'{}'; \
             echo \"EXITED $?\"; sleep 600",
            profile.display(),
            dir.join("chat.stderr").display(),
            home = home.display(),
        );
        tmux.run(&["new-session", "-d", "-s", "chat", "-x", "120", "-y", "36", "sh", "-c", &script]);
        tmux
    }

    /// `rampart chat` for Bob's profile in `dir`, once it is up and online.
    async fn open_for_bob(dir: &Path) -> Tmux {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let tmux = Tmux::start(dir, &dir.join("bob"), &home);
        tmux.wait_for("the window to be up and online", |s| {
            s.contains("Conversations") && s.contains("online")
        })
        .await;
        tmux
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "chat"])
    }

    /// Poll the screen until `found` says yes, or fail showing the last screen.
    async fn wait_for(&self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if found(&screen) {
                return screen;
            }
            if started.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text)).await
    }

    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "chat", "-l", text]);
    }

    fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", "chat", key]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// Receive on Alice's side until a message with this text arrives.
async fn alice_receives(alice: &mut Client, text: &str) {
    let started = Instant::now();
    loop {
        let got = alice.receive(Some(Duration::from_secs(2)), |_| {}).await.unwrap();
        if got.iter().any(|m| m.text == text) {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "Alice never received {text:?}");
    }
}

/// The status of Alice's own message with this text, as her profile records it.
fn status_of(alice: &Client, text: &str) -> Option<DeliveryStatus> {
    alice.profile().messages(50).unwrap().into_iter().find(|m| m.from_me && m.text == text).map(|m| m.status)
}

#[tokio::test]
async fn chat_window_shows_messages_live_sends_replies_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155553001", Some("alice")).await;
    // Bob's profile is used by the chat process only.
    let mut bob = server.register(dir.path(), "bob", "+14155553002", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    drop(bob);

    // Bob's Downloads folder, as his desktop would declare it.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config")).unwrap();
    std::fs::write(home.join(".config/user-dirs.dirs"), "XDG_DOWNLOAD_DIR=\"$HOME/Downloads\"\n").unwrap();

    let tmux = Tmux::start(dir.path(), &dir.path().join("bob"), &home);
    tmux.wait_for("the window to be up and online", |s| s.contains("Conversations") && s.contains("online"))
        .await;

    // A message sent while Bob's window is open appears without a key press, in a new
    // conversation that opens by itself.
    let hello = "Hello Bob, this is Alice";
    alice.send_text("@bob", hello).await.unwrap();
    let screen = tmux.wait_for_text(hello).await;
    assert!(screen.contains("@alice: Hello Bob"), "sender shown: {screen}");
    assert!(screen.contains("@ alice"), "the 1:1 is listed: {screen}");

    // It is on Bob's screen, so it was marked read: Alice gets the read receipt.
    let started = Instant::now();
    while status_of(&alice, hello) != Some(DeliveryStatus::Read) {
        assert!(started.elapsed() < DEADLINE, "no read receipt: {:?}", status_of(&alice, hello));
        alice.receive(Some(Duration::from_secs(1)), |_| {}).await.unwrap();
    }

    // Bob types a reply with the keyboard and sends it with Enter.
    let reply = "Hi Alice, typed in the chat window";
    tmux.type_text(reply);
    tmux.wait_for_text(reply).await;
    tmux.press("Enter");
    alice_receives(&mut alice, reply).await;
    // Alice's device took it: Bob's screen shows it delivered.
    tmux.wait_for_text(&format!("me: {reply} ✓✓")).await;

    // A reaction from the command line of the window.
    tmux.type_text("/react 👍");
    tmux.press("Enter");
    let started = Instant::now();
    loop {
        alice.receive(Some(Duration::from_secs(1)), |_| {}).await.unwrap();
        let mine = alice.profile().messages(50).unwrap().into_iter().find(|m| m.text == hello).unwrap();
        if mine.reactions.iter().any(|r| r.emoji == "👍") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the reaction never reached Alice: {mine:?}");
    }

    // A file from Alice: listed with its size; ↑ picks it and d downloads it to Downloads.
    let menu = dir.path().join("menu.txt");
    let content = "soup\nbread\n".repeat(1000);
    std::fs::write(&menu, &content).unwrap();
    alice.send_file("@bob", &menu, "for lunch", &mut |_, _| {}).await.unwrap();
    tmux.wait_for_text("[📎 menu.txt (10.7 KB)]").await;
    tmux.press("Up");
    tmux.wait_for_text("↑/↓ pick").await;
    tmux.press("d");
    let saved = home.join("Downloads/menu.txt");
    tmux.wait_for_text(&format!("saved at {}", saved.display())).await;
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), content);

    // And one from Bob, with /file.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "bring a spoon").unwrap();
    // Wait for Esc to be taken before typing on: a terminal cannot tell an Esc followed at
    // once by "/" from Alt-/.
    tmux.press("Escape");
    tmux.wait_for("the compose box back", |s| s.contains("Message @alice")).await;
    tmux.type_text(&format!("/file {}", notes.display()));
    tmux.press("Enter");
    tmux.wait_for_text("[📎 notes.txt (13 B)]").await;
    let started = Instant::now();
    loop {
        alice.receive(Some(Duration::from_secs(1)), |_| {}).await.unwrap();
        let got = alice.profile().messages(50).unwrap();
        if got.iter().any(|m| m.attachment.as_ref().is_some_and(|a| a.name == "notes.txt")) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "Bob's file never reached Alice: {got:?}");
    }

    calls(&tmux, &mut alice).await;

    // The server goes away: the window says so, and comes back by itself when it returns.
    server.kill();
    tmux.wait_for_text("offline, retrying").await;
    server.restart();
    tmux.wait_for("the window to reconnect", |s| s.contains("● online")).await;
    let again = "Still there after the restart?";
    alice.send_text("@bob", again).await.unwrap();
    tmux.wait_for_text(again).await;

    // /quit leaves cleanly: exit status 0 and the terminal given back.
    tmux.type_text("/quit");
    tmux.press("Enter");
    let screen = tmux.wait_for("chat to exit", |s| s.contains("EXITED")).await;
    let stderr = std::fs::read_to_string(dir.path().join("chat.stderr")).unwrap_or_default();
    assert!(screen.contains("EXITED 0"), "{screen}\nstderr: {stderr}");
    assert!(!screen.contains("Conversations"), "the alternate screen was left: {screen}");
}

/// The call bar is gone and the status bar says how the call ended.
async fn call_over(tmux: &Tmux) -> String {
    tmux.wait_for("the call to end", |s| {
        !s.contains("In call with") && s.contains("Call with @alice: ended after")
    })
    .await
}

/// Alice calls Bob's window (Bob wrote to her, so her calls ring): a call he misses, one he
/// declines, one he accepts; then he calls her with /call, and looks at his call log.
async fn calls(tmux: &Tmux, alice: &mut Client) {
    let limits = |duration: Option<u64>, flag: Option<Arc<AtomicBool>>| CallLimits {
        duration: duration.map(Duration::from_secs),
        hangup_file: None,
        hangup_flag: flag,
    };

    let mut quiet = |_: &rampart_client::call::CallProgress| {};

    // Missed: Alice gives up while it rings.
    let give_up = Arc::new(AtomicBool::new(false));
    let (report, ()) = tokio::join!(
        alice.call("@bob", CallMedia::default(), limits(None, Some(give_up.clone())), &mut quiet),
        async {
            tmux.wait_for_text("Incoming call from @alice").await;
            tmux.wait_for_text("Ctrl-Y accept").await;
            give_up.store(true, Ordering::Release);
            tmux.wait_for_text("Missed call from @alice").await;
        }
    );
    let report = report.unwrap();
    assert_ne!(report.outcome, "failed", "{report:?}");
    let screen = tmux.wait_for_text("1 missed call (/calls)").await;
    assert!(!screen.contains("Incoming call"), "the banner went: {screen}");

    // Declined with Ctrl-X: Alice hears "rejected".
    let (report, ()) =
        tokio::join!(alice.call("@bob", CallMedia::default(), limits(Some(30), None), &mut quiet), async {
            tmux.wait_for_text("Incoming call from @alice").await;
            tmux.press("C-x");
            tmux.wait_for_text("Declined the call from @alice").await;
        });
    assert_eq!(report.unwrap().outcome, "rejected");

    // Accepted with Ctrl-Y: the call bar counts the time until Alice hangs up.
    let (report, ()) =
        tokio::join!(alice.call("@bob", CallMedia::default(), limits(Some(4), None), &mut quiet), async {
            tmux.wait_for_text("Incoming call from @alice").await;
            tmux.press("C-y");
            let screen = tmux.wait_for_text("In call with @alice").await;
            assert!(screen.contains("Ctrl-X hang up"), "{screen}");
            call_over(tmux).await;
        });
    let report = report.unwrap();
    assert_eq!(report.outcome, "ended", "{report:?}");
    assert!(report.packets_received > 0, "Bob's window sent audio (silence): {report:?}");
    let screen = tmux.screen();
    assert!(!screen.contains("In call with"), "the call bar went: {screen}");

    // Bob calls Alice with /call in their 1:1; she answers, and hangs up after 2 s.
    let (report, ()) = tokio::join!(
        alice.answer(DEADLINE, CallMedia::default(), limits(Some(2), None), &mut quiet),
        async {
            tmux.type_text("/call");
            tmux.press("Enter");
            tmux.wait_for_text("In call with @alice").await;
            // (The status of the call before says the same: the call bar going tells them apart.)
            call_over(tmux).await;
        }
    );
    assert_eq!(report.unwrap().outcome, "ended");

    // The call log: newest first, the missed one in it; once seen, no longer counted.
    tmux.type_text("/calls");
    tmux.press("Enter");
    let screen = tmux.wait_for_text("Calls (times UTC)").await;
    for line in ["→ @alice", "← @alice", "missed", "declined"] {
        assert!(screen.contains(line), "{line:?} in the call log: {screen}");
    }
    tmux.press("Escape");
    let screen = tmux.wait_for("the call log to close", |s| !s.contains("Calls (times UTC)")).await;
    assert!(!screen.contains("missed call"), "seen: {screen}");
}

/// The chat window's accept (Ctrl-Y) is the same path as `rampart answer`: a lying server slips
/// caller signals in while Bob's window rings, and after the call his call log says every one
/// was dropped unread before he accepted and only the offer fetched after it was released.
#[tokio::test]
async fn a_lying_servers_early_call_signals_are_dropped_unread_in_the_chat_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let injected =
        lying_server::alice_and_bob_behind_it(&server, dir.path(), "+14155553101", "+14155553102").await;
    let mut alice = Client::open(&dir.path().join("alice")).unwrap();
    let tmux = Tmux::open_for_bob(dir.path()).await;
    let limits = CallLimits { duration: Some(Duration::from_secs(3)), hangup_file: None, hangup_flag: None };
    let mut quiet = |_: &rampart_client::call::CallProgress| {};
    let (report, _) = tokio::join!(alice.call("@bob", CallMedia::default(), limits, &mut quiet), async {
        tmux.wait_for_text("Incoming call from @alice").await;
        tmux.press("C-y");
        tmux.wait_for_text("In call with @alice").await;
        call_over(&tmux).await;
    });
    assert_eq!(report.unwrap().outcome, "ended");
    tmux.type_text("/quit");
    tmux.press("Enter");
    tmux.wait_for("chat to exit", |s| s.contains("EXITED 0")).await;

    assert_eq!(injected.load(Ordering::SeqCst), lying_server::FORGED as u64, "the lying server injected");
    let (ok, out, err) = cli(&dir.path().join("bob"), &["--json", "calls"]);
    assert!(ok, "{err}");
    let log: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let call = &log["calls"][0];
    assert_eq!(call["outcome"], "ended", "{log}");
    assert_eq!(call["signals_dropped_before_accept"], lying_server::FORGED, "{log}");
    assert_eq!(call["signals_released"], 1, "{log}");
}

#[tokio::test]
async fn a_strangers_message_waits_as_a_request_in_the_chat_window_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut stranger = server.register(dir.path(), "stranger", "+14155553201", Some("stranger")).await;
    drop(server.register(dir.path(), "bob", "+14155553202", Some("bob")).await);
    let tmux = Tmux::open_for_bob(dir.path()).await;

    let pitch = "You won a prize, open this";
    stranger.send_text("@bob", pitch).await.unwrap();
    let screen = tmux.wait_for_text("1 request").await;
    assert!(!screen.contains(pitch), "nothing of a request is shown before it is accepted: {screen}");
    tmux.type_text("/requests");
    tmux.press("Enter");
    let screen = tmux.wait_for_text("Message requests").await;
    assert!(screen.contains("1. @stranger") && screen.contains("unopened"), "{screen}");
    assert!(!screen.contains(pitch), "{screen}");
    tmux.press("Escape");

    tmux.type_text("/request accept 1");
    tmux.press("Enter");
    let screen = tmux.wait_for_text(pitch).await;
    assert!(screen.contains(&format!("@stranger: {pitch}")), "{screen}");
    assert!(!screen.contains("1 request"), "{screen}");
}

/// The window keeps working during a call: Bob switches conversations, a message from Carol
/// shows up live, his reply reaches her, and her call is shown as waiting without ringing over
/// the call he is in; all while the call bar stays up.
#[tokio::test]
async fn the_chat_window_keeps_working_during_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155553301", Some("alice")).await;
    let mut carol = server.register(dir.path(), "carol", "+14155553303", Some("carol")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155553302", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob, &mut carol]).await;
    drop(bob);
    let tmux = Tmux::open_for_bob(dir.path()).await;
    alice.send_text("@bob", "calling you in a minute").await.unwrap();
    tmux.wait_for_text("calling you in a minute").await;
    carol.send_text("@bob", "first from carol").await.unwrap();
    tmux.wait_for("Carol's conversation to be listed", |s| s.contains("carol")).await;

    let hang_up = Arc::new(AtomicBool::new(false));
    let limits = CallLimits { duration: None, hangup_file: None, hangup_flag: Some(hang_up.clone()) };
    let mut quiet = |_: &rampart_client::call::CallProgress| {};
    let in_call = |s: &str| s.contains("In call with @alice");
    let (report, ()) = tokio::join!(alice.call("@bob", CallMedia::default(), limits, &mut quiet), async {
        tmux.wait_for_text("Incoming call from @alice").await;
        tmux.press("C-y");
        tmux.wait_for("the call bar", in_call).await;

        // Tab: Carol's conversation, shown during the call.
        tmux.press("Tab");
        let screen = tmux.wait_for_text("first from carol").await;
        assert!(in_call(&screen), "{screen}");

        // Carol writes: it shows up at once.
        let question = "are you on a call?";
        carol.send_text("@bob", question).await.unwrap();
        let screen = tmux.wait_for_text(question).await;
        assert!(in_call(&screen), "the call bar stays up: {screen}");

        // Bob answers from the keyboard: it reaches Carol while the call goes on.
        let answer = "yes, with alice; typing during the call";
        tmux.type_text(answer);
        tmux.press("Enter");
        let started = Instant::now();
        loop {
            carol.receive(Some(Duration::from_secs(1)), |_| {}).await.unwrap();
            if carol.profile().messages(20).unwrap().iter().any(|m| m.text == answer) {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "Bob's reply never reached Carol");
        }
        assert!(in_call(&tmux.screen()), "the call is still on");

        // Carol calls: Bob's window says so and stays in the call with Alice.
        let carol_gives_up = Arc::new(AtomicBool::new(false));
        let carol_limits =
            CallLimits { duration: None, hangup_file: None, hangup_flag: Some(carol_gives_up.clone()) };
        let mut quiet = |_: &rampart_client::call::CallProgress| {};
        let (carol_report, screen) =
            tokio::join!(carol.call("@bob", CallMedia::default(), carol_limits, &mut quiet), async {
                let screen = tmux.wait_for_text("@carol is calling too").await;
                carol_gives_up.store(true, Ordering::Release);
                screen
            });
        assert!(in_call(&screen), "{screen}");
        assert!(!screen.contains("Incoming call from @carol"), "no second ring banner: {screen}");
        let carol_report = carol_report.unwrap();
        assert_eq!(carol_report.packets_received, 0, "Carol's call was never answered: {carol_report:?}");

        hang_up.store(true, Ordering::Release);
        tmux.wait_for("the call to end", |s| !in_call(s) && s.contains("Call with @alice: ended after"))
            .await;
    });
    assert_eq!(report.unwrap().outcome, "ended");
}

/// Alice, and Bob's chat window open on their 1:1 (they know each other).
async fn alice_and_bobs_window(
    server: &TestServer,
    dir: &Path,
    alice_phone: &str,
    bob_phone: &str,
) -> (Client, Tmux) {
    let mut alice = server.register(dir, "alice", alice_phone, Some("alice")).await;
    let mut bob = server.register(dir, "bob", bob_phone, Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    drop(bob);
    (alice, Tmux::open_for_bob(dir).await)
}

/// Media that sends a 160x120 clip as video, and limits that hang up when `hang_up` is set.
fn clip_media(hang_up: &Arc<AtomicBool>) -> (CallMedia, CallLimits) {
    use rampart_client::call::video::{CallVideo, VideoClip};
    let frames = (0..30).map(|i| rampart_media::video::test_pattern(160, 120, i).unwrap()).collect();
    let clip = VideoClip { frames: Arc::new(frames), fps: 15.0 };
    let media = CallMedia {
        video: Some(CallVideo { send: Some(clip.into()), record: None }),
        ..CallMedia::default()
    };
    (media, CallLimits { duration: None, hangup_file: None, hangup_flag: Some(hang_up.clone()) })
}

/// A video call into the chat window: the caller's picture shows in the window (half blocks)
/// and the call bar says so; Ctrl-O mutes and unmutes, and the bar says that too.
#[tokio::test]
async fn a_video_call_shows_in_the_chat_window_and_the_microphone_mutes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let (mut alice, tmux) = alice_and_bobs_window(&server, dir.path(), "+14155553401", "+14155553402").await;
    let hang_up = Arc::new(AtomicBool::new(false));
    let (media, limits) = clip_media(&hang_up);
    let mut quiet = |_: &rampart_client::call::CallProgress| {};
    let (report, ()) = tokio::join!(alice.call("@bob", media, limits, &mut quiet), async {
        tmux.wait_for_text("Incoming call from @alice").await;
        tmux.press("C-y");
        let screen = tmux
            .wait_for("the picture", |s| s.contains("In call with @alice") && s.contains("video 160x120"))
            .await;
        // 32 cells wide, 12 rows of two pixels.
        assert!(screen.matches('▀').count() >= 32 * 12, "{screen}");
        tmux.press("C-o");
        let screen = tmux.wait_for_text(" muted ").await;
        assert!(screen.contains("Ctrl-O unmute"), "{screen}");
        tmux.press("C-o");
        tmux.wait_for("unmuted", |s| s.contains("Ctrl-O mute") && !s.contains(" muted ")).await;
        hang_up.store(true, Ordering::Release);
        tmux.wait_for("the call to end", |s| s.contains("Call with @alice: ended after")).await;
    });
    let report = report.unwrap();
    let video = report.video.unwrap();
    assert!(video.frames_sent > 0, "{video:?}");
}

/// `/video` in the chat window makes a video call: the offer asks for the other side's
/// pictures, which show in the window. This machine has no camera, so the window says it sends
/// none, and the call goes on with audio and the other side's video.
#[tokio::test]
async fn slash_video_makes_a_video_call_from_the_chat_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let (mut alice, tmux) = alice_and_bobs_window(&server, dir.path(), "+14155553501", "+14155553502").await;
    let hang_up = Arc::new(AtomicBool::new(false));
    let (media, limits) = clip_media(&hang_up);
    let mut quiet = |_: &rampart_client::call::CallProgress| {};
    let answered = alice.answer(Duration::from_secs(60), media, limits, &mut quiet);
    let ((), report) = tokio::join!(
        async {
            tmux.type_text("/video @alice");
            tmux.press("Enter");
            let screen = tmux
                .wait_for("her picture", |s| s.contains("In call with @alice") && s.contains("video 160x120"))
                .await;
            if !std::path::Path::new("/dev/video0").exists() {
                assert!(screen.contains("No camera found"), "{screen}");
            }
            hang_up.store(true, Ordering::Release);
        },
        answered
    );
    let video = report.unwrap().video.unwrap();
    assert!(video.frames_sent > 0, "Alice sent her pictures because Bob's offer asked: {video:?}");
}
