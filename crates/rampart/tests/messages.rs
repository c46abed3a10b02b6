#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! What happens to messages after they are sent, through a real server: receipts, edits,
//! deletions, reactions, disappearing timers, and attachments that fail their checks.

mod support;

use std::time::Duration;

use rampart_client::{DeliveryStatus, MessageKind};
use rampart_core::MessageId;
use rampart_proto::ContentBody;
use support::*;

fn text(t: &str) -> ContentBody {
    ContentBody::Text { text: t.into(), reply_to: None }
}

async fn send(c: &mut rampart_client::Client, conv: &rampart_core::GroupId, body: ContentBody) {
    let mut conn = c.connect().await.unwrap();
    c.send_to_group_on(&mut conn, conv, body).await.unwrap();
    conn.close().await;
}

#[tokio::test]
async fn receipts_edits_deletions_reactions_and_timers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155553001", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155553002", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;

    let sent = alice.send_text("@bob", "first").await.unwrap();
    let id = MessageId::from_hex(&sent.message_id).unwrap();
    let mine = alice.profile().history(None, 10).unwrap();
    let line = mine.iter().find(|m| m.text == "first").unwrap();
    assert!(line.from_me);
    assert_eq!(line.status, DeliveryStatus::Sent);

    // Bob receives (and his client says so); Alice sees ✓✓.
    bob.receive(None, |_| {}).await.unwrap();
    let conv = bob.resolve_conversation(&bob.profile().conversations().unwrap()[0].id).unwrap();
    assert_eq!(bob.profile().conversations().unwrap()[0].unread, 1);
    alice.receive(None, |_| {}).await.unwrap();
    let status = |c: &rampart_client::Client| {
        c.profile()
            .history(None, 50)
            .unwrap()
            .into_iter()
            .find(|m| m.message_id == sent.message_id)
            .unwrap()
            .status
    };
    assert_eq!(status(&alice), DeliveryStatus::Delivered);

    // Bob reads it; Alice sees "read".
    let mut conn = bob.connect().await.unwrap();
    assert_eq!(bob.mark_read_on(&mut conn, &conv).await.unwrap(), 1);
    conn.close().await;
    assert_eq!(bob.profile().conversations().unwrap()[0].unread, 0);
    alice.receive(None, |_| {}).await.unwrap();
    assert_eq!(status(&alice), DeliveryStatus::Read);

    // Alice edits and reacts; Bob tries to edit Alice's message, which must not work.
    let alice_conv = alice.resolve_conversation(&alice.profile().conversations().unwrap()[0].id).unwrap();
    send(&mut alice, &alice_conv, ContentBody::Edit { target: id, text: "first, edited".into() }).await;
    send(&mut bob, &conv, ContentBody::Edit { target: id, text: "forged by bob".into() }).await;
    send(&mut bob, &conv, ContentBody::Reaction { target: id, emoji: "👍".into() }).await;
    bob.receive(None, |_| {}).await.unwrap();
    alice.receive(None, |_| {}).await.unwrap();
    for c in [&alice, &bob] {
        let line = c
            .profile()
            .history(None, 50)
            .unwrap()
            .into_iter()
            .find(|m| m.message_id == sent.message_id)
            .unwrap();
        assert_eq!(line.text, "first, edited");
        assert!(line.edited);
        assert_eq!(line.reactions.len(), 1);
        assert_eq!(line.reactions[0].emoji, "👍");
    }

    // Delete for everyone: a tombstone stays, the text goes.
    send(&mut alice, &alice_conv, ContentBody::Delete { target: id }).await;
    bob.receive(None, |_| {}).await.unwrap();
    let line = bob
        .profile()
        .history(None, 50)
        .unwrap()
        .into_iter()
        .find(|m| m.message_id == sent.message_id)
        .unwrap();
    assert!(line.deleted);
    assert_eq!(line.text, "");

    // A disappearing timer: the change is announced, and later messages go when it runs out.
    send(&mut alice, &alice_conv, ContentBody::Timer { seconds: 1 }).await;
    send(&mut alice, &alice_conv, text("this will vanish")).await;
    bob.receive(None, |_| {}).await.unwrap();
    let history = bob.profile().history(None, 50).unwrap();
    assert!(
        history.iter().any(|m| m.kind == MessageKind::Notice && m.text.contains("1 second")),
        "{history:?}"
    );
    let vanishing = history.iter().find(|m| m.text == "this will vanish").unwrap();
    assert!(vanishing.expires_at_ms.is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Reopening the profile purges, even offline.
    let bob_dir = bob.profile().dir().to_path_buf();
    drop(bob);
    let bob = rampart_client::Client::open(&bob_dir).unwrap();
    let history = bob.profile().history(None, 50).unwrap();
    assert!(!history.iter().any(|m| m.text == "this will vanish"), "{history:?}");
    assert!(history.iter().any(|m| m.message_id == sent.message_id), "messages from before the timer stay");
}

#[tokio::test]
async fn a_tampered_or_truncated_attachment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155553101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155553102", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let file = dir.path().join("photo.jpg");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let mut seen = Vec::new();
    alice.send_file("@bob", &file, "look", &mut |done, total| seen.push((done, total))).await.unwrap();
    assert_eq!(seen.last(), Some(&(300_000, 300_000)), "progress reaches the end");
    bob.receive(None, |_| {}).await.unwrap();
    let line = bob.profile().history(None, 10).unwrap().into_iter().find(|m| m.attachment.is_some()).unwrap();
    assert_eq!(line.kind, MessageKind::Attachment);
    assert_eq!(line.text, "look");
    let a = line.attachment.clone().unwrap();
    assert_eq!((a.name.as_str(), a.mime.as_str(), a.size), ("photo.jpg", "image/jpeg", 300_000));

    let blob = std::fs::read_dir(dir.path().join("server").join("attachments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file())
        .unwrap();
    let original = std::fs::read(&blob).unwrap();
    let downloads = dir.path().join("downloads");

    // One flipped bit in the stored ciphertext.
    let mut flipped = original.clone();
    flipped[100_000] ^= 0x10;
    std::fs::write(&blob, &flipped).unwrap();
    let e = bob.download_attachment(line.seq, &downloads, &mut |_, _| {}).await.unwrap_err();
    assert!(e.to_string().contains("altered"), "{e}");

    // Truncated.
    std::fs::write(&blob, &original[..original.len() - 10]).unwrap();
    let e = bob.download_attachment(line.seq, &downloads, &mut |_, _| {}).await.unwrap_err();
    assert!(e.to_string().contains("bytes, its sender said"), "{e}");
    // Nothing half-made is left behind.
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0);

    // Restored: it opens, and is saved under its name.
    std::fs::write(&blob, &original).unwrap();
    let saved = bob.download_attachment(line.seq, &downloads, &mut |_, _| {}).await.unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), content);
    let line = bob.profile().history(None, 10).unwrap().into_iter().find(|m| m.attachment.is_some()).unwrap();
    assert_eq!(line.attachment.unwrap().saved_path.as_deref(), Some(saved.to_str().unwrap()));
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_contain(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test]
async fn an_encrypted_profile_keeps_nothing_readable_and_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155553201", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155553202", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let secret = "SECRET-at-rest-4d1f0b";
    alice.send_text("@bob", secret).await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    let bob_dir = bob.profile().dir().to_path_buf();
    let device_secret = hex::encode(bob.profile().credentials().unwrap().unwrap().secret.as_bytes());
    assert!(
        !files_contain(&bob_dir, secret.as_bytes()).is_empty(),
        "the search finds the plain profile's copy"
    );

    // Not while another client (another `rampart chat`, say) has the profile open.
    let other = rampart_client::Client::open(&bob_dir).unwrap();
    let e = bob.set_passphrase(Some("correct horse battery")).unwrap_err();
    assert!(e.to_string().contains("another rampart process"), "{e}");
    drop(other);
    bob.set_passphrase(Some("correct horse battery")).unwrap();
    assert!(bob.is_encrypted());
    // Still works under the new key: history, and new messages through MLS state.
    assert!(bob.profile().history(None, 10).unwrap().iter().any(|m| m.text == secret));
    alice.send_text("@bob", "after encryption").await.unwrap();
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert!(got.iter().any(|m| m.text == "after encryption"), "{got:?}");
    drop(bob);
    for needle in [secret.as_bytes(), device_secret.as_bytes(), b"after encryption", b"SQLite format 3"] {
        let hits = files_contain(&bob_dir, needle);
        assert!(hits.is_empty(), "{} found in {hits:?}", String::from_utf8_lossy(needle));
    }

    // Without the passphrase, or with a wrong one: a clear refusal, nothing changed.
    let e = rampart_client::Client::open(&bob_dir).unwrap_err();
    assert!(e.to_string().contains("encrypted"), "{e}");
    let e = rampart_client::Client::open_with_passphrase(&bob_dir, Some("wrong")).unwrap_err();
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    let mut bob =
        rampart_client::Client::open_with_passphrase(&bob_dir, Some("correct horse battery")).unwrap();
    assert!(bob.profile().history(None, 10).unwrap().iter().any(|m| m.text == "after encryption"));

    // Back to the clear.
    bob.set_passphrase(None).unwrap();
    drop(bob);
    let bob = rampart_client::Client::open(&bob_dir).unwrap();
    assert!(bob.profile().history(None, 10).unwrap().iter().any(|m| m.text == secret));
}

/// The file and profile commands through the real binary, as a script would use them.
#[tokio::test]
async fn cli_files_history_and_profile_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let url = server.url();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for (profile, phone, name) in [(&alice, "+14155553301", "alice"), (&bob, "+14155553302", "bob")] {
        let (ok, _, err) =
            cli(profile, &["account", "register", "--server", &url, "--phone", phone, "--username", name]);
        assert!(ok, "{err}");
        let (ok, _, err) = cli(profile, &["account", "verify", &server.latest_code(phone)]);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = cli(&bob, &["add-contact", "@alice"]);
    assert!(ok && out.contains("open without a request"), "{out}{err}");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "meeting at noon\n".repeat(5000)).unwrap();
    let (ok, out, err) =
        cli(&alice, &["--json", "send-file", "@bob", file.to_str().unwrap(), "--caption", "the notes"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["ok"], true);

    let (ok, out, err) = cli(&bob, &["--json", "recv"]);
    assert!(ok, "{err}");
    assert!(out.contains("notes.txt"), "{out}");
    let (ok, out, err) = cli(&bob, &["--json", "history"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let line =
        v["messages"].as_array().unwrap().iter().find(|m| m["attachment"].is_object()).unwrap().clone();
    assert_eq!(line["text"], "the notes");
    assert_eq!(line["attachment"]["name"], "notes.txt");
    let seq = line["seq"].as_i64().unwrap().to_string();
    let downloads = dir.path().join("dl");
    let (ok, out, err) = cli(&bob, &["--json", "download", &seq, "--to", downloads.to_str().unwrap()]);
    assert!(ok, "{err}");
    let saved =
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["saved"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(&saved).unwrap(), std::fs::read(&file).unwrap());
    let (ok, out, _) = cli(&bob, &["history"]);
    assert!(ok);
    assert!(out.contains(&format!("#{seq} @alice: [file notes.txt")) && out.contains("saved at"), "{out}");

    // Encrypt the profile; afterwards it opens only with the passphrase.
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
            .arg("--profile")
            .arg(&bob)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&[("RAMPART_NEW_PASSPHRASE", "a long passphrase")], &["profile", "encrypt"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[], &["--json", "history"]);
    assert!(!ok);
    assert!(out.contains("RAMPART_PASSPHRASE"), "the refusal says how to give the passphrase: {out} {err}");
    let (ok, _, err) = run(&[], &["history"]);
    assert!(!ok && err.contains("RAMPART_PASSPHRASE"), "{err}");
    let (ok, _, err) = run(&[("RAMPART_PASSPHRASE", "not it")], &["history"]);
    assert!(!ok && err.contains("wrong passphrase"), "{err}");
    let (ok, out, err) =
        run(&[("RAMPART_PASSPHRASE", "a long passphrase")], &["--json", "profile", "status"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["encrypted"], true);
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, "a long passphrase\n").unwrap();
    let (ok, out, err) = run(&[], &["--passphrase-file", pass_file.to_str().unwrap(), "history"]);
    assert!(ok, "{err}");
    assert!(out.contains("notes.txt"), "{out}");
}

/// Through the binary: a two-person group is a group on the invited member's device too (not a
/// 1:1 with its creator), and `rampart conversations` prints ids that tell conversations apart
/// and that `send` takes.
#[tokio::test]
async fn groups_stay_groups_and_conversation_ids_tell_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155554101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155554102", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    drop((alice, bob));
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for name in ["Friends", "Hikers"] {
        let (ok, _, err) = cli(&alice, &["group", "create", name, "--members", "@bob"]);
        assert!(ok, "{err}");
    }
    // A name that would drive the terminal is refused, with a clear error.
    let (ok, _, err) = cli(&alice, &["group", "create", "\u{1b}[2J\u{1b}[Hpwned", "--members", "@bob"]);
    assert!(!ok && err.contains("control characters"), "{err}");
    let (ok, _, err) = cli(&bob, &["recv"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&bob, &["--json", "conversations"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let list = list["conversations"].as_array().unwrap();
    let mut names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["Friends", "Hikers"], "{list:?}");
    assert!(list.iter().all(|c| c["direct"] == false), "a group shows as a 1:1: {list:?}");

    let (ok, out, err) = cli(&bob, &["conversations"]);
    assert!(ok, "{err}");
    let ids: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert_ne!(ids[0], ids[1], "every conversation printed with the same id: {out}");
    for (id, c) in ids.iter().zip(list) {
        assert_eq!(*id, c["id"].as_str().unwrap(), "{out}");
    }
    // The printed id is one `send` takes.
    let (ok, _, err) = cli(&bob, &["send", ids[1], "hello by id"]);
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&alice, &["--json", "recv"]);
    assert!(ok && out.contains("hello by id"), "{out}");
}

/// A failure of this device's own MLS storage while a message arrives (here another process
/// holds `mls.db` locked for writing) does not lose the message: the delivery is not
/// acknowledged, so it comes again once the storage works, and is read then. Were the failure
/// taken for a bad message, it would be refused and acknowledged, and gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_storage_failure_leaves_the_message_queued() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    two_contacts(&server, dir.path()).await;
    let mut alice = rampart_client::Client::open(&dir.path().join("alice")).unwrap();
    alice.send_text("@bob", "kept through a locked key store").await.unwrap();

    let mut bob = rampart_client::Client::open(&dir.path().join("bob")).unwrap();
    let mut conn = bob.connect().await.unwrap();
    bob.top_up_keys(&mut conn).await.unwrap();
    let lock = rusqlite::Connection::open(dir.path().join("bob").join("mls.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let first = bob.pump(&mut conn, Duration::from_secs(2)).await;
    let read = |events: &[rampart_client::Event]| {
        events.iter().any(|e| matches!(e, rampart_client::Event::Message { text, .. } if text == "kept through a locked key store"))
    };
    match &first {
        Ok(events) => {
            assert!(!read(events), "read through a locked key store?");
            assert!(
                !events.iter().any(|e| matches!(e, rampart_client::Event::Refused { .. })),
                "a local failure was taken for a bad message: {events:?}"
            );
        }
        Err(e) => assert!(!e.is_refusal(), "{e}"),
    }
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    conn.close().await;

    let mut conn = bob.connect().await.unwrap();
    let events = bob.pump(&mut conn, Duration::from_secs(5)).await.unwrap();
    assert!(read(&events), "the message came again and was read: {events:?}");
}
