#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! What operators rely on: logs without personal data or secrets, metrics, the webhook verifier.

mod support;

use std::sync::{Arc, Mutex};

use rampart_client::Client;
use support::*;

#[tokio::test]
async fn logs_hold_no_numbers_content_codes_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // Trace level: the most a careless operator could turn on.
    let server = TestServer::start_with_log_level(
        dir.path(),
        Backend::Sqlite,
        "",
        "127.0.0.1:0".parse().unwrap(),
        "trace",
    );
    let mut alice = server.register(dir.path(), "alice", "+14155550901", None).await;
    let code_alice = server.latest_code("+14155550901");
    let mut bob = server.register(dir.path(), "bob", "+14155550902", None).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    let secret_text = "SECRET-CONTENT-7f3a9c";
    alice.send_text("+14155550902", secret_text).await.unwrap();
    assert_eq!(bob.receive(None, |_| {}).await.unwrap()[0].text, secret_text);
    // A failed registration attempt with a number that is never registered.
    let mut eve = Client::open(&dir.path().join("eve")).unwrap();
    eve.register(&server.address(), "+14155550903", None, None).await.unwrap();
    // (A real code is 6 digits from a CSPRNG; 000001 is wrong but for one chance in a million.)
    match eve.verify("000001", "x").await {
        Err(rampart_client::ClientError::Server(e)) => {
            assert_eq!(e.code, rampart_proto::ErrorCode::WrongCode, "{e:?}")
        }
        other => panic!("a wrong code must be refused as such, got {other:?}"),
    }

    let log = server.log();
    assert!(log.contains("verification code issued"), "the log should record events:\n{log}");
    let device_secret = alice.profile().get("device_secret").unwrap().unwrap();
    for forbidden in [
        "14155550901",
        "14155550902",
        "14155550903",
        "4155550",
        secret_text,
        &code_alice,
        &device_secret,
        &device_secret[..16],
    ] {
        assert!(!log.contains(forbidden), "the server log contains {forbidden:?}");
    }
}

#[tokio::test]
async fn metrics_endpoint_counts_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155551001", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155551002", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "one").await.unwrap();
    alice.send_text("@bob", "two").await.unwrap();
    let _ = alice.send_text("@ghost_user", "nobody").await;
    bob.receive(None, |_| {}).await.unwrap();

    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let text = http.get(format!("{}/metrics", server.url())).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    };
    // The two messages, and Bob's delivery receipt for them.
    assert_eq!(value("rampart_messages_received_total"), 3.0);
    // Delivered and acknowledged: the conversation's Welcome and the two messages.
    assert_eq!(value("rampart_messages_delivered_total"), 3.0);
    assert_eq!(value("rampart_messages_acked_total"), 3.0);
    assert_eq!(value("rampart_errors_total{code=\"no_such_recipient\"}"), 1.0);
    assert!(text.contains("rampart_connections "), "{text}");
    let health = http.get(format!("{}/health", server.url())).send().await.unwrap();
    assert!(health.status().is_success());
}

#[tokio::test]
async fn webhook_verifier_posts_codes_to_the_gateway() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |raw: bytes::Bytes| {
            let body: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "queued"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[verifier]\nkind = \"webhook\"\nurl = \"http://{gateway}/sms\"\n");
    let server = TestServer::start(dir.path(), Backend::Sqlite, &extra);
    let mut client = Client::open(&dir.path().join("p")).unwrap();
    client.register(&server.address(), "+14155551101", None, None).await.unwrap();
    let posted = received.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["phone"], "+14155551101");
    let text = posted[0]["text"].as_str().unwrap();
    let code: String = text
        .split_whitespace()
        .find(|w| w.len() == 7 && w.ends_with('.'))
        .unwrap()
        .trim_end_matches('.')
        .into();
    let me = client.verify(&code, "phone").await.unwrap();
    assert!(me.account_id > 0);

    // A gateway that is down gives the registrant a clear error, not a hang or a crash.
    let dir2 = tempfile::tempdir().unwrap();
    let server2 = TestServer::start(
        dir2.path(),
        Backend::Sqlite,
        "[verifier]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/sms\"\n",
    );
    let mut c2 = Client::open(&dir2.path().join("p")).unwrap();
    let r = c2.register(&server2.address(), "+14155551102", None, None).await;
    assert!(
        matches!(r, Err(rampart_client::ClientError::Server(e)) if e.code == rampart_proto::ErrorCode::Unavailable)
    );
}

/// `rampart bench` measures what it prints: a tiny run through the real binary gives every
/// message a latency taken from its own send-time stamp, and figures that agree with each other
/// (non-zero percentiles in order, every latency inside the measured interval, Little's law).
#[test]
fn a_tiny_bench_run_prints_measured_figures() {
    let out = std::process::Command::new(BIN)
        .args(["--json", "bench", "--idle", "0", "--pairs", "1", "--messages", "20", "--e2e-messages", "0"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["delivered"], 20, "{v}");
    let lat = &v["latency_ms"];
    let (p50, p99, max, mean) = (
        lat["p50"].as_f64().unwrap(),
        lat["p99"].as_f64().unwrap(),
        lat["max"].as_f64().unwrap(),
        lat["mean"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{v}");
    // A loopback delivery takes well under ten seconds, even on a loaded machine.
    assert!(max < 10_000.0 && mean > 0.0 && mean <= max, "{v}");
    // Every message was sent and received inside the measured interval, so no latency can be
    // longer than it: a stamp from before the run, or a clock mix-up, breaks this.
    let seconds = v["seconds"].as_f64().unwrap();
    assert!(max <= seconds * 1000.0, "{v}");
    // Little's law: rate x mean latency is the average number in flight, which cannot exceed
    // the messages there are.
    let in_flight = v["in_flight"].as_f64().unwrap();
    assert!(in_flight > 0.0 && in_flight <= 20.0, "{v}");
}

/// Each command's help shows the options it uses: the client's `--profile` and
/// `--passphrase-file` appear on client commands, not on the server, relay, admin and bench
/// commands that ignore them (nor `--json` on `serve` and `relay`, which print none).
#[test]
fn each_commands_help_shows_the_options_it_uses() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for args in [&["serve"][..], &["relay"], &["bench"], &["admin", "outbox"], &["admin", "call-misfits"]] {
        let text = help(args);
        for client_only in ["--profile", "--passphrase-file"] {
            assert!(!text.contains(client_only), "`rampart {}` shows {client_only}:\n{text}", args.join(" "));
        }
    }
    for args in [&["serve"][..], &["relay"]] {
        assert!(!help(args).contains("--json"), "`rampart {}` shows --json", args.join(" "));
    }
    assert!(help(&["admin", "call-misfits"]).contains("--json"));
    for args in [&["send"][..], &["history"], &["account", "register"]] {
        let text = help(args);
        for option in ["--profile", "--passphrase-file", "--json"] {
            assert!(text.contains(option), "`rampart {}` lacks {option}:\n{text}", args.join(" "));
        }
    }
}
