//! Staying online: `rampart recv --follow` keeps one connection open, prints what arrives as
//! it arrives, and comes back by itself after the server goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The JSON lines a child prints, read on a thread so a test can wait on them with a deadline.
fn json_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Wait for the first line that `wanted` picks, skipping the others; panics with what was seen.
fn wait_for(lines: &mpsc::Receiver<Value>, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(v) if wanted(&v) => return v,
            Ok(v) => seen.push(v),
            Err(_) => break,
        }
    }
    panic!("no {what} within a minute; saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn recv_follow_prints_messages_as_they_come_and_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), Backend::Sqlite, "");
    two_contacts(&server, dir.path()).await;
    let mut follow = KilledOnDrop(
        Command::new(BIN)
            .arg("--profile")
            .arg(dir.path().join("bob"))
            .args(["--json", "recv", "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = json_lines(follow.0.stdout.take().unwrap());
    wait_for(&lines, "connection", |v| v["link"] == "connected");

    let mut alice = rampart_client::Client::open(&dir.path().join("alice")).unwrap();
    alice.send_text("@bob", "first, while bob listens").await.unwrap();
    let got = wait_for(&lines, "first message", |v| v.get("message").is_some());
    assert_eq!(got["message"]["text"], "first, while bob listens");
    assert_eq!(got["message"]["from"], "@alice");

    // The server goes away: the follower says so and keeps trying, backing off.
    server.kill();
    let offline = wait_for(&lines, "offline notice", |v| v["link"] == "offline");
    assert!(offline["retry_at_ms"].as_u64().is_some(), "{offline}");
    server.restart();
    wait_for(&lines, "reconnection", |v| v["link"] == "connected");
    alice.send_text("@bob", "second, after the restart").await.unwrap();
    let got = wait_for(&lines, "second message", |v| v.get("message").is_some());
    assert_eq!(got["message"]["text"], "second, after the restart");
    assert!(follow.0.try_wait().unwrap().is_none(), "the follower is still running");

    // Ctrl-C ends it, cleanly, after the turn in hand; and while it waits to reconnect too.
    server.kill();
    wait_for(&lines, "offline notice", |v| v["link"] == "offline");
    let interrupted = Command::new("kill").args(["-INT", &follow.0.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = follow.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "Ctrl-C did not stop it");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn recv_follow_needs_an_account() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(&dir.path().join("p"), &["recv", "--follow"]);
    assert!(!ok);
    assert!(err.contains("account register"), "{err}");
}

#[test]
fn recv_follow_and_wait_do_not_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(&dir.path().join("p"), &["recv", "--follow", "--wait", "5"]);
    assert!(!ok);
    assert!(err.contains("--follow") && err.contains("--wait"), "{err}");
}
