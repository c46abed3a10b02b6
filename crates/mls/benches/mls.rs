//! MLS figures for docs/benchmarks.md: `cargo bench -p rampart-mls`.
//! Prints encrypt+decrypt throughput for 1 KiB messages and the committer's time to add a
//! member to groups of 100 and 1,000 devices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use openmls_memory_storage::MemoryStorage;
use rampart_core::{AccountId, DeviceId, GroupId};
use rampart_mls::identity::{certify, new_signature_key, public_key};
use rampart_mls::{Engine, Processed};

fn device(n: u64) -> Engine<MemoryStorage> {
    let key = new_signature_key().unwrap();
    let cert = certify(&key, AccountId(n), DeviceId(n), public_key(&key).unwrap()).unwrap();
    Engine::new(MemoryStorage::default(), key, cert).unwrap()
}

/// The bound every MLS application message meets: one Ed25519 signature and one verification.
fn signature_baseline() {
    use openmls_traits::crypto::OpenMlsCrypto;
    use openmls_traits::signatures::Signer;
    let key = new_signature_key().unwrap();
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let payload = vec![0x42u8; 1024];
    let public = key.to_public_vec();
    let n = 5_000;
    let started = Instant::now();
    for _ in 0..n {
        let sig = key.sign(&payload).unwrap();
        crypto
            .verify_signature(openmls_traits::types::SignatureScheme::ED25519, &payload, &public, &sig)
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("Ed25519 sign+verify alone (the bound): {:.0} per second (one core)", n as f64 / secs);
}

fn main() {
    signature_baseline();
    // 1:1, 1 KiB messages: encrypt on one device, decrypt on the other.
    let mut a = device(1);
    let mut b = device(2);
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group).unwrap();
    let bundle = a.add(&group, &b.key_packages(1).unwrap()).unwrap();
    a.commit_accepted(&group).unwrap();
    b.join(&bundle.welcome.unwrap()).unwrap();
    let payload = vec![0x42u8; 1024];
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        let ct = a.encrypt(&group, &payload).unwrap();
        match b.process(&group, &ct).unwrap() {
            Processed::Application { plaintext, .. } => assert_eq!(plaintext.len(), 1024),
            other => panic!("{other:?}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("encrypt+decrypt 1 KiB: {n} in {secs:.2} s = {:.0} messages/s (one core)", n as f64 / secs);

    for size in [100u64, 1_000] {
        let mut committer = device(10_000);
        let group = GroupId::new(AccountId(10_000), &mut rand::rng());
        committer.create_group(&group).unwrap();
        let members: Vec<Vec<u8>> =
            (0..size - 1).map(|i| device(20_000 + i).key_packages(1).unwrap().remove(0)).collect();
        for chunk in members.chunks(100) {
            committer.add(&group, chunk).unwrap();
            committer.commit_accepted(&group).unwrap();
        }
        let newcomer = device(99_999).key_packages(1).unwrap();
        let started = Instant::now();
        let bundle = committer.add(&group, &newcomer).unwrap();
        committer.commit_accepted(&group).unwrap();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "add one member to a group of {size} devices: {ms:.1} ms on the committer (commit {} B, welcome {} B)",
            bundle.commit.len(),
            bundle.welcome.map(|w| w.len()).unwrap_or(0)
        );
    }
}
