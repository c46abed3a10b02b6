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

/// `/metrics` serves each text format under its own content type: Prometheus 0.0.4 text by
/// default, which promtool accepts (counters named `…_total`, no `# EOF`), and OpenMetrics to a
/// scraper that asks for it, as Prometheus does.
#[tokio::test]
async fn metrics_pass_promtool_under_the_content_type_they_are() {
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        assert!(std::env::var_os("CI").is_none(), "promtool (Debian prometheus) is missing under CI");
        eprintln!("SKIPPED: promtool is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Backend::Sqlite, "");
    let mut alice = server.register(dir.path(), "alice", "+14155551011", None).await;
    let mut bob = server.register(dir.path(), "bob", "+14155551012", Some("bob")).await;
    know_each_other(&mut [&mut alice, &mut bob]).await;
    alice.send_text("@bob", "one").await.unwrap();
    let _ = alice.send_text("@ghost_user", "nobody").await;

    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let plain = http.get(format!("{}/metrics", server.url())).send().await.unwrap();
    let content_type = plain.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = plain.text().await.unwrap();
    assert!(text.contains("# TYPE rampart_messages_received_total counter\n"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(check.stdin.take());
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics failed: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let open = http
        .get(format!("{}/metrics", server.url()))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    let content_type = open.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    let text = open.text().await.unwrap();
    assert!(text.contains("# TYPE rampart_messages_received counter\n"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
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

/// `rampart admin evidence verify` with `args`, against `dir`'s evidence log (or as `args` say).
fn evidence_verify(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(["--json", "admin", "evidence", "verify"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Refused call set-ups go to the evidence log, attributed to the account, and the log stands
/// up: it verifies against the key the server printed, and an edited, cut, reordered or
/// re-keyed copy fails naming what is wrong. A server whose log was changed on disk does not
/// start on it. (Sentinel is off here, so that the log holds the refusals alone; its own
/// decisions in the log are tests/sentinel.rs's.)
#[tokio::test]
async fn refused_call_setups_are_kept_as_evidence_that_catches_tampering() {
    use rampart_core::call::CallId;
    use rampart_proto::ClientRequest;

    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), Backend::Sqlite, "[sentinel]\nenabled = false\n");
    let mut mallory = server.register(dir.path(), "mallory", "+14155551021", None).await;
    let mallory_account = mallory.identity().unwrap().account_id;
    let evidence = server.data_dir.join("evidence");
    let key = std::fs::read_to_string(evidence.join("key.pub")).unwrap().trim().to_owned();
    let evidence_arg = evidence.to_str().unwrap().to_owned();

    // Asking for offers of calls that do not exist, in three bursts, each written out (the
    // server writes what it refused once a second) before the next.
    let mut conn = mallory.connect().await.unwrap();
    let mut refused = 0;
    for burst in 1..=3 {
        for _ in 0..4 {
            let asked = conn.request(ClientRequest::FetchOffer { call: CallId(rand::random()) }).await;
            assert!(matches!(asked, Err(rampart_client::ClientError::Server(_))), "{asked:?}");
            refused += 1;
        }
        let mut entries = 0;
        for _ in 0..50 {
            let (ok, out, err) = evidence_verify(&["--dir", &evidence_arg, "--key", &key]);
            assert!(ok, "{out}\n{err}");
            entries = json_of(&out)["entries"].as_u64().unwrap();
            if entries == burst {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(entries, burst, "burst {burst} was not written to the evidence log");
    }
    conn.close().await;
    let (ok, out, err) =
        evidence_verify(&["--config", server.config_path().to_str().unwrap(), "--key", &key, "--entries"]);
    assert!(ok, "{out}\n{err}");
    let verified = json_of(&out);
    let records = verified["records"].as_array().unwrap();
    let mut counted = 0;
    for r in records {
        assert_eq!(r["record"]["decision"], "refuse_call_setup", "{verified}");
        assert_eq!(r["record"]["subject"], format!("account a{mallory_account}"), "{verified}");
        assert_eq!(r["record"]["reason"], "unknown_call", "{verified}");
        counted += r["record"]["signals"]["refused"].as_u64().unwrap();
    }
    assert_eq!(counted, refused, "{verified}");
    server.terminate();

    // Copies changed as someone with the disk (but not the key) would.
    let log = std::fs::read_to_string(evidence.join("log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3);
    let tampered = |name: &str, log: String| {
        let copy = dir.path().join(name);
        std::fs::create_dir_all(&copy).unwrap();
        for file in ["head", "key.pub"] {
            std::fs::copy(evidence.join(file), copy.join(file)).unwrap();
        }
        std::fs::write(copy.join("log"), log).unwrap();
        let (ok, out, err) = evidence_verify(&["--dir", copy.to_str().unwrap(), "--key", &key]);
        assert!(!ok, "{name}: a changed log verified: {out}");
        (json_of(&out)["message"].as_str().unwrap().to_owned(), err)
    };
    let (why, _) = tampered("edited", log.replacen("unknown_call", "unknown_cell", 1));
    assert!(why.contains("line 1") && why.contains("hash"), "{why}");
    let (why, _) = tampered("cut", format!("{}\n{}\n", lines[0], lines[1]));
    assert!(why.contains("cut short"), "{why}");
    let (why, _) = tampered("reordered", format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]));
    assert!(why.contains("line 1") && why.contains("reordered"), "{why}");
    let (why, _) = tampered("removed", format!("{}\n{}\n", lines[0], lines[2]));
    assert!(why.contains("line 2"), "{why}");
    // The right log checked against another key (one that was swapped in beside the log).
    let other = hex::encode([9u8; 32]);
    let (ok, out, _) = evidence_verify(&["--dir", &evidence_arg, "--key", &other]);
    assert!(!ok, "{out}");

    // The server does not carry on a log that was changed on disk.
    std::fs::write(evidence.join("log"), format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let started = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(server.config_path())
        .env_remove("RAMPART_DATA_DIR")
        .output()
        .unwrap();
    assert!(!started.status.success());
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(said.contains("evidence log") && said.contains("does not match"), "{said}");
}
