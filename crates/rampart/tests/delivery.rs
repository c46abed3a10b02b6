#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Store-and-forward delivery through the real server binary, on both storage backends.

mod support;

use std::time::Duration;

use rampart_client::{ClientError, Connection};
use rampart_core::MessageId;
use rampart_proto::{ClientRequest, ErrorCode, GoodbyeReason, ServerFrame};
use support::*;

async fn offline_delivery_survives_sigkill(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), backend, "");
    let mut alice = server.register(dir.path(), "alice", "+14155550001", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550002", None).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;

    // Bob is offline: nothing of his is connected. Alice's send is acknowledged...
    let receipt = alice.send_text("+14155550002", "survives a crash").await.unwrap();
    assert_eq!(receipt.recipient_devices, 1);

    // ...so it must be durable: kill the server without any chance to flush, restart.
    server.kill();
    server.restart();

    let got = bob.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].text, "survives a crash");
    assert_eq!(got[0].from, "@alice");

    // Exactly once: the ack deleted it, a second receive finds nothing, and the profile holds
    // one copy.
    assert!(bob.receive(None, |_| {}).await.unwrap().is_empty());
    assert_eq!(bob.profile().messages(10).unwrap().len(), 1);
}

#[tokio::test]
async fn offline_delivery_survives_sigkill_sqlite() {
    offline_delivery_survives_sigkill(Backend::Sqlite).await;
}

#[tokio::test]
async fn offline_delivery_survives_sigkill_postgres() {
    if let Some((backend, _database)) = postgres_backend().await {
        offline_delivery_survives_sigkill(backend).await;
    }
}

async fn devices_fan_out_cap_and_revoke(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), backend, "");
    let mut alice = server.register(dir.path(), "alice", "+14155550011", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550012", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let mut bob2 = link_device(&server, dir.path(), &mut bob, "bob2").await.unwrap();
    let mut bob3 = link_device(&server, dir.path(), &mut bob, "bob3").await.unwrap();

    let receipt = alice.send_text("@bob", "to every device").await.unwrap();
    assert_eq!(receipt.recipient_devices, 3);
    for b in [&mut bob, &mut bob2, &mut bob3] {
        let got = b.receive(None, |_| {}).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "to every device");
    }

    // Five devices is the default cap: two more fit, the sixth is refused with a clear error.
    link_device(&server, dir.path(), &mut bob, "bob4").await.unwrap();
    link_device(&server, dir.path(), &mut bob, "bob5").await.unwrap();
    match link_device(&server, dir.path(), &mut bob, "bob6").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::TooManyDevices);
            assert!(e.message.contains('5'), "{}", e.message);
        }
        other => panic!("a sixth device must be refused, got {other:?}"),
    }
    assert_eq!(bob.devices().await.unwrap().len(), 5);

    // Revoking cuts a connected device off at once and deletes its queue.
    let mut live = bob3.connect().await.unwrap();
    alice.send_text("@bob", "queued for bob3").await.unwrap();
    let bob3_id = bob3.identity().unwrap().device_id;
    bob.revoke(rampart_core::DeviceId(bob3_id)).await.unwrap();
    let mut cut_off = false;
    // Queued deliveries come first (linking the later devices brought commits and the
    // contacts message here too); then the goodbye.
    for _ in 0..100 {
        match live.next_frame(Duration::from_secs(2)).await {
            Err(ClientError::Closed { reason, .. }) => {
                assert_eq!(reason, rampart_proto::GoodbyeReason::DeviceRevoked);
                cut_off = true;
                break;
            }
            Ok(Some(_)) => continue,
            other => panic!("expected the revoked device to be cut off, got {other:?}"),
        }
    }
    assert!(cut_off);
    assert!(
        matches!(bob3.connect().await, Err(ClientError::Server(e)) if e.code == ErrorCode::InvalidCredentials)
    );
    assert_eq!(bob.devices().await.unwrap().len(), 4);
}

#[tokio::test]
async fn devices_fan_out_cap_and_revoke_sqlite() {
    devices_fan_out_cap_and_revoke(Backend::Sqlite).await;
}

#[tokio::test]
async fn devices_fan_out_cap_and_revoke_postgres() {
    if let Some((backend, _database)) = postgres_backend().await {
        devices_fan_out_cap_and_revoke(backend).await;
    }
}

#[tokio::test]
async fn online_device_gets_a_push_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155550021", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550022", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let mut conn: Connection = bob.connect().await.unwrap();
    assert_eq!(conn.next_frame(Duration::from_secs(5)).await.unwrap(), Some(ServerFrame::QueueDrained));

    alice.send_text("@bob", "live").await.unwrap();
    match conn.next_frame(Duration::from_secs(5)).await.unwrap() {
        Some(ServerFrame::Delivery(d)) => {
            // The first message of a conversation arrives as its Welcome, then the message;
            // neither is readable to the server, or here without the keys.
            assert!(matches!(
                rampart_proto::decode_envelope(&d.body).unwrap(),
                rampart_proto::Envelope::Welcome { .. }
            ));
        }
        other => panic!("expected a pushed delivery, got {other:?}"),
    }
    conn.close().await;
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["live"]);
    assert!(bob.receive(None, |_| {}).await.unwrap().is_empty(), "acknowledged messages are deleted");
}

/// The same ciphertext delivered twice (a replay, or a redelivery after a crash) and messages
/// arriving out of order: each message shows once.
#[tokio::test]
async fn duplicated_and_reordered_deliveries_show_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155550031", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550032", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "first").await.unwrap();
    let group = alice.resolve_conversation("@bob").unwrap();
    let mut conn = alice.connect().await.unwrap();
    let second = alice.seal_text(&group, "second").unwrap();
    let third = alice.seal_text(&group, "third").unwrap();
    // Third before second, and second twice under different server-level ids.
    let ClientRequest::GroupSend { group: g, body, .. } = second else { panic!() };
    for req in [
        third,
        ClientRequest::GroupSend {
            group: g.clone(),
            message_id: MessageId::random(&mut rand::rng()),
            body: body.clone(),
        },
        ClientRequest::GroupSend { group: g, message_id: MessageId::random(&mut rand::rng()), body },
    ] {
        conn.request(req).await.unwrap();
    }
    conn.close().await;
    let got: Vec<String> = bob.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(got, ["first", "third", "second"]);
    assert_eq!(bob.profile().messages(10).unwrap().len(), 3);
    assert!(bob.receive(None, |_| {}).await.unwrap().is_empty(), "and nothing is left queued");
}

#[tokio::test]
async fn cli_walkthrough_from_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let url = server.url();
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");

    let (ok, out, err) = cli(
        &alice,
        &["account", "register", "--server", &url, "--phone", "+14155550041", "--username", "alice"],
    );
    assert!(ok, "{err}");
    assert!(out.contains(&server.fingerprint), "first contact shows the pinned fingerprint:\n{out}");
    let (ok, _, err) = cli(&alice, &["account", "verify", &server.latest_code("+14155550041")]);
    assert!(ok, "{err}");
    let (ok, _, err) =
        cli(&bob, &["--json", "account", "register", "--server", &url, "--phone", "+14155550042"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&bob, &["account", "verify", &server.latest_code("+14155550042")]);
    assert!(ok, "{err}");

    let (ok, out, err) = cli(&alice, &["--json", "send", "+14155550042", "hello from the walkthrough"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);

    // Alice is not Bob's contact yet: her first message waits, unopened, as a request.
    let (ok, out, err) = cli(&bob, &["--json", "recv"]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["request"]["from"], "@alice", "{out}");
    assert_eq!(
        (&lines.last().unwrap()["received"], &lines.last().unwrap()["requests"]),
        (&0.into(), &1.into())
    );
    let (ok, out, err) = cli(&bob, &["requests"]);
    assert!(ok && out.contains("from @alice"), "{out}{err}");
    let (ok, out, err) = cli(&bob, &["requests", "accept", "@alice"]);
    assert!(ok, "{err}");
    assert!(out.contains("@alice: hello from the walkthrough"), "{out}");

    let (ok, out, _) = cli(&bob, &["recv"]);
    assert!(ok);
    assert!(out.contains("No new messages"), "{out}");

    // Errors are clear, and machine-readable with --json.
    let (ok, out, _) = cli(&alice, &["--json", "send", "@nobody_here", "x"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"], "no_such_recipient");
    let (ok, _, err) = cli(&alice, &["send", "12345", "x"]);
    assert!(!ok);
    assert!(err.contains("username") || err.contains('+'), "{err}");
}

/// SIGTERM while sends are still in flight: the server tells the connection it is shutting down
/// (a killed process cannot), exits cleanly, and every send it acknowledged before stopping is
/// delivered after the restart. Sends it never answered may or may not have been stored; the
/// sender's client retries those with the same message id.
#[tokio::test]
async fn graceful_shutdown_keeps_queued_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(
        dir.path(),
        Backend::Sqlite,
        "[rate_limits]\nsend = { burst = 100000, per_minute = 1e9 }\n",
    );
    let mut alice = server.register(dir.path(), "alice", "+14155550051", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550052", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "before").await.unwrap();
    assert_eq!(bob.receive(None, |_| {}).await.unwrap().len(), 1);
    let group = alice.resolve_conversation("@bob").unwrap();
    let mut conn = alice.connect().await.unwrap();
    const SENT: usize = 3000;
    let mut ids = std::collections::HashMap::new();
    let (mut fed, mut answered) = (0usize, 0usize);
    let mut acknowledged = Vec::new();
    let mut goodbye = None;
    let mut signalled = false;
    let mut writable = true;
    let mut ended_with = None;
    loop {
        // Up to 256 sends in flight, the rest fed as answers come back. Once the server stops
        // reading, writes fail; what it said before closing is still there to read.
        while writable && fed < SENT && fed - answered < 256 {
            let request = alice.seal_text(&group, &format!("m{fed}")).unwrap();
            match conn.feed(request).await {
                Ok(id) => ids.insert(id, format!("m{fed}")),
                Err(_) => {
                    writable = false;
                    break;
                }
            };
            fed += 1;
        }
        if writable && conn.flush().await.is_err() {
            writable = false;
        }
        match conn.next_any(Duration::from_secs(10)).await {
            Ok(Some(ServerFrame::Response { request_id, result })) => {
                answered += 1;
                if result.is_ok() {
                    acknowledged.push(ids[&request_id].clone());
                }
                if acknowledged.len() == 20 && !signalled {
                    server.send_sigterm();
                    signalled = true;
                }
            }
            Ok(Some(ServerFrame::Goodbye { reason, .. })) | Err(ClientError::Closed { reason, .. }) => {
                goodbye = Some(reason);
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("neither answers nor a goodbye for 10 s"),
            Err(e) => {
                ended_with = Some(e);
                break;
            }
        }
    }
    assert!(signalled, "fewer than 20 sends were answered");
    assert_eq!(
        goodbye,
        Some(GoodbyeReason::ShuttingDown),
        "the connection was told why it closes: {ended_with:?}"
    );
    assert!(acknowledged.len() < SENT, "SIGTERM came after every send was answered: nothing was in flight");
    let status = server.wait_exit();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    server.restart();
    let got: std::collections::HashSet<String> =
        bob.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|t| !got.contains(*t)).collect();
    assert!(lost.is_empty(), "{} acknowledged sends were lost, e.g. {:?}", lost.len(), lost.first());
}

/// More than the in-flight window (256) and the push channel (512): exercises the backlog
/// paging and the "lagged, re-read the store" path. Every message arrives exactly once.
#[tokio::test]
async fn floods_beyond_the_window_arrive_complete_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        Backend::Sqlite,
        "[rate_limits]\nsend = { burst = 100000, per_minute = 1e9 }\n",
    );
    let mut alice = server.register(dir.path(), "alice", "+14155550061", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550062", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;

    // 600 queued while Bob is offline.
    let mut conn = alice.connect().await.unwrap();
    let to = rampart_client::parse_recipient("@bob").unwrap();
    for i in 0..600 {
        alice.send_text_on(&mut conn, to.clone(), &format!("offline {i}")).await.unwrap();
    }
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.len(), 600);
    let texts: Vec<String> = got.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (0..600).map(|i| format!("offline {i}")).collect();
    assert_eq!(texts, expected, "a backlog arrives in order");

    // 1500 pipelined while Bob is online and reading. His earlier connection is gone first
    // (only Alice's is authenticated), so the probe below sees his new one.
    server.wait_for_metric("rampart_authenticated_devices", 1.0).await;
    let receiver = tokio::spawn(async move {
        let got = bob.receive(Some(Duration::from_secs(20)), |_| {}).await.unwrap();
        (bob, got)
    });
    // Bob is online (Alice's connection and his are both authenticated) before the flood.
    server.wait_for_metric("rampart_authenticated_devices", 2.0).await;
    let mut outstanding = 0;
    let group = alice.resolve_conversation("@bob").unwrap();
    for i in 0..1500 {
        let req = alice.seal_text(&group, &format!("live {i}")).unwrap();
        conn.send(req).await.unwrap();
        outstanding += 1;
        while outstanding > 32 {
            match conn.next_any(Duration::from_secs(10)).await.unwrap() {
                Some(ServerFrame::Response { result: Ok(_), .. }) => outstanding -= 1,
                Some(ServerFrame::QueueDrained) => {}
                // Bob's delivery receipts arrive while Alice sends.
                Some(ServerFrame::Delivery(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    while outstanding > 0 {
        match conn.next_any(Duration::from_secs(10)).await.unwrap() {
            Some(ServerFrame::Response { result: Ok(_), .. }) => outstanding -= 1,
            Some(ServerFrame::QueueDrained | ServerFrame::Delivery(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let (bob, got) = receiver.await.unwrap();
    let mut texts: Vec<String> = got.iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts.len(), 1500, "every live message arrives once");
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 1500);
    assert_eq!(bob.profile().messages(10_000).unwrap().len(), 2100);
}
