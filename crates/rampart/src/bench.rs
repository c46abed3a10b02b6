//! `rampart bench`: start a fresh server (this binary, embedded store, temporary data dir) and
//! measure it from the outside with real TLS WebSocket clients:
//!
//! 1. server memory per idle connected device (resident set size before and after N
//!    authenticated idle connections, read from /proc);
//! 2. delivered messages per second and delivery latency (sender's send call to recipient's
//!    receipt of the pushed frame, p50/p99), with P sender/recipient pairs;
//! 3. end-to-end encrypted messages per second between two real clients (profiles on disk):
//!    MLS encryption on the sender, the server's group fan-out, and on the recipient MLS
//!    decryption, storage in its profile and acknowledgement.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use rampart_client::{Connection, ServerAddress};
use rampart_core::{DeviceId, DeviceSecret, MessageId, PhoneNumber, ServerMessageId, VerificationCode};
use rampart_proto::{ClientRequest, Envelope, Recipient, ResponseBody, ServerFrame, decode_envelope};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Sender/recipient pairs, each on its own connection.
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 3000)]
    pub messages: usize,
    /// Sends each sender keeps in flight.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Idle authenticated devices for the memory measurement (0 to skip).
    #[arg(long, default_value_t = 2000)]
    pub idle: usize,
    /// Run the server on PostgreSQL instead of the embedded store (use an empty database).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// End-to-end encrypted messages for the client-to-client measurement (0 to skip).
    #[arg(long, default_value_t = 3000)]
    pub e2e_messages: usize,
    /// Keep the server's data directory here instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Run the server with Sentinel off: the difference to a run with it on is what watching
    /// costs.
    #[arg(long)]
    pub no_sentinel: bool,
}

const BENCH_CONFIG: &str = r#"
[limits]
max_queue_per_device = 1000000
max_queue_per_sender = 1000000
[rate_limits]
send = { burst = 1000000000, per_minute = 1e12 }
upload_kib = { burst = 1000000000, per_minute = 1e12 }
register_per_number = { burst = 1000, per_minute = 1e9 }
register_per_address = { burst = 1000000000, per_minute = 1e12 }
verify_per_address = { burst = 1000000000, per_minute = 1e12 }
auth_failures_per_address = { burst = 1000, per_minute = 1e9 }
"#;

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    fingerprint: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of a process, from /proc (clock ticks are 100 Hz on Linux).
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc (Linux only)")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / 100.0)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc (Linux only)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// A throwaway SMS gateway: the server's webhook verifier posts codes here.
async fn start_gateway() -> anyhow::Result<(SocketAddr, Arc<Mutex<HashMap<String, String>>>)> {
    let codes: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let sink = codes.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |raw: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                    let phone = v.get("phone").and_then(|p| p.as_str()).unwrap_or_default().to_owned();
                    let code = v
                        .get("text")
                        .and_then(|t| t.as_str())
                        .unwrap_or_default()
                        .split_whitespace()
                        .find(|w| w.len() == 7 && w.ends_with('.'))
                        .unwrap_or_default()
                        .trim_end_matches('.')
                        .to_owned();
                    if let Ok(mut map) = sink.lock() {
                        map.insert(phone, code);
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, codes))
}

fn start_server(
    dir: &Path,
    gateway: SocketAddr,
    database_url: Option<&str>,
    sentinel: bool,
) -> anyhow::Result<ServerProcess> {
    use std::io::BufRead;
    let config = dir.join("bench.toml");
    let database = database_url.map(|u| format!("database_url = \"{u}\"\n")).unwrap_or_default();
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{database}{BENCH_CONFIG}\n[verifier]\nkind = \"webhook\"\nurl = \"http://{gateway}/sms\"\n",
        dir.join("server").display()
    );
    let text = if sentinel { text } else { format!("{text}[sentinel]\nenabled = false\n") };
    std::fs::write(&config, text)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut addr, mut fingerprint) = (None, None);
    for line in lines.by_ref() {
        let line = line?;
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("listening") {
            addr = rest.split_whitespace().next().and_then(|u| u.trim_start_matches("https://").parse().ok());
        }
        if let Some(rest) = line.strip_prefix("fingerprint") {
            fingerprint = Some(rest.trim().to_owned());
        }
        if line.starts_with("Stop with") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    match (addr, fingerprint) {
        (Some(addr), Some(fingerprint)) => Ok(ServerProcess { child, addr, fingerprint }),
        _ => bail!("the server did not start"),
    }
}

struct Device {
    phone: PhoneNumber,
    device: DeviceId,
    secret: DeviceSecret,
}

async fn open(server: &ServerProcess) -> anyhow::Result<Connection> {
    let addr = ServerAddress { host: server.addr.ip().to_string(), port: server.addr.port() };
    Ok(Connection::open(&addr, Some(server.fingerprint.clone())).await?)
}

/// Register `count` accounts over one anonymous connection.
async fn register_many(
    server: &ServerProcess,
    codes: &Mutex<HashMap<String, String>>,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Device>> {
    let mut conn = open(server).await?;
    let mut out = Vec::with_capacity(count);
    for i in first..first + count {
        let phone = PhoneNumber::parse(&format!("+1555{i:07}")).map_err(|e| anyhow!("{e}"))?;
        conn.request(ClientRequest::Register { phone: phone.clone(), username: None }).await?;
        let code = codes
            .lock()
            .map_err(|_| anyhow!("gateway poisoned"))?
            .remove(phone.as_e164())
            .ok_or_else(|| anyhow!("no code arrived"))?;
        let code = VerificationCode::parse(&code).map_err(|e| anyhow!("{e}"))?;
        let secret = DeviceSecret::generate(&mut rand::rng());
        let verify = ClientRequest::Verify {
            phone: phone.clone(),
            code,
            device_name: "bench".into(),
            secret: secret.clone(),
        };
        match conn.request(verify).await? {
            ResponseBody::Registered { device, .. } => out.push(Device { phone, device, secret }),
            other => bail!("unexpected answer {other:?}"),
        }
    }
    conn.close().await;
    Ok(out)
}

async fn authenticate(server: &ServerProcess, d: &Device) -> anyhow::Result<Connection> {
    let mut conn = open(server).await?;
    conn.request(ClientRequest::Authenticate {
        device: d.device,
        secret: d.secret.clone(),
        client: rampart_client::CLIENT_NAME.to_owned(),
    })
    .await?;
    Ok(conn)
}

async fn register_parallel(
    server: &Arc<ServerProcess>,
    codes: &Arc<Mutex<HashMap<String, String>>>,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Device>> {
    let lanes = 8.min(count.max(1));
    let per = count.div_ceil(lanes);
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let start = first + lane * per;
        let n = per.min((first + count).saturating_sub(start));
        let (server, codes) = (server.clone(), codes.clone());
        tasks.push(tokio::spawn(async move { register_many(&server, &codes, start, n).await }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// The send time a bench sender stamped into a message, read back out of the envelope the
/// server wraps every `Send` body in, and the latency it implies at `now` (both in µs since the
/// bench's epoch). A missing stamp, or one from the future, is an error: a figure computed
/// from it would be made up.
fn latency_of(delivered: &[u8], now_us: u64) -> anyhow::Result<u64> {
    let Envelope::Direct(body) =
        decode_envelope(delivered).map_err(|e| anyhow!("a delivery that is not an envelope: {e}"))?
    else {
        bail!("a delivery that is not a direct message");
    };
    let stamp = body
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| anyhow!("a delivered message without a send-time stamp ({} bytes)", body.len()))?;
    if stamp == 0 || stamp > now_us {
        bail!("an implausible send-time stamp: sent at {stamp} µs, received at {now_us} µs");
    }
    Ok(now_us - stamp)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(0)
}

pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = std::env::temp_dir().join(format!("rampart-bench-{}", std::process::id()));
            temp.clone()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let (gateway, codes) = start_gateway().await?;
    let server = Arc::new(start_server(&dir, gateway, args.database_url.as_deref(), !args.no_sentinel)?);
    let pid = server.child.id();
    let storage = if args.database_url.is_some() {
        "PostgreSQL".to_owned()
    } else {
        format!("embedded SQLite in {}", dir.display())
    };
    let sentinel = if args.no_sentinel { "Sentinel off" } else { "Sentinel on" };
    outln!("rampart bench: server pid {pid} at {} ({storage}, {sentinel})", server.addr);
    outln!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    // --- memory per idle connected device -------------------------------------------
    let mut idle_kib_per_device = None;
    if args.idle > 0 {
        let devices = register_parallel(&server, &codes, 0, args.idle).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid)?;
        let mut idle = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(64) {
            let mut batch = Vec::new();
            for d in chunk {
                batch.push(authenticate(&server, d));
            }
            for c in futures_util::future::join_all(batch).await {
                idle.push(c?);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid)?;
        let per = (after.saturating_sub(before)) as f64 / idle.len() as f64;
        idle_kib_per_device = Some(per);
        outln!(
            "idle devices: {}  server RSS {} KiB -> {} KiB  = {:.1} KiB per idle connected device",
            idle.len(),
            before,
            after,
            per
        );
        for c in idle {
            c.close().await;
        }
    }

    // --- throughput and latency -------------------------------------------------------
    let base = args.idle + 1;
    let senders = register_parallel(&server, &codes, base, args.pairs).await?;
    let recipients = register_parallel(&server, &codes, base + args.pairs, args.pairs).await?;
    let epoch = Instant::now();
    let body_len = args.size.max(8);

    let mut receivers = Vec::new();
    for r in &recipients {
        let mut conn = authenticate(&server, r).await?;
        // Wait for the (empty) backlog so every later frame is a live push.
        while !matches!(conn.next_frame(Duration::from_secs(10)).await?, Some(ServerFrame::QueueDrained)) {}
        let expected = args.messages;
        receivers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(expected);
            let mut pending_acks: Vec<ServerMessageId> = Vec::new();
            while latencies.len() < expected {
                let wait =
                    if pending_acks.is_empty() { Duration::from_secs(30) } else { Duration::from_millis(2) };
                let quiet = match conn.next_frame(wait).await? {
                    Some(ServerFrame::Delivery(d)) => {
                        let now = epoch.elapsed().as_micros() as u64;
                        latencies.push(latency_of(&d.body, now)?);
                        pending_acks.push(d.server_id);
                        false
                    }
                    Some(_) => false,
                    None if pending_acks.is_empty() => bail!("deliveries stopped arriving"),
                    None => true,
                };
                // Acknowledge in batches, and whenever the stream pauses.
                if pending_acks.len() >= 64 || (quiet && !pending_acks.is_empty()) {
                    conn.send(ClientRequest::Ack { ids: std::mem::take(&mut pending_acks) }).await?;
                }
            }
            if !pending_acks.is_empty() {
                conn.send(ClientRequest::Ack { ids: pending_acks }).await?;
            }
            let _ = conn.request(ClientRequest::Ping).await;
            conn.close().await;
            Ok::<_, anyhow::Error>((latencies, epoch.elapsed()))
        }));
    }

    let mut sender_tasks = Vec::new();
    let mut sender_conns = Vec::new();
    for s in &senders {
        sender_conns.push(authenticate(&server, s).await?);
    }
    let started = epoch.elapsed();
    let cpu_before = cpu_secs(pid)?;
    for (mut conn, to) in sender_conns.into_iter().zip(recipients.iter().map(|r| r.phone.clone())) {
        let (messages, window) = (args.messages, args.window.max(1));
        sender_tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            let mut answered = 0usize;
            while answered < messages {
                while sent < messages && sent - answered < window {
                    let mut body = vec![0u8; body_len];
                    let t = epoch.elapsed().as_micros() as u64;
                    if let Some(stamp) = body.get_mut(..8) {
                        stamp.copy_from_slice(&t.to_le_bytes());
                    }
                    let req = ClientRequest::Send {
                        to: Recipient::Phone(to.clone()),
                        message_id: MessageId::random(&mut rand::rng()),
                        body: body.into(),
                    };
                    conn.feed(req).await?;
                    sent += 1;
                }
                conn.flush().await?;
                match conn.next_any(Duration::from_secs(30)).await? {
                    Some(ServerFrame::Response { result: Ok(_), .. }) => answered += 1,
                    Some(ServerFrame::Response { result: Err(e), .. }) => {
                        bail!("send refused: {}", e.message)
                    }
                    Some(_) => {}
                    None => bail!("no answer to sends for 30 s"),
                }
            }
            conn.close().await;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in sender_tasks {
        t.await??;
    }
    let mut latencies = Vec::new();
    let mut finished = started;
    for r in receivers {
        let (l, end) = r.await??;
        latencies.extend(l);
        finished = finished.max(end);
    }
    let elapsed = (finished - started).as_secs_f64();
    let server_cpu = cpu_secs(pid)? - cpu_before;
    latencies.sort_unstable();
    let total = latencies.len();
    if total != args.pairs * args.messages {
        bail!("{total} latencies measured for {} messages sent", args.pairs * args.messages);
    }
    if elapsed <= 0.0 || total == 0 {
        bail!("nothing was measured");
    }
    let mean_us = latencies.iter().sum::<u64>() as f64 / total as f64;
    let rate = total as f64 / elapsed;
    // Little's law: messages in flight (sent, not yet received) = rate x mean latency. The
    // senders' windows bound unanswered sends only: a message the server has answered but
    // not yet pushed is still in flight on this clock, so the figure may exceed the windows.
    let in_flight = rate * mean_us / 1e6;
    outln!(
        "delivery: {} pairs x {} messages of {} bytes, window {}: {} delivered in {:.2} s = {:.0} messages/s",
        args.pairs,
        args.messages,
        body_len,
        args.window,
        total,
        elapsed,
        total as f64 / elapsed
    );
    let (p50, p99, max) = (
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    outln!(
        "latency (send call to push received): p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  mean {:.2} ms",
        mean_us / 1000.0
    );
    outln!(
        "Little's law: {rate:.0} messages/s x {:.2} ms mean = {in_flight:.1} messages in flight (the senders' windows hold {} unanswered sends)",
        mean_us / 1000.0,
        args.pairs * args.window.max(1)
    );
    // /proc counts CPU time in 10 ms ticks: below 20 of them the figure would be mostly rounding.
    let cpu_us_per_message = if server_cpu >= 0.2 {
        outln!(
            "server CPU: {:.2} s for {} messages = {:.1} µs per delivered message ({:.0}% of one core; the rest of the machine ran the bench clients)",
            server_cpu,
            total,
            server_cpu * 1e6 / total as f64,
            server_cpu * 100.0 / elapsed
        );
        Some(server_cpu * 1e6 / total as f64)
    } else {
        outln!("server CPU: {server_cpu:.2} s, too little to measure per message (run more messages)");
        None
    };
    let e2e_rate = if args.e2e_messages > 0 {
        Some(end_to_end(&server, &codes, &dir, args.e2e_messages, args.window.max(1)).await?)
    } else {
        None
    };
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "delivered": total,
                "seconds": elapsed,
                "messages_per_sec": rate,
                "latency_ms": { "p50": p50, "p99": p99, "max": max, "mean": mean_us / 1000.0 },
                "in_flight": in_flight,
                "send_windows": args.pairs * args.window.max(1),
                "server_cpu_us_per_message": cpu_us_per_message,
                "idle_kib_per_device": idle_kib_per_device,
                "e2e_messages_per_sec": e2e_rate,
            })
        );
    }
    drop(server);
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A real client (profile on disk) registered through the gateway's codes.
async fn client(
    server: &ServerProcess,
    codes: &Arc<Mutex<HashMap<String, String>>>,
    dir: &Path,
    name: &str,
    phone: &str,
) -> anyhow::Result<rampart_client::Client> {
    let mut c = rampart_client::Client::open(&dir.join(name))?;
    let addr = ServerAddress::parse(&format!("https://{}", server.addr))?;
    c.register(&addr, phone, Some(name), Some(server.fingerprint.clone())).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = codes.lock().ok().and_then(|m| m.get(phone).cloned()) {
            break code;
        }
        if Instant::now() > deadline {
            bail!("no verification code for {name}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    c.verify(&code, "bench").await?;
    Ok(c)
}

/// Messages/s between two real clients, end-to-end encrypted: the sender seals each with MLS
/// and keeps `window` sends in flight; the recipient decrypts, stores and acknowledges each.
async fn end_to_end(
    server: &ServerProcess,
    codes: &Arc<Mutex<HashMap<String, String>>>,
    dir: &Path,
    messages: usize,
    window: usize,
) -> anyhow::Result<f64> {
    let mut alice = client(server, codes, dir, "e2e_alice", "+15559990001").await?;
    let mut bob = client(server, codes, dir, "e2e_bob", "+15559990002").await?;
    // Set up the conversation (MLS group with both devices) before measuring. Bob knows Alice:
    // her conversation opens at once instead of waiting as a request.
    bob.add_contact("@e2e_alice").await?;
    alice.send_text("@e2e_bob", "hello").await?;
    bob.receive(None, |_| {}).await?;
    alice.receive(None, |_| {}).await?;
    let group = alice.resolve_conversation("@e2e_bob")?;
    let text = "x".repeat(200);

    let receiver = tokio::spawn(async move {
        let mut got = 0usize;
        let mut last = Instant::now();
        let mut conn = bob.connect().await?;
        while got < messages {
            let events = bob.pump(&mut conn, Duration::from_millis(100)).await?;
            let n = events.iter().filter(|e| matches!(e, rampart_client::Event::Message { .. })).count();
            if n == 0 && last.elapsed() > Duration::from_secs(30) {
                bail!("messages stopped arriving after {got}");
            }
            if n > 0 {
                last = Instant::now();
            }
            got += n;
        }
        conn.close().await;
        Ok::<_, anyhow::Error>(Instant::now())
    });
    let mut conn = alice.connect().await?;
    let started = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut seal = Duration::ZERO;
    while answered < messages {
        while sent < messages && sent - answered < window {
            let t = Instant::now();
            let request = alice.seal_text(&group, &text)?;
            seal += t.elapsed();
            conn.feed(request).await?;
            sent += 1;
        }
        conn.flush().await?;
        match conn.next_any(Duration::from_secs(30)).await? {
            Some(ServerFrame::Response { result: Ok(_), .. }) => answered += 1,
            Some(ServerFrame::Response { result: Err(e), .. }) => bail!("send refused: {}", e.message),
            Some(_) => {}
            None => bail!("no answer to sends for 30 s"),
        }
    }
    let sent_at = Instant::now();
    let finished = receiver.await??;
    conn.close().await;
    let elapsed = (finished - started).as_secs_f64();
    outln!(
        "end-to-end encrypted: {messages} messages of {} bytes, 1:1, window {window}: sent in {:.2} s, all \
         decrypted, stored and acknowledged by the recipient in {:.2} s = {:.0} messages/s \
         (sender's MLS sealing {:.0} µs per message)",
        text.len(),
        (sent_at - started).as_secs_f64(),
        elapsed,
        messages as f64 / elapsed,
        seal.as_secs_f64() * 1e6 / messages as f64
    );
    Ok(messages as f64 / elapsed)
}
