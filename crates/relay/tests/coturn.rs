//! Interoperability with coturn 4.6: coturn's test client `turnutils_uclient` against our
//! relay, and our client through coturn's `turnserver`. Loopback only.
//!
//! When the binaries are missing the tests print a note and pass, unless `CI` is set, where
//! they fail: CI images are expected to have the `coturn` package.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rampart_relay::TurnClient;
use rampart_turn::integrity::encode_protected;
use rampart_turn::{Class, Message, Method};

const TURNSERVER: &str = "/usr/bin/turnserver";
const UCLIENT: &str = "/usr/bin/turnutils_uclient";
const SECRET_TEXT: &str = "test-shared-secret-0123456789";

/// Whether the coturn binaries are there; if not, skips (or fails under CI).
fn have_coturn() -> bool {
    let missing: Vec<&str> =
        [TURNSERVER, UCLIENT].into_iter().filter(|path| !Path::new(path).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("coturn binaries missing under CI: {missing:?}; install the Debian package `coturn`");
    }
    eprintln!("skipping coturn interop: {missing:?} not installed (apt-get install coturn)");
    false
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP port free a moment ago on 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap().local_addr().unwrap().port()
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rampart-relay-{name}-{}.log", std::process::id()))
}

/// What `turnutils_uclient` reported.
#[derive(Debug)]
struct UclientReport {
    sent: u64,
    received: u64,
    lost: u64,
}

/// Reads the last "tot_send_msgs=X, tot_recv_msgs=Y" and "Total lost packets N" lines.
fn parse_uclient(output: &str) -> Option<UclientReport> {
    let number_after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    };
    let totals = output.lines().rev().find(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))?;
    let lost = output.lines().rev().find(|l| l.contains("Total lost packets"))?;
    Some(UclientReport {
        sent: number_after(totals, "tot_send_msgs=")?,
        received: number_after(totals, "tot_recv_msgs=")?,
        lost: number_after(lost, "Total lost packets ")?,
    })
}

/// Runs `turnutils_uclient` against `server` with extra flags, without blocking the runtime
/// the relay runs on, and parses its report.
async fn run_uclient(server: SocketAddr, extra: &[&str]) -> (UclientReport, String) {
    let (status, text) = run_uclient_raw(server, extra).await;
    let report =
        parse_uclient(&text).unwrap_or_else(|| panic!("no totals in uclient's output ({status}):\n{text}"));
    (report, text)
}

/// Runs `turnutils_uclient`; its exit status and output.
async fn run_uclient_raw(server: SocketAddr, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let port = server.port().to_string();
    let mut args =
        vec!["-W", SECRET_TEXT, "-u", "uclient", "-p", &port, "-y", "-c", "-n", "50", "-m", "4", "-l", "172"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-e", "127.0.0.1", "127.0.0.1"]);
    let child = tokio::process::Command::new(UCLIENT)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("turnutils_uclient did not finish in 60 s")
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_uclient_against_our_relay() {
    if !have_coturn() {
        return;
    }
    // uclient's payload is its own counter format, not SRTP: the media check is turned off
    // for this generic-TURN test. `-c`: no separate RTCP allocation, since uclient asks for it
    // with EVEN-PORT's reservation bit, which our relay answers with 508 (reservations are
    // optional in RFC 8656, and Rampart muxes RTP and RTCP on one port). The quota is raised
    // because all of uclient's allocations are one user's.
    let tls = test_tls();
    let relay = relay(|config| {
        config.media_check = false;
        config.max_allocations_per_user = 16;
        config.bandwidth_bytes_per_sec = 0;
        config.tcp_listen = Some(SocketAddr::new(LOOPBACK, 0));
        config.tls =
            Some(rampart_relay::TlsListen { listen: SocketAddr::new(LOOPBACK, 0), config: tls.server });
    })
    .await;
    // Send and Data indications (-s). uclient's default, channels, cannot work against a
    // relay that follows RFC 8656: uclient picks channel numbers from RFC 5766's range
    // 0x4000..=0x7FFF, and RFC 8656 §11.2 (and `rampart-turn`'s codec) allow only
    // 0x4000..=0x4FFF, so most of its ChannelBinds get 400 (checked below).
    {
        let extra = &["-s"][..];
        let before = relay.stats();
        let (report, text) = run_uclient(relay.local_addr(), extra).await;
        eprintln!("uclient {extra:?} against our relay: {report:?}");
        assert!(report.sent >= 100, "{report:?}\n{text}");
        assert_eq!(report.received, report.sent, "{text}");
        assert_eq!(report.lost, 0, "{text}");
        let after = relay.stats();
        assert!(after.relayed_to_peer - before.relayed_to_peer >= report.sent, "{after:?}");
        assert!(after.relayed_to_client - before.relayed_to_client >= report.received, "{after:?}");
        assert_eq!(after.rejected_auth, 0);
    }
    // Over TCP (-t) and over TLS (-t -S; -S alone is DTLS): the same relaying, client-to-server
    // on a stream.
    for (transport, server, flags) in [
        ("TCP", relay.tcp_addr().unwrap(), &["-s", "-t"][..]),
        ("TLS", relay.tls_addr().unwrap(), &["-s", "-t", "-S"][..]),
    ] {
        let before = relay.stats();
        let (report, text) = run_uclient(server, flags).await;
        eprintln!("uclient over {transport} against our relay: {report:?}");
        assert!(report.sent >= 100, "{transport}: {report:?}\n{text}");
        assert_eq!((report.received, report.lost), (report.sent, 0), "{transport}: {text}");
        let after = relay.stats();
        assert!(after.relayed_to_peer - before.relayed_to_peer >= report.sent, "{transport}: {after:?}");
        assert_eq!(after.dropped_garbage, before.dropped_garbage, "{transport}: {after:?}");
    }
    // Channel mode: a ChannelBind outside 0x4000..=0x4FFF is answered 400; if uclient happened
    // to pick in-range numbers, it must then have relayed without loss.
    let (report, text) = run_uclient_raw(relay.local_addr(), &[]).await;
    match parse_uclient(&text) {
        Some(report) => assert_eq!((report.received, report.lost), (report.sent, 0), "{text}"),
        None => assert!(text.contains("channel bind: error 400"), "{report:?}\n{text}"),
    }
    relay.shutdown().await;
}

/// coturn's TCP and TLS listeners, for [`start_coturn`].
struct Streams {
    cert: PathBuf,
    key: PathBuf,
    tls_port: u16,
}

/// Starts coturn on 127.0.0.1 (UDP only, or also TCP on the same port and TLS with
/// `streams`) and waits until it answers a Binding request.
async fn start_coturn(streams: Option<&Streams>) -> (Killed, SocketAddr, PathBuf) {
    let log = log_path(if streams.is_some() { "coturn-streams" } else { "coturn" });
    for _ in 0..5 {
        let port = free_udp_port();
        let mut transports: Vec<String> = ["--no-tls", "--no-tcp"].map(String::from).to_vec();
        if let Some(streams) = streams {
            transports = vec![
                "--cert".into(),
                streams.cert.display().to_string(),
                "--pkey".into(),
                streams.key.display().to_string(),
                "--tls-listening-port".into(),
                streams.tls_port.to_string(),
            ];
        }
        let min_port = rand::random_range(20_000u16..40_000);
        let max_port = (min_port + 200).to_string();
        let min_port = min_port.to_string();
        let port_text = port.to_string();
        let child = Command::new(TURNSERVER)
            .args([
                "--use-auth-secret",
                "--static-auth-secret",
                SECRET_TEXT,
                "--realm",
                REALM,
                "--listening-ip",
                "127.0.0.1",
                "--relay-ip",
                "127.0.0.1",
                "--listening-port",
                &port_text,
                "--min-port",
                &min_port,
                "--max-port",
                &max_port,
                "--no-dtls",
                "--no-tcp-relay",
                "--no-cli",
                "--no-rfc5780",
                "--no-stun-backward-compatibility",
                "--allow-loopback-peers",
                "--log-file",
                "stdout",
                "--simple-log",
            ])
            .args(&transports)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child = Killed(child);
        let server = SocketAddr::new(LOOPBACK, port);
        let probe = tokio::net::UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let binding = encode_protected(&request(Method::Binding), None, true).unwrap();
        let mut buf = [0u8; 1500];
        for _ in 0..50 {
            probe.send_to(&binding, server).await.unwrap();
            if let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buf)).await
                && Message::decode(&buf[..len]).is_ok_and(|d| d.message.class == Class::SuccessResponse)
            {
                return (child, server, log);
            }
        }
        // Port taken in the meantime, or slow start: try another port.
        drop(child);
    }
    panic!("coturn did not start; log: {}", std::fs::read_to_string(&log).unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_clients_through_coturn() {
    if !have_coturn() {
        return;
    }
    let (_coturn, server, log) = start_coturn(None).await;
    let (alice_user, alice_password) = creds("alice.phone");
    let (bob_user, bob_password) = creds("bob.phone");
    let alice = TurnClient::allocate(server, &alice_user, &alice_password).await.unwrap();
    let bob = TurnClient::allocate(server, &bob_user, &bob_password).await.unwrap();
    assert_eq!(alice.mapped_address(), Some(alice.local_addr()));
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();
    let wait = Duration::from_secs(2);
    for sequence in 0..10 {
        alice.send_to(bob.relayed_address(), &srtp(sequence, 100)).await.unwrap();
        let received = recv_within(&bob, wait).await;
        assert_eq!(received, Some((alice.relayed_address(), srtp(sequence, 100))), "{}", log.display());
        bob.send_to(alice.relayed_address(), &srtp(sequence, 60)).await.unwrap();
        assert_eq!(recv_within(&alice, wait).await, Some((bob.relayed_address(), srtp(sequence, 60))));
    }
    alice.channel_bind(bob.relayed_address()).await.unwrap();
    bob.channel_bind(alice.relayed_address()).await.unwrap();
    for sequence in 0..50 {
        alice.send_to(bob.relayed_address(), &srtp(sequence, 140)).await.unwrap();
        assert_eq!(recv_within(&bob, wait).await, Some((alice.relayed_address(), srtp(sequence, 140))));
        bob.send_to(alice.relayed_address(), &srtp(sequence, 140)).await.unwrap();
        assert_eq!(recv_within(&alice, wait).await, Some((bob.relayed_address(), srtp(sequence, 140))));
    }
    // A wrong password is refused by coturn as by ours.
    let wrong = TurnClient::allocate(server, &alice_user, "wrong").await;
    assert!(matches!(wrong, Err(rampart_relay::TurnClientError::Rejected { code: 401, .. })), "{wrong:?}");
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    let _ = std::fs::remove_file(log);
}

#[test]
fn uclient_output_is_parsed() {
    let output = "7: : start_mclient: msz=4, tot_send_msgs=78, tot_recv_msgs=78, tot_send_bytes ~ 1\n\
                  7: : start_mclient: tot_send_msgs=80, tot_recv_msgs=79\n\
                  7: : Total lost packets 1 (1.250000%), total send dropped 0 (0.000000%)\n";
    let report = parse_uclient(output).unwrap();
    assert_eq!((report.sent, report.received, report.lost), (80, 79, 1));
    assert!(parse_uclient("nothing").is_none());
}

/// Our client reaches coturn over TCP and over TLS (where a network blocks UDP), and media
/// crosses between a TCP client and a TLS client as it does over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_clients_reach_coturn_over_tcp_and_tls() {
    if !have_coturn() {
        return;
    }
    let tls = test_tls();
    let cert = std::env::temp_dir().join(format!("rampart-relay-coturn-cert-{}.pem", std::process::id()));
    let key = std::env::temp_dir().join(format!("rampart-relay-coturn-key-{}.pem", std::process::id()));
    std::fs::write(&cert, &tls.cert_pem).unwrap();
    std::fs::write(&key, &tls.key_pem).unwrap();
    let tls_port = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap().local_addr().unwrap().port();
    let streams = Streams { cert: cert.clone(), key: key.clone(), tls_port };
    let (_coturn, server, log) = start_coturn(Some(&streams)).await;
    let tls_server = SocketAddr::new(LOOPBACK, tls_port);
    // coturn opens its TLS listener beside the UDP one; give it a moment if it is not there yet.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(tls_server).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (alice_user, alice_password) = creds("alice.phone");
    let (bob_user, bob_password) = creds("bob.phone");
    let alice = TurnClient::allocate_tcp(server, &alice_user, &alice_password).await.unwrap();
    let bob = TurnClient::allocate_tls(tls_server, localhost(), tls.client.clone(), &bob_user, &bob_password)
        .await
        .unwrap_or_else(|e| panic!("{e}; coturn log: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    alice.create_permission(bob.relayed_address()).await.unwrap();
    bob.create_permission(alice.relayed_address()).await.unwrap();
    let wait = Duration::from_secs(2);
    for round in 0..2 {
        if round == 1 {
            alice.channel_bind(bob.relayed_address()).await.unwrap();
            bob.channel_bind(alice.relayed_address()).await.unwrap();
        }
        for sequence in 0..20u16 {
            let size = 61 + usize::from(sequence);
            alice.send_to(bob.relayed_address(), &srtp(sequence, size)).await.unwrap();
            assert_eq!(recv_within(&bob, wait).await, Some((alice.relayed_address(), srtp(sequence, size))));
            bob.send_to(alice.relayed_address(), &srtp(sequence, size)).await.unwrap();
            assert_eq!(recv_within(&alice, wait).await, Some((bob.relayed_address(), srtp(sequence, size))));
        }
    }
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
    let _ = std::fs::remove_file(log);
}
