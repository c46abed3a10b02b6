//! Rampart's relay against coturn under the same load: `cargo bench -p rampart-relay`.
//!
//! N pairs of TURN clients (ours, `TurnClient`) relay SRTP-shaped ChannelData to each other in
//! both directions, each flow keeping a fixed window of packets in flight. Two packet sizes:
//! a voice packet (88 bytes: 12-byte RTP header, a 60-byte Opus frame at 24 kbit/s, 16-byte
//! GCM tag) and a larger 172-byte one. Each (relay, size) is run ROUNDS times, in ABBA order
//! (Rampart first in even rounds, coturn first in odd ones) so that drift in the shared
//! machine's load does not favour one relay; each run gets a fresh relay. Every packet that
//! arrives is checked byte for byte against what its flow (the SSRC) and sequence number say
//! was sent, and must come from that flow's sender: a damaged, misrouted or foreign packet
//! stops the bench.
//!
//! Reported per (relay, size): the median, min and max over the rounds of end-to-end relayed
//! packets per second and of the relay's CPU time per relayed packet read from /proc (our
//! relay's runtime threads only, so the load generator's own cost stays out; coturn's whole
//! process).
//!
//! Configuration, the same for both relays where they have the setting: loopback peers
//! allowed, no TLS/DTLS/TCP. Our relay runs with its SRTP shape check on and its per-allocation
//! bandwidth cap set to 1 GiB/s, so the cap's accounting runs on every packet but drops none
//! (coturn's per-session cap is off by default).
//!
//! Environment: BENCH_PAIRS (default 8), BENCH_SECONDS (default 3), BENCH_WINDOW (default 16),
//! BENCH_ROUNDS (default 6, so that each relay goes first equally often).
// A benchmark driver: failures should stop it loudly, and all data is its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_relay::{RelayConfig, RelayStats, TurnClient};
use rampart_turn::credentials::{self, SharedSecret};
use tokio::sync::Notify;

const SECRET: &str = "bench-shared-secret-0123456789";
const REALM: &str = "rampart.bench";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The packet sizes measured: a voice packet (12-byte RTP header, a 60-byte Opus frame at
/// 24 kbit/s, 16-byte tag) and a larger one.
const PACKET_SIZES: [usize; 2] = [88, 172];
/// The cap our relay runs with: high enough never to drop, so only its accounting is measured.
const BANDWIDTH_CAP: u64 = 1 << 30;
/// The name of our relay's runtime threads, by which their CPU time is found in /proc.
const RELAY_THREAD: &str = "rampart-relay";
const TURNSERVER: &str = "/usr/bin/turnserver";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn secret() -> SharedSecret {
    SharedSecret::new(SECRET.as_bytes().to_vec()).unwrap()
}

/// Flow `ssrc`'s packet number `sequence`.
fn srtp(ssrc: u32, sequence: u16, size: usize) -> Vec<u8> {
    let mut packet = vec![0x80, 111];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&(u32::from(sequence).wrapping_mul(960)).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.resize(size, 0xa5);
    packet
}

/// Whether `packet` is exactly what [`srtp`] made for flow `ssrc` and the sequence number the
/// packet carries.
fn intact(packet: &[u8], ssrc: u32, size: usize) -> bool {
    let Some(sequence) = packet.get(2..4).map(|s| u16::from_be_bytes([s[0], s[1]])) else { return false };
    packet == srtp(ssrc, sequence, size).as_slice()
}

/// Clock ticks per second of /proc's CPU times (USER_HZ), from `getconf`; 100 almost
/// everywhere.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime, in ticks, of a /proc stat file. The fields are counted after the command
/// name, which is in parentheses and may contain spaces.
fn stat_ticks(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state (field 3) ... utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds used so far by this process's threads named [`RELAY_THREAD`].
fn relay_threads_cpu(ticks: f64) -> f64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/thread-self/..").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == RELAY_THREAD {
            total += stat_ticks(&task.path().join("stat")).unwrap_or(0);
        }
    }
    total as f64 / ticks
}

fn process_cpu(pid: u32, ticks: f64) -> f64 {
    stat_ticks(Path::new(&format!("/proc/{pid}/stat"))).unwrap_or(0) as f64 / ticks
}

#[derive(Debug)]
struct Outcome {
    delivered: u64,
    elapsed: Duration,
    cpu_seconds: f64,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
    fn cpu_us_per_packet(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.delivered as f64
    }
}

/// One direction of one pair: packets sent and received, and the packets given up as lost.
#[derive(Default)]
struct Flow {
    received: AtomicU64,
    notify: Notify,
}

/// Runs the load against `server`: `pairs` pairs, both directions, `window` packets in
/// flight per direction; measures `measure` after a warm-up, reading `cpu` at both ends.
async fn run_load(
    server: SocketAddr,
    pairs: usize,
    window: u64,
    size: usize,
    measure: Duration,
    cpu: impl Fn() -> f64,
) -> Outcome {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut clients = Vec::new();
    for i in 0..pairs * 2 {
        let credential = credentials::mint(&secret(), &format!("bench{i}.dev"), now, 3600).unwrap();
        let client = TurnClient::allocate(server, credential.username().as_str(), credential.password())
            .await
            .expect("allocation for the benchmark");
        clients.push(Arc::new(client));
    }
    for pair in clients.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        a.channel_bind(b.relayed_address()).await.unwrap();
        b.channel_bind(a.relayed_address()).await.unwrap();
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let damaged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for pair in clients.chunks(2) {
        for (from, to) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
            let ssrc = 0x5000_0000 + tasks.len() as u32;
            let source = from.relayed_address();
            let flow = Arc::new(Flow::default());
            let (receiver, flow_in, delivered) = (Arc::clone(to), Arc::clone(&flow), Arc::clone(&delivered));
            let damaged = Arc::clone(&damaged);
            tasks.push(tokio::spawn(async move {
                while let Ok((sender, packet)) = receiver.recv_from().await {
                    if sender != source || !intact(&packet, ssrc, size) {
                        damaged.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    flow_in.received.fetch_add(1, Ordering::Relaxed);
                    delivered.fetch_add(1, Ordering::Relaxed);
                    flow_in.notify.notify_one();
                }
            }));
            let (sender, peer, stop) = (Arc::clone(from), to.relayed_address(), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut sent: u64 = 0;
                let mut written_off: u64 = 0;
                let mut sequence: u16 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let in_flight = sent - (flow.received.load(Ordering::Relaxed) + written_off).min(sent);
                    if in_flight >= window {
                        // A packet not back within 50 ms is taken as lost, so losses cannot
                        // shrink the window for good.
                        if tokio::time::timeout(Duration::from_millis(50), flow.notify.notified())
                            .await
                            .is_err()
                        {
                            written_off = sent - flow.received.load(Ordering::Relaxed).min(sent);
                        }
                        continue;
                    }
                    sequence = sequence.wrapping_add(1);
                    if sender.send_to(peer, &srtp(ssrc, sequence, size)).await.is_ok() {
                        sent += 1;
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu_start, delivered_start, started) = (cpu(), delivered.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(measure).await;
    let (cpu_end, delivered_end, elapsed) = (cpu(), delivered.load(Ordering::Relaxed), started.elapsed());
    stop.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    for client in &clients {
        let _ = client.close().await;
    }
    let damaged = damaged.load(Ordering::Relaxed);
    assert_eq!(damaged, 0, "{damaged} packets arrived damaged, misrouted or from the wrong sender");
    let outcome =
        Outcome { delivered: delivered_end - delivered_start, elapsed, cpu_seconds: cpu_end - cpu_start };
    // Refuse figures that were not measured: packets must have flowed, the relay must have
    // used CPU for them, and the window must have been the one asked for.
    assert!(outcome.delivered > 0, "nothing was relayed");
    assert!(outcome.cpu_seconds > 0.0, "no relay CPU time was read: {outcome:?}");
    assert!(elapsed >= measure, "measured {elapsed:?} of {measure:?}");
    outcome
}

/// Median, min and max.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn report(name: &str, size: usize, runs: &[Outcome]) {
    let (rate, rate_min, rate_max) = spread(runs.iter().map(Outcome::per_second).collect());
    let (cpu, cpu_min, cpu_max) = spread(runs.iter().map(Outcome::cpu_us_per_packet).collect());
    println!(
        "{name:<8} {size:>5} B {:>3} runs  packets/s {rate:>8.0} ({rate_min:.0}-{rate_max:.0})  \
         CPU µs/packet {cpu:>6.2} ({cpu_min:.2}-{cpu_max:.2})  packets/CPU-s {:>7.0}",
        runs.len(),
        1e6 / cpu
    );
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs, {model}")
}

/// Our relay in its own thread with its own runtime; returns its address, a stop signal and
/// the thread (which returns the relay's final counters).
fn start_ours(
    threads: usize,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<RelayStats>) {
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(RELAY_THREAD.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(RELAY_THREAD)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut config = RelayConfig::new(SocketAddr::new(LOOPBACK, 0), LOOPBACK, REALM, secret());
                config.allow_loopback_peers = true;
                config.bandwidth_bytes_per_sec = BANDWIDTH_CAP;
                config.max_allocations_per_user = 64;
                let relay = rampart_relay::start(config).await.unwrap();
                address_tx.send(relay.local_addr()).unwrap();
                let _ = stop_rx.await;
                let stats = relay.stats();
                relay.shutdown().await;
                stats
            })
        })
        .unwrap();
    (address_rx.recv().unwrap(), stop_tx, thread)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// coturn on loopback, answering a Binding request.
fn start_coturn() -> Option<(Killed, SocketAddr)> {
    if !Path::new(TURNSERVER).exists() {
        println!("coturn not installed ({TURNSERVER}): skipping it");
        return None;
    }
    for _ in 0..5 {
        let port = std::net::UdpSocket::bind((LOOPBACK, 0)).ok()?.local_addr().ok()?.port();
        let min_port = 20_000 + u16::try_from(std::process::id() % 10_000).unwrap_or(0);
        let child = Command::new(TURNSERVER)
            .args(["--use-auth-secret", "--static-auth-secret", SECRET, "--realm", REALM])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", &min_port.to_string(), "--max-port", &(min_port + 500).to_string()])
            .args(["--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay", "--no-cli", "--no-rfc5780"])
            .args(["--allow-loopback-peers", "--log-file", "stdout", "--simple-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let child = Killed(child);
        let server = SocketAddr::new(LOOPBACK, port);
        let probe = std::net::UdpSocket::bind((LOOPBACK, 0)).ok()?;
        probe.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
        // A Binding request: type 0x0001, length 0, magic cookie, transaction id.
        let mut binding = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        binding.extend_from_slice(&[7; 12]);
        let mut buf = [0u8; 1500];
        for _ in 0..50 {
            probe.send_to(&binding, server).ok()?;
            if probe.recv_from(&mut buf).is_ok() {
                return Some((child, server));
            }
        }
    }
    println!("coturn did not start: skipping it");
    None
}

fn main() {
    // `cargo bench` passes "--bench"; anything else (a filter) is ignored.
    let pairs = usize::try_from(env_or("BENCH_PAIRS", 8)).unwrap_or(8);
    let measure = Duration::from_secs(env_or("BENCH_SECONDS", 3));
    let window = env_or("BENCH_WINDOW", 16);
    let rounds = env_or("BENCH_ROUNDS", 6).max(1);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let ticks = clock_ticks();
    println!("machine: {}", machine());
    println!(
        "load: {pairs} pairs, both directions, SRTP-shaped ChannelData of {PACKET_SIZES:?} bytes, window {window} \
         per direction, {} s per run, {rounds} rounds in ABBA order; our relay: {threads} runtime threads, \
         media check on, bandwidth cap {} MiB/s per allocation (never reached)",
        measure.as_secs(),
        BANDWIDTH_CAP >> 20
    );
    if !Path::new(TURNSERVER).exists() {
        println!("coturn not installed ({TURNSERVER}): measuring Rampart's relay alone");
    }
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();

    for size in PACKET_SIZES {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut counters = Vec::new();
        let mut skipped = 0;
        for round in 0..rounds {
            let rampart_first = round % 2 == 0;
            for turn in 0..2 {
                if (turn == 0) == rampart_first {
                    let (address, stop, thread) = start_ours(threads);
                    let outcome = load.block_on(run_load(address, pairs, window, size, measure, || {
                        relay_threads_cpu(ticks)
                    }));
                    let _ = stop.send(());
                    let stats = thread.join().unwrap();
                    // The relay's own count agrees: it relayed at least what arrived while measured.
                    assert!(stats.relayed_to_client >= outcome.delivered, "{stats:?} vs {outcome:?}");
                    counters.push(stats);
                    ours.push(outcome);
                } else if let Some((child, server)) = start_coturn() {
                    let pid = child.0.id();
                    theirs.push(load.block_on(run_load(server, pairs, window, size, measure, || {
                        process_cpu(pid, ticks)
                    })));
                } else if Path::new(TURNSERVER).exists() {
                    skipped += 1;
                }
            }
        }
        report("rampart", size, &ours);
        if !theirs.is_empty() {
            report("coturn", size, &theirs);
        }
        if skipped > 0 {
            println!("         (coturn did not start for {skipped} of its runs: those runs are missing)");
        }
        let dropped: u64 = counters.iter().map(|s| s.dropped_malformed + s.dropped_over_bandwidth).sum();
        println!(
            "         (rampart relay dropped {dropped} packets as malformed or over the cap in these runs)"
        );
    }
    println!(
        "(a relayed packet is one delivered end to end: client -> relay -> relayed port -> relay -> client; \
         ranges are min-max over the rounds)"
    );
}
