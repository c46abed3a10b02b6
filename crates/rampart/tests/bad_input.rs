#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Hostile and broken clients: every case gets a clear error or a timely disconnect, the server
//! stays up, and nothing already stored is lost.

mod support;

use std::time::{Duration, Instant};

use rampart_client::{Client, ClientError, Connection};
use rampart_core::limits::MAX_FRAME_BYTES;
use rampart_core::{DeviceId, DeviceSecret, PhoneNumber, VerificationCode};
use rampart_proto::{
    ClientFrame, ClientRequest, ErrorCode, GoodbyeReason, PROTOCOL_VERSION, ResponseBody, ServerFrame,
    encode_client_frame,
};
use support::*;

async fn raw(server: &TestServer) -> Connection {
    Connection::open(&server.address(), Some(server.fingerprint.clone())).await.unwrap()
}

fn error_of(frame: Option<ServerFrame>) -> (ErrorCode, String) {
    match frame {
        Some(ServerFrame::Response { result: Err(e), .. }) => (e.code, e.message),
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// Reads until the server closes; returns the goodbye reason if one was sent.
async fn closed(conn: &mut Connection) -> Option<GoodbyeReason> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match conn.next_any(Duration::from_secs(10)).await {
            Ok(Some(ServerFrame::Goodbye { reason, .. })) => return Some(reason),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the server did not close the connection"),
            Err(ClientError::Closed { reason, .. }) => return Some(reason),
            Err(_) => return None,
        }
    }
    panic!("the server did not close the connection in time")
}

#[tokio::test]
async fn malformed_truncated_and_unknown_version_frames() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut conn = raw(&server).await;

    // Garbage after a valid version byte.
    conn.send_raw(vec![PROTOCOL_VERSION, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let (code, msg) = error_of(conn.next_any(Duration::from_secs(5)).await.unwrap());
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.contains("malformed"), "{msg}");

    // A valid frame cut short.
    let frame = encode_client_frame(&ClientFrame {
        request_id: 9,
        request: ClientRequest::Register {
            phone: PhoneNumber::parse("+14155550101").unwrap(),
            username: None,
        },
    });
    conn.send_raw(frame[..frame.len() - 3].to_vec()).await.unwrap();
    let (code, _) = error_of(conn.next_any(Duration::from_secs(5)).await.unwrap());
    assert_eq!(code, ErrorCode::BadRequest);

    // An empty frame.
    conn.send_raw(Vec::new()).await.unwrap();
    let (code, msg) = error_of(conn.next_any(Duration::from_secs(5)).await.unwrap());
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.contains("empty"), "{msg}");

    // The connection still works after bad frames.
    assert!(conn.request(ClientRequest::Ping).await.is_ok());

    // An unknown version is named, then the connection is closed.
    let mut v9 = encode_client_frame(&ClientFrame { request_id: 1, request: ClientRequest::Ping });
    v9[0] = 9;
    conn.send_raw(v9).await.unwrap();
    let (code, msg) = error_of(conn.next_any(Duration::from_secs(5)).await.unwrap());
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(msg.contains("version 9"), "{msg}");
    assert_eq!(closed(&mut conn).await, Some(GoodbyeReason::ProtocolViolation));

    // A client that keeps sending garbage is disconnected.
    let mut conn = raw(&server).await;
    for _ in 0..16 {
        conn.send_raw(vec![PROTOCOL_VERSION, 0x07]).await.unwrap();
    }
    assert_eq!(closed(&mut conn).await, Some(GoodbyeReason::ProtocolViolation));

    // Before authentication frames are small: a larger one closes the connection undecoded.
    let mut conn = raw(&server).await;
    conn.send_raw(vec![PROTOCOL_VERSION; rampart_core::limits::MAX_ANONYMOUS_FRAME_BYTES]).await.unwrap();
    let (code, _) = error_of(conn.next_any(Duration::from_secs(10)).await.unwrap());
    assert_eq!(code, ErrorCode::BadRequest, "a frame at the anonymous cap is judged on its content");
    conn.send_raw(vec![PROTOCOL_VERSION; rampart_core::limits::MAX_ANONYMOUS_FRAME_BYTES + 1]).await.unwrap();
    assert_eq!(closed(&mut conn).await, Some(GoodbyeReason::ProtocolViolation));

    // Once authenticated, a frame of exactly the cap (2 MiB + 32 KiB, `MAX_FRAME_BYTES`) is read
    // and judged on its content (garbage here: a clear error, the connection stays)...
    let mut owner = server.register(dir.path(), "owner", "+14155550109", None).await;
    let mut conn = owner.connect().await.unwrap();
    while !matches!(conn.next_any(Duration::from_secs(10)).await.unwrap(), Some(ServerFrame::QueueDrained)) {}
    conn.send_raw(vec![PROTOCOL_VERSION; MAX_FRAME_BYTES]).await.unwrap();
    let (code, _) = error_of(conn.next_any(Duration::from_secs(10)).await.unwrap());
    assert_eq!(code, ErrorCode::BadRequest, "a frame at the cap is not too large");
    // ...and one byte more is refused before it is buffered whole, and the connection closed.
    let mut conn = raw(&server).await;
    // The server may reset the connection while the frame is still being written.
    if conn.send_raw(vec![PROTOCOL_VERSION; MAX_FRAME_BYTES + 1]).await.is_ok() {
        let reason = closed(&mut conn).await;
        assert!(matches!(reason, Some(GoodbyeReason::ProtocolViolation) | None), "{reason:?}");
    }

    // The server is still up for everyone.
    let mut conn = raw(&server).await;
    assert!(conn.request(ClientRequest::Ping).await.is_ok());
}

#[tokio::test]
async fn requests_out_of_state_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut conn = raw(&server).await;
    let r = conn.request(ClientRequest::ListDevices).await;
    assert!(
        matches!(r, Err(ClientError::Server(e)) if e.code == ErrorCode::NotAuthenticated && e.message.contains("authenticate"))
    );
}

#[tokio::test]
async fn wrong_replayed_and_exhausted_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let phone = "+14155550201";
    let mut client = Client::open(&dir.path().join("p")).unwrap();
    client.register(&server.address(), phone, None, None).await.unwrap();
    let good = server.latest_code(phone);
    let wrong = if good == "000000" { "111111" } else { "000000" };

    match client.verify(wrong, "x").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::WrongCode);
            assert!(e.message.contains("4 attempts left"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    client.verify(&good, "x").await.unwrap();

    // Replaying the used code (from another profile) fails: codes are single-use.
    let mut other = Client::open(&dir.path().join("q")).unwrap();
    other.register(&server.address(), "+14155550202", None, None).await.unwrap();
    let mut conn = raw(&server).await;
    let replay = ClientRequest::Verify {
        phone: PhoneNumber::parse(phone).unwrap(),
        code: VerificationCode::parse(&good).unwrap(),
        device_name: "replay".into(),
        secret: DeviceSecret::generate(&mut rand::rng()),
    };
    let r = conn.request(replay).await;
    assert!(
        matches!(r, Err(ClientError::Server(e)) if e.code == ErrorCode::NoPendingCode),
        "replayed code accepted"
    );

    // Five wrong guesses burn a code: even the right one fails afterwards.
    let good2 = server.latest_code("+14155550202");
    let wrong2 = if good2 == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert!(other.verify(wrong2, "x").await.is_err());
    }
    let r = other.verify(&good2, "x").await;
    assert!(
        matches!(r, Err(ClientError::Server(e)) if e.code == ErrorCode::NoPendingCode),
        "burnt code accepted"
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let _alice = server.register(dir.path(), "alice", "+14155550301", None).await;
    let mut conn = raw(&server).await;
    for device in [1, 999] {
        let r = conn
            .request(ClientRequest::Authenticate {
                device: DeviceId(device),
                secret: DeviceSecret::generate(&mut rand::rng()),
                client: String::new(),
            })
            .await;
        assert!(matches!(r, Err(ClientError::Server(e)) if e.code == ErrorCode::InvalidCredentials));
    }
}

#[tokio::test]
async fn full_queue_is_refused_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "[limits]\nmax_queue_per_device = 3\n");
    let mut alice = server.register(dir.path(), "alice", "+14155550401", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155550402", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    // The conversation's Welcome and two messages fill Bob's queue of three.
    for i in 0..2 {
        assert_eq!(alice.send_text("@bob", &format!("m{i}")).await.unwrap().recipient_devices, 1);
    }
    // A group message leaves out a device whose queue is full (the others would still get it)
    // and says so: it reached no device, and one had no room.
    let receipt = alice.send_text("@bob", "one too many").await.unwrap();
    assert_eq!((receipt.recipient_devices, receipt.missed_devices), (0, 1));
    let got: Vec<String> = bob.receive(None, |_| {}).await.unwrap().into_iter().map(|m| m.text).collect();
    assert_eq!(got, ["m0", "m1"]);
    alice.send_text("@bob", "room again").await.unwrap();
}

#[tokio::test]
async fn sending_too_fast_gets_slow_down() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start(dir.path(), Backend::Sqlite, "[rate_limits.send]\nburst = 3\nper_minute = 1.0\n");
    let mut alice = server.register(dir.path(), "alice", "+14155550501", None).await;
    let _bob = server.register(dir.path(), "bob", "+14155550502", Some("bob")).await;
    let mut conn = alice.connect().await.unwrap();
    let bob = rampart_client::parse_recipient("@bob").unwrap();
    for _ in 0..3 {
        alice.send_text_on(&mut conn, bob.clone(), "ok").await.unwrap();
    }
    match alice.send_text_on(&mut conn, bob, "too fast").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(e.message.starts_with("slow down"), "{}", e.message);
            assert!(e.retry_after_ms > 1000);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn registration_is_rate_limited_per_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut client = Client::open(&dir.path().join("p")).unwrap();
    for _ in 0..3 {
        client.register(&server.address(), "+14155550601", None, None).await.unwrap();
    }
    let r = client.register(&server.address(), "+14155550601", None, None).await;
    assert!(matches!(r, Err(ClientError::Server(e)) if e.code == ErrorCode::RateLimited));
    // Another number is not affected.
    client.register(&server.address(), "+14155550602", None, None).await.unwrap();
}

#[tokio::test]
async fn silent_connections_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        Backend::Sqlite,
        "[timeouts]\nhandshake_secs = 1\nanonymous_secs = 1\nidle_secs = 3\n",
    );
    // A TCP connection that never starts TLS is closed after the handshake deadline.
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "expected the server to close the socket, got {n:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A WebSocket that never authenticates is told why and closed.
    let mut conn = raw(&server).await;
    assert_eq!(closed(&mut conn).await, Some(GoodbyeReason::IdleTimeout));
}

#[tokio::test]
async fn a_changed_certificate_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155550701", None).await;
    let bogus = "AA:".repeat(31) + "AA";
    alice.trust(&bogus).unwrap();
    match alice.send_text("+14155550701", "x").await {
        Err(e @ ClientError::CertificateChanged { .. }) => {
            let text = e.to_string();
            assert!(text.contains("CERTIFICATE HAS CHANGED") && text.contains(&server.fingerprint), "{text}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A device that stops reading while messages pour in is cut off by the server's write
/// deadline instead of holding its task and buffers forever; nothing it missed is lost.
///
/// The stalled device keeps sending (a ping every half second), so the idle deadline never
/// applies to it; the sender stays alive and answered throughout, so the one connection that
/// closes is the reader's, and only a write that could not finish can have closed it.
#[tokio::test]
async fn a_device_that_stops_reading_is_cut_off_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        Backend::Sqlite,
        "[timeouts]\nidle_secs = 3\n[rate_limits]\nsend = { burst = 100000, per_minute = 1e9 }\nupload_kib = { burst = 100000000, per_minute = 1e12 }\n",
    );
    let mut alice = server.register(dir.path(), "alice", "+14155551301", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155551302", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    // Authenticated, never reads again, but keeps talking.
    let mut stalled = bob.connect().await.unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let talker = tokio::spawn(async move {
        let mut sent = 0u32;
        loop {
            tokio::select! {
                _ = &mut stop_rx => return (sent, false),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if stalled.send(ClientRequest::Ping).await.is_err() {
                return (sent, true);
            }
            sent += 1;
        }
    });

    let mut conn = alice.connect().await.unwrap();
    let to = rampart_client::parse_recipient("@bob").unwrap();
    let big = "x".repeat(60 * 1024);
    for _ in 0..300 {
        alice.send_text_on(&mut conn, to.clone(), &big).await.unwrap();
    }
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let mut cut_off = false;
    for _ in 0..40 {
        // The sender stays alive: it asks and is answered the whole time.
        conn.request(ClientRequest::Ping).await.unwrap();
        let text = http.get(format!("{}/metrics", server.url())).send().await.unwrap().text().await.unwrap();
        let open = text
            .lines()
            .find(|l| l.starts_with("rampart_connections "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if open == Some(1.0) {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(cut_off, "the stalled connection is still open");
    // The connection still open is the sender's.
    conn.request(ClientRequest::Ping).await.unwrap();
    let _ = stop_tx.send(());
    let (pings, _) = talker.await.unwrap();
    assert!(pings >= 4, "the stalled device kept talking past the idle deadline ({pings} pings)");
    conn.close().await;
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert_eq!(got.len(), 300, "everything queued is delivered after reconnecting");
}

/// Who is registered cannot be enumerated for free: an account that asks about 10,000 numbers
/// nobody has gets "no such account" for the first few hundred at most, then "slow down";
/// looking up someone already asked about stays free.
#[tokio::test]
async fn enumerating_unknown_numbers_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut eve = server.register(dir.path(), "eve", "+14155551501", None).await;
    let _bob = server.register(dir.path(), "bob", "+14155551502", Some("bob")).await;
    let mut conn = eve.connect().await.unwrap();
    let lookup =
        |who: &str| ClientRequest::LookupAccount { who: rampart_client::parse_recipient(who).unwrap() };
    conn.request(lookup("@bob")).await.unwrap();
    let (mut answered, mut limited) = (0u32, 0u32);
    for i in 0..10_000u32 {
        match conn.request(lookup(&format!("+1999{i:07}"))).await {
            Err(ClientError::Server(e)) if e.code == ErrorCode::NoSuchRecipient => answered += 1,
            Err(ClientError::Server(e)) if e.code == ErrorCode::RateLimited => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(answered <= 200, "{answered} unknown numbers answered");
    assert_eq!(answered + limited, 10_000);
    // Someone already looked up is still found.
    let mut again = eve.connect().await.unwrap();
    assert!(matches!(again.request(lookup("@bob")).await, Ok(ResponseBody::AccountKeys(_))));
}

/// Lock-out attempts do not stop the rightful user: verification attempts for a number with no
/// code pending, and failed logins from the same address (everyone behind one NAT), leave the
/// number's owner able to register and a device able to log in.
#[tokio::test]
async fn lock_out_attempts_do_not_stop_the_rightful_user() {
    let dir = tempfile::tempdir().unwrap();
    // Lift the per-address limit on verifications: the attacker would use other addresses, and
    // the per-number limit is what is tested here.
    let server = TestServer::start(
        dir.path(),
        Backend::Sqlite,
        "[rate_limits.verify_per_address]\nburst = 100000\nper_minute = 100000.0\n",
    );
    let victim = "+14155551601";
    let mut conn = raw(&server).await;
    for i in 0..50u32 {
        let guess = ClientRequest::Verify {
            phone: PhoneNumber::parse(victim).unwrap(),
            code: VerificationCode::parse(&format!("{:06}", i * 7919 % 1_000_000)).unwrap(),
            device_name: "x".into(),
            secret: DeviceSecret::generate(&mut rand::rng()),
        };
        let r = conn.request(guess).await;
        assert!(matches!(r, Err(ClientError::Server(e)) if e.code == ErrorCode::NoPendingCode), "{i}");
    }
    let mut owner = server.register(dir.path(), "owner", victim, None).await;

    // 30 failed logins from this address (more than the 20 the address may fail), then the
    // owner's device logs in from the same address.
    for _ in 0..30 {
        let r = conn
            .request(ClientRequest::Authenticate {
                device: DeviceId(rand::random_range(1_000..1_000_000)),
                secret: DeviceSecret::generate(&mut rand::rng()),
                client: String::new(),
            })
            .await;
        assert!(
            matches!(&r, Err(ClientError::Server(e)) if e.code == ErrorCode::InvalidCredentials || e.code == ErrorCode::RateLimited),
            "{r:?}"
        );
    }
    owner.connect().await.expect("a valid login is not refused because others failed");
}

/// A reader that stops early (`rampart --json history | head -c 100`) closes the pipe: the
/// command ends quietly with status 141, as a program killed by SIGPIPE does (`ls | head`),
/// not with a panic and a backtrace. Here the pipe is closed before the command writes at all.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("--profile")
        .arg(dir.path())
        .args(["--json", "history"])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
