//! MLS figures for docs/benchmarks.md: `cargo bench -p rampart-mls`.
//!
//! Measured on the storage clients use: openmls' SQLite provider on a database file in WAL
//! mode with `synchronous=FULL` (an fsync per committed write), as a client profile's
//! `mls.db`, not in memory. Each figure is the median of several samples after a warm-up, with
//! the spread; a sample whose work did not all happen (a message that did not decrypt to its
//! plaintext, a commit without a welcome) stops the bench instead of printing a figure.
//!
//! Prints encrypt+decrypt throughput for 1 KiB messages in a 1:1 conversation, the committer's
//! time to add one member to groups of 100 and 1,000 devices, and the server's check of that
//! commit against the group's public state (`ds::check_commit`, in memory as the server runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use openmls_memory_storage::MemoryStorage;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use rampart_core::{AccountId, DeviceId, GroupId};
use rampart_mls::ds::{GroupStart, Registered, check_commit};
use rampart_mls::identity::{certify, new_signature_key, public_key};
use rampart_mls::{Engine, Processed};

/// How the client serialises openmls' state (crates/client/src/e2e.rs).
#[derive(Debug, Default)]
struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;
    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }
    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

type FileStorage = SqliteStorageProvider<JsonCodec, rusqlite::Connection>;

/// A device whose MLS state lives in `dir/name.db`, set up as a client's profile is.
fn device_on_disk(dir: &Path, n: u64) -> Engine<FileStorage> {
    let conn = rusqlite::Connection::open(dir.join(format!("mls-{n}.db"))).unwrap();
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    let mut storage = FileStorage::new(conn);
    storage.run_migrations().unwrap();
    let key = new_signature_key().unwrap();
    let cert = certify(&key, AccountId(n), DeviceId(n), public_key(&key).unwrap()).unwrap();
    Engine::new(storage, key, cert).unwrap()
}

/// Members whose only job is to hand the committer a key package (not measured); the server
/// registers their keys.
fn key_package_of(n: u64, registered: &mut BTreeMap<DeviceId, Registered>) -> Vec<u8> {
    let key = new_signature_key().unwrap();
    let cert = certify(&key, AccountId(n), DeviceId(n), public_key(&key).unwrap()).unwrap();
    registered.insert(cert.device, Registered { account: cert.account, signature_key: cert.signature_key });
    Engine::new(MemoryStorage::default(), key, cert).unwrap().key_packages(1).unwrap().remove(0)
}

/// The delivery service's check of one commit, as the server runs it, with the state after it.
fn checked(
    group: &GroupId,
    state: Option<&[u8]>,
    bundle: &rampart_mls::CommitBundle,
    committer: DeviceId,
    registered: &BTreeMap<DeviceId, Registered>,
) -> Vec<u8> {
    let start = match (state, &bundle.group_info) {
        (Some(s), _) => GroupStart::Known(s),
        (None, Some(info)) => GroupStart::New { group_info: info },
        (None, None) => panic!("a first commit without its GroupInfo"),
    };
    let verdict = check_commit(group, start, &bundle.commit, committer, registered).unwrap();
    assert_eq!(verdict.added.len(), bundle.added.len(), "the check read another commit");
    verdict.public_state
}

/// Median, min and max of `samples`.
fn spread(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    (median, samples[0], samples[samples.len() - 1])
}

/// The bound every MLS application message meets: one Ed25519 signature and one verification.
fn signature_baseline() {
    use openmls_traits::crypto::OpenMlsCrypto;
    use openmls_traits::signatures::Signer;
    let key = new_signature_key().unwrap();
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let payload = vec![0x42u8; 1024];
    let public = key.to_public_vec();
    let mut rates = Vec::new();
    for round in 0..6 {
        let n = 2_000;
        let started = Instant::now();
        for _ in 0..n {
            let sig = key.sign(&payload).unwrap();
            crypto
                .verify_signature(openmls_traits::types::SignatureScheme::ED25519, &payload, &public, &sig)
                .unwrap();
        }
        if round > 0 {
            rates.push(n as f64 / started.elapsed().as_secs_f64());
        }
    }
    let (median, min, max) = spread(&mut rates);
    println!(
        "Ed25519 sign+verify alone (the bound): {median:.0} per second, median of 5 (min {min:.0}, max {max:.0}), one core"
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    signature_baseline();

    // 1:1, 1 KiB messages: encrypt on one device, decrypt on the other, both on disk.
    let mut a = device_on_disk(dir.path(), 1);
    let mut b = device_on_disk(dir.path(), 2);
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group).unwrap();
    let bundle = a.add(&group, &b.key_packages(1).unwrap()).unwrap();
    a.commit_accepted(&group).unwrap();
    b.join(&bundle.welcome.unwrap()).unwrap();
    let payload = vec![0x42u8; 1024];
    let per_sample = 1_000;
    let mut rates = Vec::new();
    // One warm-up round, then five measured.
    for round in 0..6 {
        let mut decrypted = 0usize;
        let started = Instant::now();
        for _ in 0..per_sample {
            let ct = a.encrypt(&group, &payload).unwrap();
            match b.process(&group, &ct).unwrap() {
                Processed::Application { plaintext, .. } if plaintext == payload => decrypted += 1,
                other => panic!("not the message sent: {other:?}"),
            }
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(decrypted, per_sample);
        if round > 0 {
            rates.push(per_sample as f64 / secs);
        }
    }
    let (median, min, max) = spread(&mut rates);
    println!(
        "encrypt+decrypt 1 KiB, state in SQLite files (WAL, synchronous=FULL): {median:.0} messages/s, \
         median of 5 x {per_sample} (min {min:.0}, max {max:.0}), one core"
    );

    for (size, samples) in [(100u64, 7usize), (1_000, 5)] {
        let mut committer = device_on_disk(dir.path(), 10_000 + size);
        let me = committer.certificate().clone();
        let mut registered = BTreeMap::from([(
            me.device,
            Registered { account: me.account, signature_key: me.signature_key },
        )]);
        let group = GroupId::new(AccountId(10_000 + size), &mut rand::rng());
        committer.create_group(&group).unwrap();
        let members: Vec<Vec<u8>> =
            (0..size - 1).map(|i| key_package_of(20_000 + size * 10 + i, &mut registered)).collect();
        let mut state: Option<Vec<u8>> = None;
        for chunk in members.chunks(100) {
            let bundle = committer.add(&group, chunk).unwrap();
            state = Some(checked(&group, state.as_deref(), &bundle, me.device, &registered));
            committer.commit_accepted(&group).unwrap();
        }
        // Each sample adds one more device; the first is the warm-up.
        let (mut times, mut server_times) = (Vec::new(), Vec::new());
        let (mut commit_bytes, mut welcome_bytes) = (0, 0);
        for s in 0..=samples {
            let newcomer = vec![key_package_of(900_000 + size * 100 + s as u64, &mut registered)];
            let started = Instant::now();
            let bundle = committer.add(&group, &newcomer).unwrap();
            committer.commit_accepted(&group).unwrap();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let started = Instant::now();
            state = Some(checked(&group, state.as_deref(), &bundle, me.device, &registered));
            let server_ms = started.elapsed().as_secs_f64() * 1000.0;
            let welcome = bundle.welcome.expect("an add commit has a welcome");
            assert!(!bundle.commit.is_empty() && !welcome.is_empty());
            (commit_bytes, welcome_bytes) = (bundle.commit.len(), welcome.len());
            if s > 0 {
                times.push(ms);
                server_times.push(server_ms);
            }
        }
        let (median, min, max) = spread(&mut times);
        println!(
            "add one member to a group of {size} devices: {median:.1} ms on the committer, median of {samples} \
             (min {min:.1}, max {max:.1}; commit {commit_bytes} B, welcome {welcome_bytes} B)"
        );
        let state_bytes = state.as_ref().map_or(0, Vec::len);
        let (median, min, max) = spread(&mut server_times);
        println!(
            "the server's check of that commit against the group's public state: {median:.1} ms, median of \
             {samples} (min {min:.1}, max {max:.1}; public state {state_bytes} B)"
        );
    }
}
