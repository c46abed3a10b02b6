#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Voice calls through a real server and a real relay: a tone crosses both ways (through the
//! Rampart relay and through coturn), strangers do not ring, and a hostile caller's flood
//! reaches nothing on a ringing callee.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rampart_core::AccountId;
use rampart_core::call::{CallId, MediaKind, SignalKind};
use rampart_media::{tone, wav};
use rampart_proto::ClientRequest;
use serde_json::Value;
use support::*;

/// The relay, server and both clients share two cores: give a call a little slack.
const CALL_SECS: &str = "4";

fn write_tone(path: &Path, hz: f32) {
    wav::write_wav(path, &tone::sine(hz, 0.3, 5 * 50)).unwrap();
}

fn concealed_share(report: &Value) -> f64 {
    let decoded = report["frames_decoded"].as_f64().unwrap();
    let concealed = report["frames_concealed"].as_f64().unwrap();
    assert!(decoded > 0.0, "{report}");
    concealed / (decoded + concealed)
}

fn dominant(path: &Path) -> f32 {
    let samples: Vec<i16> = wav::read_wav(path).unwrap().concat();
    assert!(samples.len() >= 48_000 * 2, "{} samples in {}", samples.len(), path.display());
    // The middle second: away from the jitter buffer's start and the hang-up.
    let mid = samples.len() / 2;
    tone::dominant_frequency(&samples[mid - 24_000..mid + 24_000], 48_000)
}

/// A 440 Hz tone from Alice reaches Bob and an 880 Hz tone from Bob reaches Alice, through the
/// relay the server hands out, with under 1% of frames lost.
/// Returns the relay the call went through and both sides' call reports.
fn tone_both_ways(dir: &Path) -> (String, Value, Value) {
    let (a_play, b_play) = (dir.join("a440.wav"), dir.join("b880.wav"));
    let (a_rec, b_rec) = (dir.join("at-alice.wav"), dir.join("at-bob.wav"));
    write_tone(&a_play, 440.0);
    write_tone(&b_play, 880.0);
    let bob = Command::new(BIN)
        .arg("--profile")
        .arg(dir.join("bob"))
        .args(["--json", "answer", "--wait", "60", "--play"])
        .arg(&b_play)
        .arg("--record")
        .arg(&b_rec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let alice_profile = dir.join("alice");
    let (ok, out, err) = cli(
        &alice_profile,
        &[
            "--json",
            "call",
            "@bob",
            "--play",
            a_play.to_str().unwrap(),
            "--record",
            a_rec.to_str().unwrap(),
            "--duration",
            CALL_SECS,
        ],
    );
    assert!(ok, "{out}\n{err}");
    let bob = bob.wait_with_output().unwrap();
    let bob_out = String::from_utf8_lossy(&bob.stdout).into_owned();
    assert!(bob.status.success(), "{bob_out}\n{}", String::from_utf8_lossy(&bob.stderr));

    let at_alice = json_of(&out)["call"].clone();
    let at_bob = json_of(&bob_out)["call"].clone();
    assert_eq!(at_alice["outcome"], "ended", "{at_alice}");
    assert_eq!(at_bob["outcome"], "ended", "{at_bob}");
    for report in [&at_alice, &at_bob] {
        assert!(report["frames_decoded"].as_u64().unwrap() >= 150, "{report}");
        assert!(concealed_share(report) < 0.01, "more than 1% lost: {report}");
        assert_eq!(report["packets_rejected"], 0, "{report}");
    }
    let heard_by_bob = dominant(&b_rec);
    let heard_by_alice = dominant(&a_rec);
    assert!((heard_by_bob - 440.0).abs() <= 5.0, "Bob heard {heard_by_bob} Hz");
    assert!((heard_by_alice - 880.0).abs() <= 5.0, "Alice heard {heard_by_alice} Hz");

    // Both call logs keep the call.
    let (_, log, _) = cli(&alice_profile, &["--json", "calls"]);
    let log = json_of(&log);
    assert_eq!(log["calls"][0]["outgoing"], true, "{log}");
    assert_eq!(log["calls"][0]["outcome"], "ended", "{log}");
    assert_eq!(at_alice["relay"], at_bob["relay"]);
    (at_alice["relay"].as_str().unwrap().to_owned(), at_alice, at_bob)
}

/// A call through the server's own relay, then a search of everything the server keeps — its
/// data directory (database, WAL, blobs), its log at debug level, and on PostgreSQL a dump of
/// the database — for what the call's offer and answer said (codec line, relayed addresses,
/// SSRCs) and for its keys (the MLS exporter secret and the SRTP master keys and salts of both
/// directions), as bytes and as hex. The call id, which the server does keep, is found: the
/// search can find a call's bytes.
async fn call_content_never_reaches_the_server(backend: Backend, database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), backend, "");
    two_contacts(&server, dir.path()).await;
    let path = dir.path().to_owned();
    let (relay, at_alice, at_bob) = tokio::task::spawn_blocking(move || tone_both_ways(&path)).await.unwrap();
    assert_eq!(
        Some(relay),
        server.relay.map(|r| format!("turn:{r}?transport=udp")),
        "the call went through the server's relay, over UDP"
    );

    let call = CallId(hex::decode(at_alice["call"].as_str().unwrap()).unwrap().try_into().unwrap());
    let mut alice = rampart_client::Client::open(&dir.path().join("alice")).unwrap();
    let group = alice.resolve_conversation("@bob").unwrap();
    let secret = alice.call_media_secret(&group, &call).unwrap();
    // The secret both sides derive now is the one the call used (the epoch has not moved).
    drop(alice);
    let mut bob = rampart_client::Client::open(&dir.path().join("bob")).unwrap();
    assert_eq!(bob.resolve_conversation("@alice").unwrap(), group);
    assert_eq!(*bob.call_media_secret(&group, &call).unwrap(), *secret);
    drop(bob);
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("codec line".into(), rampart_proto::OPUS_CODEC.as_bytes().to_vec()),
        ("exporter secret".into(), secret.to_vec()),
    ];
    for direction in
        [rampart_media::CallDirection::CallerToCallee, rampart_media::CallDirection::CalleeToCaller]
    {
        let keys = rampart_media::SrtpKeys::from_exporter_secret(&secret, direction).unwrap();
        needles.push((format!("{direction:?} master key"), keys.master_key.to_vec()));
        needles.push((format!("{direction:?} master salt"), keys.master_salt.to_vec()));
    }
    for report in [&at_alice, &at_bob] {
        let relayed = report["relayed_address"].as_str().unwrap();
        assert!(relayed.parse::<std::net::SocketAddr>().is_ok(), "{report}");
        needles.push(("relayed address".into(), relayed.as_bytes().to_vec()));
        let ssrc = report["ssrc"].as_u64().unwrap() as u32;
        needles.push(("SSRC".into(), ssrc.to_string().into_bytes()));
        // (Not its four raw bytes: a few megabytes of database hold any four bytes by chance.)
        needles.push(("SSRC".into(), format!("{ssrc:08x}").into_bytes()));
    }
    let mut places = files_under(&server.data_dir);
    let log = server.log();
    assert!(log.contains("rampart_relay"), "the embedded relay logs into the server log");
    // The relay allocated the relayed addresses and logs its own allocations (at debug level):
    // it has to know them. Everything else in the process must not: its log lines are searched
    // for the relayed addresses, and the whole log for everything else.
    let without_relay: String =
        log.lines().filter(|l| !l.contains("rampart_relay")).flat_map(|l| [l, "\n"]).collect();
    places.push(("server log".into(), log.into_bytes()));
    if let Some(url) = database {
        let dump = Command::new("pg_dump").args(["--data-only", url]).output().unwrap();
        assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
        places.push(("database dump".into(), dump.stdout));
    }
    // Positive control, place by place: the server keeps the call id (its calls table, its log),
    // and the search finds it in the database (the SQLite files, or the dump) and in the log.
    let has_id = |b: &[u8]| contains(b, &call.0) || contains(b, hex::encode(call.0).as_bytes());
    let in_database = places
        .iter()
        .filter(|(n, _)| if database.is_some() { n == "database dump" } else { n.contains("rampart.db") })
        .any(|(_, b)| has_id(b));
    assert!(in_database, "the search does not find the call id in the database");
    assert!(places.iter().any(|(n, b)| n == "server log" && has_id(b)), "nor in the log");
    for (what, needle) in &needles {
        for form in [needle.clone(), hex::encode(needle).into_bytes(), hex::encode_upper(needle).into_bytes()]
        {
            for (name, bytes) in &places {
                if what == "relayed address" && name == "server log" {
                    assert!(!contains(without_relay.as_bytes(), &form), "the call's {what} is in {name}");
                    continue;
                }
                assert!(!contains(bytes, &form), "the call's {what} is in {name}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_crosses_the_rampart_relay_both_ways_and_the_server_keeps_nothing_of_it() {
    call_content_never_reaches_the_server(Backend::Sqlite, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_content_never_reaches_the_server_postgres() {
    let Some((backend, _db)) = postgres_backend().await else { return };
    let Backend::Postgres(url) = &backend else { unreachable!() };
    let url = url.clone();
    call_content_never_reaches_the_server(backend, Some(&url)).await;
}

/// coturn in place of the Rampart relay: the server's credentials work there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_works_through_coturn() {
    if !std::path::Path::new("/usr/bin/turnserver").exists() {
        assert!(std::env::var_os("CI").is_none(), "coturn (turnserver) is missing under CI");
        eprintln!("SKIPPED: coturn is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("relay.secret");
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&secret_file, &secret).unwrap();
    let port = free_udp_port();
    let min_port = rand::random_range(20_000u16..40_000);
    let log = dir.path().join("coturn.log");
    let mut coturn = Command::new("/usr/bin/turnserver")
        .args(["--use-auth-secret", "--static-auth-secret", &secret, "--realm", "rampart"])
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port"])
        .arg(port.to_string())
        .arg("--min-port")
        .arg(min_port.to_string())
        .arg("--max-port")
        .arg((min_port + 200).to_string())
        .args(["--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay", "--no-cli", "--no-rfc5780"])
        .args(["--allow-loopback-peers", "--log-file", "stdout", "--simple-log"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_stun(port);
    let extra = format!(
        "[calls]\nrelays = [\"127.0.0.1:{port}\"]\nrelay_secret_file = \"{}\"\n[calls.relay]\nenabled = false\n",
        secret_file.display()
    );
    let server = TestServer::start(dir.path(), Backend::Sqlite, &extra);
    two_contacts(&server, dir.path()).await;
    let path = dir.path().to_owned();
    let result = tokio::task::spawn_blocking(move || tone_both_ways(&path)).await;
    let _ = coturn.kill();
    let _ = coturn.wait();
    match result {
        Ok((relay, ..)) => {
            assert_eq!(relay, format!("turn:127.0.0.1:{port}?transport=udp"), "the call went through coturn")
        }
        Err(e) => panic!("{e:?}\ncoturn log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
    }
}

/// A UDP port that swallows everything sent to it: a relay's UDP port on a network that drops
/// UDP.
fn udp_black_hole() -> (std::net::UdpSocket, u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A TCP port whose connections open and then hear nothing: a relay's TCP port behind a
/// firewall that only lets TLS out.
fn tcp_black_hole() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// The `[calls]` table of a server that hands out `relays`, with its relay secret in
/// `secret_file` and no embedded relay.
fn relays_toml(relays: &[String], secret_file: &Path, relay_listen: u16, tls_port: u16) -> String {
    let list: Vec<String> = relays.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "[calls]\nrelays = [{}]\nrelay_secret_file = \"{}\"\n[calls.relay]\nenabled = false\nlisten = \"127.0.0.1:{relay_listen}\"\ntls_port = {tls_port}\n",
        list.join(", "),
        secret_file.display()
    )
}

/// Two calls on a network that drops UDP to the relay (the first relay the server names is a
/// UDP port that never answers): the first finds the relay over TCP; the second, with TCP
/// black-holed too, over TLS. `start_relay` starts the relay once the server made its
/// certificate and secret (the TLS relay presents the server's certificate, which the clients
/// pinned); it is given the server's data dir and returns what must live as long as the relay.
async fn calls_without_udp<R>(tcp_port: u16, tls_port: u16, start_relay: impl FnOnce(&Path, &Path) -> R) {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("relay.secret");
    std::fs::write(&secret_file, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    let (_udp_hole, udp_hole) = udp_black_hole();
    let (_tcp_hole, tcp_hole) = tcp_black_hole();
    let tcp = format!("turn:127.0.0.1:{tcp_port}?transport=tcp");
    let tls = format!("turns:127.0.0.1:{tls_port}?transport=tcp");
    let udp = format!("127.0.0.1:{udp_hole}");

    let extra = relays_toml(&[tls.clone(), tcp.clone(), udp.clone()], &secret_file, tcp_port, tls_port);
    let server = TestServer::start(dir.path(), Backend::Sqlite, &extra);
    let relay = start_relay(&server.data_dir, server.config_path());
    two_contacts(&server, dir.path()).await;
    let path = dir.path().to_owned();
    let (relay_used, at_alice, _) = tokio::task::spawn_blocking(move || tone_both_ways(&path)).await.unwrap();
    // UDP first whatever the order the server gave, then TCP.
    assert_eq!(relay_used, tcp, "{at_alice}");

    // The same server and accounts, now naming a TCP port that never answers either.
    let listen = server.addr;
    drop(server);
    let extra = relays_toml(
        &[udp, format!("turn:127.0.0.1:{tcp_hole}?transport=tcp"), tls.clone()],
        &secret_file,
        tcp_port,
        tls_port,
    );
    let server = TestServer::start_on(dir.path(), Backend::Sqlite, &extra, listen);
    let path = dir.path().to_owned();
    let (relay_used, at_alice, _) = tokio::task::spawn_blocking(move || tone_both_ways(&path)).await.unwrap();
    assert_eq!(relay_used, tls, "{at_alice}");
    drop((server, relay));
}

/// A call through a `rampart relay` whose UDP the network drops: over TURN-TCP, then, with TCP
/// dropped too, over TURN-TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_udp_goes_over_turn_tcp_or_tls() {
    let (tcp_port, tls_port) = (free_udp_and_tcp_port(), free_tcp_port());
    calls_without_udp(tcp_port, tls_port, |data_dir, config| {
        let (relay, seen) = start_relay_process(config, data_dir);
        assert!(seen.contains(&format!("TLS 127.0.0.1:{tls_port}")), "{seen}");
        assert!(seen.contains(&format!("TCP 127.0.0.1:{tcp_port}")), "{seen}");
        relay
    })
    .await;
}

/// The same through coturn, with the server's certificate for its TLS listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_udp_goes_over_coturn_tcp_or_tls() {
    if !std::path::Path::new("/usr/bin/turnserver").exists() {
        assert!(std::env::var_os("CI").is_none(), "coturn (turnserver) is missing under CI");
        eprintln!("SKIPPED: coturn is not installed");
        return;
    }
    let (port, tls_port) = (free_udp_and_tcp_port(), free_tcp_port());
    calls_without_udp(port, tls_port, |data_dir, _| {
        let secret = std::fs::read_to_string(data_dir.parent().unwrap().join("relay.secret")).unwrap();
        let min_port = rand::random_range(20_000u16..40_000);
        let coturn = Command::new("/usr/bin/turnserver")
            .args(["--use-auth-secret", "--static-auth-secret", &secret, "--realm", "rampart"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port"])
            .arg(port.to_string())
            .arg("--tls-listening-port")
            .arg(tls_port.to_string())
            .arg("--cert")
            .arg(data_dir.join("tls-cert.pem"))
            .arg("--pkey")
            .arg(data_dir.join("tls-key.pem"))
            .arg("--min-port")
            .arg(min_port.to_string())
            .arg("--max-port")
            .arg((min_port + 200).to_string())
            .args(["--no-dtls", "--no-tcp-relay", "--no-cli", "--no-rfc5780"])
            .args(["--allow-loopback-peers", "--log-file", "stdout", "--simple-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_stun(port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(Instant::now() < deadline, "coturn's TLS listener did not open");
            std::thread::sleep(Duration::from_millis(100));
        }
        KilledOnDrop(coturn)
    })
    .await;
}

/// Readiness probe: a STUN Binding request (RFC 8489 §6) to 127.0.0.1:`port`, repeated until a
/// response comes back (ten seconds at most).
fn wait_for_stun(port: u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend(rand::random::<[u8; 12]>());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1500];
    loop {
        assert!(Instant::now() < deadline, "nothing answers STUN on port {port}");
        let _ = socket.send_to(&request, ("127.0.0.1", port));
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n >= 20
            && buf[8..20] == request[8..20]
        {
            return;
        }
    }
}

/// A caller who is not a contact does not ring: the callee sees a call request afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_do_not_ring() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut stranger = server.register(dir.path(), "stranger", "+14155557003", Some("stranger")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155557004", Some("bob")).await;
    // The stranger writes first, so a 1:1 conversation exists, but Bob never wrote back.
    stranger.send_text("@bob", "hello, it's me").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    drop((stranger, bob));

    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let bob = Command::new(BIN)
            .arg("--profile")
            .arg(path.join("bob"))
            .args(["--json", "answer", "--wait", "6"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let caller = Command::new(BIN)
            .arg("--profile")
            .arg(path.join("stranger"))
            .args(["--json", "call", "@bob"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let bob = bob.wait_with_output().unwrap();
        // Nothing rang: `answer` gave up.
        assert!(!bob.status.success());
        let out = json_of(&String::from_utf8_lossy(&bob.stdout));
        assert_eq!(out["error"], "call", "{out}");
        // The caller gives up.
        cli(&path.join("stranger"), &["hangup"]);
        let caller = caller.wait_with_output().unwrap();
        let report = json_of(&String::from_utf8_lossy(&caller.stdout));
        assert_eq!(report["call"]["frames_sent"], 0, "{report}");
        // Bob's log shows a call request, not a missed call.
        let (_, log, _) = cli(&path.join("bob"), &["--json", "calls"]);
        let log = json_of(&log);
        assert_eq!(log["calls"][0]["outcome"], "request", "{log}");
        assert_eq!(log["calls"][0]["peer"], "@stranger", "{log}");
    })
    .await
    .unwrap();
}

/// The hostile caller of the threat model, loopback only: it is Bob's contact (so Bob's device
/// rings), places one real call, then sends 10,000 oversized, truncated, out-of-order and
/// malformed call envelopes and valid-looking signals while Bob's device rings, plus junk
/// datagrams at the relay. Bob's device parses no offer, fetches nothing, handles no media;
/// the server counts every misfit against the caller; and afterwards Alice and Bob can still
/// talk and call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_caller_reaches_nothing_on_a_ringing_callee() {
    let dir = tempfile::tempdir().unwrap();
    // Lift the per-caller rate limits so that every envelope is judged on its content (with
    // the default limits most of the flood would be refused before that).
    let limits = "[rate_limits.calls_per_account]\nburst = 100000\nper_minute = 100000.0\n\
                  [rate_limits.call_signals_per_device]\nburst = 100000\nper_minute = 100000.0\n\
                  [rate_limits.send]\nburst = 100000\nper_minute = 100000.0\n";
    let server = TestServer::start(dir.path(), Backend::Sqlite, limits);
    let relay_addr = relay_of(&server);
    let mut mallory = server.register(dir.path(), "mallory", "+14155557005", Some("mallory")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155557006", Some("bob")).await;
    mallory.send_text("@bob", "hi bob").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    let mallory_id = AccountId(mallory.identity().unwrap().account_id);
    let bob_id = AccountId(bob.identity().unwrap().account_id);
    // Bob knows Mallory: her calls ring (the worst case for the callee).
    bob.profile().save_contact(mallory_id, "@mallory").unwrap();

    let mut bob_conn = bob.connect().await.unwrap();
    let watcher = tokio::spawn(async move {
        let watch = bob.watch_rings(&mut bob_conn, Duration::from_secs(25)).await.unwrap();
        bob_conn.close().await;
        (bob, watch)
    });

    let mut conn = mallory.connect().await.unwrap();
    let group = mallory.conversation_for(&mut conn, "@bob").await.unwrap();
    // A real MLS application message of the conversation, to look valid.
    let ClientRequest::GroupSend { body: mls, .. } = mallory.seal_text(&group, "not an offer").unwrap()
    else {
        panic!("seal_text gives a GroupSend")
    };
    let ringing = CallId(rand::random());
    let placed = conn
        .request(ClientRequest::PlaceCall {
            call: ringing,
            callee: bob_id,
            group: group.clone(),
            media: MediaKind::Audio,
            offer: mls.clone(),
            answer: None,
        })
        .await
        .unwrap();
    assert!(matches!(placed, rampart_proto::ResponseBody::CallPlaced { ringing_devices: 1 }), "{placed:?}");

    let garbage = |n: usize| Bytes::from((0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>());
    let mut sent = 0u32;
    let mut refused = 0u32;
    let mut reconnects = 0u32;
    for i in 0..10_000u32 {
        let request = match i % 10 {
            0 => ClientRequest::PlaceCall {
                call: CallId(rand::random()),
                callee: bob_id,
                group: group.clone(),
                media: MediaKind::Audio,
                offer: garbage(17 * 1024),
                answer: None,
            },
            1 => ClientRequest::PlaceCall {
                call: CallId(rand::random()),
                callee: bob_id,
                group: group.clone(),
                media: MediaKind::Audio,
                offer: garbage(300),
                answer: None,
            },
            // Signal 2019: "connect" while ringing.
            2 => ClientRequest::CallSignal { call: ringing, kind: SignalKind::Connect, body: mls.clone() },
            // Messenger 2020: a session update while ringing.
            3 => ClientRequest::CallSignal { call: ringing, kind: SignalKind::Update, body: mls.clone() },
            4 => {
                ClientRequest::CallSignal { call: ringing, kind: SignalKind::Candidates, body: garbage(200) }
            }
            5 => ClientRequest::CallSignal { call: ringing, kind: SignalKind::Answer, body: mls.clone() },
            6 => ClientRequest::CallSignal { call: ringing, kind: SignalKind::Offer, body: mls.clone() },
            7 => ClientRequest::FetchOffer { call: ringing },
            8 => ClientRequest::CallSignal {
                call: CallId(rand::random()),
                kind: SignalKind::Update,
                body: mls.clone(),
            },
            _ => ClientRequest::CallSignal {
                call: ringing,
                kind: SignalKind::Candidates,
                body: garbage(9 * 1024),
            },
        };
        sent += 1;
        match conn.request(request).await {
            Ok(_) => {}
            Err(rampart_client::ClientError::Server(_)) => refused += 1,
            Err(_) => {
                // Undecodable envelopes count as bad frames: after enough of them the server
                // hangs up, and the hostile client just comes back.
                reconnects += 1;
                conn = mallory.connect().await.unwrap();
            }
        }
        if i % 1000 == 0 {
            // Truncated and malformed frames too.
            let _ = conn.send_raw(vec![1, 0xa2, 0x02, 0x05, 0x0a]).await;
            let _ = conn.send_raw(garbage(64).to_vec()).await;
        }
    }
    // Junk at the relay: STUN-looking, truncated, oversized and RTP-looking datagrams.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2_000u32 {
        let mut d = garbage(1 + (i as usize * 37) % 1600).to_vec();
        if i % 3 == 0 && d.len() >= 20 {
            d[0] = 0x00;
            d[1] = 0x03; // an Allocate request type with garbage after it
        }
        if i % 3 == 1 {
            d[0] = 0x80; // RTP version 2
        }
        let _ = udp.send_to(&d, relay_addr);
        if i % 20 == 19 {
            // Paced, so that the count below measures the relay, not loopback buffer overflows.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(refused > 5_000, "only {refused} of {sent} refused ({reconnects} reconnects)");
    conn.close().await;
    // The relay dropped the junk and counted it (loopback UDP may lose a few under load).
    let garbage = relay_datagrams(&server, "dropped_garbage").await;
    assert!(garbage >= 1_800, "the relay counted {garbage} of 2000 junk datagrams");
    let passed_on = relay_datagrams(&server, "relayed_to_client").await
        + relay_datagrams(&server, "relayed_to_peer").await;
    assert_eq!(passed_on, 0, "the relay passed junk on");

    let (mut bob, watch) = watcher.await.unwrap();
    assert_eq!(watch.rang, 1, "{watch:?}");
    // The server is the first guard: none of the flood reached Bob's device at all (what a
    // ringing callee does with signals that do get through is the lying-server test's).
    assert_eq!(watch.signals_received, 0, "the server let caller signals through before accept: {watch:?}");
    assert_eq!(watch.dropped_before_accept, 0, "{watch:?}");
    assert_eq!(watch.released, 0, "an offer or signal was released before accept: {watch:?}");
    assert_eq!(watch.fetches, 0, "{watch:?}");
    assert_eq!(watch.media_enabled, 0, "{watch:?}");

    // The evidence: the server counted the misfits against Mallory.
    let (ok, out, err) = admin(&server, &["call-misfits"]);
    assert!(ok, "{out}\n{err}");
    let misfits = json_of(&out);
    let total = misfits["accounts"][0]["misfits"].as_u64().unwrap();
    assert_eq!(misfits["accounts"][0]["account"], mallory_id.0, "{misfits}");
    assert!(total >= 8_000, "{misfits}");
    // Counted in a tally written once a second: a flood is not a store write and a log line
    // per refused request.
    let lines = server.log().matches("call requests refused").count() as u64;
    assert!(lines > 0 && lines * 20 < total, "{lines} log lines for {total} misfits");

    // And everyone else is fine: Bob can still write, and a call still connects.
    let mut alice = server.register(dir.path(), "alice", "+14155557007", Some("alice")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "still there?").await.unwrap();
    let got = bob.receive(None, |_| {}).await.unwrap();
    assert!(got.iter().any(|m| m.text == "still there?"));
    bob.send_text("@alice", "yes").await.unwrap();
    alice.receive(None, |_| {}).await.unwrap();
    drop((alice, bob, mallory));
    let path = dir.path().to_owned();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || tone_both_ways(&path)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// The embedded relay's count of datagrams with `outcome`, from the server's `/metrics` (copied
/// there once a second: read until it stops moving).
async fn relay_datagrams(server: &TestServer, outcome: &str) -> u64 {
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let line = format!("rampart_relay_datagrams_total{{outcome=\"{outcome}\"}} ");
    let mut last = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let text = http.get(format!("{}/metrics", server.url())).send().await.unwrap().text().await.unwrap();
        let now = text
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap_or(0);
        if last == Some(now) {
            return now;
        }
        last = Some(now);
    }
    last.unwrap_or(0)
}

fn relay_of(server: &TestServer) -> std::net::SocketAddr {
    server.relay.expect("the server started a relay")
}

/// The server is an adversary too: a lying server (or a man in the middle with its key) lets
/// the caller's "connect", session updates, candidates, answers and offers through to a ringing
/// callee. `rampart answer` — the real accept path, shared with the chat window — hands them to
/// the ringing call machine, which drops every one unread and counts it; only the offer fetched
/// after the accept is released, and the call itself works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_a_lying_server_forwards_to_a_ringing_callee_are_dropped_unread_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let injected =
        lying_server::alice_and_bob_behind_it(&server, dir.path(), "+14155557011", "+14155557012").await;
    let path = dir.path().to_owned();
    let (_, _, at_bob) = tokio::task::spawn_blocking(move || tone_both_ways(&path)).await.unwrap();
    assert_eq!(injected.load(std::sync::atomic::Ordering::SeqCst), lying_server::FORGED as u64);
    assert_eq!(at_bob["signals_dropped_before_accept"], lying_server::FORGED, "{at_bob}");
    assert_eq!(at_bob["signals_released"], 1, "only the offer fetched after accept: {at_bob}");
    assert_eq!(at_bob["signals_unusable"], 0, "{at_bob}");
    // The call log keeps the counts.
    let (_, log, _) = cli(&dir.path().join("bob"), &["--json", "calls"]);
    let log = json_of(&log);
    assert_eq!(log["calls"][0]["signals_dropped_before_accept"], lying_server::FORGED, "{log}");
    assert_eq!(log["calls"][0]["signals_released"], 1, "{log}");
}

/// Alice and Bob write to each other before either has received the other's first message:
/// each device created a 1:1 conversation. Once both messages arrive, both devices keep the
/// same one (the other merged into it, history included), and a call works right away (it
/// failed with "the offer belongs to another conversation").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_first_messages_converge_on_one_conversation_and_calls_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155557021", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155557022", Some("bob")).await;
    alice.send_text("@bob", "hi Bob").await.unwrap();
    bob.send_text("@alice", "hi Alice").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    alice.receive(None, |_| {}).await.unwrap();
    drop((alice, bob));
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut ids = Vec::new();
        for who in ["alice", "bob"] {
            let (ok, out, err) = cli(&path.join(who), &["--json", "conversations"]);
            assert!(ok, "{err}");
            let list = json_of(&out);
            let list = list["conversations"].as_array().unwrap().clone();
            assert_eq!(list.len(), 1, "{who} sees {list:?}");
            assert_eq!(list[0]["direct"], true);
            assert_eq!(list[0]["messages"], 2, "both messages in the one conversation: {list:?}");
            ids.push(list[0]["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids[0], ids[1], "both devices keep the same conversation");
        tone_both_ways(&path);
    })
    .await
    .unwrap();
}

/// The call kinds of the `CallSignal` envelopes delivered on `conn`, queued and live, until it
/// has been quiet for two seconds.
async fn call_signals_delivered(conn: &mut rampart_client::Connection) -> Vec<SignalKind> {
    let mut kinds = Vec::new();
    while let Some(frame) = conn.next_frame(Duration::from_secs(2)).await.unwrap() {
        if let rampart_proto::ServerFrame::Delivery(d) = frame
            && let Ok(rampart_proto::Envelope::CallSignal { kind, .. }) =
                rampart_proto::decode_envelope(&d.body)
        {
            kinds.push(kind);
        }
    }
    kinds
}

/// Once one of the callee's devices answers, the call is between two devices: the caller's
/// later signals reach the answering device only, and the callee's other devices hear just that
/// the call was answered elsewhere (before, every signal went to every device of the account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_accept_signals_go_to_the_answering_device_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155557101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155557102", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let mut laptop = link_device(&server, dir.path(), &mut bob, "bob-laptop").await.unwrap();
    laptop.receive(None, |_| {}).await.unwrap();
    let bob_id = AccountId(bob.identity().unwrap().account_id);

    let mut conn = alice.connect().await.unwrap();
    let group = alice.conversation_for(&mut conn, "@bob").await.unwrap();
    let mut sealed = || {
        let ClientRequest::GroupSend { body, .. } = alice.seal_text(&group, "signal").unwrap() else {
            panic!("seal_text gives a GroupSend")
        };
        body
    };
    let (offer, candidates) = (sealed(), sealed());
    let call = CallId(rand::random());
    let placed = conn
        .request(ClientRequest::PlaceCall {
            call,
            callee: bob_id,
            group: group.clone(),
            media: MediaKind::Audio,
            offer,
            answer: None,
        })
        .await
        .unwrap();
    assert!(matches!(placed, rampart_proto::ResponseBody::CallPlaced { ringing_devices: 2 }), "{placed:?}");

    let mut phone = bob.connect().await.unwrap();
    let answered = phone.request(ClientRequest::FetchOffer { call }).await.unwrap();
    assert!(matches!(answered, rampart_proto::ResponseBody::CallOffer { .. }), "{answered:?}");
    conn.request(ClientRequest::CallSignal { call, kind: SignalKind::Candidates, body: candidates })
        .await
        .unwrap();
    conn.close().await;

    let on_phone = call_signals_delivered(&mut phone).await;
    assert!(
        on_phone.contains(&SignalKind::Candidates),
        "the answering device missed the signal: {on_phone:?}"
    );
    let mut on_laptop_conn = laptop.connect().await.unwrap();
    let on_laptop = call_signals_delivered(&mut on_laptop_conn).await;
    assert_eq!(on_laptop, [SignalKind::Hangup], "the other device heard more than 'answered elsewhere'");
    phone.close().await;
    on_laptop_conn.close().await;
}

/// A private sound server (PulseAudio) with virtual devices, null sinks: each person's
/// microphone is the monitor of a sink (the test plays into Alice's), each speaker a sink (the
/// test records Bob's from its monitor). Killed when dropped.
struct SoundServer {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SoundServer {
    fn start(dir: &Path) -> Option<SoundServer> {
        if !Path::new("/usr/bin/pulseaudio").exists() || !Path::new("/usr/bin/parec").exists() {
            assert!(std::env::var_os("CI").is_none(), "pulseaudio and pulseaudio-utils are missing under CI");
            eprintln!("SKIPPED: no pulseaudio (apt-get install pulseaudio pulseaudio-utils)");
            return None;
        }
        let runtime = dir.join("pulse-runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        let socket = runtime.join("native");
        let child = Command::new("/usr/bin/pulseaudio")
            .args(["-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes", "--use-pid-file=no"])
            .arg(format!("--load=module-native-protocol-unix socket={} auth-anonymous=1", socket.display()))
            .args(
                ["alice_mic", "alice_speaker", "bob_mic", "bob_speaker"]
                    .map(|sink| format!("--load=module-null-sink sink_name={sink} rate=48000 channels=1")),
            )
            .env("HOME", &runtime)
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pulseaudio.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not start: {}",
                std::fs::read_to_string(dir.join("pulseaudio.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(SoundServer { child, socket })
    }

    /// `PULSE_SERVER` for the processes that use it.
    fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}

/// One call between Alice's and Bob's virtual devices: a 440 Hz tone, spoken in bursts (300 ms
/// on, 200 ms off: a tone that never stops is what noise suppression is there to remove), plays
/// into Alice's microphone while `record` (a monitor) is recorded. Returns both call reports
/// and the recorded samples.
fn device_call(
    dir: &Path,
    pulse: &str,
    bob: &[&str],
    record: &str,
    seconds: &str,
) -> (Value, Value, Vec<i16>) {
    let tone = dir.join("tone440.wav");
    let bursts: Vec<_> = tone::sine(440.0, 0.3, 30 * 50)
        .into_iter()
        .enumerate()
        .map(|(i, frame)| if i % 25 < 15 { frame } else { [0; rampart_media::FRAME_SAMPLES] })
        .collect();
    wav::write_wav(&tone, &bursts).unwrap();
    let player = KilledOnDrop(
        Command::new("/usr/bin/paplay")
            .args(["--device=alice_mic"])
            .arg(&tone)
            .env("PULSE_SERVER", pulse)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Raw samples (a WAV header would only be finished by a clean exit).
    let heard = dir.join("heard.raw");
    let recorder = KilledOnDrop(
        Command::new("/usr/bin/parec")
            .arg(format!("--device={record}"))
            .args(["--raw", "--rate=48000", "--channels=1", "--format=s16le"])
            .env("PULSE_SERVER", pulse)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&heard).unwrap())
            .spawn()
            .unwrap(),
    );
    let bob = Command::new(BIN)
        .arg("--profile")
        .arg(dir.join("bob"))
        .args(["--json", "answer", "--wait", "60"])
        .args(bob)
        .env("PULSE_SERVER", pulse)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let alice = Command::new(BIN)
        .arg("--profile")
        .arg(dir.join("alice"))
        .args(["--json", "call", "@bob", "--input", "alice_mic.monitor", "--output", "alice_speaker"])
        .args(["--duration", seconds])
        .env("PULSE_SERVER", pulse)
        .output()
        .unwrap();
    let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
    assert!(alice.status.success(), "{alice_out}\n{}", String::from_utf8_lossy(&alice.stderr));
    let bob = bob.wait_with_output().unwrap();
    let bob_out = String::from_utf8_lossy(&bob.stdout).into_owned();
    assert!(bob.status.success(), "{bob_out}\n{}", String::from_utf8_lossy(&bob.stderr));
    drop((recorder, player));
    let samples: Vec<i16> =
        std::fs::read(&heard).unwrap().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    (json_of(&alice_out)["call"].clone(), json_of(&bob_out)["call"].clone(), samples)
}

fn energy_db(samples: &[i16]) -> f64 {
    10.0 * rampart_media::tone::energy(samples).log10()
}

/// A tone played into Alice's microphone (a virtual device of a real sound server) comes out of
/// Bob's speaker (another one), through the server, the relay and the whole audio pipeline;
/// and when Bob's speaker feeds his microphone (the worst room), his echo canceller keeps
/// Alice from hearing herself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_microphone_reaches_the_other_speaker_and_the_echo_does_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sound) = SoundServer::start(dir.path()) else { return };
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    two_contacts(&server, dir.path()).await;
    let pulse = sound.address();

    // The devices, as a user lists them to pick one.
    let listed =
        Command::new(BIN).args(["--json", "audio", "devices"]).env("PULSE_SERVER", &pulse).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names = |kind: &str| -> Vec<String> {
        listed[kind].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_owned()).collect()
    };
    assert!(names("inputs").contains(&"alice_mic.monitor".to_owned()), "{listed}");
    assert!(names("outputs").contains(&"bob_speaker".to_owned()), "{listed}");
    // Without a sound server: a clear error, not a crash.
    let none = Command::new(BIN)
        .args(["audio", "devices"])
        .env("PULSE_SERVER", format!("unix:{}", dir.path().join("no-such-socket").display()))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("PULSE_RUNTIME_PATH")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && said.contains("no sound server"), "{said}");
    assert!(!said.contains("panicked"), "{said}");

    let (at_alice, at_bob, samples) = device_call(
        dir.path(),
        &pulse,
        &["--input", "bob_mic.monitor", "--output", "bob_speaker"],
        "bob_speaker.monitor",
        "5",
    );
    assert_eq!(at_alice["audio"], "microphone alice_mic.monitor, speaker alice_speaker", "{at_alice}");
    assert_eq!(at_bob["audio"], "microphone bob_mic.monitor, speaker bob_speaker", "{at_bob}");
    // The microphone paces the sending: 20 ms frames, from the moment the device opened.
    assert!(at_alice["frames_sent"].as_u64().unwrap() >= 150, "{at_alice}");
    assert!(at_bob["frames_decoded"].as_u64().unwrap() >= 150, "{at_bob}");
    // What Bob's speaker played: the tone, loud enough to be more than a trickle.
    assert!(samples.len() >= 48_000 * 3, "{} samples recorded at Bob's speaker", samples.len());
    let loud: Vec<i16> = samples.iter().copied().skip_while(|s| s.unsigned_abs() < 1_000).collect();
    assert!(
        loud.len() >= 48_000 * 2,
        "the tone did not come out of Bob's speaker: {} loud samples",
        loud.len()
    );
    let middle = &loud[loud.len() / 2 - 24_000..loud.len() / 2 + 24_000];
    let frequency = tone::dominant_frequency(middle, 48_000);
    assert!((frequency - 440.0).abs() <= 5.0, "Bob's speaker played {frequency} Hz");

    // Bob's speaker now feeds his microphone. What comes back to Alice's speaker is the echo of
    // her own voice: loud without processing, much quieter with it (its second half, once the
    // canceller converged).
    let mut returned = Vec::new();
    for raw in [true, false] {
        let mut bob = vec!["--input", "bob_speaker.monitor", "--output", "bob_speaker"];
        if raw {
            bob.push("--raw-microphone");
        }
        let (_, at_bob, samples) = device_call(dir.path(), &pulse, &bob, "alice_speaker.monitor", "8");
        let expected = if raw {
            "microphone bob_speaker.monitor, speaker bob_speaker, unprocessed"
        } else {
            "microphone bob_speaker.monitor, speaker bob_speaker"
        };
        assert_eq!(at_bob["audio"], expected, "{at_bob}");
        assert!(samples.len() >= 48_000 * 6, "{} samples at Alice's speaker", samples.len());
        returned.push(energy_db(&samples[samples.len() / 2..]));
    }
    let erle = returned[0] - returned[1];
    eprintln!(
        "echo back at Alice: {:.1} dB unprocessed, {:.1} dB processed: ERLE {erle:.1} dB",
        returned[0], returned[1]
    );
    assert!(erle >= 10.0, "the echo canceller removed only {erle:.1} dB of echo");
}

/// Muting sends silence: Bob plays a tone into a call muted, then unmuted; what Alice records
/// is silent in the first half and carries the tone in the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_microphone_sends_silence() {
    use rampart_client::call::{CallControls, CallLimits, CallMedia};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155557101", Some("alice")).await;
    let mut bob = server.register(dir.path(), "bob", "+14155557102", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let recording = dir.path().join("at-alice.wav");
    let alice_media = CallMedia { record: Some(recording.clone()), ..CallMedia::default() };
    let controls = CallControls::default();
    controls.set_muted(true);
    let bob_media = CallMedia {
        play: Some(tone::sine(660.0, 0.3, 50 * 60)),
        controls: controls.clone(),
        ..CallMedia::default()
    };
    let limits =
        |secs| CallLimits { duration: Some(Duration::from_secs(secs)), hangup_file: None, hangup_flag: None };
    let mut quiet_alice = |_: &rampart_client::call::CallProgress| {};
    let mut quiet_bob = |_: &rampart_client::call::CallProgress| {};
    let unmute = async {
        // Unmuted about halfway through Bob's side of the call.
        tokio::time::sleep(Duration::from_secs(4)).await;
        controls.set_muted(false);
    };
    let (at_alice, at_bob, ()) = tokio::join!(
        alice.call("@bob", alice_media, limits(7), &mut quiet_alice),
        bob.answer(Duration::from_secs(30), bob_media, limits(60), &mut quiet_bob),
        unmute,
    );
    let (at_alice, at_bob) = (at_alice.unwrap(), at_bob.unwrap());
    assert_eq!(at_bob.outcome, "ended", "{at_bob:?}");
    let samples: Vec<i16> = wav::read_wav(&recording).unwrap().concat();
    assert!(samples.len() >= 48_000 * 5, "{at_alice:?}");
    // A second from each side of the unmute, away from it (call set-up takes part of the 4 s).
    let muted = &samples[..48_000];
    let heard = &samples[samples.len() - 60_000..samples.len() - 12_000];
    // Mean power against a full-scale square wave's.
    let dbfs = |samples: &[i16]| {
        10.0 * (tone::energy(samples) / samples.len() as f64).log10() - 20.0 * 32_768f64.log10()
    };
    let (muted_db, heard_db) = (dbfs(muted), dbfs(heard));
    assert!(muted_db < -60.0, "muted, Alice heard {muted_db:.1} dBFS");
    assert!(heard_db > -30.0, "unmuted, Alice heard {heard_db:.1} dBFS");
    assert!((tone::dominant_frequency(heard, 48_000) - 660.0).abs() <= 5.0);
}
